//! Status expectations, read back from the fake API server after the controller (run with
//! `--update-status`) writes them: the conformance suite's `kubernetes.*MustHave*` helpers.
//! In file mode there is no API server to write to, so these checks pass at once (and say
//! so); `xdp-ingress check` prints the conditions there.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{CLASS, CONTROLLER, GATEWAY_V1, INFRA, World};

/// How long the controller may take to write a status.
pub const STATUS_WITHIN: Duration = Duration::from_secs(15);

/// A condition a status must hold: type, status (`"True"`/`"False"`), and the reason if
/// it matters.
#[derive(Clone, Copy, Debug)]
pub struct Cond {
    /// `type`.
    pub kind: &'static str,
    /// `status`.
    pub status: &'static str,
    /// `reason`, if checked.
    pub reason: Option<&'static str>,
}

/// `type` is `True` (any reason).
pub const fn is_true(kind: &'static str) -> Cond {
    Cond {
        kind,
        status: "True",
        reason: None,
    }
}

/// `type` is `False` with `reason`.
pub const fn is_false(kind: &'static str, reason: &'static str) -> Cond {
    Cond {
        kind,
        status: "False",
        reason: Some(reason),
    }
}

/// `type` is `False` (any reason).
pub const fn is_false_any(kind: &'static str) -> Cond {
    Cond {
        kind,
        status: "False",
        reason: None,
    }
}

/// Checks `cond` in a `conditions` array; `generation` is what `observedGeneration` must be.
fn check_cond(conditions: Option<&Value>, cond: Cond, generation: i64) -> Result<(), String> {
    let found = conditions
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(cond.kind))
        })
        .ok_or_else(|| format!("no {} condition", cond.kind))?;
    let text = |k: &str| found.get(k).and_then(Value::as_str).unwrap_or("");
    if text("status") != cond.status {
        return Err(format!(
            "{} is {} ({}) (want {})",
            cond.kind,
            text("status"),
            text("reason"),
            cond.status
        ));
    }
    if let Some(reason) = cond.reason
        && text("reason") != reason
    {
        return Err(format!(
            "{} reason is {} (want {reason})",
            cond.kind,
            text("reason")
        ));
    }
    let observed = found
        .get("observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    if observed != generation {
        return Err(format!(
            "{} observedGeneration is {observed} (want the object's generation {generation})",
            cond.kind
        ));
    }
    Ok(())
}

fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The `status.parents` entry of `route` for the Gateway `INFRA/gateway` written by us.
fn parent_of<'a>(route: &'a Value, gateway: &str) -> Option<&'a Value> {
    let route_ns = route
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    route
        .pointer("/status/parents")?
        .as_array()?
        .iter()
        .find(|p| {
            let r = |k: &str| {
                p.pointer(&format!("/parentRef/{k}"))
                    .and_then(Value::as_str)
            };
            r("name") == Some(gateway)
                && r("namespace").unwrap_or(route_ns) == INFRA
                && p.get("controllerName").and_then(Value::as_str) == Some(CONTROLLER)
        })
}

