//! Ingress status: the elected leader writes `status.loadBalancer.ingress` on every Ingress
//! this controller serves, and clears it on Ingresses it stopped serving.
//!
//! Which addresses (first that applies):
//! 1. `--publish-status-address` (a fixed list);
//! 2. `--publish-service`: that Service's `status.loadBalancer.ingress`, else its
//!    `spec.externalIPs`;
//! 3. the node addresses of every running instance. There is no Pod/Node watch for this:
//!    each instance keeps a *member Lease* (`<election-id>-member-<identity>`, labelled
//!    [`MEMBER_LABEL`]`=<election-id>`) renewed like the leader Lease and annotated with its
//!    address ([`ADDRESSES_ANNOTATION`]); the leader unions the addresses of unexpired member
//!    Leases. An instance that dies drops out once its Lease expires.
//!
//! An Ingress no longer served is cleared only if every address in its status is one this
//! controller would write, so the status another controller wrote is left alone.

use std::{collections::BTreeSet, future::Future, sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        coordination::v1::{Lease, LeaseSpec},
        core::v1::Service,
        networking::v1::{Ingress, IngressLoadBalancerIngress},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::{config::NamespacedName, controller::IngressList};

/// Label carried by member Leases; its value is the election id.
pub const MEMBER_LABEL: &str = "xdp-ingress.dev/election";
/// Annotation of a member Lease listing its addresses, comma-separated.
pub const ADDRESSES_ANNOTATION: &str = "xdp-ingress.dev/addresses";

/// Where the published addresses come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressSource {
    /// `--publish-status-address`.
    Fixed(Vec<String>),
    /// `--publish-service`.
    Service(NamespacedName),
    /// The addresses of all running instances (member Leases).
    Members,
}

/// What the status writer needs.
#[derive(Clone, Debug)]
pub struct StatusConfig {
    /// Where the addresses come from.
    pub addresses: AddressSource,
    /// The controller's namespace (member Leases live there).
    pub namespace: String,
    /// `--election-id` (member Leases are labelled with it).
    pub election_id: String,
    /// How often the addresses are re-read and every Ingress re-checked.
    pub resync: Duration,
}

/// Keeps this instance's member Lease (its addresses) fresh until `shutdown`, then deletes
/// it so the leader drops the address at once.
pub async fn run_member(
    client: Client,
    namespace: String,
    election_id: String,
    identity: String,
    addresses: Vec<String>,
    lease_duration: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let name = member_name(&election_id, &identity);
    let mut tick = tokio::time::interval((lease_duration / 3).max(Duration::from_millis(50)));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = renew_member(
            &api,
            &name,
            &election_id,
            &identity,
            &addresses,
            lease_duration,
        )
        .await
        {
            warn!(lease = %name, error = %e, "renewing member Lease");
        }
    }
    if let Err(e) = api.delete(&name, &kube::api::DeleteParams::default()).await {
        debug!(lease = %name, error = %e, "deleting member Lease");
    }
}

fn member_name(election_id: &str, identity: &str) -> String {
    format!("{election_id}-member-{identity}")
}

