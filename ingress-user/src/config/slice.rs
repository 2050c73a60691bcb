//! An EndpointSlice as translation reads it.
//!
//! k8s-openapi's `Endpoint` is about 330 bytes even when its optional parts are empty (an
//! inline `targetRef`, hints, topology, node name, zone). At 50,000 endpoints that was the
//! largest part of the controller's memory, for fields nothing reads. A [`Slice`] keeps the
//! metadata, the address type, the ports and, per endpoint, only its addresses and
//! conditions.

use k8s_openapi::{
    api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

/// The parts of an EndpointSlice the translation reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slice {
    /// Name, namespace, labels (`kubernetes.io/service-name`), resourceVersion.
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    /// The slice's ports (names map Service ports to target ports).
    pub ports: Option<Vec<EndpointPort>>,
    /// The endpoints.
    pub endpoints: Vec<SliceEndpoint>,
}

/// One endpoint: its addresses (fungible; the first is used) and conditions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SliceEndpoint {
    /// Addresses.
    pub addresses: Vec<String>,
    /// Ready, serving, terminating.
    pub conditions: Option<EndpointConditions>,
}

impl From<EndpointSlice> for Slice {
    fn from(s: EndpointSlice) -> Self {
        Self {
            metadata: s.metadata,
            address_type: s.address_type,
            ports: s.ports,
            endpoints: s
                .endpoints
                .into_iter()
                .map(|e| SliceEndpoint {
                    addresses: e.addresses,
                    conditions: e.conditions,
                })
                .collect(),
        }
    }
}

impl From<&Slice> for EndpointSlice {
    fn from(s: &Slice) -> Self {
        Self {
            metadata: s.metadata.clone(),
            address_type: s.address_type.clone(),
            ports: s.ports.clone(),
            endpoints: s
                .endpoints
                .iter()
                .map(|e| Endpoint {
                    addresses: e.addresses.clone(),
                    conditions: e.conditions.clone(),
                    ..Endpoint::default()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_keeps_what_translation_reads_and_is_much_smaller() {
        let full: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "ns", "resourceVersion": "7",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                "nodeName": "n1", "zone": "z1",
                "targetRef": {"kind": "Pod", "name": "web-abc", "namespace": "ns"}}],
            "ports": [{"name": "http", "port": 8080}]
        }))
        .unwrap();
        let slice = Slice::from(full.clone());
        let back = EndpointSlice::from(&slice);
        assert_eq!(back.metadata, full.metadata);
        assert_eq!(back.ports, full.ports);
        assert_eq!(back.endpoints[0].addresses, ["10.0.0.1"]);
        assert_eq!(back.endpoints[0].conditions, full.endpoints[0].conditions);
        assert_eq!(back.endpoints[0].target_ref, None);
        assert!(
            std::mem::size_of::<SliceEndpoint>() * 4 < std::mem::size_of::<Endpoint>(),
            "{} vs {} bytes per endpoint",
            std::mem::size_of::<SliceEndpoint>(),
            std::mem::size_of::<Endpoint>()
        );
    }
}
