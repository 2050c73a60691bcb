//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go does it: the
//! holder renews `renewTime` every `renew_interval`; another candidate takes the Lease once it
//! has seen no change to it for `lease_duration` (measured on its own clock, so clock skew
//! between nodes does not matter). Writes use the Lease's resourceVersion, so two candidates
//! racing for an expired Lease cannot both win. A leader that cannot renew for
//! two thirds of the lease duration steps down before anyone else may take over.

use std::{future::Future, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};
use tokio::{sync::watch, time::Instant};
use tracing::{debug, info, warn};

/// Who competes for which Lease, and how fast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// Namespace of the Lease (the controller's own namespace).
    pub namespace: String,
    /// Name of the Lease (`--election-id`).
    pub name: String,
    /// This candidate's identity (the pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal (whole seconds in the object).
    pub lease_duration: Duration,
    /// How often the holder renews and candidates retry.
    pub renew_interval: Duration,
}

impl ElectionConfig {
    /// A config with the usual timing: renew every third of `lease_duration`.
    pub fn new(namespace: &str, name: &str, identity: &str, lease_duration: Duration) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
            renew_interval: lease_duration / 3,
        }
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// The last version of the Lease this candidate saw, and when it first saw it.
struct Observed {
    resource_version: String,
    at: Instant,
}

/// Competes for the Lease until `shutdown` completes, publishing whether this candidate
/// leads on `leading`. On shutdown a leader releases the Lease so a successor takes over at
/// its next retry instead of waiting for expiry.
pub async fn run(
    client: Client,
    cfg: ElectionConfig,
    leading: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut observed: Option<Observed> = None;
    let mut last_renew: Option<Instant> = None;
    let renew_deadline = cfg.lease_duration * 2 / 3;
    let mut tick = tokio::time::interval(cfg.renew_interval.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        match try_acquire_or_renew(&api, &cfg, &mut observed).await {
            Ok(true) => {
                last_renew = Some(Instant::now());
                if !*leading.borrow() {
                    info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                    leading.send_replace(true);
                }
            }
            Ok(false) => {
                if *leading.borrow() {
                    warn!(lease = %cfg.name, "lost the Lease to another candidate");
                    leading.send_replace(false);
                }
                last_renew = None;
            }
            Err(e) => {
                warn!(lease = %cfg.name, error = %e, "leader election");
                if *leading.borrow() && last_renew.is_none_or(|t| t.elapsed() >= renew_deadline) {
                    warn!(lease = %cfg.name, "could not renew the Lease in time; stepping down");
                    leading.send_replace(false);
                }
            }
        }
    }
    if *leading.borrow() {
        leading.send_replace(false);
        match release(&api, &cfg).await {
            Ok(()) => info!(lease = %cfg.name, "released the Lease"),
            Err(e) => warn!(lease = %cfg.name, error = %e, "releasing the Lease"),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// One round: create the Lease, renew it, or take it over if expired. `Ok(true)` = leading.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &ElectionConfig,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let Some(lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(cfg.lease_seconds()),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let rv = lease.metadata.resource_version.clone().unwrap_or_default();
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let held_by_me = holder == cfg.identity;
    if !held_by_me && !holder.is_empty() {
        // Someone else holds it: expired only when unchanged for its whole duration.
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(cfg.lease_duration, Duration::from_secs);
        match observed {
            Some(o) if o.resource_version == rv => {
                if o.at.elapsed() < duration {
                    return Ok(false);
                }
            }
            _ => {
                *observed = Some(Observed {
                    resource_version: rv,
                    at: Instant::now(),
                });
                return Ok(false);
            }
        }
        debug!(lease = %cfg.name, %holder, "Lease expired; taking over");
    }
    let mut next = lease;
    let spec = next.spec.get_or_insert_with(LeaseSpec::default);
    if !held_by_me {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(cfg.lease_seconds());
    spec.renew_time = Some(now());
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up: no holder, so the next candidate takes it without waiting.
async fn release(api: &Api<Lease>, cfg: &ElectionConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = Some(now());
    api.replace(&cfg.name, &PostParams::default(), &lease)
        .await?;
    Ok(())
}
