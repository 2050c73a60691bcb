//! A fake Kubernetes API server for watcher tests: real HTTP on 127.0.0.1, an in-memory store
//! with increasing resourceVersions, list pagination, watch streams with bookmarks, timeouts
//! and `410 Gone`, discovery documents enough for `kubectl`, and fault hooks
//! (drop every watch, compact history, go down and come back on the same port).
//!
//! ```no_run
//! # async fn demo() {
//! let api = ingress_tests::fake_api::FakeApi::start().await;
//! let client = api.client().await; // a real kube::Client
//! api.kubectl(&["get", "configmaps", "-A"]).await; // the installed kubectl, same server
//! api.force_gone();    // watches from older resourceVersions now get 410
//! api.drop_watches();  // every open watch connection ends
//! # }
//! ```

pub mod patch;
pub mod resources;
pub mod selector;
pub mod server;
pub mod store;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Output,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize as _;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use self::server::Shared;
pub use self::store::ObjectStore;

/// A running fake API server. Dropping it stops the server and removes its kubeconfig.
pub struct FakeApi {
    /// Where it listens (127.0.0.1, an ephemeral port; kept across `set_down` cycles).
    pub addr: SocketAddr,
    /// A kubeconfig whose current context points at this server (plain HTTP, no auth).
    pub kubeconfig_path: PathBuf,
    store: Arc<ObjectStore>,
    kill_watches: watch::Sender<u64>,
    kill_conns: watch::Sender<u64>,
    bookmark_interval: Duration,
    accept: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
    hidden: Arc<Mutex<std::collections::HashSet<String>>>,
}

static DIRS: AtomicU64 = AtomicU64::new(0);

