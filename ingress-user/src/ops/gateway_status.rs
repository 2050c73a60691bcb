//! Gateway API status: the elected leader writes the conditions the translation computed
//! (`config::gateway::status`) on our GatewayClasses, Gateways and the HTTPRoutes,
//! TCPRoutes and UDPRoutes that name them, with `--update-status`.
//!
//! - A condition keeps its `lastTransitionTime` while its status stays the same.
//! - A route's `status.parents` entries written by other controllers are kept; ours (by
//!   `controllerName`) are replaced.
//! - A Gateway without `spec.addresses` reports the addresses the Ingress status uses
//!   (`--publish-status-address`, `--publish-service`, else the instances' node addresses).
//! - Nothing is written when the status is already right, so a resync costs reads only.

use std::{future::Future, sync::Arc};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use super::status::{StatusConfig, resolve, while_leading};
use crate::config::gateway::{
    Gateway, GatewayClass, HTTPRoute, TCPRoute, TLSRoute, UDPRoute,
    status::{Cond, RouteState, Statuses},
    types::{
        GatewayAddress, GatewayClassStatus, GatewayStatus, ListenerStatus, RouteParentStatus,
        RouteStatus, TCPRouteV1, TLSRouteV1Alpha2, UDPRouteV1,
    },
};
use crate::source::kube::routes_version;

/// What the writer needs from the controller: the computed statuses and the objects as
/// last seen (for transition times and other controllers' entries).
#[derive(Clone, Debug, Default)]
pub struct GatewayReport {
    /// Computed by the translation.
    pub statuses: Arc<Statuses>,
    /// Our GatewayClasses as last seen.
    pub classes: Vec<Arc<GatewayClass>>,
    /// Our Gateways as last seen.
    pub gateways: Vec<Arc<Gateway>>,
    /// The HTTPRoutes in `statuses`, as last seen.
    pub routes: Vec<Arc<HTTPRoute>>,
    /// The TCPRoutes in `statuses`, as last seen.
    pub tcp_routes: Vec<Arc<TCPRoute>>,
    /// The UDPRoutes in `statuses`, as last seen.
    pub udp_routes: Vec<Arc<UDPRoute>>,
    /// The TLSRoutes in `statuses`, as last seen.
    pub tls_routes: Vec<Arc<TLSRoute>>,
}

/// The last-seen object of a route state among `objects` of its kind.
fn current<
    'a,
    T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    objects: &'a [Arc<T>],
    r: &RouteState,
) -> Option<&'a T> {
    objects
        .iter()
        .find(|o| {
            let m = o.metadata();
            m.namespace.as_deref() == Some(r.key.0.as_str())
                && m.name.as_deref() == Some(r.key.1.as_str())
        })
        .map(|o| &**o)
}

/// Conditions as written: the old transition time when the status did not change.
pub fn conditions(new: &[Cond], old: &[Condition], now: &Time) -> Vec<Condition> {
    new.iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let since = old
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == status)
                .map_or_else(|| now.clone(), |o| o.last_transition_time.clone());
            Condition {
                type_: c.type_.to_owned(),
                status: status.to_owned(),
                reason: c.reason.to_owned(),
                message: c.message.clone(),
                observed_generation: Some(c.observed_generation),
                last_transition_time: since,
            }
        })
        .collect()
}

/// The GatewayClass status to write, or `None` when it is right already.
pub fn class_status(
    conds: &[Cond],
    current: Option<&GatewayClassStatus>,
    now: &Time,
) -> Option<GatewayClassStatus> {
    let old = current.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let next = GatewayClassStatus {
        conditions: conditions(conds, old, now),
    };
    (Some(&next) != current).then_some(next)
}

/// The Gateway status to write, or `None` when it is right already. `published` are the
/// addresses of a Gateway that asks for none.
pub fn gateway_status(
    state: &crate::config::gateway::status::GatewayState,
    current: Option<&GatewayStatus>,
    published: &[String],
    now: &Time,
) -> Option<GatewayStatus> {
    let empty = GatewayStatus::default();
    let cur = current.unwrap_or(&empty);
    let addresses = if state.addresses.is_empty() {
        published
            .iter()
            .map(|a| GatewayAddress {
                type_: Some(if a.parse::<std::net::IpAddr>().is_ok() {
                    "IPAddress".to_owned()
                } else {
                    "Hostname".to_owned()
                }),
                value: a.clone(),
            })
            .collect()
    } else {
        state.addresses.clone()
    };
    let listeners = state
        .listeners
        .iter()
        .map(|l| {
            let old = cur
                .listeners
                .iter()
                .find(|o| o.name == l.name)
                .map(|o| o.conditions.as_slice())
                .unwrap_or_default();
            ListenerStatus {
                name: l.name.clone(),
                supported_kinds: l.supported_kinds.clone(),
                attached_routes: l.attached_routes,
                conditions: conditions(&l.conditions, old, now),
            }
        })
        .collect();
    let next = GatewayStatus {
        addresses,
        conditions: conditions(&state.conditions, &cur.conditions, now),
        listeners,
    };
    (next != *cur).then_some(next)
}

