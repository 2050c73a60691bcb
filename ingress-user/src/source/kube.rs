//! Source `kube`: kube-rs reflectors on every kind the translation reads, publishing one
//! complete [`Store`] after the initial sync and then after every (debounced) change.
//!
//! Use: `let client = kube::connect().await?; kube::run(client, cfg, tx).await` (in a task).
//! `run` never publishes an empty Store because of an error: reflector stores keep their last
//! contents while the API server is away, and a relist (after `410 Gone`) is swapped in whole.

use std::{
    fmt::Debug,
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        core::v1::{ConfigMap, Secret, Service},
        discovery::v1::EndpointSlice,
        networking::v1::{Ingress, IngressClass},
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store as Reader},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::{sync::watch, task::JoinSet};
use tracing::{debug, info, warn};

use super::StoreTx;
use crate::config::Store;

/// Bursts of changes closer together than this become one publish (one Snapshot rebuild).
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// What the kube source watches (the values of the `--watch-namespace`,
/// `--tcp-services-configmap` and `--udp-services-configmap` flags).
#[derive(Clone, Debug, Default)]
pub struct KubeSourceConfig {
    /// Only watch namespaced kinds (Ingress, Service, EndpointSlice, Secret) in this
    /// namespace; `None` watches all. IngressClasses are cluster-scoped and always watched;
    /// the ConfigMaps are watched in their own namespace.
    pub watch_namespace: Option<String>,
    /// The TCP services ConfigMap, as (namespace, name).
    pub tcp_configmap: Option<(String, String)>,
    /// The UDP services ConfigMap, as (namespace, name).
    pub udp_configmap: Option<(String, String)>,
}

/// Why the kube source could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    /// Neither a kubeconfig (`KUBECONFIG`, `~/.kube/config`) nor an in-cluster config was found.
    #[error("no Kubernetes client configuration (kubeconfig or in-cluster): {0}")]
    Config(#[source] kube::Error),
}

/// First delay between attempts to reach the API server.
const RETRY_MIN: Duration = Duration::from_millis(200);
/// Longest delay between attempts to reach the API server.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Make a client from the kubeconfig (honouring `KUBECONFIG`) or the in-cluster config, and
/// wait until the API server answers, retrying with backoff and a log line per attempt.
pub async fn connect() -> Result<Client, KubeSourceError> {
    let client = Client::try_default()
        .await
        .map_err(KubeSourceError::Config)?;
    wait_reachable(&client).await;
    Ok(client)
}

/// Wait until the API server answers `/version`, retrying with capped exponential backoff.
/// Every failed attempt is logged, so an operator sees why the controller is not ready.
pub async fn wait_reachable(client: &Client) {
    let mut delay = RETRY_MIN;
    let mut attempt = 1u32;
    loop {
        match client.apiserver_version().await {
            Ok(v) => {
                info!(version = %v.git_version, attempt, "API server reachable");
                return;
            }
            Err(e) => {
                warn!(error = %e, attempt, retry_in = ?delay, "API server unreachable; retrying");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
        attempt += 1;
    }
}

/// Run the reflectors and publish on `tx` until every receiver of `tx` is gone.
///
/// Publishes nothing (the channel stays `None`) until every reflector has completed its
/// initial list; then a complete [`Store`] per burst of changes (see [`DEBOUNCE`]). Watch
/// errors are logged and retried with kube-rs' default backoff; meanwhile the last
/// published Store stays.
pub async fn run(client: Client, cfg: KubeSourceConfig, tx: StoreTx) {
    let (changed_tx, mut changed) = watch::channel(0u64);
    let mut tasks = JoinSet::new();
    let ns = cfg.watch_namespace.as_deref();
    let mut spawn = Spawner {
        tasks: &mut tasks,
        changed: &changed_tx,
    };
    let readers = Readers {
        ingresses: spawn.reflect(scoped(&client, ns), watcher::Config::default()),
        ingress_classes: spawn.reflect(Api::all(client.clone()), watcher::Config::default()),
        services: spawn.reflect(scoped(&client, ns), watcher::Config::default()),
        endpoint_slices: spawn.reflect(scoped(&client, ns), watcher::Config::default()),
        secrets: spawn.reflect(
            scoped(&client, ns),
            watcher::Config::default().fields("type=kubernetes.io/tls"),
        ),
        config_maps: [&cfg.tcp_configmap, &cfg.udp_configmap]
            .into_iter()
            .flatten()
            .collect::<std::collections::BTreeSet<_>>() // the same ConfigMap for both: watch it once
            .into_iter()
            .map(|(ns, name)| {
                let by_name = watcher::Config::default().fields(&format!("metadata.name={name}"));
                spawn.reflect(Api::namespaced(client.clone(), ns), by_name)
            })
            .collect(),
    };

    tokio::select! {
        ready = readers.wait_until_ready() => if !ready { return },
        () = tx.closed() => return,
    }
    changed.borrow_and_update();
    let mut last = readers.fingerprint();
    let store = readers.snapshot();
    info!(
        ingresses = store.ingresses.len(),
        services = store.services.len(),
        endpoint_slices = store.endpoint_slices.len(),
        secrets = store.secrets.len(),
        config_maps = store.config_maps.len(),
        "initial sync complete"
    );
    if tx.send(Some(Arc::new(store))).is_err() {
        return;
    }
    loop {
        tokio::select! {
            res = changed.changed() => if res.is_err() { return },
            () = tx.closed() => return,
        }
        tokio::time::sleep(DEBOUNCE).await;
        changed.borrow_and_update();
        let fingerprint = readers.fingerprint();
        if fingerprint == last {
            continue; // a relist or an event that changed nothing we keep
        }
        last = fingerprint;
        if tx.send(Some(Arc::new(readers.snapshot()))).is_err() {
            return;
        }
        debug!("store published");
    }
}

/// An `Api` for a namespaced kind, in one namespace or all.
fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

struct Spawner<'a> {
    tasks: &'a mut JoinSet<()>,
    changed: &'a watch::Sender<u64>,
}

impl Spawner<'_> {
    /// Start one reflector; every applied change bumps `changed`.
    fn reflect<K>(&mut self, api: Api<K>, cfg: watcher::Config) -> Reader<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let (reader, writer) = reflector::store();
        let changed = self.changed.clone();
        let stream = watcher(api, cfg)
            .default_backoff()
            .modify(|o| o.managed_fields_mut().clear())
            .reflect(writer);
        self.tasks.spawn(async move {
            let kind = K::kind(&());
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(
                        watcher::Event::Apply(_)
                        | watcher::Event::Delete(_)
                        | watcher::Event::InitDone,
                    ) => {
                        changed.send_modify(|n| *n += 1);
                    }
                    Ok(_) => {}
                    Err(e) => log_watch_error(&kind, &e),
                }
            }
        });
        reader
    }
}

