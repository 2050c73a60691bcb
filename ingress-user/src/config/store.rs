//! The input of the translation: every object a source has seen.
//!
//! - [`Store`] is a plain list of values: what a manifest directory parses into, what tests
//!   write by hand, and the input of the reference [`build`](super::build).
//! - [`Objects`] is the same set indexed by kind and `namespace/name`, holding shared `Arc`s.
//!   Sources describe their changes as [`Change`]s; applying one costs a map update, never
//!   a copy of the rest.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use k8s_openapi::api::{
    core::v1::{ConfigMap, Namespace, Secret, Service},
    discovery::v1::EndpointSlice,
    networking::v1::{Ingress, IngressClass},
};

use super::{
    Problem,
    backend::SERVICE_NAME_LABEL,
    gateway::{Gateway, GatewayClass, HTTPRoute, ReferenceGrant, TCPRoute, TLSRoute, UDPRoute},
    slice::Slice,
};

/// A complete, consistent set of objects from one source, as plain values.
#[derive(Clone, Debug, Default)]
pub struct Store {
    /// `networking.k8s.io/v1` Ingresses (legacy `extensions/v1beta1` ones already converted).
    pub ingresses: Vec<Ingress>,
    /// IngressClasses.
    pub ingress_classes: Vec<IngressClass>,
    /// Services.
    pub services: Vec<Service>,
    /// `discovery.k8s.io/v1` EndpointSlices.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// `kubernetes.io/tls` Secrets, and `Opaque` ones (`auth-secret`).
    pub secrets: Vec<Secret>,
    /// ConfigMaps (the tcp/udp services ones; others are ignored).
    pub config_maps: Vec<ConfigMap>,
    /// Namespaces (their labels select Gateway API routes).
    pub namespaces: Vec<Namespace>,
    /// Gateway API GatewayClasses.
    pub gateway_classes: Vec<GatewayClass>,
    /// Gateway API Gateways.
    pub gateways: Vec<Gateway>,
    /// Gateway API HTTPRoutes.
    pub http_routes: Vec<HTTPRoute>,
    /// Gateway API TCPRoutes.
    pub tcp_routes: Vec<TCPRoute>,
    /// Gateway API UDPRoutes.
    pub udp_routes: Vec<UDPRoute>,
    /// Gateway API TLSRoutes.
    pub tls_routes: Vec<TLSRoute>,
    /// Gateway API ReferenceGrants.
    pub reference_grants: Vec<ReferenceGrant>,
    /// Problems the source itself found (a file that does not parse, an object of an
    /// unknown kind); they are carried into the Snapshot's problems.
    pub problems: Vec<Problem>,
}

impl Store {
    /// Every object as a [`Change::Apply`], and the problems under `origin`.
    pub fn into_changes(self, origin: &str) -> Vec<Change> {
        let mut out = Vec::new();
        out.extend(self.ingresses.into_iter().map(Object::from));
        out.extend(self.ingress_classes.into_iter().map(Object::from));
        out.extend(self.services.into_iter().map(Object::from));
        out.extend(self.endpoint_slices.into_iter().map(Object::from));
        out.extend(self.secrets.into_iter().map(Object::from));
        out.extend(self.config_maps.into_iter().map(Object::from));
        out.extend(self.namespaces.into_iter().map(Object::from));
        out.extend(self.gateway_classes.into_iter().map(Object::from));
        out.extend(self.gateways.into_iter().map(Object::from));
        out.extend(self.http_routes.into_iter().map(Object::from));
        out.extend(self.tcp_routes.into_iter().map(Object::from));
        out.extend(self.udp_routes.into_iter().map(Object::from));
        out.extend(self.tls_routes.into_iter().map(Object::from));
        out.extend(self.reference_grants.into_iter().map(Object::from));
        let mut changes: Vec<Change> = out.into_iter().map(Change::Apply).collect();
        if !self.problems.is_empty() {
            changes.push(Change::Problems {
                origin: origin.to_owned(),
                problems: self.problems,
            });
        }
        changes
    }
}

