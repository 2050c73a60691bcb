//! The engine against the reference build: random change sequences, compared after every
//! step on everything a Snapshot holds.

use std::fmt::Write as _;

use super::*;
use crate::{
    config::{
        NamespacedName, build_objects,
        fixtures::{
            CERT_PEM, Cond, IngressBuilder, KEY_PEM, config_map, ingress_class, secret, service,
            slice, tls_secret,
        },
        gateway::{Gateway, GatewayClass, TLSRoute},
        store::Object,
    },
    snapshot::routes::TlsHosts,
};

/// Everything observable in a Snapshot, as comparable values.
#[derive(Debug, PartialEq)]
struct Canonical {
    routes: Vec<String>,
    default_backend: Option<String>,
    aliases: Vec<(String, crate::snapshot::routes::HostMatch)>,
    tls_hosts: TlsHosts,
    certs: Vec<(String, String)>,
    default_cert: Option<String>,
    l4: Vec<L4Service>,
    /// `ssl-passthrough` hosts and Gateway Passthrough listeners with their routes.
    passthrough: Vec<String>,
    problems: Vec<Problem>,
}

fn canonical(s: &Snapshot) -> Canonical {
    let plain = |b: &crate::snapshot::routes::Backend| {
        format!(
            "{} {:?} {:?} {:?} {:?}",
            b.service,
            b.endpoints.to_vec(),
            b.protocol,
            b.ingress,
            b.policy
        )
    };
    let backend = |b: &crate::snapshot::routes::Backend| {
        let mut line = plain(b);
        if let Some(c) = &b.canary {
            let _ = write!(line, " canary {:?} {}", c.rules, plain(&c.backend));
        }
        line
    };
    Canonical {
        routes: s
            .http
            .rules()
            .iter()
            .map(|r| {
                let mut line = format!("{} {} {} {} -> ", r.host, r.path, r.path_type, r.regex);
                let _ = write!(line, "{}", backend(&r.backend));
                line
            })
            .collect(),
        default_backend: s.http.default_backend().map(|b| backend(b)),
        aliases: s.http.aliases(),
        tls_hosts: s.http.tls_hosts().clone(),
        certs: s
            .tls
            .entries()
            .into_iter()
            .map(|(h, c)| (h, c.secret.to_string()))
            .collect(),
        default_cert: s.tls.default_cert().map(|c| c.secret.to_string()),
        l4: s.l4.clone(),
        passthrough: passthrough(s),
        problems: s.problems.clone(),
    }
}

/// Where each passed-through name goes, in order.
fn passthrough(s: &Snapshot) -> Vec<String> {
    let route = |r: &crate::snapshot::passthrough::PassthroughRoute| {
        let backends: Vec<String> = r
            .backends
            .iter()
            .map(|b| match &b.target {
                Ok(t) => format!("{}*{} {:?}", t.service, b.weight, t.endpoints.to_vec()),
                Err(e) => format!("{e:?}*{}", b.weight),
            })
            .collect();
        format!("{} -> {}", r.route, backends.join(", "))
    };
    let mut out = Vec::new();
    for (host, _) in s.http.hosts() {
        if let crate::snapshot::routes::HostMatch::Exact(h) = &host
            && let Some(r) = s.http.passthrough(h)
        {
            out.push(format!("ingress {h}: {}", route(r)));
        }
    }
    out.sort();
    for (at, port) in &s.gateway.ports {
        out.push(format!(
            "{at} tls={} https={:?}",
            port.tls, port.listener_hosts
        ));
        for l in &port.passthrough {
            let hosts = &l.routes;
            let entries = hosts
                .exact
                .iter()
                .chain(&hosts.wildcard)
                .map(|(h, r)| (h.as_str(), r))
                .chain(hosts.any.iter().map(|r| ("*", r)));
            for (h, r) in entries {
                out.push(format!("  listener {:?} {h}: {}", l.hostname, route(r)));
            }
        }
    }
    out
}