/// The route status to write, or `None` when it is right already: other controllers'
/// parents kept, ours replaced.
pub fn route_status(
    state: &crate::config::gateway::status::RouteState,
    current: Option<&RouteStatus>,
    controller: &str,
    now: &Time,
) -> Option<RouteStatus> {
    let empty = RouteStatus::default();
    let cur = current.unwrap_or(&empty);
    let mut parents: Vec<RouteParentStatus> = cur
        .parents
        .iter()
        .filter(|p| p.controller_name != controller)
        .cloned()
        .collect();
    for p in &state.parents {
        let old = cur
            .parents
            .iter()
            .find(|o| o.controller_name == controller && o.parent_ref == p.parent_ref)
            .map(|o| o.conditions.as_slice())
            .unwrap_or_default();
        parents.push(RouteParentStatus {
            parent_ref: p.parent_ref.clone(),
            controller_name: controller.to_owned(),
            conditions: conditions(&p.conditions, old, now),
        });
    }
    let next = RouteStatus { parents };
    (next != *cur).then_some(next)
}

/// Writes Gateway API statuses while `leading`, until `shutdown`. Re-checks on every new
/// report, on becoming leader and every `resync`.
pub async fn run(
    client: Client,
    cfg: StatusConfig,
    controller: String,
    reports: watch::Receiver<Arc<GatewayReport>>,
    leading: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let resync = cfg.resync;
    // The versions the kube source watches: the route kinds' newest served.
    let versions = RouteVersions {
        tcp: routes_version(&client, "tcproutes").await,
        udp: routes_version(&client, "udproutes").await,
        tls: routes_version(&client, "tlsroutes").await,
    };
    while_leading(reports, leading, resync, shutdown, |report| {
        let (client, cfg, controller, versions) = (&client, &cfg, &controller, &versions);
        async move {
            if report.classes.is_empty() {
                return;
            }
            // Gateways without addresses report the ones Ingress status publishes.
            let published = if report
                .statuses
                .gateways
                .iter()
                .any(|g| g.addresses.is_empty())
            {
                resolve(client.clone(), cfg).await.unwrap_or_else(|e| {
                    warn!(error = %e, "resolving Gateway status addresses");
                    Vec::new()
                })
            } else {
                Vec::new()
            };
            sync(client, &report, controller, &published, versions).await;
        }
    })
    .await;
}

/// The API version each route kind outside the v1 core is served in (`None`: not served).
struct RouteVersions {
    tcp: Option<&'static str>,
    udp: Option<&'static str>,
    tls: Option<&'static str>,
}