impl World {
    /// Waits until `check` holds for the object `kind` `namespace/name`; after
    /// [`STATUS_WITHIN`] records a failure with the last mismatch and the object's status
    /// (reported by the next `run`). Kube mode only.
    async fn wait_object(
        &self,
        what: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        check: impl Fn(&Value) -> Result<(), String>,
    ) {
        let Some(api) = &self.api else {
            println!("{what}: status is checked in kube mode only");
            return;
        };
        let deadline = Instant::now() + STATUS_WITHIN;
        loop {
            let obj = api.object(GATEWAY_V1, kind, namespace, name);
            let result = obj
                .as_ref()
                .ok_or_else(|| format!("{kind} {namespace}/{name} does not exist"))
                .and_then(&check);
            match result {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => {
                    let status = obj
                        .as_ref()
                        .and_then(|o| o.get("status"))
                        .map_or_else(|| "none".into(), Value::to_string);
                    self.fail(format!(
                        "status ({:?}) {what}: {why} after {STATUS_WITHIN:?}; {kind} {namespace}/{name} status: {status}",
                        self.mode
                    ));
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The GatewayClass is Accepted.
    pub async fn class_accepted(&self) {
        self.wait_object("GatewayClass accepted", "GatewayClass", "", CLASS, |gc| {
            check_cond(
                gc.pointer("/status/conditions"),
                is_true("Accepted"),
                generation(gc),
            )
        })
        .await;
    }

    /// The Gateway `INFRA/gateway` is Accepted and Programmed (observedGeneration current)
    /// and reports its address in `status.addresses`.
    pub async fn gateway_programmed(&self, gateway: &str) {
        let ip = self.gateway_ip(gateway).to_string();
        self.wait_object(
            &format!("Gateway {gateway} accepted and programmed"),
            "Gateway",
            INFRA,
            gateway,
            |gw| {
                for cond in [is_true("Accepted"), is_true("Programmed")] {
                    check_cond(gw.pointer("/status/conditions"), cond, generation(gw))?;
                }
                let addrs = gw
                    .pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if addrs
                    .iter()
                    .any(|a| a.get("value").and_then(Value::as_str) == Some(ip.as_str()))
                {
                    Ok(())
                } else {
                    Err(format!("status.addresses {addrs:?} lacks {ip}"))
                }
            },
        )
        .await;
    }

    /// The conformance suite's `GatewayAndHTTPRoutesMustBeAccepted` followed by
    /// `HTTPRouteMustHaveResolvedRefsConditionsTrue`: the class is accepted, the Gateway
    /// programmed, and each route (`namespace/name`) has our parent entry for it with
    /// Accepted and ResolvedRefs true.
    pub async fn routes_accepted(&self, gateway: &str, routes: &[(&str, &str)]) {
        self.class_accepted().await;
        self.gateway_programmed(gateway).await;
        for (ns, name) in routes {
            self.route_parent(
                ns,
                name,
                gateway,
                &[is_true("Accepted"), is_true("ResolvedRefs")],
            )
            .await;
        }
    }

    /// The route `namespace/name` has our parent entry for the Gateway `INFRA/gateway`
    /// with every condition of `conds` (observedGeneration current).
    pub async fn route_parent(&self, namespace: &str, name: &str, gateway: &str, conds: &[Cond]) {
        self.wait_object(
            &format!("HTTPRoute {namespace}/{name} parent {gateway}: {conds:?}"),
            "HTTPRoute",
            namespace,
            name,
            |route| {
                let parent = parent_of(route, gateway).ok_or_else(|| {
                    format!("no status.parents entry for Gateway {gateway} by {CONTROLLER}")
                })?;
                for cond in conds {
                    check_cond(parent.get("conditions"), *cond, generation(route))?;
                }
                Ok(())
            },
        )
        .await;
    }

    /// The listener `listener` of the Gateway `INFRA/gateway` has `attached` routes,
    /// `supportedKinds` of exactly HTTPRoute, and the conditions `conds`.
    pub async fn listener_status(
        &self,
        gateway: &str,
        listener: &str,
        attached: i64,
        conds: &[Cond],
    ) {
        self.listener_status_kinds(gateway, listener, attached, &["HTTPRoute"], conds)
            .await;
    }

    /// The Gateway `INFRA/gateway` reports status for exactly the listeners `names`.
    pub async fn listeners_are(&self, gateway: &str, names: &[&str]) {
        self.wait_object(
            &format!("Gateway {gateway} has status for listeners {names:?} only"),
            "Gateway",
            INFRA,
            gateway,
            |gw| {
                let mut have: Vec<&str> = gw
                    .pointer("/status/listeners")
                    .and_then(Value::as_array)
                    .map(|ls| {
                        ls.iter()
                            .filter_map(|l| l.get("name").and_then(Value::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
                have.sort_unstable();
                let mut want = names.to_vec();
                want.sort_unstable();
                if have == want {
                    Ok(())
                } else {
                    Err(format!("listener statuses {have:?} (want {want:?})"))
                }
            },
        )
        .await;
    }

    /// As [`listener_status`](Self::listener_status), with `supportedKinds` exactly `kinds`.
    pub async fn listener_status_kinds(
        &self,
        gateway: &str,
        listener: &str,
        attached: i64,
        kinds: &[&str],
        conds: &[Cond],
    ) {
        self.wait_object(
            &format!("Gateway {gateway} listener {listener}: {attached} routes, {conds:?}"),
            "Gateway",
            INFRA,
            gateway,
            |gw| {
                let l = gw
                    .pointer("/status/listeners")
                    .and_then(Value::as_array)
                    .and_then(|ls| {
                        ls.iter()
                            .find(|l| l.get("name").and_then(Value::as_str) == Some(listener))
                    })
                    .ok_or_else(|| format!("no status for listener {listener}"))?;
                let have = l
                    .get("attachedRoutes")
                    .and_then(Value::as_i64)
                    .unwrap_or(-1);
                if have != attached {
                    return Err(format!("attachedRoutes {have} (want {attached})"));
                }
                let have = l.get("supportedKinds").cloned().unwrap_or(Value::Null);
                let mut names: Vec<&str> = have
                    .as_array()
                    .map(|ks| {
                        ks.iter()
                            .filter_map(|k| k.get("kind").and_then(Value::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort_unstable();
                let mut want = kinds.to_vec();
                want.sort_unstable();
                if names != want {
                    return Err(format!("supportedKinds {have} (want kinds {want:?})"));
                }
                for cond in conds {
                    check_cond(l.get("conditions"), *cond, generation(gw))?;
                }
                Ok(())
            },
        )
        .await;
    }
}
