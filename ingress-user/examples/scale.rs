//! Scale measurement of the control plane (a benchmark, not a test):
//! 10,000 Ingresses × 5 paths, 10,000 Services and 50,000 endpoints → `config::build`.
//! Prints the median of 5 builds, a route lookup cost, peak RSS (VmHWM), and what one change
//! costs the controller's incremental engine at that size (an Ingress, an EndpointSlice).
//!
//! `cargo run --release -p ingress-user --example scale [-- INGRESSES PATHS ENDPOINTS]`

use std::{collections::BTreeMap, hint::black_box, time::Instant};

use k8s_openapi::{
    api::{
        core::v1::{Service, ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
        networking::v1::{
            HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
            IngressServiceBackend, IngressSpec, ServiceBackendPort,
        },
    },
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};
use xdp_ingress::config::{Change, Options, Store, build, incremental::Engine};

fn meta(ns: &str, name: String) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.to_owned()),
        name: Some(name),
        ..ObjectMeta::default()
    }
}

fn store(ingresses: usize, paths: usize, endpoints: usize) -> Store {
    let mut s = Store::default();
    let per_service = endpoints.div_ceil(ingresses).max(1);
    for i in 0..ingresses {
        let ns = format!("ns{}", i % 100);
        let svc = format!("svc{i}");
        s.services.push(Service {
            metadata: meta(&ns, svc.clone()),
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::String("web".into())),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        });
        let mut m = meta(&ns, format!("{svc}-abcde"));
        m.labels = Some(BTreeMap::from([(
            "kubernetes.io/service-name".into(),
            svc.clone(),
        )]));
        s.endpoint_slices.push(EndpointSlice {
            metadata: m,
            address_type: "IPv4".into(),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                ..EndpointPort::default()
            }]),
            endpoints: (0..per_service)
                .map(|e| {
                    let n = i * per_service + e;
                    Endpoint {
                        addresses: vec![format!(
                            "10.{}.{}.{}",
                            (n >> 16) & 255,
                            (n >> 8) & 255,
                            n & 255
                        )],
                        conditions: Some(EndpointConditions {
                            ready: Some(e % 10 != 9),
                            serving: Some(true),
                            terminating: Some(false),
                        }),
                        ..Endpoint::default()
                    }
                })
                .collect(),
        });
        let backend = IngressBackend {
            resource: None,
            service: Some(IngressServiceBackend {
                name: svc,
                port: Some(ServiceBackendPort {
                    name: None,
                    number: Some(80),
                }),
            }),
        };
        s.ingresses.push(Ingress {
            metadata: meta(&ns, format!("ing{i}")),
            spec: Some(IngressSpec {
                ingress_class_name: Some("xdp".into()),
                rules: Some(vec![IngressRule {
                    host: Some(format!("host{i}.example.com")),
                    http: Some(HTTPIngressRuleValue {
                        paths: (0..paths)
                            .map(|p| HTTPIngressPath {
                                path: Some(format!("/app{p}/v{}", p % 3)),
                                path_type: if p % 2 == 0 { "Prefix" } else { "Exact" }.into(),
                                backend: backend.clone(),
                            })
                            .collect(),
                    }),
                }]),
                ..IngressSpec::default()
            }),
            status: None,
        });
    }
    s
}

