//! One test's world: the echo backends, the base objects plus the test's own, and the real
//! binary reading them from a manifest directory or from the fake API server.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use super::{APP, CLASS, CONTROLLER, INFRA, WEB};
use crate::{
    fake_api::FakeApi,
    http_support::{TestBackend, TestCa},
    process::{IngressProcess, Source},
};

/// Where the binary takes its objects from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `--manifests DIR`.
    File,
    /// The fake API server, objects created with `kubectl apply`, `--update-status`.
    Kube,
}

impl Mode {
    /// Second octet of this mode's Gateway addresses (so the file and kube runs of one test
    /// never share an address).
    fn octet(self) -> u8 {
        match self {
            Self::File => 71,
            Self::Kube => 72,
        }
    }
}

/// The conformance suite's base Services: (namespace, name, port name).
pub const SERVICES: &[(&str, &str, Option<&str>)] = &[
    (INFRA, "infra-backend-v1", Some("first-port")),
    (INFRA, "infra-backend-v2", None),
    (INFRA, "infra-backend-v3", None),
    (APP, "app-backend-v1", None),
    (APP, "app-backend-v2", None),
    (WEB, "web-backend", None),
];

/// The base Gateways in `INFRA`, in address order (`.1`, `.2`, `.3`), with their
/// `allowedRoutes.namespaces` as YAML.
const BASE_GATEWAYS: &[(&str, &str)] = &[
    ("same-namespace", "{from: Same}"),
    ("all-namespaces", "{from: All}"),
    (
        "backend-namespaces",
        "{from: Selector, selector: {matchLabels: {gateway-conformance: backend}}}",
    ),
];

/// How long the binary may take to become ready.
pub const SETTLE: Duration = Duration::from_secs(30);

/// How long a Gateway may take to listen once the binary is ready.
pub const LISTEN_WITHIN: Duration = Duration::from_secs(15);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The addresses of one test's Gateways: `127.<mode>.<slot>.<i+1>` for the `i`th name.
struct Addresses {
    mode: Mode,
    slot: u8,
    /// Gateway names in address order: the base Gateways, then those the manifests name
    /// in `{ADDR:name}` placeholders, in order of appearance.
    names: Mutex<Vec<String>>,
}

impl Addresses {
    fn new(mode: Mode, slot: u8) -> Self {
        let names = BASE_GATEWAYS.iter().map(|(n, _)| (*n).into()).collect();
        Self {
            mode,
            slot,
            names: Mutex::new(names),
        }
    }

    /// Gives the Gateways named in `manifests`' placeholders an address.
    fn register(&self, manifests: &str) {
        let mut names = self.names.lock().expect("names lock");
        let mut rest = manifests;
        while let Some(at) = rest.find("{ADDR:") {
            let tail = &rest[at + 6..];
            let end = tail.find('}').expect("{ADDR:name} is closed");
            if !names.iter().any(|g| g == &tail[..end]) {
                names.push(tail[..end].to_owned());
            }
            rest = &tail[end..];
        }
    }

    fn ip(&self, name: &str) -> Ipv4Addr {
        let i = self
            .names
            .lock()
            .expect("names lock")
            .iter()
            .position(|g| g == name)
            .unwrap_or_else(|| panic!("no Gateway {name} in this test"));
        Ipv4Addr::new(
            127,
            self.mode.octet(),
            self.slot,
            u8::try_from(i + 1).expect("few Gateways"),
        )
    }

    /// `manifests` with its placeholders filled in (new Gateways get an address).
    fn expand(&self, manifests: &str) -> String {
        self.register(manifests);
        let mut out = manifests.replace("{CLASS}", CLASS);
        let names = self.names.lock().expect("names lock").clone();
        for name in names {
            out = out.replace(&format!("{{ADDR:{name}}}"), &self.ip(&name).to_string());
        }
        out
    }
}

