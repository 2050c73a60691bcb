//! Source `kube`: a kube-rs watcher on every kind the translation reads, each watch event
//! sent to the controller as one [`Change`].
//!
//! Use: `let client = kube::connect().await?; kube::run(client, cfg, tx).await` (in a task).
//! An error never deletes anything: while the API server is away the controller keeps what
//! it has, and a relist only deletes what it no longer finds.

use std::{collections::HashSet, fmt::Debug, time::Duration};

use futures::StreamExt;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        core::v1::{ConfigMap, Namespace, Secret, Service},
        discovery::v1::EndpointSlice,
        networking::v1::{Ingress, IngressClass},
    },
};
use kube::{
    Api, Client, Resource,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use tokio::{sync::mpsc, task::JoinSet};
use tracing::{debug, info, warn};

use super::{Update, UpdateTx};
use crate::config::{
    Change,
    gateway::{
        Gateway, GatewayClass, HTTPRoute, ReferenceGrant, TCPRoute, TLSRoute, UDPRoute,
        types::{TCPRouteV1, TLSRouteV1Alpha2, UDPRouteV1},
    },
    store::{Key, Kind, Object},
};

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
    /// Watch every ConfigMap of the watched namespace(s), for the `custom-headers`
    /// annotation (only when `--global-allowed-response-headers` lets it set anything).
    pub all_configmaps: bool,
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

/// Runs one watcher per kind and sends their events on `tx` until `tx` is closed.
///
/// Each watch event becomes one [`Change`]; objects are stripped of what translation never
/// reads (`managedFields`, the `last-applied-configuration` annotation) and held only by
/// the controller, so there is no second cache here. After every watcher has listed once,
/// [`Update::Synced`] follows. A relist (after `410 Gone` or a reconnect) re-applies what
/// it finds, which changes nothing for unchanged objects, and deletes what it no longer
/// finds. Watch errors are logged and retried with kube-rs' default backoff; meanwhile the
/// controller keeps what it has.
pub async fn run(client: Client, cfg: KubeSourceConfig, tx: UpdateTx) {
    let ns = cfg.watch_namespace.as_deref();
    let (listed_tx, mut listed) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let mut tasks = JoinSet::new();
    let mut w = Watchers {
        tasks: &mut tasks,
        tx: &tx,
        listed: &listed_tx,
        count: 0,
    };
    w.watch::<Ingress>(scoped(&client, ns), watcher::Config::default());
    w.watch::<IngressClass>(Api::all(client.clone()), watcher::Config::default());
    w.watch::<Service>(scoped(&client, ns), watcher::Config::default());
    w.watch::<EndpointSlice>(scoped(&client, ns), watcher::Config::default());
    w.watch::<Secret>(
        scoped(&client, ns),
        watcher::Config::default().fields("type=kubernetes.io/tls"),
    );
    // `auth-secret` Secrets (`kubectl create secret generic`). A second watcher rather
    // than all Secrets: service-account tokens, Helm releases and the like stay unread.
    // Each watcher deletes only what it listed, so the two never undo each other.
    w.watch::<Secret>(
        scoped(&client, ns),
        watcher::Config::default().fields("type=Opaque"),
    );
    // The same ConfigMap for both: watch it once.
    let config_maps: std::collections::BTreeSet<_> = [&cfg.tcp_configmap, &cfg.udp_configmap]
        .into_iter()
        .flatten()
        .collect();
    if cfg.all_configmaps {
        w.watch::<ConfigMap>(scoped(&client, ns), watcher::Config::default());
    }
    for (cm_ns, name) in config_maps {
        if cfg.all_configmaps && ns.is_none_or(|ns| ns == cm_ns) {
            continue; // already watched
        }
        let by_name = watcher::Config::default().fields(&format!("metadata.name={name}"));
        w.watch::<ConfigMap>(Api::namespaced(client.clone(), cm_ns), by_name);
    }
    if serves_gateway_api(&client).await {
        w.watch::<Namespace>(Api::all(client.clone()), watcher::Config::default());
        w.watch::<GatewayClass>(Api::all(client.clone()), watcher::Config::default());
        w.watch::<Gateway>(scoped(&client, ns), watcher::Config::default());
        w.watch::<HTTPRoute>(scoped(&client, ns), watcher::Config::default());
        w.watch::<ReferenceGrant>(scoped(&client, ns), watcher::Config::default());
        // The route kinds outside the v1 core, each in the newest version served, and
        // watched apart from the rest: a cluster with only the standard HTTP kinds still
        // gets its Gateways and HTTPRoutes. TCPRoute and UDPRoute are v1 since Gateway API
        // v1.6 (v1alpha2 before), TLSRoute v1 since v1.5 (v1alpha2 before).
        match watched_version(&client, "tcproutes").await {
            Some("v1") => w.watch::<TCPRouteV1>(scoped(&client, ns), watcher::Config::default()),
            Some(_) => w.watch::<TCPRoute>(scoped(&client, ns), watcher::Config::default()),
            None => {}
        }
        match watched_version(&client, "udproutes").await {
            Some("v1") => w.watch::<UDPRouteV1>(scoped(&client, ns), watcher::Config::default()),
            Some(_) => w.watch::<UDPRoute>(scoped(&client, ns), watcher::Config::default()),
            None => {}
        }
        match watched_version(&client, "tlsroutes").await {
            Some("v1") => w.watch::<TLSRoute>(scoped(&client, ns), watcher::Config::default()),
            Some(_) => {
                w.watch::<TLSRouteV1Alpha2>(scoped(&client, ns), watcher::Config::default());
            }
            None => {}
        }
    }
    let mut waiting = w.count;
    drop(listed_tx);
    while waiting > 0 {
        tokio::select! {
            kind = listed.recv() => match kind {
                Some(kind) => {
                    debug!(kind, "initial list complete");
                    waiting -= 1;
                }
                None => return,
            },
            () = tx.closed() => return,
        }
    }
    info!("initial sync complete");
    if tx.send(Update::Synced).is_err() {
        return;
    }
    tx.closed().await;
}

/// Whether the API server has the Gateway API CRDs (`gateway.networking.k8s.io` v1 and
/// the v1beta1 ReferenceGrant). Without them there is nothing to watch, and a watcher on a
/// missing resource would retry forever and hold back the initial sync. Installing the
/// CRDs later takes a restart to be noticed (logged here).
async fn serves_gateway_api(client: &Client) -> bool {
    let has = |version: &'static str, plural: &'static str| async move {
        let gv = format!("{}/{version}", crate::config::gateway::types::GROUP);
        match client.list_api_group_resources(&gv).await {
            Ok(list) => list.resources.iter().any(|r| r.name == plural),
            Err(e) => {
                debug!(group_version = %gv, error = %e, "API group not served");
                false
            }
        }
    };
    let found = has("v1", "gateways").await
        && has("v1", "httproutes").await
        && has("v1", "gatewayclasses").await
        && has("v1beta1", "referencegrants").await;
    if found {
        info!("Gateway API found: watching GatewayClasses, Gateways, HTTPRoutes, ReferenceGrants");
    } else {
        info!(
            "Gateway API CRDs not installed (gateway.networking.k8s.io v1 and v1beta1 ReferenceGrant); serving Ingress only. Restart after installing them."
        );
    }
    found
}

/// The newest version (`v1`, else `v1alpha2`) in which the API server serves the Gateway
/// API route kind `plural`.
pub async fn routes_version(client: &Client, plural: &str) -> Option<&'static str> {
    for version in ["v1", "v1alpha2"] {
        if serves(client, version, plural).await {
            return Some(version);
        }
    }
    None
}