/// SplitMix64: a tiny deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const NAMESPACES: [&str; 2] = ["a", "b"];
const SERVICES: [&str; 4] = ["web", "api", "db", "gone"];
const HOSTS: [&str; 6] = ["x.com", "*.x.com", "", "y.com", "a.x.com", "*bad.com"];
const PATHS: [&str; 6] = ["/", "/a", "/a/b", "/a/", "rel", "/(a"];
const TYPES: [&str; 4] = ["Prefix", "Exact", "ImplementationSpecific", "Bogus"];
const PORTS: [&str; 5] = ["80", "http", "81", "9999", "grpc"];
const SECRETS: [&str; 3] = ["c0", "c1", "missing"];
/// ingress-nginx annotations: applied, invalid, ignored and refused ones. Canary ones are
/// frequent so that canaries often meet a main Ingress on the same host and path (and
/// lose it, and meet a second canary).
const ANNOTATIONS: &[(&str, &str)] = &[
    ("nginx.ingress.kubernetes.io/auth-tls-secret", "a/c1"),
    ("nginx.ingress.kubernetes.io/auth-tls-secret", "b/missing"),
    (
        "nginx.ingress.kubernetes.io/auth-tls-verify-client",
        "optional",
    ),
    ("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS"),
    ("nginx.ingress.kubernetes.io/backend-protocol", "GRPCS"),
    ("nginx.ingress.kubernetes.io/proxy-ssl-secret", "a/c0"),
    ("nginx.ingress.kubernetes.io/proxy-ssl-secret", "b/c1"),
    ("nginx.ingress.kubernetes.io/proxy-ssl-secret", "a/missing"),
    ("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on"),
    (
        "nginx.ingress.kubernetes.io/mirror-target",
        "http://api.a/m$request_uri",
    ),
    (
        "nginx.ingress.kubernetes.io/mirror-target",
        "http://10.0.0.9:81",
    ),
    ("nginx.ingress.kubernetes.io/service-upstream", "true"),
    ("nginx.ingress.kubernetes.io/default-backend", "api"),
    ("nginx.ingress.kubernetes.io/default-backend", "gone"),
    ("nginx.ingress.kubernetes.io/custom-http-errors", "404,503"),
    ("nginx.ingress.kubernetes.io/server-alias", "y.com, z.com"),
    ("nginx.ingress.kubernetes.io/server-alias", "b.x.com"),
    ("nginx.ingress.kubernetes.io/enable-cors", "true"),
    ("nginx.ingress.kubernetes.io/custom-headers", "hdr"),
    ("nginx.ingress.kubernetes.io/custom-headers", "a/hdr"),
    ("nginx.ingress.kubernetes.io/ssl-passthrough", "true"),
    ("nginx.ingress.kubernetes.io/proxy-read-timeout", "5"),
    ("nginx.ingress.kubernetes.io/proxy-body-size", "1k"),
    ("nginx.ingress.kubernetes.io/use-regex", "true"),
    ("nginx.ingress.kubernetes.io/rewrite-target", "/$1"),
    ("nginx.ingress.kubernetes.io/rewrite-target", "/a"),
    ("nginx.ingress.kubernetes.io/app-root", "/app"),
    ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
    ("nginx.ingress.kubernetes.io/ssl-redirect", "maybe"),
    ("nginx.ingress.kubernetes.io/force-ssl-redirect", "true"),
    (
        "nginx.ingress.kubernetes.io/whitelist-source-range",
        "10.0.0.0/8, ::1",
    ),
    ("nginx.ingress.kubernetes.io/allowlist-source-range", "bad"),
    (
        "nginx.ingress.kubernetes.io/denylist-source-range",
        "10.0.0.1, x",
    ),
    (
        "nginx.ingress.kubernetes.io/configuration-snippet",
        "return 200;",
    ),
    ("nginx.ingress.kubernetes.io/affinity", "cookie"),
    ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
    ("nginx.ingress.kubernetes.io/session-cookie-name", "S"),
    (
        "nginx.ingress.kubernetes.io/affinity-canary-behavior",
        "legacy",
    ),
    ("nginx.ingress.kubernetes.io/canary", "true"),
    ("nginx.ingress.kubernetes.io/canary", "true"),
    ("nginx.ingress.kubernetes.io/canary", "true"),
    ("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary"),
    ("nginx.ingress.kubernetes.io/canary-weight", "30"),
    (
        "nginx.ingress.kubernetes.io/canary-by-header-pattern",
        "(bad",
    ),
    ("other.prefix/ssl-redirect", "false"),
    ("nginx.ingress.kubernetes.io/auth-type", "digest"),
    ("nginx.ingress.kubernetes.io/auth-secret", "b/users"),
    ("nginx.ingress.kubernetes.io/auth-secret-type", "auth-map"),
    ("nginx.ingress.kubernetes.io/limit-rps", "5"),
    ("nginx.ingress.kubernetes.io/limit-connections", "x"),
    (
        "nginx.ingress.kubernetes.io/limit-whitelist",
        "10.0.0.0/8, x",
    ),
];
/// Secrets that `auth-secret` names.
const AUTH_SECRETS: [&str; 2] = ["users", "gone-users"];

