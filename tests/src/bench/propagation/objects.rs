//! The objects of the propagation benchmark, as JSON values, and their layout in a manifest
//! directory (which also seeds the fake API server).
//!
//! - The scale set, shaped like ingress-user's `scale` example: 10,000 Ingresses (namespace
//!   `ns{i % 100}`, host `host{i}.example.com`, 5 paths) each routing to its own Service
//!   with an EndpointSlice of 5 endpoints (unreachable 10.x.y.z addresses: nothing is sent
//!   to them), in 200 files of 50 of each.
//! - Probes in namespace `bench`: Services `probe-{k}` each routed by an Ingress with host
//!   `probe-{k}.bench`, and an EndpointSlice with one endpoint, a real backend on loopback.
//!   The slices live 20 to a file, so a change rewrites a file holding a set of slices.
//! - Added Ingresses `added-{j}` (host `added-{j}.bench`, routing to `probe-0`), one file each.

use std::{net::SocketAddr, path::Path};

use serde_json::{Value, json};

use crate::bench::rig::write_atomic;

/// Namespace of the probe objects.
pub const NS: &str = "bench";
/// Files the scale set is split over.
pub const FILES: usize = 200;
/// Probe EndpointSlices per file.
pub const SLICES_PER_FILE: usize = 20;

/// Sizes of the scale set.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Ingresses, each with its own Service and EndpointSlice.
    pub ingresses: usize,
    /// Paths per Ingress.
    pub paths: usize,
    /// Endpoints per EndpointSlice.
    pub endpoints: usize,
}

/// The full size of issue 16.
pub const ISSUE_16: Scale = Scale {
    ingresses: 10_000,
    paths: 5,
    endpoints: 5,
};

fn meta(ns: &str, name: &str) -> Value {
    json!({"namespace": ns, "name": name})
}

fn service(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(ns, name),
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]}})
}

fn slice(ns: &str, service: &str, port: u16, addresses: impl Iterator<Item = String>) -> Value {
    let endpoints: Vec<Value> = addresses
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true, "serving": true, "terminating": false}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": service, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})
}

fn ingress(ns: &str, name: &str, host: &str, service: &str, paths: &[(String, &str)]) -> Value {
    let paths: Vec<Value> = paths
        .iter()
        .map(|(path, kind)| {
            json!({"path": path, "pathType": kind,
            "backend": {"service": {"name": service, "port": {"number": 80}}}})
        })
        .collect();
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta(ns, name),
        "spec": {"ingressClassName": "xdp", "rules": [{"host": host, "http": {"paths": paths}}]}})
}

/// Service, EndpointSlice and Ingress number `i` of the scale set.
fn scale_objects(s: Scale, i: usize) -> [Value; 3] {
    let ns = format!("ns{}", i % 100);
    let svc = format!("svc{i}");
    let addresses = (0..s.endpoints).map(move |e| {
        let n = i * s.endpoints + e;
        format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
    });
    let paths: Vec<(String, &str)> = (0..s.paths)
        .map(|p| {
            let kind = if p % 2 == 0 { "Prefix" } else { "Exact" };
            (format!("/app{p}/v{}", p % 3), kind)
        })
        .collect();
    [
        service(&ns, &svc),
        slice(&ns, &svc, 8080, addresses),
        ingress(
            &ns,
            &format!("ing{i}"),
            &format!("host{i}.example.com"),
            &svc,
            &paths,
        ),
    ]
}

/// Host of probe `k`.
pub fn probe_host(k: usize) -> String {
    format!("probe-{k}.bench")
}

/// The EndpointSlice of probe `k`: one endpoint, `backend`.
pub fn probe_slice(k: usize, backend: SocketAddr) -> Value {
    slice(
        NS,
        &format!("probe-{k}"),
        backend.port(),
        std::iter::once(backend.ip().to_string()),
    )
}

/// Host of added Ingress `j`.
pub fn added_host(j: usize) -> String {
    format!("added-{j}.bench")
}

/// Added Ingress `j`, routing `added-{j}.bench` to `probe-0`.
pub fn added_ingress(j: usize) -> Value {
    let paths = [("/".to_owned(), "Prefix")];
    ingress(NS, &format!("added-{j}"), &added_host(j), "probe-0", &paths)
}

/// Multi-document YAML of `objects`.
pub fn yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("JSON values serialize"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// File of the probe slices that hold probe `k`.
pub fn probe_slices_file(dir: &Path, k: usize) -> std::path::PathBuf {
    dir.join(format!("probe-slices-{:02}.yaml", k / SLICES_PER_FILE))
}

/// Writes the file holding probe `k`'s slice, from every probe's current backend.
pub fn write_probe_slices(dir: &Path, k: usize, backends: &[SocketAddr]) -> std::io::Result<()> {
    let first = k / SLICES_PER_FILE * SLICES_PER_FILE;
    let slices: Vec<Value> = (first..backends.len().min(first + SLICES_PER_FILE))
        .map(|k| probe_slice(k, backends[k]))
        .collect();
    write_atomic(&probe_slices_file(dir, k), &yaml(&slices))
}

/// Writes the scale set and the probes (probe `k` at `backends[k]`) into `dir`.
pub fn write_all(dir: &Path, s: Scale, backends: &[SocketAddr]) -> std::io::Result<()> {
    let per_file = s.ingresses.div_ceil(FILES);
    for f in 0..FILES {
        let objects: Vec<Value> = (f * per_file..s.ingresses.min((f + 1) * per_file))
            .flat_map(|i| scale_objects(s, i))
            .collect();
        std::fs::write(dir.join(format!("scale-{f:03}.yaml")), yaml(&objects))?;
    }
    let probes: Vec<Value> = (0..backends.len())
        .flat_map(|k| {
            let name = format!("probe-{k}");
            let paths = [("/".to_owned(), "Prefix")];
            [
                service(NS, &name),
                ingress(NS, &name, &probe_host(k), &name, &paths),
            ]
        })
        .collect();
    std::fs::write(dir.join("probes.yaml"), yaml(&probes))?;
    for k in (0..backends.len()).step_by(SLICES_PER_FILE) {
        write_probe_slices(dir, k, backends)?;
    }
    Ok(())
}
