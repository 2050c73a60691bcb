//! Measure (not a test): time from an HTTP create on the fake API server to (1) the kube
//! source's publish of a Store containing the object and (2) the controller's Snapshot
//! routing it. Prints p50/p90/p99/max of each.
//! `cargo run -p ingress-tests --bin kube-source-latency [COUNT]` (default 200).

use std::time::{Duration, Instant};

use ingress_tests::fake_api::FakeApi;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PostParams};
use xdp_ingress::{
    config::Options,
    controller,
    source::kube::{DEBOUNCE, KubeSourceConfig, run},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args().nth(1).map_or(Ok(200), |s| s.parse())?;
    let api = FakeApi::start().await;
    let client = api.client().await;
    let (tx, mut rx) = tokio::sync::watch::channel(None);
    let cfg = KubeSourceConfig {
        watch_namespace: None,
        tcp_configmap: Some(("ingress-nginx".into(), "tcp-services".into())),
        udp_configmap: None,
    };
    let source = tokio::spawn(run(client.clone(), cfg, tx));
    let mut snapshots = controller::spawn(rx.clone(), Options::default()).snapshots;
    rx.wait_for(Option::is_some).await?;
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
        let in_store = rx.wait_for(|s| {
            s.as_ref().is_some_and(|s| {
                s.ingresses
                    .iter()
                    .any(|x| x.metadata.name.as_deref() == Some(&name))
            })
        });
        tokio::time::timeout(Duration::from_secs(10), in_store).await??;
        to_store.push(t0.elapsed());
        let routed = snapshots.wait_for(|s| s.http.route(&host, "/").is_some());
        tokio::time::timeout(Duration::from_secs(10), routed).await??;
        to_snapshot.push(t0.elapsed());
    }
    source.abort();
    println!(
        "{count} Ingress creates (HTTP, kube-rs client), source debounce {} ms, controller debounce {} ms:",
        DEBOUNCE.as_millis(),
        controller::DEBOUNCE.as_millis()
    );
    println!("  create -> Store published:   {}", summary(&mut to_store));
    println!(
        "  create -> Snapshot routes it: {}",
        summary(&mut to_snapshot)
    );
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
