//! The seed scenario on the netns topology: a real `redis-server` as `default/redis:6379`
//! on backend 0, a real HTTP server as `kube-system/kubernetes-dashboard:80` on backend 1,
//! and the real `xdp-ingress` binary on the node, fed from `deploy/examples/` either as a
//! manifest directory or through the fake API server and `kubectl`.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::{
    netns::{KillOnDrop, PinDir},
    servers::RedisServer,
    topology::{NODE, Offloads, Topology, backend_addr},
    xdp_ingress_bin,
};

/// The dashboard's host.
pub const DASHBOARD_HOST: &str = "k8sui.test.com";
/// The page the dashboard backend serves at `/`.
pub const DASHBOARD_PAGE: &str = "<title>kubernetes-dashboard</title> served from backend 1\n";
/// The dashboard backend's port (the Service's targetPort).
pub const DASHBOARD_PORT: u16 = 9090;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// `deploy/examples/` in the repository.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

/// EndpointSlices pointing the example Services at the topology's backends: what the
/// cluster's EndpointSlice controller would write for the Deployments.
pub fn endpoint_slices() -> String {
    format!(
        r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: redis-topology
  namespace: default
  labels: {{kubernetes.io/service-name: redis}}
addressType: IPv4
endpoints:
  - addresses: ["{}"]
    conditions: {{ready: true}}
ports:
  - {{name: redis, port: 6379, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes-dashboard-topology
  namespace: kube-system
  labels: {{kubernetes.io/service-name: kubernetes-dashboard}}
addressType: IPv4
endpoints:
  - addresses: ["{}"]
    conditions: {{ready: true}}
ports:
  - {{name: http, port: {DASHBOARD_PORT}, protocol: TCP}}
"#,
        backend_addr(0),
        backend_addr(1)
    )
}

/// Which form of the seed's manifests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Examples {
    /// `deploy/examples/*.yaml`: the dashboard Ingress and the tcp-services ConfigMap.
    Ingress,
    /// The Gateway API way: `deploy/examples/gateway/` (an HTTPRoute for the dashboard, a
    /// TCPRoute for redis) with the Deployments and Services of `deploy/examples/`, without
    /// the Ingress and the ConfigMap.
    Gateway,
}

/// How the controller gets its objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--manifests DIR`.
    Files,
    /// The fake API server, filled with `kubectl create -f`.
    Kube,
}

/// The running scenario; everything is torn down on drop.
pub struct Seed {
    /// Namespaces and links.
    pub topo: Topology,
    /// Working directory: manifests, logs, the dashboard's page.
    pub dir: PathBuf,
    /// Where the controller pins its maps and links.
    pub pin: PinDir,
    kubeconfig: Option<PathBuf>,
    controller: Option<KillOnDrop>,
    _redis: RedisServer,
    _http: KillOnDrop,
    _api: Option<KillOnDrop>,
}

impl Seed {
    /// Builds the topology and starts the backends and (for [`Source::Kube`]) the fake API
    /// server inside the node namespace, loaded with the examples via `kubectl create -f`.
    pub fn new(offloads: Offloads, source: Source) -> Self {
        Self::with_examples(offloads, source, Examples::Ingress)
    }