fn random_ingress(rng: &mut Rng, ns: &str, name: &str) -> Object {
    let mut b = IngressBuilder::new(ns, name);
    if rng.chance(70) {
        b = b.created(i64::try_from(rng.below(5)).unwrap_or(0) * 100);
    }
    match rng.below(4) {
        0 => b = b.class(Some("other")),
        1 => b = b.class(None),
        _ => {}
    }
    for _ in 0..=rng.below(3) {
        let host = rng.pick(&HOSTS);
        if !host.is_empty() {
            b = b.host(host);
        }
        for _ in 0..=rng.below(3) {
            b = b.path(
                rng.pick(&PATHS),
                rng.pick(&TYPES),
                rng.pick(&SERVICES),
                rng.pick(&PORTS),
            );
        }
    }
    for _ in 0..rng.below(3) {
        let (key, value) = rng.pick(ANNOTATIONS);
        b = b.annotation(key, value);
    }
    if rng.chance(30) {
        b = b
            .annotation("nginx.ingress.kubernetes.io/auth-type", "basic")
            .annotation(
                "nginx.ingress.kubernetes.io/auth-secret",
                rng.pick(&AUTH_SECRETS),
            );
    }
    if rng.chance(25) {
        b = b.default_backend(rng.pick(&SERVICES), rng.pick(&PORTS));
    }
    if rng.chance(40) {
        let hosts: &[&str] = match rng.below(3) {
            0 => &[],
            1 => &["x.com"],
            _ => &["*.x.com", "y.com"],
        };
        b = b.tls(hosts, rng.pick(&SECRETS));
    }
    b.build().into()
}

fn random_service(rng: &mut Rng, ns: &str, name: &str) -> Object {
    let mut ports = vec![("http", 80, "8080")];
    if rng.chance(50) {
        ports.push(("", 81, "81"));
    }
    if rng.chance(30) {
        ports.push(("grpc", 90, "grpc"));
    }
    let mut s = service(ns, name, &ports);
    if rng.chance(50)
        && let Some(spec) = s.spec.as_mut()
    {
        spec.cluster_ip = Some("10.96.0.1".into());
    }
    if rng.chance(30)
        && let Some(p) = s
            .spec
            .as_mut()
            .and_then(|s| s.ports.as_mut())
            .and_then(|p| p.last_mut())
    {
        p.app_protocol = Some("kubernetes.io/h2c".into());
    }
    s.into()
}

fn random_slice(rng: &mut Rng, ns: &str, name: &str) -> Object {
    let owner = rng.pick(&SERVICES);
    let ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
    let conds = [Cond::Ready, Cond::NotReady, Cond::Terminating];
    let eps: Vec<(&str, Cond)> = (0..rng.below(3))
        .map(|_| (rng.pick(&ips), rng.pick(&conds)))
        .collect();
    let ports: &[(&str, i32)] = match rng.below(3) {
        0 => &[("http", 8080), ("", 81)],
        1 => &[("http", 8081), ("grpc", 9090)],
        _ => &[],
    };
    slice(ns, owner, name, ports, &eps).into()
}

/// A Gateway API object from JSON (the typed structs are deserialize-only).
fn gateway_api<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("fixture deserializes")
}

/// Our GatewayClass, or one of another controller.
fn random_gateway_class(rng: &mut Rng, _: &str, name: &str) -> Object {
    let controller = if rng.chance(80) {
        "xdp-ingress.dev/controller"
    } else {
        "someone.else/controller"
    };
    Object::GatewayClass(std::sync::Arc::new(gateway_api(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"controllerName": controller},
    }))))
}

