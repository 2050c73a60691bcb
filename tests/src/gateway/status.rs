//! Status expectations: the conformance suite's `kubernetes.*MustHave*` helpers. In kube
//! mode they read the objects back from the fake API server after the controller (run with
//! `--update-status`) writes them; in file mode they read the "Gateway API status" section
//! that `xdp-ingress check --manifests DIR` prints, parsed into the same shape (there is no
//! `metadata.generation` there, nor `status.addresses`, so those are checked in kube mode
//! only).

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

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
        // `check` reads the files as they are: one look is enough in file mode.
        let within = if self.api.is_some() {
            STATUS_WITHIN
        } else {
            Duration::ZERO
        };
        let deadline = Instant::now() + within;
        loop {
            let obj = match &self.api {
                Some(api) => api.object(GATEWAY_V1, kind, namespace, name),
                None => self.check_report().remove(&(
                    kind.to_owned(),
                    namespace.to_owned(),
                    name.to_owned(),
                )),
            };
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
                        "status ({:?}) {what}: {why} (waited {within:?}); {kind} {namespace}/{name} status: {status}",
                        self.mode
                    ));
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The objects of `xdp-ingress check --manifests DIR`'s Gateway API status, by
    /// (kind, namespace, name).
    fn check_report(&self) -> BTreeMap<(String, String, String), Value> {
        let out = Command::new(crate::xdp_ingress_bin())
            .arg("check")
            .arg("--manifests")
            .arg(self.manifest_dir())
            .output()
            .expect("run xdp-ingress check");
        parse_check_report(&String::from_utf8_lossy(&out.stdout))
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
        let kube = self.api.is_some();
        self.wait_object(
            &format!("Gateway {gateway} accepted and programmed"),
            "Gateway",
            INFRA,
            gateway,
            |gw| {
                for cond in [is_true("Accepted"), is_true("Programmed")] {
                    check_cond(gw.pointer("/status/conditions"), cond, generation(gw))?;
                }
                if !kube {
                    return Ok(());
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
        self.kind_route_parent("HTTPRoute", namespace, name, gateway, conds)
            .await;
    }

    /// As [`route_parent`](Self::route_parent), for a route of `kind` (e.g. `TLSRoute`).
    pub async fn kind_route_parent(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        gateway: &str,
        conds: &[Cond],
    ) {
        self.wait_object(
            &format!("{kind} {namespace}/{name} parent {gateway}: {conds:?}"),
            kind,
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

/// Parses `check`'s "Gateway API status" section into objects shaped like their status
/// in the API (generation 0, so observedGeneration 0):
///
/// ```text
/// GatewayClass NAME            Gateway NS/NAME               HTTPRoute NS/NAME
///   Type=Status (Reason): msg    Type=Status (Reason)          parent Gateway NS/NAME[ section S]
///                                listener L: attachedRoutes=N supportedKinds=[A,B]
///                                  Type=Status (Reason)            Type=Status (Reason)
/// ```
pub fn parse_check_report(text: &str) -> BTreeMap<(String, String, String), Value> {
    let mut out = BTreeMap::new();
    let Some(start) = text.find("\nGateway API status:\n") else {
        return out;
    };
    let cond = |line: &str| -> Option<Value> {
        let (kind, rest) = line.split_once('=')?;
        let (status, rest) = rest.split_once(" (")?;
        let (reason, message) = rest.split_once(')')?;
        Some(json!({
            "type": kind, "status": status, "reason": reason,
            "message": message.trim_start_matches(": "), "observedGeneration": 0,
        }))
    };
    let mut current: Option<((String, String, String), Value)> = None;
    for line in text[start + 21..].lines() {
        let indent = line.len() - line.trim_start().len();
        let line = line.trim();
        if indent == 0 {
            if let Some((k, v)) = current.take() {
                out.insert(k, v);
            }
            let Some((kind, full)) = line.split_once(' ') else {
                break;
            };
            let (ns, name) = full.split_once('/').unwrap_or(("", full));
            let obj = json!({"metadata": {"namespace": ns, "name": name, "generation": 0},
                "status": {"conditions": [], "listeners": [], "parents": []}});
            current = Some(((kind.to_owned(), ns.to_owned(), name.to_owned()), obj));
            continue;
        }
        let Some((_, obj)) = current.as_mut() else {
            continue;
        };
        let status = &mut obj["status"];
        let push = |arr: &mut Value, v: Value| {
            if let Some(a) = arr.as_array_mut() {
                a.push(v);
            }
        };
        if let Some(rest) = line.strip_prefix("listener ") {
            let (name, rest) = rest.split_once(": ").unwrap_or((rest, ""));
            let attached: i64 = rest
                .split("attachedRoutes=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(-1);
            let kinds: Vec<Value> = rest
                .split("supportedKinds=[")
                .nth(1)
                .and_then(|r| r.split(']').next())
                .map(|k| {
                    k.split(',')
                        .filter(|k| !k.is_empty())
                        .map(|k| json!({"group": "gateway.networking.k8s.io", "kind": k}))
                        .collect()
                })
                .unwrap_or_default();
            push(
                &mut status["listeners"],
                json!({"name": name, "attachedRoutes": attached, "supportedKinds": kinds, "conditions": []}),
            );
        } else if let Some(rest) = line.strip_prefix("parent Gateway ") {
            let (gw, section) = rest.split_once(" section ").unwrap_or((rest, ""));
            let (ns, name) = gw.split_once('/').unwrap_or(("", gw));
            let mut parent_ref = json!({"name": name, "namespace": ns});
            if !section.is_empty() {
                parent_ref["sectionName"] = json!(section);
            }
            push(
                &mut status["parents"],
                json!({"parentRef": parent_ref, "controllerName": CONTROLLER, "conditions": []}),
            );
        } else if let Some(c) = cond(line) {
            let target = match indent {
                2 => &mut status["conditions"],
                _ if status["parents"].as_array().is_some_and(|p| !p.is_empty()) => {
                    let last = status["parents"].as_array_mut().and_then(|p| p.last_mut());
                    match last {
                        Some(p) => &mut p["conditions"],
                        None => continue,
                    }
                }
                _ => {
                    let last = status["listeners"]
                        .as_array_mut()
                        .and_then(|l| l.last_mut());
                    match last {
                        Some(l) => &mut l["conditions"],
                        None => continue,
                    }
                }
            };
            push(target, c);
        }
    }
    if let Some((k, v)) = current.take() {
        out.insert(k, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_report_parses_into_status_objects() {
        let text = "Problems (0):\n\nGateway API status:\nGatewayClass c\n  Accepted=True (Accepted): served by xdp-ingress\nGateway infra/g\n  Accepted=True (Accepted)\n  listener l1: attachedRoutes=2 supportedKinds=[HTTPRoute]\n    ResolvedRefs=False (InvalidCertificateRef): no such Secret\nHTTPRoute infra/r\n  parent Gateway infra/g section l1\n    Accepted=False (NoMatchingListenerHostname): no hostname\n";
        let objs = parse_check_report(text);
        let class = &objs[&("GatewayClass".into(), String::new(), "c".into())];
        assert_eq!(class["status"]["conditions"][0]["reason"], "Accepted");
        assert_eq!(
            class["status"]["conditions"][0]["message"],
            "served by xdp-ingress"
        );
        let gw = &objs[&("Gateway".into(), "infra".into(), "g".into())];
        assert_eq!(gw["status"]["conditions"][0]["type"], "Accepted");
        let l = &gw["status"]["listeners"][0];
        assert_eq!(l["name"], "l1");
        assert_eq!(l["attachedRoutes"], 2);
        assert_eq!(l["supportedKinds"][0]["kind"], "HTTPRoute");
        assert_eq!(l["conditions"][0]["reason"], "InvalidCertificateRef");
        let r = &objs[&("HTTPRoute".into(), "infra".into(), "r".into())];
        let p = &r["status"]["parents"][0];
        assert_eq!(p["parentRef"]["sectionName"], "l1");
        assert_eq!(p["conditions"][0]["status"], "False");
        assert_eq!(p["conditions"][0]["observedGeneration"], 0);
    }
}
