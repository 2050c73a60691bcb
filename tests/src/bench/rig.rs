//! The benchmark rig: the netns topology (NIC-like offloads, so every configuration runs on
//! the same links), real servers on the backends, and the real `xdp-ingress` binary started
//! and stopped per configuration. Load generators run on [`LOAD_CPU`], every server-side
//! process (backends, proxies, the controller) on [`SERVER_CPU`], the same for every
//! configuration.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    netns::{Netns, PinDir},
    servers::RedisServer,
    topology::{NODE, Offloads, Topology, backend_addr},
    xdp_ingress_bin,
};

/// CPU of the load generators (redis-benchmark, iperf3 client, wrk).
pub const LOAD_CPU: usize = 0;
/// CPU of everything on the server side.
pub const SERVER_CPU: usize = 1;

/// Redis on backend 0.
pub const REDIS_PORT: u16 = 6379;
/// The iperf3 server on backend 0.
pub const IPERF_PORT: u16 = 5201;
/// The static HTTP backend (nginx) on both backends.
pub const WEB_PORT: u16 = 8080;
/// Node port of the redis L4 service.
pub const L4_REDIS: u16 = 9000;
/// Node port of the iperf3 L4 service.
pub const L4_IPERF: u16 = 9001;
/// The controller's SNAT ports: wider than the default so that the new-connection samples
/// (tens of thousands of flows whose closed conntrack entries live ~10 s) never run out.
pub const SNAT_PORTS: &str = "10000-60999";
/// Host of the benchmark Ingress.
pub const BENCH_HOST: &str = "bench.test";

/// `taskset -c CPU nsenter --net=NS -- program`: a pinned command in a namespace.
pub fn pinned(ns: &Netns, cpu: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", &cpu.to_string(), "nsenter"])
        .arg(format!("--net={}", ns.path().display()))
        .arg("--")
        .arg(program);
    c
}