/// A Gateway with TCP and UDP listeners on ports the ConfigMap may also hold.
fn random_gateway(rng: &mut Rng, ns: &str, name: &str) -> Object {
    let mut listeners = vec![
        serde_json::json!({"name": "t0", "port": 9000, "protocol": "TCP",
        "allowedRoutes": {"namespaces": {"from": "All"}}}),
    ];
    if rng.chance(60) {
        listeners.push(serde_json::json!({"name": "t1", "port": rng.pick(&[9001, 9002, 80]), "protocol": "TCP"}));
    }
    if rng.chance(40) {
        listeners.push(serde_json::json!({"name": "u0", "port": 9000, "protocol": "UDP"}));
    }
    let addresses = if rng.chance(30) {
        serde_json::json!([{"value": "10.9.0.1"}])
    } else {
        serde_json::json!([])
    };
    Object::Gateway(std::sync::Arc::new(gateway_api(serde_json::json!({
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": format!("2024-01-0{}T00:00:00Z", rng.below(5) + 1)},
        "spec": {"gatewayClassName": "gx", "addresses": addresses, "listeners": listeners},
    }))))
}

/// A TCPRoute or UDPRoute to the Gateways, with weighted (sometimes invalid) backendRefs.
fn random_l4_route(rng: &mut Rng, ns: &str, name: &str) -> Object {
    let parents = vec![
        serde_json::json!({"name": "g0", "namespace": rng.pick(&NAMESPACES),
        "sectionName": rng.pick(&["t0", "t1", "u0", "none"])}),
    ];
    let backends: Vec<serde_json::Value> = (0..=rng.below(3))
        .map(|_| {
            serde_json::json!({"name": rng.pick(&SERVICES), "port": rng.pick(&[80, 81, 99]),
                "weight": rng.pick(&[0, 1, 3])})
        })
        .collect();
    let v = serde_json::json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"parentRefs": parents, "rules": [{"backendRefs": backends}]},
    });
    if name.starts_with('u') {
        Object::UDPRoute(std::sync::Arc::new(gateway_api(v)))
    } else {
        Object::TCPRoute(std::sync::Arc::new(gateway_api(v)))
    }
}

/// Makes a random object of one kind, given its namespace and name.
type MakeObject = fn(&mut Rng, &str, &str) -> Object;

fn random_change(rng: &mut Rng) -> Change {
    let ns = rng.pick(&NAMESPACES);
    let n = rng.below(4);
    let delete = rng.chance(20);
    let custom_headers = rng.chance(50);
    let (kind, name, object): (Kind, String, MakeObject) = match rng.below(18) {
        8 if custom_headers => (Kind::ConfigMap, "hdr".to_owned(), |rng, ns, name| {
            let data: &[(&str, &str)] = match rng.below(3) {
                0 => &[("X-A", "1")],
                1 => &[("X-A", "2"), ("X-Not-Allowed", "3")],
                _ => &[],
            };
            config_map(ns, name, data).into()
        }),
        11 => (Kind::GatewayClass, "gx".to_owned(), random_gateway_class),
        12 => (Kind::Gateway, "g0".to_owned(), random_gateway),
        13 => (Kind::TCPRoute, format!("t{}", n % 2), random_l4_route),
        14 => (Kind::UDPRoute, "u0".to_owned(), random_l4_route),
        0..=3 => (Kind::Ingress, format!("i{n}"), random_ingress),
        15 => (Kind::GatewayClass, "xdp".to_owned(), |rng, _, _| {
            let controller = if rng.chance(80) {
                "xdp-ingress.dev/controller"
            } else {
                "someone.else/controller"
            };
            gateway_yaml(&format!(
                "kind: GatewayClass\nmetadata: {{name: xdp}}\nspec: {{controllerName: {controller}}}"
            ))
        }),
        16 => (Kind::Gateway, format!("g{}", n % 2), random_tls_gateway),
        17 => (Kind::TLSRoute, format!("t{n}"), random_tls_route),
        4 => (
            Kind::Service,
            (rng.pick(&SERVICES)).to_owned(),
            random_service,
        ),
        5 | 6 => (Kind::EndpointSlice, format!("s{n}"), random_slice),
        7 => (
            Kind::Secret,
            (rng.pick(&SECRETS)).to_owned(),
            |rng, ns, name| match rng.below(10) {
                0..=4 => tls_secret(ns, name).into(),
                // A proxy-ssl-secret: a CA, with or without a client certificate.
                5 | 6 => secret(ns, name, "Opaque", &[("ca.crt", CERT_PEM)]).into(),
                7 => secret(
                    ns,
                    name,
                    "kubernetes.io/tls",
                    &[
                        ("ca.crt", CERT_PEM),
                        ("tls.crt", CERT_PEM),
                        ("tls.key", KEY_PEM),
                    ],
                )
                .into(),
                _ => secret(ns, name, "kubernetes.io/tls", &[("tls.crt", "junk")]).into(),
            },
        ),
        10 => (
            Kind::Secret,
            (rng.pick(&AUTH_SECRETS)).to_owned(),
            |rng, ns, name| {
                // Users differ, so a stale translation shows in the compared policy.
                let data: &[(&str, &str)] = match rng.below(4) {
                    0 => &[("auth", "alice:{PLAIN}a\n")],
                    1 => &[("auth", "bob:{PLAIN}b\nbroken:\n"), ("carol", "{PLAIN}c")],
                    2 => &[("users", "alice:{PLAIN}a")],
                    _ => &[],
                };
                secret(ns, name, "Opaque", data).into()
            },
        ),
        8 => (Kind::ConfigMap, "tcp".to_owned(), |rng, _, _| {
            let data: &[(&str, &str)] = match rng.below(4) {
                0 => &[("9000", "a/web:80"), ("9001", "b/api:http")],
                3 => &[("9002", "a/web:80")],
                1 => &[("9000", "a/db:81"), ("80", "a/web:80"), ("x", "y")],
                _ => &[],
            };
            config_map("ingress", "tcp", data).into()
        }),
        _ => (Kind::IngressClass, "xdp".to_owned(), |rng, _, _| {
            let controller = if rng.chance(70) {
                "xdp-ingress.dev/controller"
            } else {
                "someone.else/controller"
            };
            ingress_class("xdp", controller, rng.chance(50)).into()
        }),
    };
    let ns = match kind {
        Kind::IngressClass | Kind::GatewayClass => "",
        Kind::ConfigMap if !custom_headers => "ingress",
        _ => ns,
    };
    if delete {
        Change::Delete(kind, (ns.to_owned(), name))
    } else {
        Change::Apply(object(rng, ns, &name))
    }
}