fn log_watch_error(kind: &str, e: &watcher::Error) {
    match e {
        watcher::Error::WatchError(s) if s.code == 410 => {
            info!(kind, error = %e, "resourceVersion expired; listing again");
        }
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => {
            warn!(kind, code = s.code, error = %e, "API server refused the request; retrying");
        }
        watcher::Error::WatchError(s) => {
            warn!(kind, code = s.code, error = %e, "watch failed; retrying");
        }
        _ => warn!(kind, error = %e, "API server unreachable; retrying"),
    }
}

/// The reflector stores behind one published [`Store`].
struct Readers {
    ingresses: Reader<Ingress>,
    ingress_classes: Reader<IngressClass>,
    services: Reader<Service>,
    endpoint_slices: Reader<EndpointSlice>,
    secrets: Reader<Secret>,
    config_maps: Vec<Reader<ConfigMap>>,
}

impl Readers {
    /// Wait for every reflector's first complete list; `false` if one of them died.
    async fn wait_until_ready(&self) -> bool {
        let all = [
            self.ingresses.wait_until_ready().await,
            self.ingress_classes.wait_until_ready().await,
            self.services.wait_until_ready().await,
            self.endpoint_slices.wait_until_ready().await,
            self.secrets.wait_until_ready().await,
        ];
        let mut ok = all.iter().all(Result::is_ok);
        for cm in &self.config_maps {
            ok &= cm.wait_until_ready().await.is_ok();
        }
        ok
    }

    /// Identity of the current contents: an order-independent hash of every object's uid and
    /// resourceVersion, to skip publishing a Store equal to the last one (e.g. after a relist
    /// that found nothing new). Cheap: no allocation, no sort.
    fn fingerprint(&self) -> (usize, u64) {
        fn ids<K: Resource<DynamicType = ()> + Clone>(r: &Reader<K>, acc: &mut (usize, u64)) {
            for o in r.state() {
                let mut h = std::hash::DefaultHasher::new();
                (
                    o.meta().uid.as_deref(),
                    o.meta().resource_version.as_deref(),
                )
                    .hash(&mut h);
                acc.0 += 1;
                acc.1 = acc.1.wrapping_add(h.finish());
            }
        }
        let mut acc = (0, 0);
        ids(&self.ingresses, &mut acc);
        ids(&self.ingress_classes, &mut acc);
        ids(&self.services, &mut acc);
        ids(&self.endpoint_slices, &mut acc);
        ids(&self.secrets, &mut acc);
        for cm in &self.config_maps {
            ids(cm, &mut acc);
        }
        acc
    }

    /// A complete Store of the current contents, each kind sorted by namespace and name.
    fn snapshot(&self) -> Store {
        Store {
            ingresses: sorted(&self.ingresses),
            ingress_classes: sorted(&self.ingress_classes),
            services: sorted(&self.services),
            endpoint_slices: sorted(&self.endpoint_slices),
            secrets: sorted(&self.secrets),
            config_maps: self.config_maps.iter().flat_map(sorted).collect(),
            problems: Vec::new(),
        }
    }
}

fn sorted<K: Resource<DynamicType = ()> + Clone>(r: &Reader<K>) -> Vec<K> {
    let mut v = r.state();
    v.sort_unstable_by(|a, b| {
        let (a, b) = (a.meta(), b.meta());
        (a.namespace.as_deref(), a.name.as_deref())
            .cmp(&(b.namespace.as_deref(), b.name.as_deref()))
    });
    v.iter().map(|o| (**o).clone()).collect()
}