/// Spawns `f` on a thread inside `ns` (sockets it opens belong to the namespace).
pub fn spawn_in<R: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> R + Send + 'static,
) -> std::thread::JoinHandle<R> {
    use std::os::fd::AsRawFd as _;
    let file = fs::File::open(ns.path()).expect("open netns handle");
    std::thread::spawn(move || {
        // SAFETY: setns on a valid namespace fd, affecting only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

/// Pins thread `tid` (a single-threaded process's PID; 0: the calling thread) to `cpu`.
pub fn pin(tid: u32, cpu: usize) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(tid).context("thread id")?;
    // SAFETY: a zeroed cpu_set_t is an empty set, and sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set)
    };
    anyhow::ensure!(
        rc == 0,
        "sched_setaffinity({tid}, CPU {cpu}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// The topology with its servers and, at times, a controller or a peer proxy.
pub struct Rig {
    /// Namespaces and links.
    pub topo: Topology,
    /// Working directory (manifests, configs, logs).
    pub dir: PathBuf,
    pin: PinDir,
    controller: Option<Child>,
    _redis: RedisServer,
    _servers: Vec<Daemon>,
    /// The static nginx masters on backends 0 and 1.
    web: [u32; 2],
}

impl Rig {
    /// Builds the topology and starts redis + iperf3 on backend 0 and a static nginx on both
    /// backends (body `b0`/`b1`, so responses show which backend answered).
    pub fn new() -> anyhow::Result<Self> {
        let topo = Topology::new(2, Offloads::LikeANic);
        for ns in std::iter::once(&topo.client)
            .chain(&topo.backends)
            .chain([&topo.node])
        {
            ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]);
        }
        topo.client
            .exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"]);
        let dir = std::env::temp_dir().join(format!("xdp-ingress-bench-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("manifests"))?;

        let redis = RedisServer::start_with(
            pinned(&topo.backends[0], SERVER_CPU, "redis-server"),
            topo.backend(0, REDIS_PORT),
        );
        let mut servers = Vec::new();
        let mut web = [0; 2];
        let iperf = pinned(&topo.backends[0], SERVER_CPU, "iperf3")
            .args([
                "-s",
                "-B",
                &backend_addr(0).to_string(),
                "-p",
                &IPERF_PORT.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start iperf3 -s")?;
        servers.push(Daemon(iperf));
        for (i, pid) in web.iter_mut().enumerate() {
            let conf = crate::bench::peers::nginx_static(
                &dir.join(format!("web{i}")),
                backend_addr(i),
                WEB_PORT,
                &format!("b{i}"),
            )?;
            let server = crate::bench::peers::start_nginx(&topo.backends[i], &conf)?;
            *pid = server.0.id();
            servers.push(server);
        }
        let rig = Self {
            topo,
            dir,
            pin: PinDir::new(),
            controller: None,
            _redis: redis,
            _servers: servers,
            web,
        };
        rig.wait("iperf3 on backend 0", || {
            rig.tcp_open(
                &rig.topo.node,
                SocketAddr::new(backend_addr(0).into(), IPERF_PORT),
            )
        })?;
        for i in 0..2 {
            let addr = SocketAddr::new(backend_addr(i).into(), WEB_PORT);
            rig.wait("the static nginx backends", || {
                rig.http_get(addr, "x").is_some_and(|(s, _)| s == 200)
            })?;
        }
        rig.write_manifests(&[backend_addr(1)], &[])?;
        Ok(rig)
    }

    /// The PID of the static nginx (master) on backend `i` (0 or 1).
    pub fn web_server(&self, i: usize) -> u32 {
        self.web[i]
    }

    /// The manifest directory the controller watches.
    pub fn manifests(&self) -> PathBuf {
        self.dir.join("manifests")
    }

    /// Writes the controller's objects: redis and iperf Services on backend 0 behind node
    /// ports 9000/9001 (plus `extra_ports` → redis), and the `bench.test` Ingress to the web
    /// Service with endpoints `web`.
    pub fn write_manifests(&self, web: &[Ipv4Addr], extra_ports: &[u16]) -> anyhow::Result<()> {
        let m = self.manifests();
        write_atomic(&m.join("services.yaml"), &services_yaml())?;
        write_atomic(&m.join("web-endpoints.yaml"), &web_endpoints_yaml(web))?;
        write_atomic(
            &m.join("tcp-services.yaml"),
            &tcp_services_yaml(extra_ports),
        )?;
        Ok(())
    }

    /// Starts the controller in `mode` (detaching its programs on exit, so the next
    /// configuration runs on clean interfaces) with [`SNAT_PORTS`], and waits until both
    /// planes serve.
    pub fn start_controller(&mut self, mode: &str) -> anyhow::Result<()> {
        self.start_controller_with(mode, Some(SNAT_PORTS), &[])
    }

    /// [`Rig::start_controller`] with `--snat-port-range snat_ports` (the binary's default
    /// range for `None`) and `extra` flags after the rest.
    pub fn start_controller_with(
        &mut self,
        mode: &str,
        snat_ports: Option<&str>,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        self.stop_controller()?;
        let log = fs::File::create(self.dir.join(format!("controller-{mode}.log")))?;
        let mut c = pinned(&self.topo.node, SERVER_CPU, xdp_ingress_bin());
        c.arg("--manifests")
            .arg(self.manifests())
            .args(["--tcp-services-configmap", "xdp-ingress/tcp-services"])
            .args([
                "--l4-mode",
                mode,
                "--l4-detach-on-exit",
                "--shutdown-grace-period",
                "2",
            ])
            .args(["--stats-interval", "0"]);
        if let Some(range) = snat_ports {
            c.args(["--snat-port-range", range]);
        }
        for i in self.topo.node_interfaces() {
            c.args(["--interface", &i]);
        }
        c.arg("--bpf-pin-path").arg(self.pin.path());
        c.args(extra);
        c.env("RUST_LOG", "warn");
        self.controller = Some(
            c.stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("spawn xdp-ingress")?,
        );
        let redis = SocketAddr::new(NODE.into(), L4_REDIS);
        self.wait("redis through the controller", || self.redis_ping(redis))?;
        let web = SocketAddr::new(NODE.into(), 80);
        self.wait("the bench Ingress through the router", || {
            self.http_get(web, BENCH_HOST)
                .is_some_and(|(s, _)| s == 200)
        })?;
        Ok(())
    }

    /// The running controller's process id.
    pub fn controller_pid(&self) -> Option<u32> {
        self.controller.as_ref().map(Child::id)
    }

    /// Stops the controller with SIGTERM and checks that no eBPF program stays attached.
    pub fn stop_controller(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.controller.take() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    bail!("xdp-ingress did not stop within 20 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.check_no_programs()
    }

    /// Fails if a program is attached to a node interface (it would tax the next peer).
    pub fn check_no_programs(&self) -> anyhow::Result<()> {
        let out = self
            .topo
            .node
            .command("bpftool")
            .args(["net", "show"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let attached: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_end().ends_with(':'))
            .collect();
        if !attached.is_empty() {
            bail!(
                "eBPF programs still attached on the node after stopping xdp-ingress: {attached:?}"
            );
        }
        Ok(())
    }

    /// Polls `ok` for up to 30 s.
    pub fn wait(&self, what: &str, ok: impl Fn() -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok() {
            if Instant::now() > deadline {
                let logs: String = fs::read_dir(&self.dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                    .map(|e| {
                        format!(
                            "--- {}\n{}",
                            e.path().display(),
                            fs::read_to_string(e.path()).unwrap_or_default()
                        )
                    })
                    .collect();
                bail!("{what}: not ready after 30 s\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Whether a TCP connect from `ns` to `addr` succeeds.
    pub fn tcp_open(&self, ns: &Netns, addr: SocketAddr) -> bool {
        spawn_in(ns, move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        })
        .join()
        .unwrap_or(false)
    }

    /// PING over a fresh connection from the client.
    pub fn redis_ping(&self, addr: SocketAddr) -> bool {
        spawn_in(&self.topo.client, move || {
            crate::bench::churn::ping_once(addr).is_ok()
        })
        .join()
        .unwrap_or(false)
    }

    /// `GET /` with `Host: host` from the client (or the node for backend addresses):
    /// status and body.
    pub fn http_get(&self, addr: SocketAddr, host: &str) -> Option<(u16, String)> {
        let host = host.to_owned();
        let ns = if addr.ip() == std::net::IpAddr::V4(NODE) {
            &self.topo.client
        } else {
            &self.topo.node
        };
        spawn_in(ns, move || crate::bench::churn::http_once(addr, &host).ok())
            .join()
            .ok()
            .flatten()
    }

    /// Where the controller's maps are pinned.
    pub fn pin_path(&self) -> &Path {
        self.pin.path()
    }
}

/// A server process stopped with SIGTERM on drop (nginx's master then stops its workers;
/// SIGKILL would orphan them with the listening sockets), SIGKILL after 5 s.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.stop_controller();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Writes through a temporary file and a rename, like editors and mounted ConfigMaps.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}

fn services_yaml() -> String {
    let b0 = backend_addr(0);
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: redis, namespace: default}}
spec:
  ports: [{{name: redis, port: {REDIS_PORT}, targetPort: {REDIS_PORT}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: redis-1, namespace: default, labels: {{kubernetes.io/service-name: redis}}}}
addressType: IPv4
ports: [{{name: redis, port: {REDIS_PORT}, protocol: TCP}}]
endpoints: [{{addresses: ["{b0}"], conditions: {{ready: true}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: iperf, namespace: default}}
spec:
  ports: [{{name: iperf, port: {IPERF_PORT}, targetPort: {IPERF_PORT}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: iperf-1, namespace: default, labels: {{kubernetes.io/service-name: iperf}}}}
addressType: IPv4
ports: [{{name: iperf, port: {IPERF_PORT}, protocol: TCP}}]
endpoints: [{{addresses: ["{b0}"], conditions: {{ready: true}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: {WEB_PORT}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: bench, namespace: default}}
spec:
  ingressClassName: xdp
  rules:
  - host: {BENCH_HOST}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: web, port: {{number: 80}}}}}}
"#
    )
}

/// The web Service's EndpointSlice with endpoints `web`.
pub fn web_endpoints_yaml(web: &[Ipv4Addr]) -> String {
    let addrs: Vec<String> = web
        .iter()
        .map(|a| format!("{{addresses: [\"{a}\"], conditions: {{ready: true}}}}"))
        .collect();
    format!(
        r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {WEB_PORT}, protocol: TCP}}]
endpoints: [{}]
"#,
        addrs.join(", ")
    )
}

/// The tcp-services ConfigMap: 9000 → redis, 9001 → iperf, each of `extra` → redis.
pub fn tcp_services_yaml(extra: &[u16]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: tcp-services, namespace: xdp-ingress}}\ndata:\n  \"{L4_REDIS}\": \"default/redis:{REDIS_PORT}\"\n  \"{L4_IPERF}\": \"default/iperf:{IPERF_PORT}\"\n"
    );
    for p in extra {
        s.push_str(&format!("  \"{p}\": \"default/redis:{REDIS_PORT}\"\n"));
    }
    s
}