/// A running test world. Dropping it stops the binary, the backends and the fake API server.
pub struct World {
    /// File or kube mode.
    pub mode: Mode,
    addresses: Addresses,
    /// The echo backends by `namespace/name`.
    pub backends: BTreeMap<String, TestBackend>,
    /// The binary.
    pub proc: IngressProcess,
    /// The fake API server (kube mode).
    pub api: Option<FakeApi>,
    /// The CA that signed the base Secrets `INFRA/tls-validity-checks-certificate` (for
    /// example.org, second-example.org, unknown-example.org, secure.test.com) and
    /// `WEB/certificate` (for example.org), trusted by HTTPS rows.
    pub ca: TestCa,
    dir: PathBuf,
    applied: AtomicU32,
    /// Failed expectations not reported yet (status checks record theirs here, and the
    /// next [`run`](Self::run) reports them with its rows).
    pub(super) failures: Mutex<Vec<String>>,
}

impl World {
    /// Starts the echo backends, writes the base objects and `manifests` (the test's own,
    /// multi-document YAML; `{CLASS}` becomes the GatewayClass name and `{ADDR:name}` the
    /// address of the Gateway `name`), and starts the binary on them in `mode`. `slot`
    /// (1 to 254) must differ between the tests of one suite: it picks the addresses.
    ///
    /// # Panics
    /// If the binary does not become ready, or `kubectl apply` fails.
    pub async fn start(mode: Mode, slot: u8, manifests: &str) -> Self {
        let mut backends = BTreeMap::new();
        for (ns, name, _) in SERVICES {
            let key = format!("{ns}/{name}");
            backends.insert(key.clone(), TestBackend::start(&key).await);
        }
        let addresses = Addresses::new(mode, slot);
        let dir = std::env::temp_dir().join(format!(
            "xit-gateway-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("manifests")).expect("create manifest dir");
        let ca = TestCa::new();
        let mut secret = ca.secret(
            "tls-validity-checks-certificate",
            &[
                "example.org",
                "second-example.org",
                "unknown-example.org",
                "secure.test.com",
            ],
        );
        secret.metadata.namespace = Some(INFRA.to_owned());
        let mut web_secret = ca.secret("certificate", &["example.org"]);
        web_secret.metadata.namespace = Some(WEB.to_owned());
        let objects = format!(
            "{}---\n{}---\n{}{}",
            base_yaml(&addresses, &backends),
            serde_yaml::to_string(&secret).expect("Secret as YAML"),
            serde_yaml::to_string(&web_secret).expect("Secret as YAML"),
            addresses.expand(manifests)
        );
        let manifests_dir = dir.join("manifests");
        let mut api = None;
        let proc = match mode {
            Mode::File => {
                fs::write(manifests_dir.join("00-objects.yaml"), &objects)
                    .expect("write manifests");
                IngressProcess::start_with(Source::Manifests(&manifests_dir), &[], SETTLE).await
            }
            Mode::Kube => {
                let fake = FakeApi::start().await;
                let file = dir.join("00-objects.yaml");
                fs::write(&file, &objects).expect("write manifests");
                kubectl_apply(&fake, &file).await;
                let kubeconfig = fake.kubeconfig_path.clone();
                api = Some(fake);
                IngressProcess::start_with(Source::Kube(&kubeconfig), &["--update-status"], SETTLE)
                    .await
            }
        }
        .unwrap_or_else(|log| panic!("xdp-ingress ({mode:?}) did not become ready: {log}"));
        Self {
            mode,
            addresses,
            backends,
            proc,
            api,
            ca,
            dir,
            applied: AtomicU32::new(0),
            failures: Mutex::new(Vec::new()),
        }
    }

    /// Creates or changes objects while the binary runs: writes `manifests` as the file
    /// `name.yaml` of the manifest directory, replacing an earlier one of that name (file
    /// mode), or `kubectl apply`s them (kube mode). Placeholders as in
    /// [`start`](Self::start).
    ///
    /// # Panics
    /// If the file cannot be written or `kubectl apply` fails.
    pub async fn apply(&self, name: &str, manifests: &str) {
        let n = self.applied.fetch_add(1, Ordering::Relaxed) + 1;
        let text = self.addresses.expand(manifests);
        match &self.api {
            Some(api) => {
                let file = self.dir.join(format!("{name}-{n}.yaml"));
                fs::write(&file, text).expect("write manifests");
                kubectl_apply(api, &file).await;
            }
            None => {
                let file = self.dir.join("manifests").join(format!("{name}.yaml"));
                let tmp = self.dir.join(format!("{name}.tmp"));
                fs::write(&tmp, text).expect("write manifests");
                fs::rename(&tmp, file).expect("move manifests into place");
            }
        }
    }

    /// The address of the Gateway `name` (its listeners use port 80 in every test).
    ///
    /// # Panics
    /// If no Gateway of that name was declared (a test bug).
    pub fn gateway_ip(&self, name: &str) -> Ipv4Addr {
        self.addresses.ip(name)
    }

    /// `IP:80` of the Gateway `name`.
    pub fn gateway_addr(&self, name: &str) -> SocketAddr {
        SocketAddr::from((self.gateway_ip(name), 80))
    }

    /// The echo backend behind Service `namespace/name`.
    ///
    /// # Panics
    /// If there is none (a test bug).
    pub fn backend(&self, namespace: &str, name: &str) -> &TestBackend {
        self.backends
            .get(&format!("{namespace}/{name}"))
            .unwrap_or_else(|| panic!("no backend {namespace}/{name}"))
    }

    /// Waits until the Gateway `name` accepts connections on `port`.
    ///
    /// # Errors
    /// If it does not within [`LISTEN_WITHIN`].
    pub async fn wait_listening(&self, name: &str, port: u16) -> Result<(), String> {
        let addr = SocketAddr::from((self.gateway_ip(name), port));
        let deadline = Instant::now() + LISTEN_WITHIN;
        loop {
            let connect = tokio::net::TcpStream::connect(addr);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Gateway {name} is not listening on {addr} after {LISTEN_WITHIN:?} (its listeners were never opened)"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Records a failed expectation, reported by the next [`run`](Self::run).
    pub fn fail(&self, what: String) {
        println!("FAIL {what}");
        self.failures.lock().expect("failures lock").push(what);
    }

    /// The manifest directory of file mode (kube mode keeps its applied files elsewhere).
    pub fn manifest_dir(&self) -> PathBuf {
        self.dir.join("manifests")
    }

    /// The last lines of the binary's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.proc.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// The conformance suite's base objects (`conformance/base/manifests.yaml`), each
/// Gateway on its own address, each Service backed by its echo backend.
fn base_yaml(addresses: &Addresses, backends: &BTreeMap<String, TestBackend>) -> String {
    let mut y = String::new();
    for (ns, label) in [(INFRA, "infra"), (APP, "backend"), (WEB, "backend")] {
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{gateway-conformance: {label}}}}}\n"
        );
    }
    let _ = write!(
        y,
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {CLASS}}}\nspec: {{controllerName: {CONTROLLER}}}\n"
    );
    for (name, from) in BASE_GATEWAYS {
        let _ = write!(
            y,
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n  gatewayClassName: {CLASS}\n  addresses: [{{type: IPAddress, value: \"{ip}\"}}]\n  listeners:\n  - {{name: http, port: 80, protocol: HTTP, allowedRoutes: {{namespaces: {from}}}}}\n",
            ip = addresses.ip(name)
        );
    }
    for (ns, name, port_name) in SERVICES {
        let backend = &backends[&format!("{ns}/{name}")];
        let pname = port_name
            .map(|p| format!("name: {p}, "))
            .unwrap_or_default();
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: [{{{pname}protocol: TCP, port: 8080, targetPort: 3000}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{{pname}protocol: TCP, port: {port}}}]\nendpoints: [{{addresses: [\"{ip}\"], conditions: {{ready: true}}}}]\n",
            port = backend.addr.port(),
            ip = backend.addr.ip(),
        );
    }
    y
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let failures = std::mem::take(self.failures.get_mut().expect("failures lock"));
        if !failures.is_empty() && !std::thread::panicking() {
            panic!(
                "{} unreported failures ({:?} mode):\n{}",
                failures.len(),
                self.mode,
                failures.join("\n")
            );
        }
    }
}

async fn kubectl_apply(api: &FakeApi, file: &std::path::Path) {
    let path = file.to_str().expect("utf-8 path");
    let out = api.kubectl(&["apply", "-f", path]).await;
    assert!(
        out.status.success(),
        "kubectl apply -f {path}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