/// The kinds the translation reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `networking.k8s.io/v1` Ingress.
    Ingress,
    /// IngressClass (cluster-scoped: empty namespace).
    IngressClass,
    /// Service.
    Service,
    /// `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice,
    /// `kubernetes.io/tls` or `Opaque` Secret.
    Secret,
    /// ConfigMap.
    ConfigMap,
    /// Namespace (cluster-scoped).
    Namespace,
    /// Gateway API GatewayClass (cluster-scoped).
    GatewayClass,
    /// Gateway API Gateway.
    Gateway,
    /// Gateway API HTTPRoute.
    HTTPRoute,
    /// Gateway API TCPRoute.
    TCPRoute,
    /// Gateway API UDPRoute.
    UDPRoute,
    /// Gateway API TLSRoute.
    TLSRoute,
    /// Gateway API ReferenceGrant.
    ReferenceGrant,
}

/// `(namespace, name)`; the namespace is empty for cluster-scoped kinds.
pub type Key = (String, String);

/// One object of a kind the translation reads, shared.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// An Ingress.
    Ingress(Arc<Ingress>),
    /// An IngressClass.
    IngressClass(Arc<IngressClass>),
    /// A Service.
    Service(Arc<Service>),
    /// An EndpointSlice, kept as the parts translation reads.
    EndpointSlice(Arc<Slice>),
    /// A Secret.
    Secret(Arc<Secret>),
    /// A ConfigMap.
    ConfigMap(Arc<ConfigMap>),
    /// A Namespace.
    Namespace(Arc<Namespace>),
    /// A GatewayClass.
    GatewayClass(Arc<GatewayClass>),
    /// A Gateway.
    Gateway(Arc<Gateway>),
    /// An HTTPRoute.
    HTTPRoute(Arc<HTTPRoute>),
    /// A TCPRoute.
    TCPRoute(Arc<TCPRoute>),
    /// A UDPRoute.
    UDPRoute(Arc<UDPRoute>),
    /// A TLSRoute.
    TLSRoute(Arc<TLSRoute>),
    /// A ReferenceGrant.
    ReferenceGrant(Arc<ReferenceGrant>),
}

