//! Measure (not a test): time from an HTTP create on the fake API server to (1) the kube
//! source sending the Change and (2) the controller's Snapshot routing it. Prints
//! p50/p90/p99/max of each.
//! `cargo run -p ingress-tests --bin kube-source-latency [COUNT [INGRESSES [ENDPOINTS]]]`:
//! COUNT changes (default 200) on top of INGRESSES seeded Ingresses with 5 paths each and
//! ENDPOINTS endpoints in EndpointSlices of 100 (default 0 and 0). `NO_CONTROLLER=1` measures
//! the source alone (no Snapshot builds competing for the CPU).

use std::time::{Duration, Instant};

use ingress_tests::fake_api::FakeApi;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PostParams};
use xdp_ingress::{
    config::{Change, Options, store::Object},
    controller,
    source::{
        self, Update,
        kube::{KubeSourceConfig, run},
    },
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: usize| std::env::args().nth(i).map_or(Ok(default), |s| s.parse());
    let (count, seed_ingresses, seed_endpoints) = (arg(1, 200)?, arg(2, 0)?, arg(3, 0)?);
    let api = FakeApi::start().await;
    seed(&api, seed_ingresses, seed_endpoints);
    let client = api.client().await;
    let (tx, mut rx) = source::channel();
    let cfg = KubeSourceConfig {
        watch_namespace: None,
        tcp_configmap: Some(("ingress-nginx".into(), "tcp-services".into())),
        udp_configmap: None,
        all_configmaps: false,
    };
    let source = tokio::spawn(run(client.clone(), cfg, tx));
    let with_controller = std::env::var_os("NO_CONTROLLER").is_none();
    let (ctl_tx, ctl_rx) = source::channel();
    let mut snapshots =
        with_controller.then(|| controller::spawn(ctl_rx, Options::default()).snapshots);
    // A tap between source and controller: reports sync and the names of applied Ingresses.
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<Option<String>>();
    tokio::spawn(async move {
        while let Some(u) = rx.recv().await {
            match &u {
                Update::Synced => {
                    let _ = seen_tx.send(None);
                }
                Update::Changes(changes) => {
                    for c in changes {
                        if let Change::Apply(Object::Ingress(i)) = c {
                            let _ = seen_tx.send(i.metadata.name.clone());
                        }
                    }
                }
            }
            if ctl_tx.send(u).is_err() && with_controller {
                return;
            }
        }
    });
    let synced = Instant::now();
    while seen.recv().await.expect("source ended").is_some() {}
    let synced = synced.elapsed();
    let ings: Api<Ingress> = Api::namespaced(client, "default");
    let (mut to_store, mut to_snapshot) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for i in 0..count {
        let name = format!("ing-{i:04}");
        let host = format!("h{i}.test");
        let ing: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"ingressClassName": "xdp", "rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
            ]}}]}
        }))?;
        let t0 = Instant::now();
        ings.create(&PostParams::default(), &ing).await?;
        let sent = async {
            while let Some(n) = seen.recv().await {
                if n.as_deref() == Some(name.as_str()) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), sent).await?;
        to_store.push(t0.elapsed());
        if let Some(snapshots) = &mut snapshots {
            let routed = snapshots.wait_for(|s| s.http.route(&host, "/").is_some());
            tokio::time::timeout(Duration::from_secs(10), routed).await??;
            to_snapshot.push(t0.elapsed());
        }
    }
    source.abort();
    println!("{count} Ingress creates (HTTP, kube-rs client):");
    println!(
        "  seeded {seed_ingresses} Ingresses (5 paths each), {seed_endpoints} endpoints; initial sync {:.0} ms",
        synced.as_secs_f64() * 1e3
    );
    println!("  create -> Change sent:        {}", summary(&mut to_store));
    if !to_snapshot.is_empty() {
        println!(
            "  create -> Snapshot routes it: {}",
            summary(&mut to_snapshot)
        );
    }
    Ok(())
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let pct = |p: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into a short vector"
        )]
        let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[idx].as_secs_f64() * 1e3
    };
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    )
}

fn seed(api: &FakeApi, ingresses: usize, endpoints: usize) {
    for i in 0..ingresses {
        let paths: Vec<_> = (0..5)
            .map(|p| serde_json::json!({"path": format!("/p{p}"), "pathType": "Prefix",
                "backend": {"service": {"name": format!("svc-{}", i % 500), "port": {"number": 80}}}}))
            .collect();
        api.put(serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": format!("seed-{i:05}"), "namespace": "seed"},
            "spec": {"ingressClassName": "xdp", "rules": [{"host": format!("s{i}.seed.test"), "http": {"paths": paths}}]}}));
    }
    for s in 0..endpoints.div_ceil(100) {
        let n = (endpoints - s * 100).min(100);
        let eps: Vec<_> = (0..n)
            .map(|e| serde_json::json!({"addresses": [format!("10.{}.{}.{}", s / 250, s % 250, e + 1)], "conditions": {"ready": true}}))
            .collect();
        api.put(serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("svc-{s}-abc"), "namespace": "seed", "labels": {"kubernetes.io/service-name": format!("svc-{}", s % 500)}},
            "addressType": "IPv4", "endpoints": eps, "ports": [{"port": 8080, "protocol": "TCP"}]}));
    }
}