/// The controller's engine loaded with `s` (consumed: the engine holds the only copy, as in
/// the controller); then the cost (ms, sorted) of 200 Ingress changes and 200 EndpointSlice
/// changes, each applied and turned into a Snapshot.
fn incremental(s: Store, opts: &Options) -> (Vec<f64>, Vec<f64>) {
    let base = 0.0;
    let picks: Vec<usize> = (0..200).map(|n| (n * 37) % s.ingresses.len()).collect();
    let samples: Vec<_> = picks
        .iter()
        .map(|&i| (s.ingresses[i].clone(), s.endpoint_slices[i].clone()))
        .collect();
    let paths = s.ingresses.len() * 5;
    let mut engine = Engine::new(opts.clone());
    for c in s.into_changes("scale") {
        engine.apply(c);
    }
    let objects = live_mib() - base;
    let (first, _) = engine.snapshot();
    assert_eq!(first.http.len(), paths, "every path routed");
    println!(
        "engine live heap: {objects:.1} MiB of objects, {:.1} MiB with the translation and its Snapshot",
        live_mib() - base
    );
    let mut held = first;
    let mut time = |engine: &mut Engine, change: Change| {
        let t = Instant::now();
        engine.apply(change);
        let (snap, _) = engine.snapshot();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        // Keep the last Snapshot alive, as the data planes do, so copy-on-write is paid.
        drop(std::mem::replace(&mut held, snap));
        ms
    };
    let mut ingress = Vec::new();
    let mut slice = Vec::new();
    for (n, (mut ing, mut es)) in samples.into_iter().enumerate() {
        if let Some(rule) = ing
            .spec
            .as_mut()
            .and_then(|s| s.rules.as_mut())
            .and_then(|r| r.first_mut())
        {
            rule.host = Some(format!("changed{n}.example.com"));
        }
        ingress.push(time(&mut engine, Change::Apply(ing.into())));
        if let Some(ep) = es.endpoints.first_mut() {
            ep.addresses = vec![format!("10.255.{}.{}", n / 250, n % 250 + 1)];
        }
        slice.push(time(&mut engine, Change::Apply(es.into())));
    }
    ingress.sort_by(f64::total_cmp);
    slice.sort_by(f64::total_cmp);
    (ingress, slice)
}

/// The system allocator, counting live heap bytes: a deterministic memory figure, where RSS
/// depends on the allocator's retention and the order things were freed in.
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: delegates to the system allocator; only adds counting.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, std::sync::atomic::Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live_mib() -> f64 {
    LIVE.load(std::sync::atomic::Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let (ingresses, paths, endpoints) = match args[..] {
        [i, p, e] => (i, p, e),
        _ => (10_000, 5, 50_000),
    };
    assert_eq!(paths, 5, "the engine samples assume 5 paths");
    let before = vm_hwm_kib().unwrap_or(0);
    let opts = Options::default();
    // The engine first, so its peak is measured before the reference builds raise it.
    let (ingress_change, slice_change) = incremental(store(ingresses, paths, endpoints), &opts);
    let engine_peak = vm_hwm_kib().unwrap_or(0);
    let s = store(ingresses, paths, endpoints);
    let mut times = Vec::new();
    let mut snap = None;
    for _ in 0..5 {
        drop(snap.take());
        let t = Instant::now();
        snap = Some(build(&s, &opts));
        times.push(t.elapsed());
    }
    times.sort();
    let snap = snap.unwrap();
    assert_eq!(snap.http.len(), ingresses * paths, "every path routed");
    assert!(
        snap.problems.is_empty(),
        "{:?}",
        &snap.problems[..snap.problems.len().min(3)]
    );

    let lookups = 1_000_000;
    let hosts: Vec<String> = (0..1024)
        .map(|i| format!("HOST{}.example.com:80", (i * 7919) % ingresses))
        .collect();
    let t = Instant::now();
    let mut hits = 0usize;
    for n in 0..lookups {
        let host = &hosts[n % hosts.len()];
        if black_box(snap.http.route(host, "/app2/v2/some/deeper/path")).is_some() {
            hits += 1;
        }
    }
    let per_lookup = t.elapsed() / lookups as u32;
    assert_eq!(hits, lookups);

    println!(
        "scale: {ingresses} Ingresses x {paths} paths, {} Services, {} endpoints",
        s.services.len(),
        s.endpoint_slices
            .iter()
            .map(|e| e.endpoints.len())
            .sum::<usize>()
    );
    println!(
        "config::build: median {:.1} ms (min {:.1}, max {:.1}) over 5 runs",
        times[2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[4].as_secs_f64() * 1e3
    );
    println!(
        "route lookup: {} ns per request (exact host, 4-segment path, host with port and capitals)",
        per_lookup.as_nanos()
    );
    let pct = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    for (what, v) in [
        ("an Ingress change (new host)", &ingress_change),
        ("an EndpointSlice change", &slice_change),
    ] {
        println!(
            "engine: {what} -> Snapshot: p50 {:.3} ms, p99 {:.3} ms over {} changes",
            pct(v, 0.5),
            pct(v, 0.99),
            v.len()
        );
    }
    println!(
        "peak RSS (VmHWM): {:.1} MiB with the objects in the engine and its Snapshot; {:.1} MiB at start",
        engine_peak as f64 / 1024.0,
        before as f64 / 1024.0
    );
}