async fn renew_member(
    api: &Api<Lease>,
    name: &str,
    election_id: &str,
    identity: &str,
    addresses: &[String],
    lease_duration: Duration,
) -> Result<(), kube::Error> {
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(MEMBER_LABEL.to_owned(), election_id.to_owned())].into()),
            annotations: Some([(ADDRESSES_ANNOTATION.to_owned(), addresses.join(","))].into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(
                i32::try_from(lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };
    match api.get_opt(name).await? {
        None => api.create(&PostParams::default(), &lease).await.map(drop),
        Some(old) => {
            let mut next = lease;
            next.metadata.resource_version = old.metadata.resource_version;
            api.replace(name, &PostParams::default(), &next)
                .await
                .map(drop)
        }
    }
}

/// Addresses of the unexpired member Leases of `election_id`, sorted and deduplicated.
pub async fn member_addresses(
    client: Client,
    namespace: &str,
    election_id: &str,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let leases = api
        .list(&ListParams::default().labels(&format!("{MEMBER_LABEL}={election_id}")))
        .await?;
    let now = Timestamp::now();
    let mut out = BTreeSet::new();
    for l in leases {
        let Some(spec) = &l.spec else { continue };
        let (Some(renew), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
            continue;
        };
        if renew.0 + SignedDuration::from_secs(i64::from(secs)) < now {
            continue;
        }
        let addrs = l
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ADDRESSES_ANNOTATION));
        for a in addrs.into_iter().flat_map(|s| s.split(',')) {
            let a = a.trim();
            if !a.is_empty() {
                out.insert(a.to_owned());
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// The addresses to publish now.
pub async fn resolve(client: Client, cfg: &StatusConfig) -> Result<Vec<String>, kube::Error> {
    match &cfg.addresses {
        AddressSource::Fixed(list) => Ok(sorted(list.iter().cloned())),
        AddressSource::Service(svc) => {
            let api: Api<Service> = Api::namespaced(client, &svc.namespace);
            let Some(s) = api.get_opt(&svc.name).await? else {
                warn!(service = %svc, "--publish-service not found; publishing no address");
                return Ok(Vec::new());
            };
            let lb: Vec<String> = s
                .status
                .and_then(|st| st.load_balancer)
                .and_then(|lb| lb.ingress)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| i.ip.or(i.hostname))
                .collect();
            if lb.is_empty() {
                Ok(sorted(
                    s.spec.and_then(|sp| sp.external_ips).unwrap_or_default(),
                ))
            } else {
                Ok(sorted(lb))
            }
        }
        AddressSource::Members => member_addresses(client, &cfg.namespace, &cfg.election_id).await,
    }
}

fn sorted(it: impl IntoIterator<Item = String>) -> Vec<String> {
    it.into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The load-balancer entries for `addresses` (an IP goes to `ip`, anything else to
/// `hostname`).
pub fn entries(addresses: &[String]) -> Vec<IngressLoadBalancerIngress> {
    addresses
        .iter()
        .map(|a| {
            if a.parse::<std::net::IpAddr>().is_ok() {
                IngressLoadBalancerIngress {
                    ip: Some(a.clone()),
                    ..IngressLoadBalancerIngress::default()
                }
            } else {
                IngressLoadBalancerIngress {
                    hostname: Some(a.clone()),
                    ..IngressLoadBalancerIngress::default()
                }
            }
        })
        .collect()
}

/// The addresses in an Ingress's status, sorted.
pub fn current(ingress: &Ingress) -> Vec<String> {
    sorted(
        ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip.or(i.hostname)),
    )
}

/// What to do with one Ingress's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write these addresses.
    Set(Vec<String>),
    /// Remove the status.
    Clear,
}

/// Decides the action for one Ingress, or `None` when it is right already. Pure.
pub fn decide(served: bool, current: &[String], ours: &[String]) -> Option<Action> {
    if served {
        (!ours.is_empty() && current != ours).then(|| Action::Set(ours.to_vec()))
    } else {
        let mine = !current.is_empty() && current.iter().all(|a| ours.contains(a));
        mine.then_some(Action::Clear)
    }
}

/// Writes statuses while `leading` is true, until `shutdown` completes. Re-checks on every
/// Store change, on becoming leader and every `resync`.
pub async fn run(
    client: Client,
    cfg: StatusConfig,
    ingresses: watch::Receiver<Arc<IngressList>>,
    leading: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let resync = cfg.resync;
    while_leading(ingresses, leading, resync, shutdown, |list| {
        let (client, cfg) = (&client, &cfg);
        async move {
            if list.is_empty() {
                return;
            }
            match resolve(client.clone(), cfg).await {
                Ok(ours) => sync_all(client, &list, &ours).await,
                Err(e) => warn!(error = %e, "resolving status addresses"),
            }
        }
    })
    .await;
}

/// The status writers' loop: on a new `input`, a change of leadership and every `resync`,
/// and only while `leading`, hands the latest input to `write`. Ends at `shutdown`, or
/// when the input or leadership sender is gone.
pub async fn while_leading<T, F, Fut>(
    mut input: watch::Receiver<T>,
    mut leading: watch::Receiver<bool>,
    resync: Duration,
    shutdown: impl Future<Output = ()>,
    mut write: F,
) where
    T: Clone,
    F: FnMut(T) -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(resync.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            r = leading.changed() => if r.is_err() { return },
            r = input.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
        if !*leading.borrow_and_update() {
            continue;
        }
        let latest = input.borrow_and_update().clone();
        write(latest).await;
    }
}

async fn sync_all(client: &Client, list: &IngressList, ours: &[String]) {
    for (ing, served) in list {
        let (Some(ns), Some(name)) = (
            ing.metadata.namespace.as_deref(),
            ing.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let Some(action) = decide(*served, &current(ing), ours) else {
            continue;
        };
        let value = match &action {
            Action::Set(a) => json!(entries(a)),
            Action::Clear => serde_json::Value::Null,
        };
        let patch = json!({"status": {"loadBalancer": {"ingress": value}}});
        let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => info!(ingress = %format!("{ns}/{name}"), ?action, "Ingress status written"),
            Err(e) => {
                warn!(ingress = %format!("{ns}/{name}"), error = %e, "writing Ingress status");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn served_ingresses_get_our_addresses_unless_already_there() {
        let ours = s(&["10.0.0.1", "10.0.0.2"]);
        assert_eq!(decide(true, &[], &ours), Some(Action::Set(ours.clone())));
        assert_eq!(
            decide(true, &s(&["10.0.0.1"]), &ours),
            Some(Action::Set(ours.clone()))
        );
        assert_eq!(decide(true, &ours, &ours), None);
    }

    #[test]
    fn no_known_address_writes_nothing() {
        assert_eq!(decide(true, &s(&["1.1.1.1"]), &[]), None);
    }

    #[test]
    fn unserved_ingresses_are_cleared_only_when_the_status_is_ours() {
        let ours = s(&["10.0.0.1", "10.0.0.2"]);
        assert_eq!(decide(false, &s(&["10.0.0.2"]), &ours), Some(Action::Clear));
        assert_eq!(decide(false, &s(&["10.0.0.2", "192.0.2.9"]), &ours), None);
        assert_eq!(decide(false, &[], &ours), None);
    }

    #[test]
    fn ips_and_hostnames_go_to_their_fields() {
        let e = entries(&s(&["10.0.0.1", "lb.example.com"]));
        assert_eq!(e[0].ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(e[1].hostname.as_deref(), Some("lb.example.com"));
        assert!(e[1].ip.is_none());
    }
}
