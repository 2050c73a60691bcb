//! Which Ingresses are ours (DESIGN.md, "Class"). An Ingress is served when:
//! - its `ingressClassName` names an IngressClass whose `spec.controller` is
//!   `--controller-class`; or
//! - its `ingressClassName` or legacy `kubernetes.io/ingress.class` annotation equals
//!   `--ingress-class` (no IngressClass object needed, e.g. in file mode); or
//! - it names no class at all, and an IngressClass of ours is annotated
//!   `ingressclass.kubernetes.io/is-default-class: "true"` or `--watch-ingress-without-class`
//!   is set.
//!
//! Ingresses of other classes are skipped silently: they belong to another controller.

use std::collections::HashSet;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::Options;

/// The legacy class annotation.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The annotation that makes an IngressClass the cluster default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The class decision for one Store.
pub struct ClassFilter<'a> {
    ours: HashSet<String>,
    default_is_ours: bool,
    opts: &'a Options,
}

impl<'a> ClassFilter<'a> {
    /// Finds our IngressClasses (by controller) and whether one of them is the default.
    pub fn new<'c>(classes: impl IntoIterator<Item = &'c IngressClass>, opts: &'a Options) -> Self {
        let mut ours = HashSet::new();
        let mut default_is_ours = false;
        for class in classes {
            let controller = class.spec.as_ref().and_then(|s| s.controller.as_deref());
            if controller != Some(opts.controller_class.as_str()) {
                continue;
            }
            let Some(name) = class.metadata.name.as_deref() else {
                continue;
            };
            ours.insert(name.to_owned());
            default_is_ours |= class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
        }
        Self {
            ours,
            default_is_ours,
            opts,
        }
    }

    /// Whether `ingress` is served by this controller.
    pub fn serves(&self, ingress: &Ingress) -> bool {
        if let Some(ns) = &self.opts.watch_namespace
            && ingress.metadata.namespace.as_ref() != Some(ns)
        {
            return false;
        }
        let class_name = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref());
        let annotation = ingress
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CLASS_ANNOTATION))
            .map(String::as_str);
        let ours = self.opts.ingress_class.as_str();
        match (class_name, annotation) {
            (None, None) => self.default_is_ours || self.opts.watch_without_class,
            (c, a) => {
                c.is_some_and(|c| c == ours || self.ours.contains(c))
                    || a.is_some_and(|a| a == ours)
            }
        }
    }
}