impl FakeApi {
    /// Start on 127.0.0.1 with an ephemeral port and bookmarks every second.
    pub async fn start() -> Self {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Duration::from_secs(1),
        )
        .await
    }

    /// Start on `addr`, sending bookmarks to watches that ask for them every `bookmark_interval`.
    ///
    /// # Panics
    /// If the address cannot be bound or the kubeconfig cannot be written (test setup failure).
    pub async fn start_on(addr: SocketAddr, bookmark_interval: Duration) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind fake API server");
        let addr = listener.local_addr().expect("local addr");
        let dir = std::env::temp_dir().join(format!(
            "fake-api-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create kubeconfig dir");
        let kubeconfig_path = dir.join("kubeconfig");
        std::fs::write(&kubeconfig_path, kubeconfig(addr)).expect("write kubeconfig");
        let api = Self {
            addr,
            kubeconfig_path,
            store: Arc::new(ObjectStore::default()),
            kill_watches: watch::channel(0).0,
            kill_conns: watch::channel(0).0,
            bookmark_interval,
            accept: Mutex::new(None),
            dir,
            hidden: Arc::default(),
        };
        api.serve(listener);
        api
    }

    fn serve(&self, listener: TcpListener) {
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            address: self.addr.to_string(),
            kill_watches: self.kill_watches.subscribe(),
            bookmark_interval: self.bookmark_interval,
            hidden: Arc::clone(&self.hidden),
        });
        let kill_conns = self.kill_conns.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                let mut kill = kill_conns.clone();
                kill.mark_unchanged();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| server::handle(shared.clone(), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.changed() => {}
                    }
                });
            }
        });
        *self.accept.lock().expect("accept lock") = Some(task);
    }

    /// Stops serving `plural` in `group/version` (discovery and requests), as on a cluster
    /// whose CRDs lack that version: e.g. `hide("gateway.networking.k8s.io/v1alpha2",
    /// "tcproutes")` for Gateway API v1.6's standard channel, which serves TCPRoute as v1.
    pub fn hide(&self, group_version: &str, plural: &str) {
        self.hidden
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(format!("{group_version}/{plural}"));
    }

    /// The object store, for seeding objects or inspecting them without HTTP.
    pub fn store(&self) -> &Arc<ObjectStore> {
        &self.store
    }

    /// End every open watch stream (clients see a clean end of stream and re-watch).
    pub fn drop_watches(&self) {
        self.store.drop_watchers();
        self.kill_watches.send_modify(|g| *g += 1);
    }

    /// Compact the history and end every open watch: the re-watch (or continue token) from
    /// any resourceVersion older than now gets `410 Gone`, as after etcd compaction, and the
    /// client has to list again.
    pub fn force_gone(&self) {
        self.store.compact();
        self.kill_watches.send_modify(|g| *g += 1);
    }

    /// Create or replace an object directly in the store (no HTTP; works while the server is
    /// down). Its `apiVersion` and `kind` pick the resource.
    ///
    /// # Panics
    /// If the kind is not served or the object is invalid (a test bug).
    pub fn put(&self, obj: serde_json::Value) -> serde_json::Value {
        let (res, ns, name) = self.locate(&obj);
        let out = match self.store.get(res, &ns, &name) {
            Ok(_) => self.store.replace(res, &ns, &name, obj, false, false),
            Err(_) => self.store.create(res, &ns, obj, false),
        };
        (*out.expect("store write")).clone()
    }

    /// Creates or replaces (as [`put`](Self::put)) every object of the `*.yaml` and `*.json`
    /// files directly in `dir`, multi-document YAML included, skipping empty documents.
    /// Returns how many objects were stored.
    ///
    /// # Errors
    /// If the directory or a file cannot be read, or a document does not parse.
    ///
    /// # Panics
    /// As [`put`](Self::put), on a kind that is not served.
    pub fn load_dir(&self, dir: &Path) -> anyhow::Result<usize> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"));
        files.sort();
        let mut stored = 0;
        for path in files {
            let text = std::fs::read_to_string(&path)?;
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let obj = serde_json::Value::deserialize(doc)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                if !obj.is_null() {
                    self.put(obj);
                    stored += 1;
                }
            }
        }
        Ok(stored)
    }

    /// An object as stored (no HTTP), if present; `namespace` is ignored for cluster-scoped
    /// kinds.
    ///
    /// # Panics
    /// If the kind is not served (a test bug).
    pub fn object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<serde_json::Value> {
        let res = resources::by_kind(api_version, kind).expect("served kind");
        let ns = if resources::RESOURCES[res].namespaced {
            namespace
        } else {
            ""
        };
        self.store.get(res, ns, name).ok().map(|o| (*o).clone())
    }

    /// Delete an object directly in the store (no HTTP). Returns whether it existed.
    ///
    /// # Panics
    /// If the kind is not served (a test bug).
    pub fn remove(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let res = resources::by_kind(api_version, kind).expect("served kind");
        self.store.delete(res, namespace, name, false).is_ok()
    }

    fn locate(&self, obj: &serde_json::Value) -> (usize, String, String) {
        let s = |p: &str| {
            obj.pointer(p)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let res = resources::by_kind(&s("/apiVersion"), &s("/kind")).expect("served kind");
        let ns = if resources::RESOURCES[res].namespaced {
            s("/metadata/namespace")
        } else {
            String::new()
        };
        (res, ns, s("/metadata/name"))
    }

    /// `true`: stop listening and cut every connection (clients get connection refused).
    /// `false`: listen again on the same address. Objects are kept either way.
    ///
    /// # Panics
    /// If the port cannot be bound again (another process took it meanwhile).
    pub async fn set_down(&self, down: bool) {
        let running = self.accept.lock().expect("accept lock").take();
        if let Some(task) = running {
            task.abort();
            let _ = task.await;
            self.kill_conns.send_modify(|g| *g += 1);
            self.drop_watches();
        }
        if !down {
            let listener = TcpListener::bind(self.addr)
                .await
                .expect("rebind fake API server");
            self.serve(listener);
        }
    }

    /// A real kube-rs client for this server, from the generated kubeconfig.
    ///
    /// # Panics
    /// If the generated kubeconfig does not load (a bug in this module).
    pub async fn client(&self) -> kube::Client {
        let kc =
            kube::config::Kubeconfig::read_from(&self.kubeconfig_path).expect("read kubeconfig");
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kubeconfig to config");
        kube::Client::try_from(cfg).expect("kube client")
    }

    /// Run the installed `kubectl` against this server (async, so a current-thread runtime
    /// keeps serving kubectl's requests meanwhile).
    ///
    /// # Panics
    /// If `kubectl` cannot be started.
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        kubectl(&self.kubeconfig_path, args).await
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(task) = self.accept.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
        self.kill_conns.send_modify(|g| *g += 1);
        self.drop_watches();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run `kubectl --kubeconfig <path> <args>`, capturing its output. Its discovery cache is
/// kept beside the kubeconfig: a server that reuses an earlier one's port never gets that
/// one's cached (and possibly smaller) resource lists.
///
/// # Panics
/// If `kubectl` cannot be started.
pub async fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    let cache = kubeconfig.parent().map_or_else(
        || PathBuf::from("kubectl-cache"),
        |d| d.join("kubectl-cache"),
    );
    tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("run kubectl")
}

fn kubeconfig(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://{addr}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
users:
- name: fake
  user: {{}}
"
    )
}