async fn sync(
    client: &Client,
    report: &GatewayReport,
    controller: &str,
    published: &[String],
    versions: &RouteVersions,
) {
    let now = Time(Timestamp::now());
    let s = &report.statuses;
    for c in &s.classes {
        let current = report
            .classes
            .iter()
            .find(|o| o.metadata.name.as_deref() == Some(c.name.as_str()));
        if let Some(next) =
            class_status(&c.conditions, current.and_then(|o| o.status.as_ref()), &now)
        {
            let api: Api<GatewayClass> = Api::all(client.clone());
            write(&api, "GatewayClass", &c.name, &next).await;
        }
    }
    for g in &s.gateways {
        let current = report.gateways.iter().find(|o| {
            o.metadata.namespace.as_deref() == Some(g.key.0.as_str())
                && o.metadata.name.as_deref() == Some(g.key.1.as_str())
        });
        if let Some(next) =
            gateway_status(g, current.and_then(|o| o.status.as_ref()), published, &now)
        {
            let api: Api<Gateway> = Api::namespaced(client.clone(), &g.key.0);
            write(&api, "Gateway", &g.key.1, &next).await;
        }
    }
    for r in &s.routes {
        let status = match r.kind {
            "TCPRoute" => current(&report.tcp_routes, r).and_then(|o| o.status.as_ref()),
            "UDPRoute" => current(&report.udp_routes, r).and_then(|o| o.status.as_ref()),
            "TLSRoute" => current(&report.tls_routes, r).and_then(|o| o.status.as_ref()),
            _ => current(&report.routes, r).and_then(|o| o.status.as_ref()),
        };
        let Some(next) = route_status(r, status, controller, &now) else {
            continue;
        };
        match r.kind {
            "TCPRoute" if versions.tcp == Some("v1") => {
                let api: Api<TCPRouteV1> = Api::namespaced(client.clone(), &r.key.0);
                write(&api, r.kind, &r.key.1, &next).await;
            }
            "TCPRoute" => {
                let api: Api<TCPRoute> = Api::namespaced(client.clone(), &r.key.0);
                write(&api, r.kind, &r.key.1, &next).await;
            }
            "UDPRoute" if versions.udp == Some("v1") => {
                let api: Api<UDPRouteV1> = Api::namespaced(client.clone(), &r.key.0);
                write(&api, r.kind, &r.key.1, &next).await;
            }
            "UDPRoute" => {
                let api: Api<UDPRoute> = Api::namespaced(client.clone(), &r.key.0);
                write(&api, r.kind, &r.key.1, &next).await;
            }
            "TLSRoute" if versions.tls == Some("v1alpha2") => {
                let api: Api<TLSRouteV1Alpha2> = Api::namespaced(client.clone(), &r.key.0);
                write(&api, r.kind, &r.key.1, &next).await;
            }
            "TLSRoute" => {
                let api: Api<TLSRoute> = Api::namespaced(client.clone(), &r.key.0);
                write(&api, r.kind, &r.key.1, &next).await;
            }
            _ => {
                let api: Api<HTTPRoute> = Api::namespaced(client.clone(), &r.key.0);
                write(&api, r.kind, &r.key.1, &next).await;
            }
        }
    }
}

async fn write<K, S>(api: &Api<K>, kind: &str, name: &str, status: &S)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = json!({ "status": status });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => info!(kind, name, "Gateway API status written"),
        Err(e) => warn!(kind, name, error = %e, "writing Gateway API status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::gateway::{
        status::{ParentState, RouteState},
        types::ParentReference,
    };

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_times_move_only_when_the_status_changes() {
        let accepted = |ok| {
            Cond::new(
                "Accepted",
                ok,
                if ok { "Accepted" } else { "NoMatchingParent" },
                "",
                1,
            )
        };
        let first = conditions(&[accepted(true)], &[], &t(10));
        assert_eq!(first[0].last_transition_time, t(10));
        let same = conditions(&[accepted(true)], &first, &t(20));
        assert_eq!(
            same[0].last_transition_time,
            t(10),
            "unchanged status keeps its time"
        );
        let flipped = conditions(&[accepted(false)], &same, &t(30));
        assert_eq!(flipped[0].last_transition_time, t(30));
        assert_eq!(flipped[0].status, "False");
        assert_eq!(flipped[0].observed_generation, Some(1));
    }

    #[test]
    fn route_status_keeps_other_controllers_parents_and_is_idempotent() {
        let parent = |name: &str| ParentReference {
            name: name.to_owned(),
            ..ParentReference::default()
        };
        let theirs = RouteParentStatus {
            parent_ref: parent("their-gw"),
            controller_name: "example.com/other".to_owned(),
            conditions: Vec::new(),
        };
        let state = RouteState {
            key: ("ns".into(), "r".into()),
            kind: "HTTPRoute",
            parents: vec![ParentState {
                parent_ref: parent("gw"),
                conditions: vec![Cond::new("Accepted", true, "Accepted", "", 4)],
            }],
        };
        let current = RouteStatus {
            parents: vec![theirs.clone()],
        };
        let next = route_status(&state, Some(&current), "xdp-ingress.dev/controller", &t(5))
            .expect("our parent is missing: write");
        assert_eq!(next.parents.len(), 2);
        assert_eq!(next.parents[0], theirs);
        assert_eq!(
            next.parents[1].controller_name,
            "xdp-ingress.dev/controller"
        );
        assert_eq!(
            route_status(&state, Some(&next), "xdp-ingress.dev/controller", &t(6)),
            None,
            "already right: nothing to write"
        );
    }
}
