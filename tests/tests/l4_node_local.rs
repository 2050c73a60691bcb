//! Node-local access: a process on the node connecting (or sending) to a node address and an
//! L4 service port reaches an endpoint, through the cgroup `sock_addr` hooks.
//!
//! The hooks act per cgroup, not per network namespace, so each test attaches them to a
//! cgroup v2 of its own (`xdp-ingress-test-<pid>-<seq>`, removed on drop) and moves only its
//! client processes into it; the clients run in the test's node namespace. A process outside
//! that cgroup, in the same namespace, must see no change (its connection is refused, as it
//! is with no hook at all).
//!
//! ```text
//!  node ns: nc 10.77.1.2 / fd77:1::2 (the node address)     nb0 10.77.10.1 / fd77:10::1
//!                                                              │
//!  backend ns: eth0 10.77.10.2 / fd77:10::2, redis on :6379, UDP echo on :7000
//! ```

use std::{
    fs::File,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use ingress_common::stats::Counter;
use ingress_tests::{
    netns::{Netns, PinDir},
    seed::{Seed, Source},
    servers::{RedisServer, udp_echo_in},
    topology::{NODE, Offloads, Topology, backend_addr},
};
use xdp_ingress::{
    EBPF_OBJECT,
    config::{L4Protocol, L4Service, ServiceRef, Snapshot},
    l4::{
        Datapath, DatapathOptions, L4Mode, conntrack::Timeouts, datapath::cgroup2_root,
        plane::Kernel,
    },
};

const NODE6: Ipv6Addr = Ipv6Addr::new(0xfd77, 1, 0, 0, 0, 0, 0, 2);
const BACKEND6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x10, 0, 0, 0, 0, 0, 2);
const REDIS_PORT: u16 = 6379;
const ECHO_PORT: u16 = 7000;
const TCP_SVC: u16 = 9000;
const UDP_SVC: u16 = 9053;

/// A cgroup v2 of this test, removed on drop (after its processes have exited).
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new() -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let root = cgroup2_root()
            .expect("read mounts")
            .expect("a cgroup v2 mount (cgroup_no_v1 or the hybrid `unified` one)");
        let dir = root.join(format!(
            "xdp-ingress-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).expect("create test cgroup");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // The clients were waited for; a cgroup without processes can be removed.
        if let Err(e) = std::fs::remove_dir(&self.0) {
            eprintln!("removing {}: {e}", self.0.display());
        }
    }
}

