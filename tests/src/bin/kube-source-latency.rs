//! Measure (not a test): time from an HTTP create on the fake API server to the kube
//! source's publish of a Store containing the object. Prints p50/p90/p99/max.
//! `cargo run -p ingress-tests --bin kube-source-latency [COUNT]` (default 200).

use std::time::{Duration, Instant};

use ingress_tests::fake_api::FakeApi;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use xdp_ingress::source::kube::{KubeSourceConfig, run};

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
    rx.wait_for(Option::is_some).await?;
    let svcs: Api<Service> = Api::namespaced(client, "default");
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("svc-{i:04}");
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}
        }))?;
        let t0 = Instant::now();
        svcs.create(&PostParams::default(), &svc).await?;
        let wait = rx.wait_for(|s| {
            s.as_ref().is_some_and(|s| {
                s.services
                    .iter()
                    .any(|x| x.metadata.name.as_deref() == Some(&name))
            })
        });
        tokio::time::timeout(Duration::from_secs(10), wait).await??;
        samples.push(t0.elapsed());
    }
    source.abort();
    samples.sort();
    let pct = |p: f64| {
        let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[idx].as_secs_f64() * 1e3
    };
    println!(
        "create -> Store publish over {count} changes: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (debounce {} ms)",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        xdp_ingress::source::kube::DEBOUNCE.as_millis()
    );
    Ok(())
}
