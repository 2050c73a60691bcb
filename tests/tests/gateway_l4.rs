//! Gateway API TCPRoutes and UDPRoutes end to end: the real `xdp-ingress` in file mode on
//! the network-namespace topology (client ⇄ node ⇄ two backends), its TCP and UDP
//! listeners forwarded by the eBPF program in XDP and TC modes to real servers: redis (the
//! seed the Gateway way), a UDP echo, the weighted split of 1,000 new connections, and a
//! route change while connections are open.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    process::Stdio,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use ingress_tests::{
    netns::{KillOnDrop, Netns, PinDir},
    seed::{DASHBOARD_HOST, Examples, Seed, Source},
    servers::udp_echo_in,
    topology::{Offloads, Topology},
    xdp_ingress_bin,
};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The TCP listener's port, the UDP listener's, the backends' name server and UDP echo.
const TCP_PORT: u16 = 9100;
const UDP_PORT: u16 = 5300;
const NAME_PORT: u16 = 7000;
const ECHO_PORT: u16 = 5353;

/// Serves each line with this backend's name, on a thread inside `ns`.
fn name_server(ns: &Netns, addr: SocketAddr, name: &'static str) {
    let listener = ns.run(move || TcpListener::bind(addr).expect("bind name server"));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let mut w = conn.try_clone().expect("clone");
                for line in BufReader::new(conn).lines() {
                    if line.is_err() || writeln!(w, "{name}").is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// One connection to the TCP listener (from inside the client namespace).
fn connect() -> Option<BufReader<TcpStream>> {
    let s =
        TcpStream::connect_timeout(&Topology::service(TCP_PORT), Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_nodelay(true).ok()?;
    Some(BufReader::new(s))
}

/// Which backend answers on a connection (empty if none does).
fn ask(conn: &mut BufReader<TcpStream>) -> String {
    if conn.get_mut().write_all(b"who\n").is_err() {
        return String::new();
    }
    let mut line = String::new();
    let _ = conn.read_line(&mut line);
    line.trim().to_owned()
}

/// The backend a new connection reaches.
fn new_connection() -> String {
    connect().map(|mut c| ask(&mut c)).unwrap_or_default()
}

/// Services `one` (backend 0) and `two` (backend 1) on the name server, `echo` (both
/// backends, UDP); a Gateway with a TCP and a UDP listener; `routes` appended.
fn manifests(routes: &str) -> String {
    let slice = |name: &str, protocol: &str, port: u16, ips: &[&str]| {
        let eps: Vec<String> = ips
            .iter()
            .map(|ip| format!("{{addresses: [\"{ip}\"], conditions: {{ready: true}}}}"))
            .collect();
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{ports: [{{port: {port}, protocol: {protocol}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: {port}, protocol: {protocol}}}]\nendpoints: [{}]\n",
            eps.join(", ")
        )
    };
    let b = |i| ingress_tests::topology::backend_addr(i).to_string();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: xdp}}
spec: {{controllerName: xdp-ingress.dev/controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: xdp
  listeners:
  - {{name: tcp, port: {TCP_PORT}, protocol: TCP}}
  - {{name: udp, port: {UDP_PORT}, protocol: UDP}}
{}{}{}{routes}",
        slice("one", "TCP", NAME_PORT, &[&b(0)]),
        slice("two", "TCP", NAME_PORT, &[&b(1)]),
        slice("echo", "UDP", ECHO_PORT, &[&b(0), &b(1)]),
    )
}

fn tcp_route(w_one: u32, w_two: u32) -> String {
    format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: names, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: tcp}}]
  rules:
  - backendRefs:
    - {{name: one, port: {NAME_PORT}, weight: {w_one}}}
    - {{name: two, port: {NAME_PORT}, weight: {w_two}}}
"
    )
}

const UDP_ROUTE: &str = "---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: udp}]
  rules:
  - backendRefs: [{name: echo, port: 5353}]
";

