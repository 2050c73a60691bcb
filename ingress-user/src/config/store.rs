//! The input of the translation: every object a source has seen, as plain values.

use k8s_openapi::api::{
    core::v1::{ConfigMap, Secret, Service},
    discovery::v1::EndpointSlice,
    networking::v1::{Ingress, IngressClass},
};

use super::Problem;

/// A complete, consistent set of objects from one source (a cluster or a manifest directory).
///
/// Sources replace the whole store on every change; `config::build` is cheap enough that
/// incremental translation is not worth its bugs.
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
    /// `kubernetes.io/tls` Secrets.
    pub secrets: Vec<Secret>,
    /// ConfigMaps (the tcp/udp services ones; others are ignored).
    pub config_maps: Vec<ConfigMap>,
    /// Problems the source itself found (a file that does not parse, an object of an
    /// unknown kind); they are carried into the Snapshot's problems.
    pub problems: Vec<Problem>,
}
