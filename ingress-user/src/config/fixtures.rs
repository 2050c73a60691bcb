//! Test fixtures: small builders for the objects `config::build` reads.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{ConfigMap, Secret, Service, ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
        networking::v1::{
            HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass,
            IngressClassSpec, IngressRule, IngressServiceBackend, IngressSpec, IngressTLS,
            ServiceBackendPort,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{ObjectMeta, Time},
        util::intstr::IntOrString,
    },
    jiff::Timestamp,
};

/// A self-signed P-256 certificate for `example.com`.
pub const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBgzCCASmgAwIBAgIUTn9l1FQx8OrL6bPpZvOOGO289Q8wCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLZXhhbXBsZS5jb20wIBcNMjYxMTI3MTMyMDA0WhgPMjEyNjEx
MDMxMzIwMDRaMBYxFDASBgNVBAMMC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAELzAma4J8VsX06NLaqu8u3dRFlzaVL6Y/ukJpC+C0hclc89dF
2xHSGjSX5lTZyHJuEKAHWj0Hr2M/Nn7Cw5K7LqNTMFEwHQYDVR0OBBYEFJ6C7Pa5
gwiNQa3bNECr3kaijeRFMB8GA1UdIwQYMBaAFJ6C7Pa5gwiNQa3bNECr3kaijeRF
MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhANDNK4rJmDEEOqW2
+Rpc59iMOCoPPYAiFaZxTxspsUHgAiATreg+GiCqK7wgCdm1sryIIi8YNllbG0oq
l1ecdxA2xg==
-----END CERTIFICATE-----
";

/// The key of [`CERT_PEM`] (PKCS#8).
pub const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8cp4kHe5XU+JF5B1
Zuhq+Z0ngSK5/XIy47vTDnTXWR2hRANCAAQvMCZrgnxWxfTo0tqq7y7d1EWXNpUv
pj+6QmkL4LSFyVzz10XbEdIaNJfmVNnIcm4QoAdaPQevYz82fsLDkrsu
-----END PRIVATE KEY-----
";

pub fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

/// Builds an Ingress rule by rule: `.host(h)` starts a rule, `.path(..)` adds to the last
/// rule (or to a host-less rule if none was started).
pub struct IngressBuilder(Ingress);

impl IngressBuilder {
    pub fn new(ns: &str, name: &str) -> Self {
        Self(Ingress {
            metadata: meta(ns, name),
            spec: Some(IngressSpec {
                ingress_class_name: Some("xdp".to_owned()),
                ..IngressSpec::default()
            }),
            status: None,
        })
    }

    fn spec(&mut self) -> &mut IngressSpec {
        self.0.spec.get_or_insert_default()
    }

    /// `spec.ingressClassName` (`None` removes it).
    pub fn class(mut self, class: Option<&str>) -> Self {
        self.spec().ingress_class_name = class.map(str::to_owned);
        self
    }

    /// An annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value.to_owned());
        self
    }

    /// The legacy class annotation.
    pub fn class_annotation(mut self, class: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("kubernetes.io/ingress.class".to_owned(), class.to_owned());
        self
    }

    /// creationTimestamp, in seconds since the epoch.
    pub fn created(mut self, secs: i64) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(Timestamp::from_second(secs).unwrap()));
        self
    }

    pub fn host(mut self, host: &str) -> Self {
        self.spec().rules.get_or_insert_default().push(IngressRule {
            host: Some(host.to_owned()),
            http: None,
        });
        self
    }

    /// A path to `svc:port` (a number, or a port name if not numeric).
    pub fn path(mut self, path: &str, path_type: &str, svc: &str, port: &str) -> Self {
        let rules = self.spec().rules.get_or_insert_default();
        if rules.is_empty() {
            rules.push(IngressRule::default());
        }
        let rule = rules.last_mut().unwrap();
        rule.http
            .get_or_insert_with(HTTPIngressRuleValue::default)
            .paths
            .push(HTTPIngressPath {
                path: Some(path.to_owned()),
                path_type: path_type.to_owned(),
                backend: backend(svc, port),
            });
        self
    }

    pub fn default_backend(mut self, svc: &str, port: &str) -> Self {
        self.spec().default_backend = Some(backend(svc, port));
        self
    }

    pub fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
        self.spec().tls.get_or_insert_default().push(IngressTLS {
            hosts: Some(hosts.iter().map(|h| (*h).to_owned()).collect()),
            secret_name: Some(secret.to_owned()),
        });
        self
    }

    pub fn build(self) -> Ingress {
        self.0
    }
}