macro_rules! object_from {
    ($($kind:ident),*) => {$(
        impl From<$kind> for Object {
            fn from(o: $kind) -> Self {
                Self::$kind(Arc::new(o))
            }
        }
    )*};
}
object_from!(
    Ingress,
    IngressClass,
    Service,
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

impl From<EndpointSlice> for Object {
    fn from(o: EndpointSlice) -> Self {
        Self::EndpointSlice(Arc::new(Slice::from(o)))
    }
}

impl Object {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Ingress(_) => Kind::Ingress,
            Self::IngressClass(_) => Kind::IngressClass,
            Self::Service(_) => Kind::Service,
            Self::EndpointSlice(_) => Kind::EndpointSlice,
            Self::Secret(_) => Kind::Secret,
            Self::ConfigMap(_) => Kind::ConfigMap,
            Self::Namespace(_) => Kind::Namespace,
            Self::GatewayClass(_) => Kind::GatewayClass,
            Self::Gateway(_) => Kind::Gateway,
            Self::HTTPRoute(_) => Kind::HTTPRoute,
            Self::TCPRoute(_) => Kind::TCPRoute,
            Self::UDPRoute(_) => Kind::UDPRoute,
            Self::TLSRoute(_) => Kind::TLSRoute,
            Self::ReferenceGrant(_) => Kind::ReferenceGrant,
        }
    }

    /// The same object copied into fresh allocations made by the calling thread, unless
    /// someone else also holds it (then a copy would only add memory).
    ///
    /// Why: the kube source deserializes on the tokio workers, where each kept object sits
    /// among the freed JSON buffers and temporaries of its page, so the allocator cannot
    /// give those pages back. The controller copies what it keeps, so the kept objects are
    /// packed in its own heap and the workers' pages empty out whole (kube mode at 10,000
    /// Ingresses: 212 → 173 MiB). The manifest source keeps its objects (to resolve
    /// duplicates across files), so its objects are not copied.
    #[must_use]
    pub fn reallocated(self) -> Self {
        // A deep copy (`clone`), not a move: the fields' own allocations must be new too.
        fn copy<T: Clone>(o: &Arc<T>) -> Arc<T> {
            if Arc::strong_count(o) > 1 {
                return o.clone();
            }
            Arc::new(T::clone(o))
        }
        match self {
            Self::Ingress(o) => Self::Ingress(copy(&o)),
            Self::IngressClass(o) => Self::IngressClass(copy(&o)),
            Self::Service(o) => Self::Service(copy(&o)),
            Self::EndpointSlice(o) => Self::EndpointSlice(copy(&o)),
            Self::Secret(o) => Self::Secret(copy(&o)),
            Self::ConfigMap(o) => Self::ConfigMap(copy(&o)),
            Self::Namespace(o) => Self::Namespace(copy(&o)),
            Self::GatewayClass(o) => Self::GatewayClass(copy(&o)),
            Self::Gateway(o) => Self::Gateway(copy(&o)),
            Self::HTTPRoute(o) => Self::HTTPRoute(copy(&o)),
            Self::TCPRoute(o) => Self::TCPRoute(copy(&o)),
            Self::UDPRoute(o) => Self::UDPRoute(copy(&o)),
            Self::TLSRoute(o) => Self::TLSRoute(copy(&o)),
            Self::ReferenceGrant(o) => Self::ReferenceGrant(copy(&o)),
        }
    }

    /// Its `(namespace, name)`.
    pub fn key(&self) -> Key {
        let meta = match self {
            Self::Ingress(o) => &o.metadata,
            Self::IngressClass(o) => &o.metadata,
            Self::Service(o) => &o.metadata,
            Self::EndpointSlice(o) => &o.metadata,
            Self::Secret(o) => &o.metadata,
            Self::ConfigMap(o) => &o.metadata,
            Self::Namespace(o) => &o.metadata,
            Self::GatewayClass(o) => &o.metadata,
            Self::Gateway(o) => &o.metadata,
            Self::HTTPRoute(o) => &o.metadata,
            Self::TCPRoute(o) => &o.metadata,
            Self::UDPRoute(o) => &o.metadata,
            Self::TLSRoute(o) => &o.metadata,
            Self::ReferenceGrant(o) => &o.metadata,
        };
        (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

/// One change a source saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// An object was created or replaced.
    Apply(Object),
    /// An object is gone.
    Delete(Kind, Key),
    /// The source's own Problems for `origin` (e.g. a file path) are now exactly these.
    Problems {
        /// Where they come from; replaces the earlier set of the same origin.
        origin: String,
        /// The Problems (empty clears them).
        problems: Vec<Problem>,
    },
}

/// The objects of one source, indexed by kind and `(namespace, name)`.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// Ingresses.
    pub ingresses: BTreeMap<Key, Arc<Ingress>>,
    /// IngressClasses (namespace empty).
    pub ingress_classes: BTreeMap<Key, Arc<IngressClass>>,
    /// Services.
    pub services: BTreeMap<Key, Arc<Service>>,
    /// EndpointSlices by their own key.
    pub endpoint_slices: BTreeMap<Key, Arc<Slice>>,
    /// Secrets.
    pub secrets: BTreeMap<Key, Arc<Secret>>,
    /// ConfigMaps.
    pub config_maps: BTreeMap<Key, Arc<ConfigMap>>,
    /// Namespaces (namespace empty).
    pub namespaces: BTreeMap<Key, Arc<Namespace>>,
    /// GatewayClasses (namespace empty).
    pub gateway_classes: BTreeMap<Key, Arc<GatewayClass>>,
    /// Gateways.
    pub gateways: BTreeMap<Key, Arc<Gateway>>,
    /// HTTPRoutes.
    pub http_routes: BTreeMap<Key, Arc<HTTPRoute>>,
    /// TCPRoutes.
    pub tcp_routes: BTreeMap<Key, Arc<TCPRoute>>,
    /// UDPRoutes.
    pub udp_routes: BTreeMap<Key, Arc<UDPRoute>>,
    /// TLSRoutes.
    pub tls_routes: BTreeMap<Key, Arc<TLSRoute>>,
    /// ReferenceGrants.
    pub reference_grants: BTreeMap<Key, Arc<ReferenceGrant>>,
    /// The source's Problems by origin.
    pub problems: BTreeMap<String, Vec<Problem>>,
    /// EndpointSlice keys by the Service (`kubernetes.io/service-name`) they belong to.
    slices_by_service: HashMap<Key, BTreeSet<Key>>,
}