/// A Gateway API object from YAML (without `apiVersion`).
fn gateway_yaml(yaml: &str) -> Object {
    let yaml = format!("apiVersion: gateway.networking.k8s.io/v1\n{yaml}");
    let value: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("fixture YAML");
    match value["kind"].as_str() {
        Some("GatewayClass") => {
            Object::from(serde_yaml::from_value::<GatewayClass>(value).expect("GatewayClass"))
        }
        Some("Gateway") => Object::from(serde_yaml::from_value::<Gateway>(value).expect("Gateway")),
        _ => Object::from(serde_yaml::from_value::<TLSRoute>(value).expect("TLSRoute")),
    }
}

/// A Gateway with TLS Passthrough and HTTPS listeners on shared and separate ports
/// (some conflicting, some refused).
fn random_tls_gateway(rng: &mut Rng, ns: &str, name: &str) -> Object {
    const LISTENERS: [&str; 6] = [
        "{name: p1, port: 8443, protocol: TLS, hostname: x.com, tls: {mode: Passthrough}, allowedRoutes: {namespaces: {from: All}}}",
        "{name: p2, port: 8443, protocol: TLS, hostname: '*.x.com', tls: {mode: Passthrough}}",
        "{name: p3, port: 9443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {namespaces: {from: All}}}",
        "{name: h1, port: 8443, protocol: HTTPS, hostname: y.com, tls: {certificateRefs: [{name: c0}]}}",
        "{name: t1, port: 9443, protocol: TLS}",
        "{name: p4, port: 8443, protocol: TLS, hostname: x.com, tls: {mode: Passthrough}}",
    ];
    let mut listeners = String::new();
    for _ in 0..=rng.below(3) {
        listeners.push_str(&format!("  - {}\n", rng.pick(&LISTENERS)));
    }
    gateway_yaml(&format!(
        "kind: Gateway\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  gatewayClassName: xdp\n  listeners:\n{listeners}"
    ))
}

