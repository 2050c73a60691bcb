//! tcp-services / udp-services ConfigMaps (ingress-nginx format) → [`L4Service`]s.
//!
//! Each `data` entry is `"<external port>": "<namespace>/<service>:<port>[:PROXY[:PROXY]]"`,
//! where `<port>` is a Service port number or name. The 3rd field `PROXY` means clients send
//! PROXY protocol, the 4th that backends get it; both are TCP only. The HTTP, HTTPS and health
//! ports are reserved. Every bad entry is skipped with a Problem naming its key; a Service
//! without endpoints is only a Warning, because its port must still exist (and reject).

use k8s_openapi::api::core::v1::ConfigMap;

use super::{
    L4Protocol, L4Service, NamespacedName, ObjectRef, Options, Problem,
    backend::{PortSpec, Resolver},
    problem::Severity,
};

/// The value format, quoted in messages.
const FORMAT: &str = "namespace/service:port[:PROXY[:PROXY]]";

/// A parsed (not yet resolved) entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// External port.
    pub port: u16,
    /// Service namespace.
    pub namespace: &'a str,
    /// Service name.
    pub service: &'a str,
    /// Service port number or name.
    pub service_port: PortSpec<'a>,
    /// 3rd field.
    pub proxy_in: bool,
    /// 4th field.
    pub proxy_out: bool,
}

/// Why an entry was refused: (kind, message).
pub type EntryError = (&'static str, String);

/// Parses one `data` entry (no Service lookup).
pub fn parse_entry<'a>(
    key: &str,
    value: &'a str,
    protocol: L4Protocol,
    opts: &Options,
) -> Result<Entry<'a>, EntryError> {
    let port = match key.trim().parse::<u64>() {
        Err(_) => {
            return Err((
                "invalid_port_key",
                format!("key {key:?} is not a port number (expected 1-65535)"),
            ));
        }
        Ok(p) => match u16::try_from(p) {
            Ok(p) if p != 0 => p,
            _ => {
                return Err((
                    "port_out_of_range",
                    format!("port {p} is out of range (expected 1-65535)"),
                ));
            }
        },
    };
    for (reserved, what, flag) in [
        (opts.http_port, "HTTP", "--http-port"),
        (opts.https_port, "HTTPS", "--https-port"),
        (opts.health_port, "health checks", "--health-port"),
    ] {
        if port == reserved {
            return Err((
                "reserved_port",
                format!("port {port} is reserved for {what} ({flag})"),
            ));
        }
    }
    let value = value.trim();
    let fields: Vec<&str> = value.split(':').collect();
    if fields.len() > 4 {
        return Err((
            "invalid_value",
            format!(
                "value {value:?} has {} fields: expected {FORMAT}",
                fields.len()
            ),
        ));
    }
    let Some((namespace, service)) = fields[0].split_once('/') else {
        return Err((
            "missing_namespace",
            format!("value {value:?} has no namespace: expected {FORMAT}"),
        ));
    };
    if namespace.is_empty() || service.is_empty() || service.contains('/') {
        return Err((
            "invalid_value",
            format!(
                "value {value:?} does not name a Service as namespace/service: expected {FORMAT}"
            ),
        ));
    }
    let service_port = match fields.get(1).copied() {
        None | Some("") => {
            return Err((
                "invalid_value",
                format!("value {value:?} has no port: expected {FORMAT}"),
            ));
        }
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u16>() {
            Ok(n) if n != 0 => PortSpec::Number(i32::from(n)),
            _ => {
                return Err((
                    "invalid_value",
                    format!("Service port {p} is out of range (expected 1-65535 or a port name)"),
                ));
            }
        },
        Some(p) => PortSpec::Name(p),
    };
    let proxy = |i: usize, ordinal: &str| match fields.get(i).copied() {
        None | Some("") => Ok(false),
        Some("PROXY") => Ok(true),
        Some(other) => Err((
            "invalid_proxy_field",
            format!("{ordinal} field {other:?} must be PROXY or empty: expected {FORMAT}"),
        )),
    };
    let proxy_in = proxy(2, "3rd")?;
    let proxy_out = proxy(3, "4th")?;
    if protocol == L4Protocol::Udp && (proxy_in || proxy_out) {
        return Err((
            "proxy_on_udp",
            "PROXY protocol is TCP only; remove the PROXY fields from this udp-services entry"
                .to_owned(),
        ));
    }
    Ok(Entry {
        port,
        namespace,
        service,
        service_port,
        proxy_in,
        proxy_out,
    })
}

/// Builds the L4 services of one ConfigMap, appending Problems.
pub fn services(
    cm_ref: &NamespacedName,
    config_maps: &[ConfigMap],
    protocol: L4Protocol,
    opts: &Options,
    resolver: &mut Resolver<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<L4Service> {
    let object = ObjectRef {
        kind: "ConfigMap".to_owned(),
        namespace: Some(cm_ref.namespace.clone()),
        name: cm_ref.name.clone(),
    };
    let flag = match protocol {
        L4Protocol::Tcp => "--tcp-services-configmap",
        L4Protocol::Udp => "--udp-services-configmap",
    };
    let Some(cm) = config_maps.iter().find(|c| {
        c.metadata.namespace.as_deref() == Some(&cm_ref.namespace)
            && c.metadata.name.as_deref() == Some(&cm_ref.name)
    }) else {
        problems.push(Problem {
            object,
            field: None,
            kind: "configmap_not_found",
            message: format!(
                "{flag} {cm_ref}: ConfigMap not found; no {protocol} services until it exists"
            ),
            severity: Severity::Warning,
        });
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in cm.data.iter().flatten() {
        let field = Some(format!("data[{key:?}]"));
        let mut report = |kind: &'static str, message: String, severity: Severity| {
            problems.push(Problem {
                object: object.clone(),
                field: field.clone(),
                kind,
                message,
                severity,
            });
        };
        let entry = match parse_entry(key, value, protocol, opts) {
            Ok(e) => e,
            Err((kind, message)) => {
                report(kind, message, Severity::Error);
                continue;
            }
        };
        let (service, sp) = match resolver.port(
            entry.namespace,
            entry.service,
            &entry.service_port,
            protocol == L4Protocol::Udp,
        ) {
            Ok(found) => found,
            Err(e) => {
                report(e.kind(), e.to_string(), Severity::Error);
                continue;
            }
        };
        let (service, endpoints) = resolver.endpoints(service, sp);
        if endpoints.is_empty() {
            report(
                "no_endpoints",
                format!(
                    "Service {} port {} has no ready endpoints; {protocol} port {} rejects connections until it has",
                    format_args!("{}/{}", service.namespace, service.name),
                    service.port,
                    entry.port
                ),
                Severity::Warning,
            );
        }
        out.push(L4Service {
            port: entry.port,
            protocol,
            service,
            endpoints: endpoints.to_vec(),
            proxy_protocol_in: entry.proxy_in,
            proxy_protocol_out: entry.proxy_out,
        });
    }
    out
}