/// What [`Objects::apply`] changed, so the caller can find what depends on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Nothing: the object was already exactly so (or a delete of something unknown).
    Nothing,
    /// An object of this kind and key; for an EndpointSlice, the Services it belonged to
    /// before and after.
    Object(Kind, Key, Vec<Key>),
    /// The source Problems of an origin.
    Problems,
}

impl Objects {
    /// Indexes a [`Store`].
    pub fn from_store(store: &Store) -> Self {
        let mut o = Self::default();
        for change in store.clone().into_changes("source") {
            o.apply(change);
        }
        o
    }

    /// Applies one change.
    pub fn apply(&mut self, change: Change) -> Applied {
        match change {
            Change::Problems { origin, problems } => {
                let old = if problems.is_empty() {
                    self.problems.remove(&origin)
                } else {
                    self.problems.insert(origin, problems.clone())
                };
                if old.unwrap_or_default() == problems {
                    Applied::Nothing
                } else {
                    Applied::Problems
                }
            }
            Change::Apply(object) => {
                let key = object.key();
                let kind = object.kind();
                let changed = match object {
                    Object::Ingress(o) => put(&mut self.ingresses, key.clone(), o),
                    Object::IngressClass(o) => put(&mut self.ingress_classes, key.clone(), o),
                    Object::Service(o) => put(&mut self.services, key.clone(), o),
                    Object::Secret(o) => put(&mut self.secrets, key.clone(), o),
                    Object::ConfigMap(o) => put(&mut self.config_maps, key.clone(), o),
                    Object::Namespace(o) => put(&mut self.namespaces, key.clone(), o),
                    Object::GatewayClass(o) => put(&mut self.gateway_classes, key.clone(), o),
                    Object::Gateway(o) => put(&mut self.gateways, key.clone(), o),
                    Object::HTTPRoute(o) => put(&mut self.http_routes, key.clone(), o),
                    Object::TCPRoute(o) => put(&mut self.tcp_routes, key.clone(), o),
                    Object::UDPRoute(o) => put(&mut self.udp_routes, key.clone(), o),
                    Object::TLSRoute(o) => put(&mut self.tls_routes, key.clone(), o),
                    Object::ReferenceGrant(o) => put(&mut self.reference_grants, key.clone(), o),
                    Object::EndpointSlice(o) => {
                        let new_owner = slice_service(&o);
                        let old = self.endpoint_slices.get(&key).cloned();
                        if !put(&mut self.endpoint_slices, key.clone(), o) {
                            return Applied::Nothing;
                        }
                        let old_owner = old.as_deref().and_then(slice_service);
                        return Applied::Object(
                            kind,
                            key.clone(),
                            self.reindex_slice(&key, old_owner, new_owner),
                        );
                    }
                };
                if changed {
                    Applied::Object(kind, key, Vec::new())
                } else {
                    Applied::Nothing
                }
            }
            Change::Delete(kind, key) => {
                let gone = match kind {
                    Kind::Ingress => self.ingresses.remove(&key).is_some(),
                    Kind::IngressClass => self.ingress_classes.remove(&key).is_some(),
                    Kind::Service => self.services.remove(&key).is_some(),
                    Kind::Secret => self.secrets.remove(&key).is_some(),
                    Kind::ConfigMap => self.config_maps.remove(&key).is_some(),
                    Kind::Namespace => self.namespaces.remove(&key).is_some(),
                    Kind::GatewayClass => self.gateway_classes.remove(&key).is_some(),
                    Kind::Gateway => self.gateways.remove(&key).is_some(),
                    Kind::HTTPRoute => self.http_routes.remove(&key).is_some(),
                    Kind::TCPRoute => self.tcp_routes.remove(&key).is_some(),
                    Kind::UDPRoute => self.udp_routes.remove(&key).is_some(),
                    Kind::TLSRoute => self.tls_routes.remove(&key).is_some(),
                    Kind::ReferenceGrant => self.reference_grants.remove(&key).is_some(),
                    Kind::EndpointSlice => {
                        let Some(old) = self.endpoint_slices.remove(&key) else {
                            return Applied::Nothing;
                        };
                        let owners = self.reindex_slice(&key, slice_service(&old), None);
                        return Applied::Object(kind, key, owners);
                    }
                };
                if gone {
                    Applied::Object(kind, key, Vec::new())
                } else {
                    Applied::Nothing
                }
            }
        }
    }