/// A TLSRoute to one or two Services (some missing, some in the other namespace).
fn random_tls_route(rng: &mut Rng, ns: &str, name: &str) -> Object {
    const HOSTNAMES: [&str; 4] = ["[x.com]", "['*.x.com']", "[]", "[a.x.com, z.org]"];
    let mut parents = Vec::new();
    for _ in 0..=rng.below(2) {
        let section = match rng.below(3) {
            0 => String::new(),
            _ => format!(", sectionName: {}", rng.pick(&["p1", "p2", "p3"])),
        };
        parents.push(format!(
            "{{name: {}, namespace: {}{section}}}",
            rng.pick(&["g0", "g1"]),
            rng.pick(&NAMESPACES)
        ));
    }
    let mut refs = Vec::new();
    for _ in 0..=rng.below(2) {
        refs.push(format!(
            "{{name: {}, namespace: {}, port: {}, weight: {}}}",
            rng.pick(&SERVICES),
            rng.pick(&NAMESPACES),
            rng.pick(&["80", "81"]),
            rng.below(3)
        ));
    }
    gateway_yaml(&format!(
        "kind: TLSRoute\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: '2024-01-0{}T00:00:00Z'}}\nspec:\n  parentRefs: [{}]\n  hostnames: {}\n  rules:\n  - backendRefs: [{}]\n",
        1 + rng.below(3),
        parents.join(", "),
        rng.pick(&HOSTNAMES),
        refs.join(", ")
    ))
}

fn options() -> Options {
    Options {
        tcp_services: Some(NamespacedName {
            namespace: "ingress".into(),
            name: "tcp".into(),
        }),
        default_backend_service: Some(NamespacedName {
            namespace: "a".into(),
            name: "web".into(),
        }),
        allowed_response_headers: vec![hyper::header::HeaderName::from_static("x-a")],
        ..Options::default()
    }
}