/// Runs `args` in `ns`, inside `cgroup` when given (the shell moves itself there first).
fn run_in(ns: &Netns, cgroup: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new("timeout");
    c.arg("20");
    if let Some(cg) = cgroup {
        c.args(["sh", "-c", "echo $$ > \"$0\"/cgroup.procs && exec \"$@\""])
            .arg(cg);
    }
    c.arg("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .arg("--")
        .args(args);
    c.output().expect("run client")
}

/// `redis-cli PING` to the node's TCP service, stdout and stderr.
fn ping(ns: &Netns, cgroup: Option<&Path>, node: IpAddr) -> String {
    let out = run_in(
        ns,
        cgroup,
        &[
            "redis-cli",
            "-h",
            &node.to_string(),
            "-p",
            &TCP_SVC.to_string(),
            "PING",
        ],
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

struct Rig {
    kernel: Kernel,
    cgroup: TestCgroup,
    topo: Topology,
    _redis: Vec<RedisServer>,
    _pin: PinDir,
}

impl Rig {
    fn new() -> Self {
        let topo = Topology::new(1, Offloads::Default);
        let (node, backend) = (&topo.node, &topo.backends[0]);
        // IPv6 beside the topology's IPv4.
        for (ns, dev, addr) in [
            (node, "nc", "fd77:1::2/64"),
            (node, "nb0", "fd77:10::1/64"),
            (backend, "eth0", "fd77:10::2/64"),
        ] {
            ns.ip(&["-6", "addr", "add", addr, "dev", dev, "nodad"]);
        }
        backend.ip(&["-6", "route", "add", "default", "via", "fd77:10::1"]);
        let redis = [IpAddr::V4(backend_addr(0)), IpAddr::V6(BACKEND6)]
            .into_iter()
            .map(|ip| {
                RedisServer::start_with(
                    backend.command("redis-server"),
                    SocketAddr::new(ip, REDIS_PORT),
                )
            })
            .collect();
        udp_echo_in(
            backend,
            SocketAddr::new(IpAddr::V4(backend_addr(0)), ECHO_PORT),
            "b0",
        );
        udp_echo_in(
            backend,
            SocketAddr::new(IpAddr::V6(BACKEND6), ECHO_PORT),
            "b0v6",
        );

        let cgroup = TestCgroup::new();
        let pin = PinDir::new();
        let (pin_path, cg_path) = (pin.path().to_owned(), cgroup.path().to_owned());
        let ifaces = topo.node_interfaces();
        let mut kernel = topo.node.run(move || {
            let mut dp = ingress_tests::datapath::attached(&pin_path, &ifaces, L4Mode::Tc, 251);
            let nl = dp
                .attach_node_local(&cg_path)
                .expect("attach node-local hooks");
            assert_eq!(nl.programs, 8, "every sock_addr hook attached");
            Kernel::new(
                dp,
                vec![IpAddr::V4(NODE), IpAddr::V6(NODE6)],
                Timeouts::default(),
            )
            .expect("kernel plane")
        });
        let svc = |port, protocol, backend_port| L4Service {
            port,
            protocol,
            service: ServiceRef {
                namespace: "default".into(),
                name: "svc".into(),
                port,
            },
            endpoints: vec![
                SocketAddr::new(IpAddr::V4(backend_addr(0)), backend_port),
                SocketAddr::new(IpAddr::V6(BACKEND6), backend_port),
            ],
            proxy_protocol_in: false,
            proxy_protocol_out: false,
            addrs: Vec::new(),
            split: Vec::new(),
        };
        kernel
            .apply(&Snapshot {
                l4: vec![
                    svc(TCP_SVC, L4Protocol::Tcp, REDIS_PORT),
                    svc(UDP_SVC, L4Protocol::Udp, ECHO_PORT),
                ],
                ..Snapshot::default()
            })
            .expect("program maps");
        Self {
            kernel,
            cgroup,
            topo,
            _redis: redis,
            _pin: pin,
        }
    }

    /// Runs `args` in the node namespace; inside the test cgroup when `in_cgroup`.
    fn run_on_node(&self, in_cgroup: bool, args: &[&str]) -> Output {
        self.run_in(&self.topo.node, in_cgroup, args)
    }

    /// Runs `args` in `ns`; inside the test cgroup when `in_cgroup`.
    fn run_in(&self, ns: &Netns, in_cgroup: bool, args: &[&str]) -> Output {
        run_in(ns, in_cgroup.then(|| self.cgroup.path()), args)
    }

    fn redis_ping(&self, in_cgroup: bool, node: IpAddr) -> String {
        ping(&self.topo.node, in_cgroup.then(|| self.cgroup.path()), node)
    }

    /// A UDP (or TCP, `mode` "tcp") exchange by a small Python client; prints
    /// `<reply> <peer address> <peer port>`.
    fn py_client(&self, in_cgroup: bool, mode: &str, host: &str, port: u16) -> String {
        const CLIENT: &str = r#"
import socket, sys
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if mode == "tcp":
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(3)
        s.connect((host, port)); s.sendall(b"PING\r\n"); data = s.recv(100); peer = s.getpeername()
    else:
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(3)
        if mode == "connected":
            s.connect((host, port)); s.send(b"ping"); data = s.recv(100); peer = s.getpeername()
        else:
            s.sendto(b"ping", (host, port)); data, peer = s.recvfrom(100)
    print(data.decode().strip(), peer[0], peer[1])
except Exception as e:
    print("error", type(e).__name__)
"#;
        let out = self.run_on_node(
            in_cgroup,
            &["python3", "-c", CLIENT, mode, host, &port.to_string()],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn counter(&self, c: Counter) -> u64 {
        self.kernel.totals().expect("counters").get(c).packets
    }
}

#[test]
fn tcp_node_local_clients_reach_the_service_over_v4_and_v6() {
    let rig = Rig::new();
    let before = rig.counter(Counter::SockTranslated);
    for node in [IpAddr::V4(NODE), IpAddr::V6(NODE6)] {
        assert_eq!(
            rig.redis_ping(true, node),
            "PONG",
            "redis-cli in the cgroup to {node}:{TCP_SVC} reaches redis"
        );
        let outside = rig.redis_ping(false, node);
        assert!(
            outside.contains("refused"),
            "outside the cgroup, {node}:{TCP_SVC} is untouched (nothing listens): {outside}"
        );
    }
    // An IPv6 socket connecting to the IPv4-mapped node address is served by the IPv4
    // service, and getpeername still tells the endpoint (TCP keeps no reverse entry).
    let mapped = format!("::ffff:{NODE}");
    let got = rig.py_client(true, "tcp", &mapped, TCP_SVC);
    assert!(got.starts_with("+PONG "), "IPv4-mapped TCP: {got}");
    assert_eq!(
        rig.py_client(false, "tcp", &mapped, TCP_SVC),
        "error ConnectionRefusedError",
        "IPv4-mapped TCP outside the cgroup"
    );
    let translated = rig.counter(Counter::SockTranslated);
    assert!(
        translated >= before + 3,
        "each connect counted in sock_translated"
    );
    // A process of the cgroup in another namespace (the client's, off the node) is left to
    // the packet path, which serves it through the TC program on the node.
    let out = rig.run_in(
        &rig.topo.client,
        true,
        &[
            "redis-cli",
            "-h",
            &NODE.to_string(),
            "-p",
            &TCP_SVC.to_string(),
            "PING",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
    assert_eq!(
        rig.counter(Counter::SockTranslated),
        translated,
        "sockets of other namespaces are not translated"
    );
    assert!(
        rig.counter(Counter::NewFlow) >= 1,
        "the packet path served it"
    );
}

#[test]
fn udp_node_local_clients_reach_the_service_and_replies_come_from_it() {
    let rig = Rig::new();
    for (node, name) in [(NODE.to_string(), "b0"), (NODE6.to_string(), "b0v6")] {
        for mode in ["connected", "unconnected"] {
            let got = rig.py_client(true, mode, &node, UDP_SVC);
            assert_eq!(
                got,
                format!("{name}:ping {node} {UDP_SVC}"),
                "{mode} UDP to {node}:{UDP_SVC}: the endpoint answers, and the reply (and \
                 getpeername) reads as coming from the service address"
            );
        }
        let outside = rig.py_client(false, "connected", &node, UDP_SVC);
        assert_eq!(
            outside, "error ConnectionRefusedError",
            "outside the cgroup, UDP to {node}:{UDP_SVC} is untouched"
        );
    }
    assert!(
        rig.counter(Counter::SockReverse) >= 4,
        "replies translated back, counted in sock_reverse"
    );
}

#[test]
fn detaching_node_local_access_restores_plain_behaviour() {
    let mut rig = Rig::new();
    assert_eq!(rig.redis_ping(true, IpAddr::V4(NODE)), "PONG");
    rig.kernel.datapath.detach_node_local();
    let after = rig.redis_ping(true, IpAddr::V4(NODE));
    assert!(
        after.contains("refused"),
        "with the hooks detached, the cgroup's clients are untouched: {after}"
    );
    // Attaching again (as a restarted controller does) serves them again.
    let cg = rig.cgroup.path().to_owned();
    let node = File::open(rig.topo.node.path()).expect("open netns handle");
    let datapath = &mut rig.kernel.datapath;
    std::thread::scope(|s| {
        s.spawn(|| {
            // The hooks serve the namespace of the thread attaching them: the node's.
            // SAFETY: setns on a valid namespace fd, affecting only this thread.
            let rc = unsafe { libc::setns(node.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            datapath.attach_node_local(&cg).expect("attach again");
        });
    });
    assert_eq!(rig.redis_ping(true, IpAddr::V4(NODE)), "PONG");
}

#[test]
fn a_restarted_controller_swaps_its_programs_into_the_pinned_links() {
    let rig = Rig::new();
    let pin = rig._pin.path().to_owned();
    let cg = rig.cgroup.path().to_owned();
    // A second datapath on the same pins, as a new controller process would load.
    // In the node namespace, as the controller runs there.
    let reused = rig.topo.node.run(move || {
        let opts = DatapathOptions {
            maglev_size: 251,
            max_services: 16,
            ct_entries: 4096,
            ..DatapathOptions::default()
        };
        let mut dp = Datapath::load(EBPF_OBJECT, &pin, opts).expect("load again");
        let nl = dp.attach_node_local(&cg).expect("attach again");
        // Dropping `dp` must not detach anything: the links are pinned.
        nl.reused
    });
    assert!(reused, "the pinned cgroup links were reused");
    assert_eq!(rig.redis_ping(true, IpAddr::V4(NODE)), "PONG");
    let links = std::fs::read_dir(rig._pin.path().join("sock-links"))
        .expect("sock-links dir")
        .count();
    assert_eq!(links, 8, "one pinned link per hook, no duplicates");
}

/// The real binary, in file mode: the hooks attach at start (here to the test cgroup),
/// `--node-local-access=false` detaches them, and a cgroup that cannot be used costs a
/// warning, nothing else.
#[test]
fn the_controller_attaches_node_local_access_and_the_flag_turns_it_off() {
    let mut seed = Seed::new(Offloads::Default, Source::Files);
    let cgroup = TestCgroup::new();
    let cg = cgroup.path().to_str().expect("utf-8 path").to_owned();
    let node = IpAddr::V4(NODE);

    seed.start_controller_with("tc", &["--node-local-cgroup", &cg]);
    assert_eq!(
        ping(&seed.topo.node, Some(cgroup.path()), node),
        "PONG",
        "a node process reaches redis through :{TCP_SVC}\n{}",
        seed.log()
    );
    assert!(
        ping(&seed.topo.node, None, node).contains("refused"),
        "outside the cgroup: untouched"
    );
    assert!(
        seed.log().contains("node-local access attached"),
        "{}",
        seed.log()
    );
    seed.kill_controller();

    seed.start_controller_with(
        "tc",
        &["--node-local-cgroup", &cg, "--node-local-access=false"],
    );
    assert!(
        ping(&seed.topo.node, Some(cgroup.path()), node).contains("refused"),
        "--node-local-access=false detaches the pinned hooks\n{}",
        seed.log()
    );
    seed.kill_controller();

    seed.start_controller_with("tc", &["--node-local-cgroup", "/nonexistent-cgroup"]);
    assert!(
        seed.log().contains("node-local access unavailable"),
        "a clear warning, and the controller serves everything else (it got here)\n{}",
        seed.log()
    );
}