/// [`routes_version`], logged for the watcher.
async fn watched_version(client: &Client, plural: &str) -> Option<&'static str> {
    let version = routes_version(client, plural).await;
    match version {
        Some(version) => info!(
            resource = plural,
            version, "Gateway API route kind served: watching it"
        ),
        None => info!(
            resource = plural,
            "Gateway API route kind not served (v1 or v1alpha2): not watched"
        ),
    }
    version
}

/// Whether the API server serves `plural` in `gateway.networking.k8s.io/<version>`.
/// TLSRoute is read in v1 (Gateway API v1.5's standard channel): without it (or with only
/// the experimental versions installed) TLSRoutes are not watched.
async fn serves(client: &Client, version: &str, plural: &str) -> bool {
    let gv = format!("{}/{version}", crate::config::gateway::types::GROUP);
    match client.list_api_group_resources(&gv).await {
        Ok(list) => list.resources.iter().any(|r| r.name == plural),
        Err(e) => {
            debug!(group_version = %gv, error = %e, "API group not served");
            false
        }
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

/// Starts watchers, counting them.
struct Watchers<'a> {
    tasks: &'a mut JoinSet<()>,
    tx: &'a UpdateTx,
    listed: &'a mpsc::UnboundedSender<&'static str>,
    count: usize,
}

/// A kind the kube source watches.
trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// The kind, for Deletes.
    const KIND: Kind;
    /// The object as a Change payload.
    fn object(self) -> Object;
    /// Drops the fields translation never reads (objects are kept for the controller's
    /// lifetime).
    fn slim(&mut self);
}