    /// [`Seed::new`] with either form of the manifests ([`Examples::Gateway`]: file mode).
    pub fn with_examples(offloads: Offloads, source: Source, examples: Examples) -> Self {
        assert!(
            examples == Examples::Ingress || source == Source::Files,
            "the Gateway API seed runs in file mode"
        );
        let topo = Topology::new(2, offloads);
        let dir = std::env::temp_dir().join(format!(
            "xit-seed-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let manifests = dir.join("manifests");
        fs::create_dir_all(&manifests).expect("create manifest dir");
        for entry in fs::read_dir(examples_dir()).expect("deploy/examples") {
            let path = entry.expect("entry").path();
            if !path.is_file() {
                continue; // gateway/: the Gateway API variant
            }
            let name = path.file_name().expect("name");
            let text = fs::read_to_string(&path).expect("read example");
            let text = match examples {
                Examples::Ingress => text,
                Examples::Gateway if name == "tcp-services.yaml" => continue,
                // The Deployments and Services stay; the routes are the Gateway's.
                Examples::Gateway => text
                    .split("\n---")
                    .filter(|doc| !doc.contains("kind: Ingress"))
                    .collect::<Vec<_>>()
                    .join("\n---"),
            };
            fs::write(manifests.join(name), text).expect("copy");
        }
        if examples == Examples::Gateway {
            for entry in fs::read_dir(examples_dir().join("gateway")).expect("gateway/") {
                let path = entry.expect("entry").path();
                let name = format!(
                    "gateway-{}",
                    path.file_name().expect("name").to_string_lossy()
                );
                fs::copy(&path, manifests.join(name)).expect("copy");
            }
        }
        fs::write(manifests.join("endpoints.yaml"), endpoint_slices()).expect("write slices");

        let redis = RedisServer::start_with(
            topo.backends[0].command("redis-server"),
            topo.backend(0, 6379),
        );
        let www = dir.join("www");
        fs::create_dir_all(&www).expect("www");
        fs::write(www.join("index.html"), DASHBOARD_PAGE).expect("page");
        let http = topo.backends[1]
            .command("/usr/bin/python3")
            .args(["-m", "http.server", &DASHBOARD_PORT.to_string(), "--bind"])
            .arg(backend_addr(1).to_string())
            .arg("--directory")
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server (apt-get install python3)");
        let http = KillOnDrop(http);
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("http://{}:{DASHBOARD_PORT}/", backend_addr(1));
        while !topo
            .node
            .command("curl")
            .args(["-sf", "-o", "/dev/null", &url])
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                Instant::now() < deadline,
                "dashboard backend never answered on {url}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        let (api, kubeconfig) = match source {
            Source::Files => (None, None),
            Source::Kube => {
                let mut child = topo
                    .node
                    .command(crate::target_bin(
                        "fake-apiserver",
                        "cargo build -p ingress-tests --bins",
                    ))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start fake-apiserver");
                let mut line = String::new();
                BufReader::new(child.stdout.take().expect("stdout"))
                    .read_line(&mut line)
                    .expect("kubeconfig path");
                (Some(KillOnDrop(child)), Some(PathBuf::from(line.trim())))
            }
        };
        let seed = Self {
            topo,
            dir,
            pin: PinDir::new(),
            kubeconfig,
            controller: None,
            _redis: redis,
            _http: http,
            _api: api,
        };
        if source == Source::Kube {
            // The fake API server hosts what the controller reads, not workloads: leave the
            // Deployments out (the EndpointSlices stand for what they would run).
            let objects: Vec<String> = ["redis.yaml", "dashboard.yaml", "endpoints.yaml"]
                .iter()
                .flat_map(|f| {
                    let text = fs::read_to_string(seed.manifest(f)).expect("read manifest");
                    text.split("\n---").map(str::to_owned).collect::<Vec<_>>()
                })
                .filter(|doc| !doc.contains("kind: Deployment"))
                .collect();
            let cluster = seed.dir.join("cluster-objects.yaml");
            fs::write(&cluster, objects.join("\n---\n")).expect("write cluster objects");
            for file in [cluster, seed.manifest("tcp-services.yaml")] {
                let out = seed.kubectl(&["create", "-f", &file.to_string_lossy()]);
                assert!(
                    out.status.success(),
                    "kubectl create -f {}: {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        seed
    }

    /// Path of a manifest in the working copy.
    pub fn manifest(&self, name: &str) -> PathBuf {
        self.dir.join("manifests").join(name)
    }

    /// Runs kubectl against the fake API server, from inside the node namespace.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let kubeconfig = self.kubeconfig.as_ref().expect("kube source");
        self.topo
            .node
            .command("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// The controller's command line for `mode`, without starting it.
    pub fn controller_command(&self, mode: &str) -> Command {
        let mut c = self.topo.node.command(xdp_ingress_bin());
        match &self.kubeconfig {
            None => c.arg("--manifests").arg(self.dir.join("manifests")),
            Some(kubeconfig) => c.env("KUBECONFIG", kubeconfig),
        };
        c.args(["--tcp-services-configmap", "xdp-ingress/tcp-services"])
            .args(["--l4-mode", mode]);
        for i in self.topo.node_interfaces() {
            c.args(["--interface", &i]);
        }
        c.arg("--bpf-pin-path").arg(self.pin.path());
        c.env("RUST_LOG", "info");
        c
    }

    /// Starts (or restarts) the controller and waits until both planes serve the seed.
    pub fn start_controller(&mut self, mode: &str) {
        self.start_controller_with(mode, &[]);
    }

    /// Like [`Seed::start_controller`], with extra flags on the controller's command line.
    pub fn start_controller_with(&mut self, mode: &str, extra_args: &[&str]) {
        let log = fs::File::create(self.log_path()).expect("log file");
        let child = self
            .controller_command(mode)
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn xdp-ingress");
        self.controller = Some(KillOnDrop(child));
        self.wait_for(
            |s| s.redis(9000, &["ping"]).trim() == "PONG",
            "redis through :9000",
        );
        self.wait_for(
            |s| s.curl(Some(DASHBOARD_HOST), "/").0 == 200,
            "the dashboard route",
        );
    }

    /// Kills the controller with SIGKILL (no cleanup at all).
    pub fn kill_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = c.0.kill();
            let _ = c.0.wait();
        }
    }

    /// Where the controller logs.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("controller.log")
    }

    /// The controller's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Polls `ok` until it holds, failing with the controller log after 30 s.
    pub fn wait_for(&self, ok: impl Fn(&Self) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok(self) {
            assert!(
                Instant::now() < deadline,
                "{what} not working after 30 s; controller log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `redis-cli -h <node> -p <port> <args>` from the client; stdout.
    pub fn redis(&self, port: u16, args: &[&str]) -> String {
        let out = self
            .topo
            .client
            .command("timeout")
            .args([
                "10",
                "redis-cli",
                "-h",
                &NODE.to_string(),
                "-p",
                &port.to_string(),
            ])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `/metrics` of the controller, fetched inside the node namespace.
    pub fn metrics(&self) -> String {
        let out = self
            .topo
            .node
            .command("curl")
            .args(["-s", "-m", "10", &format!("http://{NODE}:10254/metrics")])
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `curl http://<node><path>` from the client with an optional Host header; (status, body).
    pub fn curl(&self, host: Option<&str>, path: &str) -> (u16, String) {
        let mut c = self.topo.client.command("curl");
        c.args(["-s", "-m", "10", "-w", "\n%{http_code}"]);
        if let Some(h) = host {
            c.args(["-H", &format!("Host: {h}")]);
        }
        let out = c
            .arg(format!("http://{NODE}{path}"))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        self.controller.take();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
