//! Kubernetes Events for Problems, attached to the offending object so that
//! `kubectl describe configmap tcp-services` shows what is wrong with it.
//!
//! Rate limit: one Event per (object, field, Problem kind); while the Problem lasts it is
//! re-announced at most once per `window`, by bumping the Event's `count` and
//! `lastTimestamp` (the aggregation `kubectl` shows as "x3 over 20m"). A Problem that goes
//! away and comes back within the window is not announced again.

use std::{
    collections::HashMap,
    future::Future,
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::{Event, EventSource, ObjectReference},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use tokio::{sync::watch, time::Instant};
use tracing::{debug, warn};

use crate::config::{ObjectRef, Problem, Snapshot};

/// Who reports, and how often the same Problem may be announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsConfig {
    /// `source.component` of the Events.
    pub component: String,
    /// `source.host` (the node name), if known.
    pub host: Option<String>,
    /// Minimum time between two announcements of the same Problem.
    pub window: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            component: "xdp-ingress".into(),
            host: None,
            window: Duration::from_secs(600),
        }
    }
}

type Key = (ObjectRef, Option<String>, &'static str);

struct Sent {
    name: String,
    namespace: String,
    count: i32,
    last: Instant,
}

/// Turns Problems into Events, remembering what it sent.
pub struct Recorder {
    client: Client,
    cfg: EventsConfig,
    sent: HashMap<Key, Sent>,
}

/// The API group/version of the kinds Problems are about; `None` for things that are not
/// Kubernetes objects (e.g. a manifest `File`).
pub fn api_version(kind: &str) -> Option<&'static str> {
    match kind {
        "ConfigMap" | "Service" | "Secret" | "Endpoints" => Some("v1"),
        "Ingress" | "IngressClass" => Some("networking.k8s.io/v1"),
        "EndpointSlice" => Some("discovery.k8s.io/v1"),
        _ => None,
    }
}

/// `unknown_service` → `UnknownService`: the Event reason for a Problem kind.
pub fn reason(kind: &str) -> String {
    kind.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

fn message(p: &Problem) -> String {
    match &p.field {
        Some(f) => format!("{f}: {}", p.message),
        None => p.message.clone(),
    }
}

impl Recorder {
    /// A recorder with nothing sent yet.
    pub fn new(client: Client, cfg: EventsConfig) -> Self {
        Self {
            client,
            cfg,
            sent: HashMap::new(),
        }
    }

    /// Announces the Problems that are new or whose window has passed.
    pub async fn record(&mut self, problems: &[Problem]) {
        let window = self.cfg.window;
        self.sent.retain(|_, s| s.last.elapsed() < window);
        for p in problems {
            let Some(api_version) = api_version(&p.object.kind) else {
                continue;
            };
            let key: Key = (p.object.clone(), p.field.clone(), p.kind);
            let result = match self.sent.get(&key) {
                Some(s) if s.last.elapsed() < window => continue,
                Some(s) => self
                    .bump(s, p)
                    .await
                    .map(|()| (s.name.clone(), s.namespace.clone(), s.count + 1)),
                None => self.create(&key, p, api_version).await,
            };
            match result {
                Ok((name, namespace, count)) => {
                    debug!(object = %p.object, reason = %reason(p.kind), count, "Event recorded");
                    self.sent.insert(
                        key,
                        Sent {
                            name,
                            namespace,
                            count,
                            last: Instant::now(),
                        },
                    );
                }
                Err(e) => warn!(object = %p.object, error = %e, "recording Event"),
            }
        }
    }

    async fn create(
        &self,
        key: &Key,
        p: &Problem,
        api_version: &str,
    ) -> Result<(String, String, i32), kube::Error> {
        let namespace = p
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let name = format!("{}.{:016x}", p.object.name, h.finish());
        let now = Time(Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some(api_version.to_owned()),
                kind: Some(p.object.kind.clone()),
                namespace: p.object.namespace.clone(),
                name: Some(p.object.name.clone()),
                field_path: p.field.clone(),
                ..ObjectReference::default()
            },
            reason: Some(reason(p.kind)),
            message: Some(message(p)),
            type_: Some("Warning".into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.cfg.component.clone()),
                host: self.cfg.host.clone(),
            }),
            reporting_component: Some(self.cfg.component.clone()),
            reporting_instance: self.cfg.host.clone(),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => Ok((name, namespace, 1)),
            // Sent by a previous leader: aggregate into it.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let old = api.get(&name).await?;
                let count = old.count.unwrap_or(1) + 1;
                self.patch(&api, &name, count, p).await?;
                Ok((name, namespace, count))
            }
            Err(e) => Err(e),
        }
    }

    async fn bump(&self, s: &Sent, p: &Problem) -> Result<(), kube::Error> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &s.namespace);
        self.patch(&api, &s.name, s.count + 1, p).await
    }

    async fn patch(
        &self,
        api: &Api<Event>,
        name: &str,
        count: i32,
        p: &Problem,
    ) -> Result<(), kube::Error> {
        let patch = json!({
            "count": count,
            "lastTimestamp": Time(Timestamp::now()),
            "message": message(p),
        });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
    }
}

/// Records the Problems of every Snapshot while `leading` is true (so a DaemonSet reports
/// each Problem once, not once per node), until `shutdown` completes.
pub async fn run(
    client: Client,
    cfg: EventsConfig,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut leading: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let mut recorder = Recorder::new(client, cfg);
    tokio::pin!(shutdown);
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = &mut shutdown => return,
                r = snapshots.changed() => if r.is_err() { return },
                r = leading.changed() => if r.is_err() { return },
            }
        }
        first = false;
        if !*leading.borrow_and_update() {
            continue;
        }
        let snapshot = snapshots.borrow_and_update().clone();
        recorder.record(&snapshot.problems).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_camel_case_problem_kinds() {
        for (kind, want) in [
            ("unknown_service", "UnknownService"),
            ("reserved_port", "ReservedPort"),
            ("x", "X"),
        ] {
            assert_eq!(reason(kind), want);
        }
    }

    #[test]
    fn only_kubernetes_kinds_get_events() {
        assert_eq!(api_version("ConfigMap"), Some("v1"));
        assert_eq!(api_version("Ingress"), Some("networking.k8s.io/v1"));
        assert_eq!(api_version("File"), None);
    }
}