macro_rules! watched {
    ($($t:ident),*) => {$(
        impl Watched for $t {
            const KIND: Kind = Kind::$t;
            fn object(self) -> Object {
                Object::from(self)
            }
            fn slim(&mut self) {
                Slim::slim(self);
            }
        }
    )*};
}
watched!(
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
    Namespace,
    GatewayClass,
    Gateway,
    HTTPRoute,
    TCPRoute,
    UDPRoute,
    TLSRoute,
    ReferenceGrant
);

/// The route kinds read in another version: the same kind and object inside.
macro_rules! watched_as {
    ($($wrapper:ident => $t:ident),*) => {$(
        impl Watched for $wrapper {
            const KIND: Kind = Kind::$t;
            fn object(self) -> Object {
                Object::from(self.0)
            }
            fn slim(&mut self) {
                Slim::slim(&mut self.0);
            }
        }
    )*};
}
watched_as!(TCPRouteV1 => TCPRoute, UDPRouteV1 => UDPRoute, TLSRouteV1Alpha2 => TLSRoute);

/// Per kind, the parts of an object translation never reads.
trait Slim {
    fn slim(&mut self) {}
}

/// An Ingress keeps its status: the status writer compares it with our addresses.
impl Slim for Ingress {}

impl Slim for Service {
    fn slim(&mut self) {
        self.status = None;
    }
}

/// EndpointSlices become [`Slice`](crate::config::slice::Slice)s, which keep only what is read.
impl Slim for EndpointSlice {}
impl Slim for IngressClass {}
impl Slim for Secret {}
impl Slim for ConfigMap {}
impl Slim for Namespace {
    fn slim(&mut self) {
        self.spec = None;
        self.status = None;
    }
}
/// Gateway API objects keep their status: the status writer keeps other controllers'
/// route parents and the conditions' transition times.
impl Slim for GatewayClass {}
impl Slim for Gateway {}
impl Slim for HTTPRoute {}
impl Slim for TCPRoute {}
impl Slim for UDPRoute {}
impl Slim for TLSRoute {}
impl Slim for ReferenceGrant {}

