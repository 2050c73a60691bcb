//! The status the translation computes for our GatewayClasses, Gateways and HTTPRoutes.
//! Pure values without timestamps: the status writer (kube mode) adds
//! `lastTransitionTime`, keeping the old one when a condition did not change, and
//! `xdp-ingress check` prints them (file mode).

use std::fmt;

use super::types::{GatewayAddress, ParentReference, RouteGroupKind};
use crate::config::store::Key;

/// One condition, as the spec names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    pub type_: &'static str,
    /// True or False.
    pub status: bool,
    /// The spec's reason, e.g. `NotAllowedByListeners`.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
    /// The object's `metadata.generation` this was computed from.
    pub observed_generation: i64,
}

impl Cond {
    /// A condition of an object at `generation`.
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
        generation: i64,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
            observed_generation: generation,
        }
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.status { "True" } else { "False" };
        write!(f, "{}={status} ({})", self.type_, self.reason)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// A GatewayClass of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassState {
    /// Its name.
    pub name: String,
    /// Accepted.
    pub conditions: Vec<Cond>,
}

/// A Gateway of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayState {
    /// Namespace and name.
    pub key: Key,
    /// `status.addresses`; empty when the Gateway asks for none (the writer fills in the
    /// node's published addresses).
    pub addresses: Vec<GatewayAddress>,
    /// Accepted, Programmed.
    pub conditions: Vec<Cond>,
    /// Per listener, in spec order.
    pub listeners: Vec<ListenerState>,
}

/// One listener of a Gateway of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerState {
    /// Its name.
    pub name: String,
    /// Route kinds it accepts.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes attached.
    pub attached_routes: i32,
    /// Accepted, Programmed, ResolvedRefs, Conflicted.
    pub conditions: Vec<Cond>,
}

/// An HTTPRoute with at least one parentRef to a Gateway of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteState {
    /// Namespace and name.
    pub key: Key,
    /// The route kind (`HTTPRoute`).
    pub kind: &'static str,
    /// One entry per parentRef to a Gateway of ours.
    pub parents: Vec<ParentState>,
}

/// One parentRef's view of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentState {
    /// The parentRef as written.
    pub parent_ref: ParentReference,
    /// Accepted, ResolvedRefs.
    pub conditions: Vec<Cond>,
}

/// Everything the status writer writes, sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statuses {
    /// Our GatewayClasses.
    pub classes: Vec<ClassState>,
    /// Our Gateways.
    pub gateways: Vec<GatewayState>,
    /// Routes attached (or trying to attach) to our Gateways.
    pub routes: Vec<RouteState>,
}

impl Statuses {
    /// Plain-text report for `xdp-ingress check`.
    pub fn report(&self) -> String {
        use fmt::Write as _;
        let mut out = String::new();
        let conds = |out: &mut String, indent: &str, c: &[Cond]| {
            for c in c {
                let _ = writeln!(out, "{indent}{c}");
            }
        };
        for c in &self.classes {
            let _ = writeln!(out, "GatewayClass {}", c.name);
            conds(&mut out, "  ", &c.conditions);
        }
        for g in &self.gateways {
            let _ = writeln!(out, "Gateway {}/{}", g.key.0, g.key.1);
            conds(&mut out, "  ", &g.conditions);
            for l in &g.listeners {
                let kinds: Vec<&str> = l.supported_kinds.iter().map(|k| k.kind.as_str()).collect();
                let _ = writeln!(
                    out,
                    "  listener {}: attachedRoutes={} supportedKinds=[{}]",
                    l.name,
                    l.attached_routes,
                    kinds.join(",")
                );
                conds(&mut out, "    ", &l.conditions);
            }
        }
        for r in &self.routes {
            let _ = writeln!(out, "{} {}/{}", r.kind, r.key.0, r.key.1);
            for p in &r.parents {
                let section = p
                    .parent_ref
                    .section_name
                    .as_deref()
                    .map(|s| format!(" section {s}"))
                    .unwrap_or_default();
                let ns = p.parent_ref.namespace.as_deref().unwrap_or(&r.key.0);
                let _ = writeln!(out, "  parent Gateway {ns}/{}{section}", p.parent_ref.name);
                conds(&mut out, "    ", &p.conditions);
            }
        }
        out
    }
}