    /// Moves a slice between Services in the index; returns the Services involved.
    fn reindex_slice(&mut self, slice: &Key, old: Option<Key>, new: Option<Key>) -> Vec<Key> {
        if let Some(old) = &old
            && let Some(set) = self.slices_by_service.get_mut(old)
        {
            set.remove(slice);
            if set.is_empty() {
                self.slices_by_service.remove(old);
            }
        }
        if let Some(new) = &new {
            self.slices_by_service
                .entry(new.clone())
                .or_default()
                .insert(slice.clone());
        }
        let mut owners: Vec<Key> = old.into_iter().chain(new).collect();
        owners.dedup();
        owners
    }

    /// The EndpointSlices of a Service.
    pub fn slices_of<'a>(
        &'a self,
        namespace: &str,
        service: &str,
    ) -> impl Iterator<Item = &'a Slice> + 'a {
        self.slices_by_service
            .get(&(namespace.to_owned(), service.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(|k| self.endpoint_slices.get(k).map(|s| &**s))
    }

    /// A Service by namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|s| &**s)
    }

    /// The objects as a plain [`Store`] (copies; for tests and `check`).
    pub fn to_store(&self) -> Store {
        fn values<T: Clone>(m: &BTreeMap<Key, Arc<T>>) -> Vec<T> {
            m.values().map(|o| (**o).clone()).collect()
        }
        Store {
            ingresses: values(&self.ingresses),
            ingress_classes: values(&self.ingress_classes),
            services: values(&self.services),
            endpoint_slices: self
                .endpoint_slices
                .values()
                .map(|s| EndpointSlice::from(&**s))
                .collect(),
            secrets: values(&self.secrets),
            config_maps: values(&self.config_maps),
            namespaces: values(&self.namespaces),
            gateway_classes: values(&self.gateway_classes),
            gateways: values(&self.gateways),
            http_routes: values(&self.http_routes),
            tcp_routes: values(&self.tcp_routes),
            udp_routes: values(&self.udp_routes),
            tls_routes: values(&self.tls_routes),
            reference_grants: values(&self.reference_grants),
            problems: self.problems.values().flatten().cloned().collect(),
        }
    }
}

/// Inserts unless an equal object is already there; `true` when something changed.
fn put<T: PartialEq>(map: &mut BTreeMap<Key, Arc<T>>, key: Key, object: Arc<T>) -> bool {
    match map.get(&key) {
        Some(old) if Arc::ptr_eq(old, &object) || **old == *object => false,
        _ => {
            map.insert(key, object);
            true
        }
    }
}