impl Watchers<'_> {
    /// Starts one watcher; its first complete list is reported on `listed` (once).
    fn watch<K: Watched>(&mut self, api: Api<K>, cfg: watcher::Config) {
        self.count += 1;
        let tx = self.tx.clone();
        let listed = self.listed.clone();
        let stream = watcher(api, cfg).default_backoff();
        self.tasks.spawn(async move {
            let kind = K::kind(&());
            let mut stream = std::pin::pin!(stream);
            let mut known: HashSet<Key> = HashSet::new();
            let mut relisted: Option<HashSet<Key>> = None;
            let mut first_list = Some(listed);
            while let Some(ev) = stream.next().await {
                let change = match ev {
                    Ok(watcher::Event::Apply(o)) => {
                        known.insert(key(&o));
                        Some(Change::Apply(strip(o).object()))
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        let k = key(&o);
                        known.remove(&k);
                        Some(Change::Delete(K::KIND, k))
                    }
                    Ok(watcher::Event::Init) => {
                        relisted = Some(HashSet::new());
                        None
                    }
                    Ok(watcher::Event::InitApply(o)) => {
                        let k = key(&o);
                        if let Some(seen) = &mut relisted {
                            seen.insert(k.clone());
                        }
                        known.insert(k);
                        Some(Change::Apply(strip(o).object()))
                    }
                    Ok(watcher::Event::InitDone) => {
                        let seen = relisted.take().unwrap_or_default();
                        let gone: Vec<Change> = known
                            .iter()
                            .filter(|k| !seen.contains(*k))
                            .map(|k| Change::Delete(K::KIND, k.clone()))
                            .collect();
                        known = seen;
                        if !gone.is_empty() && tx.send(Update::Changes(gone)).is_err() {
                            return;
                        }
                        if let Some(listed) = first_list.take() {
                            let _ = listed.send(kind_name::<K>());
                        }
                        None
                    }
                    Err(e) => {
                        log_watch_error(&kind, &e);
                        None
                    }
                };
                if let Some(change) = change
                    && tx.send(Update::Changes(vec![change])).is_err()
                {
                    return;
                }
            }
        });
    }
}

/// The kind's name, for logs.
fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Ingress" => "Ingress",
        "IngressClass" => "IngressClass",
        "Service" => "Service",
        "EndpointSlice" => "EndpointSlice",
        "Secret" => "Secret",
        "Namespace" => "Namespace",
        "GatewayClass" => "GatewayClass",
        "Gateway" => "Gateway",
        "HTTPRoute" => "HTTPRoute",
        "TCPRoute" => "TCPRoute",
        "UDPRoute" => "UDPRoute",
        "TLSRoute" => "TLSRoute",
        "ReferenceGrant" => "ReferenceGrant",
        _ => "ConfigMap",
    }
}

/// `(namespace, name)` of an object.
fn key<K: Resource>(o: &K) -> Key {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

/// The annotation `kubectl apply` keeps a whole copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what translation never reads and what costs memory: managed fields, the
/// `kubectl apply` copy of the object, and per kind what [`Slim`] drops.
fn strip<K: Watched>(mut o: K) -> K {
    o.slim();
    o.meta_mut().managed_fields = None;
    if let Some(a) = o.meta_mut().annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    o
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_drops_managed_fields_and_the_last_applied_copy() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "ns",
                "labels": {"kubernetes.io/service-name": "web"},
                "annotations": {LAST_APPLIED: "{...}", "keep": "me"},
                "managedFields": [{"manager": "kube-controller-manager"}]},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                "targetRef": {"kind": "Pod", "name": "web-abc", "namespace": "ns"}}],
            "ports": [{"name": "http", "port": 8080}]
        }))
        .unwrap();
        let Object::EndpointSlice(kept) = strip(slice).object() else {
            panic!("an EndpointSlice");
        };
        assert_eq!(kept.metadata.managed_fields, None);
        let annotations = kept.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["keep"]);
        assert_eq!(kept.endpoints[0].addresses, ["10.0.0.1"]);
        assert_eq!(kept.ports.as_ref().map(Vec::len), Some(1));
    }
}