/// The topology, the backends' servers and the controller reading `dir/manifests/`.
struct Rig {
    topo: Topology,
    dir: PathBuf,
    pin: PinDir,
    controller: Option<KillOnDrop>,
}

impl Rig {
    fn new(offloads: Offloads, routes: &str) -> Self {
        let topo = Topology::new(2, offloads);
        name_server(&topo.backends[0], topo.backend(0, NAME_PORT), "one");
        name_server(&topo.backends[1], topo.backend(1, NAME_PORT), "two");
        udp_echo_in(&topo.backends[0], topo.backend(0, ECHO_PORT), "one");
        udp_echo_in(&topo.backends[1], topo.backend(1, ECHO_PORT), "two");
        let dir = std::env::temp_dir().join(format!(
            "xit-gwl4-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("manifests")).expect("manifest dir");
        let rig = Self {
            topo,
            dir,
            pin: PinDir::new(),
            controller: None,
        };
        rig.write(routes);
        rig
    }

    fn write(&self, routes: &str) {
        // Written beside and renamed in, so the controller never reads half a file.
        let tmp = self.dir.join("gateway.yaml.tmp");
        fs::write(&tmp, manifests(routes)).expect("write manifests");
        fs::rename(&tmp, self.dir.join("manifests/gateway.yaml")).expect("rename");
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("controller.log")).unwrap_or_default()
    }

    fn start(&mut self, mode: &str) {
        let log = fs::File::create(self.dir.join("controller.log")).expect("log");
        let mut c = self.topo.node.command(xdp_ingress_bin());
        c.arg("--manifests")
            .arg(self.dir.join("manifests"))
            .args(["--l4-mode", mode])
            .arg("--bpf-pin-path")
            .arg(self.pin.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for i in self.topo.node_interfaces() {
            c.args(["--interface", &i]);
        }
        self.controller = Some(KillOnDrop(c.spawn().expect("spawn xdp-ingress")));
    }

    /// Polls `ok` (run in the client namespace) until it holds; fails with the log.
    fn wait_for(&self, what: &str, ok: impl Fn() -> bool + Send + Clone + 'static) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = ok.clone();
            if self.topo.client.run(ok) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} not true after 30 s; controller log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.controller.take();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The seed the Gateway way (`deploy/examples/gateway/`): redis through the TCPRoute on
/// :9000 in the kernel, the dashboard through the HTTPRoute, nothing from an Ingress or
/// the tcp-services ConfigMap.
fn seed_the_gateway_way(mode: &str, offloads: Offloads) {
    let mut seed = Seed::with_examples(offloads, Source::Files, Examples::Gateway);
    seed.start_controller(mode); // waits for redis PONG on :9000 and the dashboard
    let info = seed.redis(9000, &["info", "server"]);
    assert!(info.contains("redis_version:"), "{mode}: {info}");
    let set = seed.redis(9000, &["set", "k", "through-a-tcproute"]);
    assert_eq!(set.trim(), "OK", "{mode}");
    assert_eq!(seed.redis(9000, &["get", "k"]).trim(), "through-a-tcproute");
    let (status, _) = seed.curl(Some(DASHBOARD_HOST), "/");
    assert_eq!(status, 200, "{mode}: dashboard through the HTTPRoute");
}

#[test]
fn seed_the_gateway_way_in_xdp() {
    seed_the_gateway_way("xdp", Offloads::LikeANic);
}

#[test]
fn seed_the_gateway_way_in_tc() {
    seed_the_gateway_way("tc", Offloads::Default);
}

/// A UDP echo through the UDPRoute: every datagram answered by a backend, from the
/// listener's address.
fn udp_route(mode: &str, offloads: Offloads) {
    let mut rig = Rig::new(offloads, UDP_ROUTE);
    rig.start(mode);
    let got = move || {
        let s = UdpSocket::bind("10.77.1.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let mut replies = Vec::new();
        for i in 0..5u8 {
            let _ = s.send_to(&[b'm', b'0' + i], Topology::service(UDP_PORT));
            let mut buf = [0u8; 64];
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                replies.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
            }
        }
        replies
    };
    let probe = got;
    rig.wait_for("UDP echo through the UDPRoute", move || probe().len() == 5);
    let replies = rig.topo.client.run(got);
    assert_eq!(replies.len(), 5, "{mode}: {replies:?}");
    for (i, (text, from)) in replies.iter().enumerate() {
        let payload = format!("m{i}");
        assert!(
            *text == format!("one:{payload}") || *text == format!("two:{payload}"),
            "{mode}: reply {text:?}"
        );
        assert_eq!(*from, Topology::service(UDP_PORT), "{mode}: reply source");
    }
}

#[test]
fn udp_route_in_xdp() {
    udp_route("xdp", Offloads::LikeANic);
}

#[test]
fn udp_route_in_tc() {
    udp_route("tc", Offloads::Default);
}

/// backendRefs weights 70/30 (the ratio of the conformance test TCPRouteWeightedRouting):
/// 1,000 new connections split within 5 points of it (3.5 standard deviations of a
/// binomial at n = 1,000, p = 0.7: a correct split fails about 1 run in 2,000). Then the
/// route moves every new flow to `two` while connections are open: each open connection
/// keeps its backend.
fn weighted_split_and_route_change(mode: &str, offloads: Offloads) {
    let mut rig = Rig::new(offloads, &tcp_route(70, 30));
    rig.start(mode);
    rig.wait_for("the TCPRoute", || !new_connection().is_empty());

    let counts = rig.topo.client.run(|| {
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..1000 {
            *counts.entry(new_connection()).or_default() += 1;
        }
        counts
    });
    eprintln!("{mode}: 1,000 new connections through a 70/30 TCPRoute: {counts:?}");
    let share = |name: &str| f64::from(counts.get(name).copied().unwrap_or(0)) / 1000.0;
    assert_eq!(
        counts.keys().map(String::as_str).collect::<Vec<_>>(),
        ["one", "two"],
        "{mode}: every connection answered by a backend: {counts:?}"
    );
    assert!(
        (share("one") - 0.7).abs() <= 0.05,
        "{mode}: 70/30 split, got {counts:?}"
    );

    // Open connections on both backends, then move every new flow to `two`.
    let (open, before) = rig.topo.client.run(|| {
        let mut open = Vec::new();
        let mut names = Vec::new();
        while open.len() < 40 {
            if let Some(mut c) = connect() {
                names.push(ask(&mut c));
                open.push(c);
            }
        }
        (open, names)
    });
    assert!(
        before.iter().any(|n| n == "one") && before.iter().any(|n| n == "two"),
        "{mode}: open connections on both backends: {before:?}"
    );
    rig.write(&tcp_route(0, 1));
    rig.wait_for("weight 0 for `one`", || {
        (0..20).all(|_| new_connection() == "two")
    });
    let after = rig.topo.client.run(move || {
        let mut open = open;
        open.iter_mut().map(ask).collect::<Vec<_>>()
    });
    assert_eq!(
        after, before,
        "{mode}: open connections keep their backend across the route change"
    );
}

#[test]
fn weighted_split_and_route_change_in_xdp() {
    weighted_split_and_route_change("xdp", Offloads::LikeANic);
}

#[test]
fn weighted_split_and_route_change_in_tc() {
    weighted_split_and_route_change("tc", Offloads::Default);
}

/// Kube mode through the userspace proxy: TCPRoute and Gateway from the (fake) API server,
/// new connections split 3:1 by the route's weights, and the status `--update-status`
/// writes on the TCPRoute (parent Accepted and ResolvedRefs, our controllerName) and on the
/// TCP listener (attachedRoutes, supportedKinds). The API server serves TCPRoute in
/// v1alpha2 and v1 (experimental channel, and v1.6's upgrade path).
#[tokio::test]
async fn tcp_route_in_kube_mode_through_the_userspace_proxy() {
    tcp_route_in_kube_mode("v1alpha2", false).await;
}

/// The same where the API server serves TCPRoute only as v1 (Gateway API v1.6's standard
/// channel CRDs): the route is watched, and its status written, in v1.
#[tokio::test]
async fn tcp_route_served_only_as_v1() {
    tcp_route_in_kube_mode("v1", true).await;
}

async fn tcp_route_in_kube_mode(route_version: &str, only_v1: bool) {
    use ingress_tests::{
        fake_api::FakeApi,
        process::{IngressProcess, Source as ProcSource},
        servers::free_tcp_port,
    };
    let local = |name: &'static str| {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut w = conn.try_clone().expect("clone");
                    for line in BufReader::new(conn).lines() {
                        if line.is_err() || writeln!(w, "{name}").is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    };
    let (one, two) = (local("one"), local("two"));
    let listen = free_tcp_port();
    let svc = |name: &str, port: u16| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{ports: [{{port: 7000, targetPort: {port}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: {port}}}]\nendpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]\n"
        )
    };
    let objects = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: xdp}}
