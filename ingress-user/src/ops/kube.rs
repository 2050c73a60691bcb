//! The cluster-facing duties in kube mode, started together: leader election, this
//! instance's member Lease (its address for Ingress status), the status writers (Ingress
//! and Gateway API, with `--update-status`) and Events. Only the leader writes status and Events.

use std::{future::Future, net::IpAddr, sync::Arc};

use futures::future::join_all;
use kube::Client;
use tokio::sync::watch;

use super::{
    election::{self, ElectionConfig},
    events::{self, EventsConfig},
    gateway_status::{self, GatewayReport},
    status::{self, AddressSource, StatusConfig},
};
use crate::{cli::OpsArgs, config::Snapshot, controller::IngressList};

/// Everything [`run`] needs, usually from [`KubeOps::from_args`].
#[derive(Clone, Debug)]
pub struct KubeOps {
    /// The leader Lease.
    pub election: ElectionConfig,
    /// Status writing, when `--update-status` is on.
    pub status: Option<StatusConfig>,
    /// This instance's addresses, published in its member Lease (empty: no member Lease).
    pub own_addresses: Vec<String>,
    /// Event reporting.
    pub events: EventsConfig,
    /// `--controller-class`: our `controllerName` in route status.
    pub controller: String,
}

impl KubeOps {
    /// From the flags and the node addresses (`--node-address`; the
    /// `HOST_IP` fallback applies when empty).
    pub fn from_args(args: &OpsArgs, node_addresses: &[IpAddr], controller: &str) -> Self {
        let identity = args.pod_name.clone().unwrap_or_else(hostname);
        let election = ElectionConfig::new(
            &args.pod_namespace,
            &args.election_id,
            &identity,
            args.election_lease_duration,
        );
        let addresses = if !args.publish_status_address.is_empty() {
            AddressSource::Fixed(args.publish_status_address.clone())
        } else if let Some(svc) = &args.publish_service {
            AddressSource::Service(svc.clone())
        } else {
            AddressSource::Members
        };
        let own_addresses: Vec<String> = if node_addresses.is_empty() {
            args.host_ip.iter().map(ToString::to_string).collect()
        } else {
            node_addresses.iter().map(ToString::to_string).collect()
        };
        let status = args.update_status.then(|| StatusConfig {
            addresses,
            namespace: args.pod_namespace.clone(),
            election_id: args.election_id.clone(),
            resync: args.election_lease_duration,
        });
        Self {
            election,
            status,
            own_addresses,
            events: EventsConfig {
                host: args.node_name.clone(),
                window: args.event_interval,
                ..EventsConfig::default()
            },
            controller: controller.to_owned(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("xdp-ingress-{}", std::process::id()))
}

/// Runs election, member Lease, status writer and Events until `shutdown` flips to true.
/// The election publishes on `leading` (subscribe before calling to follow leadership).
/// On shutdown a leader releases its Lease and the member Lease is deleted.
pub async fn run(
    client: Client,
    cfg: KubeOps,
    ingresses: watch::Receiver<Arc<IngressList>>,
    gateways: watch::Receiver<Arc<GatewayReport>>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: watch::Receiver<bool>,
    leading: watch::Sender<bool>,
) {
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let leading_rx = leading.subscribe();
    let mut tasks: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> = vec![
        Box::pin(election::run(
            client.clone(),
            cfg.election.clone(),
            leading,
            stopped(shutdown.clone()),
        )),
        Box::pin(events::run(
            client.clone(),
            cfg.events.clone(),
            snapshots,
            leading_rx.clone(),
            stopped(shutdown.clone()),
        )),
    ];
    if let Some(status_cfg) = cfg.status.clone() {
        if status_cfg.addresses == AddressSource::Members && !cfg.own_addresses.is_empty() {
            tasks.push(Box::pin(status::run_member(
                client.clone(),
                cfg.election.namespace.clone(),
                cfg.election.name.clone(),
                cfg.election.identity.clone(),
                cfg.own_addresses.clone(),
                cfg.election.lease_duration,
                stopped(shutdown.clone()),
            )));
        }
        tasks.push(Box::pin(gateway_status::run(
            client.clone(),
            status_cfg.clone(),
            cfg.controller.clone(),
            gateways,
            leading_rx.clone(),
            stopped(shutdown.clone()),
        )));
        tasks.push(Box::pin(status::run(
            client,
            status_cfg,
            ingresses,
            leading_rx,
            stopped(shutdown),
        )));
    }
    join_all(tasks).await;
}