pub fn backend(svc: &str, port: &str) -> IngressBackend {
    let port = match port.parse::<i32>() {
        Ok(n) => ServiceBackendPort {
            number: Some(n),
            name: None,
        },
        Err(_) => ServiceBackendPort {
            number: None,
            name: Some(port.to_owned()),
        },
    };
    IngressBackend {
        resource: None,
        service: Some(IngressServiceBackend {
            name: svc.to_owned(),
            port: Some(port),
        }),
    }
}

/// A Service with ports `(name, port, targetPort)`; a numeric-looking targetPort is an Int.
pub fn service(ns: &str, name: &str, ports: &[(&str, i32, &str)]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            ports: Some(
                ports
                    .iter()
                    .map(|(pname, port, target)| ServicePort {
                        name: (!pname.is_empty()).then(|| (*pname).to_owned()),
                        port: *port,
                        protocol: Some("TCP".to_owned()),
                        target_port: Some(match target.parse::<i32>() {
                            Ok(n) => IntOrString::Int(n),
                            Err(_) => IntOrString::String((*target).to_owned()),
                        }),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Endpoint conditions for [`slice`].
#[derive(Clone, Copy)]
pub enum Cond {
    Ready,
    NotReady,
    /// serving + terminating (not ready).
    Terminating,
}

/// An EndpointSlice of `svc` with ports `(name, port)` and endpoints `(ip, condition)`.
pub fn slice(
    ns: &str,
    svc: &str,
    name: &str,
    ports: &[(&str, i32)],
    eps: &[(&str, Cond)],
) -> EndpointSlice {
    let mut metadata = meta(ns, name);
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_owned(),
        svc.to_owned(),
    )]));
    EndpointSlice {
        metadata,
        address_type: "IPv4".to_owned(),
        ports: Some(
            ports
                .iter()
                .map(|(n, p)| EndpointPort {
                    name: Some((*n).to_owned()),
                    port: Some(*p),
                    ..EndpointPort::default()
                })
                .collect(),
        ),
        endpoints: eps
            .iter()
            .map(|(ip, c)| Endpoint {
                addresses: vec![(*ip).to_owned()],
                conditions: Some(match c {
                    Cond::Ready => EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    },
                    Cond::NotReady => EndpointConditions {
                        ready: Some(false),
                        serving: Some(false),
                        terminating: Some(false),
                    },
                    Cond::Terminating => EndpointConditions {
                        ready: Some(false),
                        serving: Some(true),
                        terminating: Some(true),
                    },
                }),
                ..Endpoint::default()
            })
            .collect(),
    }
}

pub fn config_map(ns: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: meta(ns, name),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

/// A Secret of type `ty` with `data`.
pub fn secret(ns: &str, name: &str, ty: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(ns, name),
        type_: Some(ty.to_owned()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// A valid `kubernetes.io/tls` Secret.
pub fn tls_secret(ns: &str, name: &str) -> Secret {
    secret(
        ns,
        name,
        "kubernetes.io/tls",
        &[("tls.crt", CERT_PEM), ("tls.key", KEY_PEM)],
    )
}

pub fn ingress_class(name: &str, controller: &str, is_default: bool) -> IngressClass {
    let mut metadata = ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    };
    if is_default {
        metadata.annotations = Some(BTreeMap::from([(
            "ingressclass.kubernetes.io/is-default-class".to_owned(),
            "true".to_owned(),
        )]));
    }
    IngressClass {
        metadata,
        spec: Some(IngressClassSpec {
            controller: Some(controller.to_owned()),
            parameters: None,
        }),
    }
}