spec: {{controllerName: xdp-ingress.dev/controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: tcp, port: {listen}, protocol: TCP}}]
{}{}---
apiVersion: gateway.networking.k8s.io/{route_version}
kind: TCPRoute
metadata: {{name: names, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - backendRefs:
    - {{name: one, port: 7000, weight: 3}}
    - {{name: two, port: 7000, weight: 1}}
",
        svc("one", one),
        svc("two", two)
    );
    let api = FakeApi::start().await;
    if only_v1 {
        api.hide("gateway.networking.k8s.io/v1alpha2", "tcproutes");
    }
    let file = api
        .kubeconfig_path
        .parent()
        .expect("kubeconfig dir")
        .join("gateway-l4.yaml");
    fs::write(&file, objects).expect("write objects");
    let out = api
        .kubectl(&["apply", "-f", file.to_str().expect("utf-8")])
        .await;
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let proc = IngressProcess::start_with(
        ProcSource::Kube(&api.kubeconfig_path),
        &["--update-status"],
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|log| panic!("xdp-ingress did not become ready: {log}"));

    let addr = SocketAddr::from(([127, 0, 0, 1], listen));
    let count = move || {
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..400 {
            let name = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .ok()
                .map(|s| {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    ask(&mut BufReader::new(s))
                })
                .unwrap_or_default();
            *counts.entry(name).or_default() += 1;
        }
        counts
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let counts = loop {
        let counts = tokio::task::spawn_blocking(count).await.expect("count");
        if counts.keys().all(|k| !k.is_empty()) || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let one_share = f64::from(counts.get("one").copied().unwrap_or(0)) / 400.0;
    assert!(
        (one_share - 0.75).abs() <= 0.05,
        "3:1 split expected, got {counts:?}; log:\n{}",
        proc.log()
    );

    // The status the leader writes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let route = api.object(
            &format!("gateway.networking.k8s.io/{route_version}"),
            "TCPRoute",
            "default",
            "names",
        );
        let gw = api.object("gateway.networking.k8s.io/v1", "Gateway", "default", "gw");
        let parent = route
            .as_ref()
            .map(|r| r["status"]["parents"][0].clone())
            .unwrap_or_default();
        let listener = gw
            .as_ref()
            .map(|g| g["status"]["listeners"][0].clone())
            .unwrap_or_default();
        let conds = |v: &serde_json::Value| -> Vec<(String, String)> {
            v["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c["type"].as_str().unwrap_or_default().to_owned(),
                        c["status"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        };
        let route_ok = parent["controllerName"] == "xdp-ingress.dev/controller"
            && conds(&parent)
                == [
                    ("Accepted".to_owned(), "True".to_owned()),
                    ("ResolvedRefs".to_owned(), "True".to_owned()),
                ];
        let listener_ok =
            listener["attachedRoutes"] == 1 && listener["supportedKinds"][0]["kind"] == "TCPRoute";
        if route_ok && listener_ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status not written: route parent {parent}, listener {listener}; log:\n{}",
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