/// The Service a slice belongs to.
fn slice_service(slice: &Slice) -> Option<Key> {
    Some((
        slice.metadata.namespace.clone()?,
        slice
            .metadata
            .labels
            .as_ref()?
            .get(SERVICE_NAME_LABEL)?
            .clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::{Cond, service, slice};

    #[test]
    fn slices_follow_their_service_label_through_updates_and_deletes() {
        let mut o = Objects::default();
        let s = slice(
            "ns",
            "web",
            "web-1",
            &[("", 80)],
            &[("10.0.0.1", Cond::Ready)],
        );
        let key = ("ns".to_owned(), s.metadata.name.clone().unwrap());
        let applied = o.apply(Change::Apply(s.clone().into()));
        assert_eq!(
            applied,
            Applied::Object(
                Kind::EndpointSlice,
                key.clone(),
                vec![("ns".into(), "web".into())]
            )
        );
        assert_eq!(o.slices_of("ns", "web").count(), 1);
        assert_eq!(
            o.apply(Change::Apply(s.clone().into())),
            Applied::Nothing,
            "an equal object changes nothing"
        );

        let mut moved = s;
        moved
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(SERVICE_NAME_LABEL.into(), "api".into());
        let Applied::Object(_, _, owners) = o.apply(Change::Apply(moved.into())) else {
            panic!("a relabelled slice is a change");
        };
        assert_eq!(
            owners,
            vec![("ns".into(), "web".into()), ("ns".into(), "api".into())]
        );
        assert_eq!(o.slices_of("ns", "web").count(), 0);
        assert_eq!(o.slices_of("ns", "api").count(), 1);

        o.apply(Change::Delete(Kind::EndpointSlice, key));
        assert_eq!(o.slices_of("ns", "api").count(), 0);
        assert!(o.slices_by_service.is_empty());
    }

    #[test]
    fn only_an_object_nobody_else_holds_is_copied() {
        let unique: Object = service("ns", "web", &[("", 80, "80")]).into();
        let Object::Service(before) = &unique else {
            unreachable!()
        };
        let before_ptr = Arc::as_ptr(before);
        let copied = unique.clone().reallocated();
        assert_eq!(copied, unique, "a copy is equal");
        let Object::Service(after) = &copied else {
            unreachable!()
        };
        assert_eq!(
            Arc::as_ptr(after),
            before_ptr,
            "held twice here: not copied"
        );
        drop(copied);

        let Object::Service(only) = unique else {
            unreachable!()
        };
        let value = (*only).clone();
        let moved = Object::Service(only).reallocated();
        let Object::Service(after) = &moved else {
            unreachable!()
        };
        assert_ne!(Arc::as_ptr(after), before_ptr, "the only holder: copied");
        assert_eq!(**after, value);
    }

    #[test]
    fn source_problems_are_replaced_per_origin() {
        let mut o = Objects::default();
        o.apply(Change::Apply(
            service("ns", "web", &[("", 80, "80")]).into(),
        ));
        let p = Problem {
            object: crate::config::ObjectRef {
                kind: "File".into(),
                namespace: None,
                name: "a.yaml".into(),
            },
            field: None,
            kind: "invalid_yaml",
            message: "bad".into(),
            severity: crate::config::problem::Severity::Error,
        };
        let set = |problems| Change::Problems {
            origin: "a.yaml".into(),
            problems,
        };
        assert_eq!(o.apply(set(vec![p.clone()])), Applied::Problems);
        assert_eq!(o.apply(set(vec![p])), Applied::Nothing);
        assert_eq!(o.apply(set(vec![])), Applied::Problems);
        assert!(o.problems.is_empty());
        assert_eq!(o.to_store().services.len(), 1);
    }
}
