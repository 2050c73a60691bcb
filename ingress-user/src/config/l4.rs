//! tcp-services / udp-services ConfigMaps (ingress-nginx format) → [`L4Service`]s.
//!
//! Each `data` entry is `"<external port>": "<namespace>/<service>:<port>[:PROXY[:PROXY]]"`,
//! where `<port>` is a Service port number or name. The 3rd field `PROXY` means clients send
//! PROXY protocol, the 4th that backends get it; both are TCP only. The HTTP, HTTPS and health
//! ports are reserved. Every bad entry is skipped with a Problem naming its key; a Service
//! without endpoints is only a Warning, because its port must still exist (and reject).

use super::{
    L4Protocol, L4Service, NamespacedName, ObjectRef, Options, Problem,
    backend::{self, PortSpec, Resolver},
    gateway::l4routes::{self, L4Plan},
    problem::Severity,
    store::Objects,
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

/// The L4 table: the entries of the tcp and udp services ConfigMaps, sorted by (protocol,
/// port), appending Problems.
pub fn table(
    objects: &Objects,
    opts: &Options,
    resolver: Resolver<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<L4Service> {
    let mut l4 = Vec::new();
    for (cm, protocol) in [
        (&opts.tcp_services, L4Protocol::Tcp),
        (&opts.udp_services, L4Protocol::Udp),
    ] {
        if let Some(cm) = cm {
            l4.extend(services(cm, objects, protocol, opts, resolver, problems));
        }
    }
    l4.sort_by_key(|s| (s.protocol, s.port));
    l4
}

/// Adds the Gateway API TCP/UDP listeners to the ConfigMap table, keeping it sorted by
/// (protocol, port, addresses). Conflicts were settled by the Gateway translation.
pub fn add_gateway(l4: &mut Vec<L4Service>, plans: &[L4Plan], resolver: Resolver<'_>) {
    if plans.is_empty() {
        return;
    }
    l4.extend(l4routes::services(plans, resolver));
    l4.sort_by(|a, b| (a.protocol, a.port, &a.addrs).cmp(&(b.protocol, b.port, &b.addrs)));
}

/// Builds the L4 services of one ConfigMap, appending Problems.
pub fn services(
    cm_ref: &NamespacedName,
    objects: &Objects,
    protocol: L4Protocol,
    opts: &Options,
    resolver: Resolver<'_>,
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
    let Some(cm) = objects
        .config_maps
        .get(&(cm_ref.namespace.clone(), cm_ref.name.clone()))
    else {
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
        let endpoints = resolver.addrs(service, sp);
        let service = backend::service_ref(service, sp);
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
            endpoints,
            proxy_protocol_in: entry.proxy_in,
            proxy_protocol_out: entry.proxy_out,
            addrs: Vec::new(),
            split: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::config::{
        ServiceRef, Store, build,
        fixtures::{Cond, config_map, service, slice},
    };

    /// Services: `ns/redis` (6379 named `redis` → 6380, two ready endpoints), `ns/dns` (53
    /// named `dns` → 5353, UDP), `ns/idle` (9000, no endpoints).
    fn store(tcp: &[(&str, &str)], udp: &[(&str, &str)]) -> Store {
        let mut s = Store::default();
        s.services
            .push(service("ns", "redis", &[("redis", 6379, "6380")]));
        s.endpoint_slices.push(slice(
            "ns",
            "redis",
            "redis-1",
            &[("redis", 6380)],
            &[("10.0.0.2", Cond::Ready), ("10.0.0.1", Cond::Ready)],
        ));
        let mut dns = service("ns", "dns", &[("dns", 53, "5353")]);
        dns.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
        s.services.push(dns);
        s.endpoint_slices.push(slice(
            "ns",
            "dns",
            "dns-1",
            &[("dns", 5353)],
            &[("10.0.1.1", Cond::Ready)],
        ));
        s.services
            .push(service("ns", "idle", &[("", 9000, "9000")]));
        s.config_maps.push(config_map("ingress", "tcp", tcp));
        s.config_maps.push(config_map("ingress", "udp", udp));
        s
    }

    fn opts() -> Options {
        Options {
            tcp_services: Some("ingress/tcp".parse().unwrap()),
            udp_services: Some("ingress/udp".parse().unwrap()),
            ..Options::default()
        }
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn redis(port: u16, proxy_in: bool, proxy_out: bool) -> L4Service {
        L4Service {
            port,
            protocol: L4Protocol::Tcp,
            service: ServiceRef {
                namespace: "ns".into(),
                name: "redis".into(),
                port: 6379,
            },
            endpoints: addrs(&["10.0.0.1:6380", "10.0.0.2:6380"]),
            proxy_protocol_in: proxy_in,
            proxy_protocol_out: proxy_out,
            addrs: Vec::new(),
            split: Vec::new(),
        }
    }

    /// Every valid form of issue 3: a number, a named port, `::PROXY`, `:PROXY:PROXY`, UDP.
    #[test]
    fn configmap_valid_forms() {
        #[rustfmt::skip]
        let rows: &[(&str, &str, bool, L4Service)] = &[
            ("Service port number", "ns/redis:6379", false, redis(7000, false, false)),
            ("named Service port", "ns/redis:redis", false, redis(7000, false, false)),
            ("3rd field PROXY: accept PROXY from clients", "ns/redis:6379:PROXY", false, redis(7000, true, false)),
            ("4th field PROXY only (::PROXY): send PROXY to backends", "ns/redis:6379::PROXY", false, redis(7000, false, true)),
            ("both PROXY fields", "ns/redis:6379:PROXY:PROXY", false, redis(7000, true, true)),
            ("spaces around the value", " ns/redis:6379 ", false, redis(7000, false, false)),
            ("UDP entry", "ns/dns:53", true, L4Service {
                port: 7000,
                protocol: L4Protocol::Udp,
                service: ServiceRef { namespace: "ns".into(), name: "dns".into(), port: 53 },
                endpoints: addrs(&["10.0.1.1:5353"]),
                proxy_protocol_in: false,
                proxy_protocol_out: false,
                addrs: Vec::new(),
                split: Vec::new(),
            }),
        ];
        for (rule, value, udp, want) in rows {
            let entries = [("7000", *value)];
            let s = if *udp {
                store(&[], &entries)
            } else {
                store(&entries, &[])
            };
            let snap = build(&s, &opts());
            assert!(snap.problems.is_empty(), "{rule}: {:?}", snap.problems);
            assert_eq!(snap.l4, std::slice::from_ref(want), "{rule}");
        }
    }

    /// Every bad form: the exact Problem (kind, field, message) and no L4Service.
    #[test]
    fn configmap_bad_forms_give_the_exact_problem() {
        #[rustfmt::skip]
        let rows: &[(&str, &str, &str, bool, &str, &str)] = &[
            ("non-numeric key", "redis", "ns/redis:6379", false, "invalid_port_key",
             "key \"redis\" is not a port number (expected 1-65535)"),
            ("negative key", "-1", "ns/redis:6379", false, "invalid_port_key",
             "key \"-1\" is not a port number (expected 1-65535)"),
            ("key 0", "0", "ns/redis:6379", false, "port_out_of_range",
             "port 0 is out of range (expected 1-65535)"),
            ("key above 65535", "65536", "ns/redis:6379", false, "port_out_of_range",
             "port 65536 is out of range (expected 1-65535)"),
            ("reserved HTTP port", "80", "ns/redis:6379", false, "reserved_port",
             "port 80 is reserved for HTTP (--http-port)"),
            ("reserved HTTPS port", "443", "ns/redis:6379", false, "reserved_port",
             "port 443 is reserved for HTTPS (--https-port)"),
            ("reserved health port", "10254", "ns/redis:6379", true, "reserved_port",
             "port 10254 is reserved for health checks (--health-port)"),
            ("missing namespace", "7000", "redis:6379", false, "missing_namespace",
             "value \"redis:6379\" has no namespace: expected namespace/service:port[:PROXY[:PROXY]]"),
            ("missing port", "7000", "ns/redis", false, "invalid_value",
             "value \"ns/redis\" has no port: expected namespace/service:port[:PROXY[:PROXY]]"),
            ("empty Service name", "7000", "ns/:6379", false, "invalid_value",
             "value \"ns/:6379\" does not name a Service as namespace/service: expected namespace/service:port[:PROXY[:PROXY]]"),
            ("Service port 0", "7000", "ns/redis:0", false, "invalid_value",
             "Service port 0 is out of range (expected 1-65535 or a port name)"),
            ("too many fields", "7000", "ns/redis:6379:PROXY:PROXY:x", false, "invalid_value",
             "value \"ns/redis:6379:PROXY:PROXY:x\" has 5 fields: expected namespace/service:port[:PROXY[:PROXY]]"),
            ("garbage 3rd field", "7000", "ns/redis:6379:proxy", false, "invalid_proxy_field",
             "3rd field \"proxy\" must be PROXY or empty: expected namespace/service:port[:PROXY[:PROXY]]"),
            ("garbage 4th field", "7000", "ns/redis:6379:PROXY:yes", false, "invalid_proxy_field",
             "4th field \"yes\" must be PROXY or empty: expected namespace/service:port[:PROXY[:PROXY]]"),
            ("PROXY on UDP", "7000", "ns/dns:53:PROXY", true, "proxy_on_udp",
             "PROXY protocol is TCP only; remove the PROXY fields from this udp-services entry"),
            ("4th-field PROXY on UDP", "7000", "ns/dns:53::PROXY", true, "proxy_on_udp",
             "PROXY protocol is TCP only; remove the PROXY fields from this udp-services entry"),
            ("unknown Service", "7000", "ns/nope:6379", false, "unknown_service",
             "Service ns/nope not found"),
            ("unknown Service in another namespace", "7000", "other/redis:6379", false, "unknown_service",
             "Service other/redis not found"),
            ("unknown port number", "7000", "ns/redis:6378", false, "unknown_service_port",
             "Service ns/redis has no port 6378 (ports: 6379/redis)"),
            ("unknown port name", "7000", "ns/redis:http", false, "unknown_service_port",
             "Service ns/redis has no port \"http\" (ports: 6379/redis)"),
        ];
        for (rule, key, value, udp, kind, message) in rows {
            let entries = [(*key, *value)];
            let s = if *udp {
                store(&[], &entries)
            } else {
                store(&entries, &[])
            };
            let snap = build(&s, &opts());
            assert!(snap.l4.is_empty(), "{rule}: {:?}", snap.l4);
            let cm = if *udp { "udp" } else { "tcp" };
            let want = Problem {
                object: ObjectRef {
                    kind: "ConfigMap".into(),
                    namespace: Some("ingress".into()),
                    name: cm.into(),
                },
                field: Some(format!("data[{key:?}]")),
                kind,
                message: (*message).to_owned(),
                severity: Severity::Error,
            };
            assert_eq!(snap.problems, [want], "{rule}");
        }
    }

    #[test]
    fn service_without_endpoints_is_a_warning_and_still_an_entry() {
        let snap = build(&store(&[("9000", "ns/idle:9000")], &[]), &opts());
        assert_eq!(snap.l4.len(), 1);
        assert!(snap.l4[0].endpoints.is_empty());
        let p = &snap.problems[..];
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            (p[0].kind, p[0].severity, p[0].field.as_deref()),
            ("no_endpoints", Severity::Warning, Some("data[\"9000\"]"))
        );
        assert_eq!(
            p[0].message,
            "Service ns/idle port 9000 has no ready endpoints; TCP port 9000 rejects connections until it has"
        );
    }

    #[test]
    fn reserved_ports_follow_the_flags() {
        let s = store(&[("80", "ns/redis:6379"), ("8080", "ns/redis:6379")], &[]);
        let snap = build(
            &s,
            &Options {
                http_port: 8080,
                ..opts()
            },
        );
        assert_eq!(snap.l4.iter().map(|l| l.port).collect::<Vec<_>>(), [80]);
        assert_eq!(
            snap.problems[0].message,
            "port 8080 is reserved for HTTP (--http-port)"
        );
    }

    #[test]
    fn a_bad_entry_does_not_affect_the_others_and_output_is_sorted() {
        let s = store(
            &[
                ("9100", "ns/redis:6379"),
                ("bad", "x"),
                ("7000", "ns/redis:redis:PROXY"),
                ("8000", "nope"),
            ],
            &[("53", "ns/dns:dns")],
        );
        let snap = build(&s, &opts());
        let got: Vec<_> = snap.l4.iter().map(|l| (l.protocol, l.port)).collect();
        assert_eq!(
            got,
            [
                (L4Protocol::Tcp, 7000),
                (L4Protocol::Tcp, 9100),
                (L4Protocol::Udp, 53)
            ]
        );
        assert_eq!(snap.problems.len(), 2);
    }

    #[test]
    fn udp_entry_prefers_the_udp_port_of_a_dual_protocol_service() {
        let mut s = store(&[("5300", "ns/dual:53")], &[("5300", "ns/dual:53")]);
        let mut dual = service(
            "ns",
            "dual",
            &[("dns-tcp", 53, "5353"), ("dns-udp", 53, "5354")],
        );
        dual.spec.as_mut().unwrap().ports.as_mut().unwrap()[1].protocol = Some("UDP".into());
        s.services.push(dual);
        s.endpoint_slices.push(slice(
            "ns",
            "dual",
            "dual-1",
            &[("dns-tcp", 5353), ("dns-udp", 5354)],
            &[("10.0.2.1", Cond::Ready)],
        ));
        let snap = build(&s, &opts());
        let eps: Vec<_> = snap
            .l4
            .iter()
            .map(|l| (l.protocol, l.endpoints.clone()))
            .collect();
        assert_eq!(
            eps,
            [
                (L4Protocol::Tcp, addrs(&["10.0.2.1:5353"])),
                (L4Protocol::Udp, addrs(&["10.0.2.1:5354"]))
            ]
        );
    }

    #[test]
    fn missing_configmap_is_a_warning() {
        let snap = build(
            &Store::default(),
            &Options {
                udp_services: None,
                ..opts()
            },
        );
        assert!(snap.l4.is_empty());
        assert_eq!(snap.problems.len(), 1);
        assert_eq!(snap.problems[0].severity, Severity::Warning);
        assert_eq!(
            snap.problems[0].message,
            "--tcp-services-configmap ingress/tcp: ConfigMap not found; no TCP services until it exists"
        );
    }
}