/// After every change (and after bursts of changes applied together), the engine's
/// Snapshot equals a full build of the same objects.
#[test]
fn random_change_sequences_always_equal_a_full_build() {
    let seeds: u64 = std::env::var("ENGINE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut compared = 0;
    let mut with_canary = 0;
    // Snapshots with a Gateway API TCP/UDP listener served, and with one in conflict with
    // the ConfigMap: the generator must reach both.
    let (mut gateway_l4, mut conflicted) = (0, 0);
    // Whether the sequences reached ssl-passthrough hosts and TLSRoutes on listeners.
    let mut passthrough_seen = (false, false);
    for seed in 0..seeds {
        let mut rng = Rng(seed);
        let mut engine = Engine::new(options());
        let mut log = Vec::new();
        for step in 0..150 {
            // Sometimes a burst: several changes, one Snapshot.
            for _ in 0..=usize::from(rng.chance(30)) * rng.below(6) {
                let change = random_change(&mut rng);
                log.push(format!("{change:?}").chars().take(300).collect::<String>());
                engine.apply(change);
            }
            let (snap, _) = engine.snapshot();
            let want = build_objects(engine.objects(), &options());
            assert_eq!(
                **engine.statuses(),
                crate::config::gateway_statuses(engine.objects(), &options()),
                "seed {seed} step {step}: Gateway API statuses differ"
            );
            let (got, want) = (canonical(&snap), canonical(&want));
            let seen = |what: &str| got.passthrough.iter().any(|l| l.contains(what));
            passthrough_seen.0 |= seen("ingress ");
            passthrough_seen.1 |= seen("  listener ");
            if got != want {
                let tail = log[log.len().saturating_sub(6)..].join("\n");
                panic!(
                    "seed {seed} step {step}: the engine differs from a full build\nlast changes:\n{tail}\nengine: {got:#?}\nbuild: {want:#?}"
                );
            }
            compared += 1;
            with_canary += usize::from(got.routes.iter().any(|r| r.contains(" canary ")));
            gateway_l4 += usize::from(snap.l4.iter().any(|l| !l.split.is_empty()));
            conflicted += usize::from(
                snap.problems
                    .iter()
                    .any(|p| p.message.contains("which wins")),
            );
        }
    }
    assert_eq!(compared, seeds * 150);
    // The generator does reach canaries attached to main routes, Gateway API TCP/UDP
    // listeners served, and ones in conflict with the ConfigMap.
    assert!(with_canary > 0, "no Snapshot had a canary");
    assert!(
        gateway_l4 > 0 && conflicted > 0,
        "{gateway_l4} {conflicted}"
    );
    assert_eq!(
        passthrough_seen,
        (true, true),
        "the generator exercises passthrough"
    );
}

/// The one EndpointSlice of `ns/web`, with one ready endpoint.
fn web_slice(ip: &str) -> Change {
    let s = slice(
        "ns",
        "web",
        "web-1",
        &[("http", 8080)],
        &[(ip, Cond::Ready)],
    );
    Change::Apply(s.into())
}

/// The engine really does proportional work: one changed Ingress re-translates one Ingress
/// and merges only its hosts; an endpoint change re-translates nothing and is visible
/// through the Snapshot already published.
#[test]
fn a_change_costs_what_depends_on_it() {
    let mut engine = Engine::new(Options::default());
    engine.apply(Change::Apply(
        service("ns", "web", &[("http", 80, "8080")]).into(),
    ));
    engine.apply(web_slice("10.0.0.1"));
    for i in 0..50 {
        let ing = IngressBuilder::new("ns", &format!("i{i}"))
            .class(Some("xdp"))
            .host(&format!("h{i}.com"))
            .path("/", "Prefix", "web", "80")
            .path("/api", "Prefix", "web", "http")
            .build();
        engine.apply(Change::Apply(ing.into()));
    }
    let (before, work) = engine.snapshot();
    assert_eq!(
        work,
        Work {
            ingresses: 50,
            hosts: 50
        }
    );

    let changed = IngressBuilder::new("ns", "i7")
        .class(Some("xdp"))
        .host("h7.com")
        .path("/", "Prefix", "web", "80")
        .host("new.com")
        .path("/", "Prefix", "web", "80")
        .build();
    assert!(engine.apply(Change::Apply(changed.clone().into())));
    assert!(
        !engine.apply(Change::Apply(changed.into())),
        "an equal object is no change"
    );
    let (after, work) = engine.snapshot();
    assert_eq!(
        work,
        Work {
            ingresses: 1,
            hosts: 2
        }
    );
    assert!(after.http.route("new.com", "/").is_some());
    let h7 = after.http.host(&HostMatch::Exact("h7.com".into())).unwrap();
    assert_eq!(h7.len(), 1, "/api is gone from h7.com");
    assert_eq!(after.http.len(), 100);

    engine.apply(web_slice("10.0.0.2"));
    let eps = |s: &Snapshot| {
        s.http
            .route("h3.com", "/")
            .unwrap()
            .backend
            .endpoints
            .to_vec()
    };
    let want = vec!["10.0.0.2:8080".parse().unwrap()];
    assert_eq!(
        eps(&before),
        want,
        "the published Snapshot sees the new endpoint"
    );
    let (_, work) = engine.snapshot();
    assert_eq!(work, Work::default());
}

/// A Secret named by annotations (`proxy-ssl-secret`, `auth-tls-secret`) re-translates
/// the Ingresses naming it, and only those; its arrival lifts the denial.
#[test]
fn a_secret_change_retranslates_the_ingresses_naming_it() {
    let mut engine = Engine::new(Options::default());
    engine.apply(Change::Apply(
        service("ns", "web", &[("http", 80, "8080")]).into(),
    ));
    for (i, (name, value)) in [
        ("proxy-ssl-secret", "ns/ca"),
        ("auth-tls-secret", "ns/ca"),
        ("ssl-redirect", "false"),
    ]
    .into_iter()
    .enumerate()
    {
        let ing = IngressBuilder::new("ns", &format!("i{i}"))
            .class(Some("xdp"))
            .host(&format!("h{i}.com"))
            .path("/", "Prefix", "web", "80")
            .annotation(&format!("nginx.ingress.kubernetes.io/{name}"), value)
            .build();
        engine.apply(Change::Apply(ing.into()));
    }
    let (before, _) = engine.snapshot();
    let denied =
        |s: &Snapshot, host: &str| s.http.route(host, "/").unwrap().backend.policy().denied;
    assert!(denied(&before, "h0.com") && denied(&before, "h1.com"));
    engine.apply(Change::Apply(
        secret("ns", "ca", "Opaque", &[("ca.crt", CERT_PEM)]).into(),
    ));
    let (after, work) = engine.snapshot();
    assert_eq!(
        work,
        Work {
            ingresses: 2,
            hosts: 2
        }
    );
    assert!(!denied(&after, "h0.com") && !denied(&after, "h1.com"));
    assert!(after.http.client_auth("h1.com").is_some());
    assert!(after.http.client_auth("h0.com").is_none());
}
