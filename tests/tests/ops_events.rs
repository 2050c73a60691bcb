//! Kubernetes Events for Problems, against the fake API server with the real kube-rs client:
//! a bad tcp-services entry read by the real kube source produces a Warning Event on the
//! ConfigMap (seen by kubectl too), and repeats are rate-limited and aggregated by `count`.

use std::time::Duration;

use ingress_tests::fake_api::FakeApi;
use k8s_openapi::api::core::v1::Event;
use kube::{Api, api::ListParams};
use serde_json::json;
use tokio::sync::watch;
use xdp_ingress::{
    config::{NamespacedName, ObjectRef, Options, Problem, problem::Severity},
    controller,
    ops::{
        election::ElectionConfig,
        events::{EventsConfig, Recorder},
        kube::{KubeOps, run},
    },
    source::kube::{KubeSourceConfig, run as source},
};

/// Generous bound on every wait; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(30);

async fn events_about(api: &Api<Event>, kind: &str, name: &str) -> Vec<Event> {
    api.list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configmap_entry_produces_an_event_on_the_configmap() {
    let api = FakeApi::start().await;
    api.put(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "tcp-services", "namespace": "ingress"},
        "data": {"redis": "default/redis:6379"}
    }));
    let client = api.client().await;
    let (store_tx, store_rx) = xdp_ingress::source::channel();
    let src = tokio::spawn(source(
        client.clone(),
        KubeSourceConfig {
            tcp_configmap: Some(("ingress".into(), "tcp-services".into())),
            ..KubeSourceConfig::default()
        },
        store_tx,
    ));
    let handle = controller::spawn(
        store_rx,
        Options {
            tcp_services: Some(NamespacedName {
                namespace: "ingress".into(),
                name: "tcp-services".into(),
            }),
            ..Options::default()
        },
    );
    let (leading_tx, _leading) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let ops = tokio::spawn(run(
        client.clone(),
        KubeOps {
            election: ElectionConfig::new(
                "ingress",
                "xdp-ingress-leader",
                "ctrl-a",
                Duration::from_secs(3),
            ),
            status: None,
            own_addresses: Vec::new(),
            events: EventsConfig {
                host: Some("node-1".into()),
                ..EventsConfig::default()
            },
            controller: "xdp-ingress.dev/controller".into(),
        },
        handle.ingresses.clone(),
        handle.gateways.clone(),
        handle.snapshots.clone(),
        stop_rx,
        leading_tx,
    ));

    let events: Api<Event> = Api::namespaced(client, "ingress");
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            let found = events_about(&events, "ConfigMap", "tcp-services").await;
            if !found.is_empty() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("no Event on the ConfigMap");
    assert_eq!(found.len(), 1, "{found:?}");
    let e = &found[0];
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.reason.as_deref(), Some("InvalidPortKey"));
    assert_eq!(e.involved_object.namespace.as_deref(), Some("ingress"));
    assert_eq!(e.involved_object.api_version.as_deref(), Some("v1"));
    assert_eq!(e.count, Some(1));
    let message = e.message.clone().unwrap_or_default();
    assert!(message.starts_with(r#"data["redis"]: "#), "{message}");
    assert_eq!(
        e.source.as_ref().and_then(|s| s.host.as_deref()),
        Some("node-1")
    );

    // kubectl sees it the way an operator would look for it.
    let out = api
        .kubectl(&["get", "events", "-n", "ingress", "-o", "json"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("kubectl JSON");
    assert!(
        listed["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| {
                i["involvedObject"]["name"] == "tcp-services" && i["reason"] == "InvalidPortKey"
            })),
        "{listed}"
    );

    stop_tx.send_replace(true);
    tokio::time::timeout(DEADLINE, ops)
        .await
        .expect("ops stopped")
        .unwrap();
    src.abort();
}

fn problem(key: &str) -> Problem {
    Problem {
        object: ObjectRef {
            kind: "ConfigMap".into(),
            namespace: Some("ingress".into()),
            name: "tcp-services".into(),
        },
        field: Some(format!("data[{key:?}]")),
        kind: "invalid_value",
        message: "bad".into(),
        severity: Severity::Error,
    }
}

#[tokio::test]
async fn repeats_within_the_window_are_dropped_and_later_ones_bump_the_count() {
    let api = FakeApi::start().await;
    let client = api.client().await;
    let events: Api<Event> = Api::namespaced(client.clone(), "ingress");

    let mut limited = Recorder::new(
        client.clone(),
        EventsConfig {
            window: Duration::from_secs(3600),
            ..EventsConfig::default()
        },
    );
    for _ in 0..3 {
        limited.record(&[problem("9000")]).await;
    }
    let found = events_about(&events, "ConfigMap", "tcp-services").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].count, Some(1), "within the window: no repeat");

    // Another key is another Event.
    limited.record(&[problem("9000"), problem("9001")]).await;
    assert_eq!(
        events_about(&events, "ConfigMap", "tcp-services")
            .await
            .len(),
        2
    );

    // With no window every announcement counts, aggregated into the same Event (also
    // across recorders, i.e. after a leader change).
    let mut eager = Recorder::new(
        client,
        EventsConfig {
            window: Duration::ZERO,
            ..EventsConfig::default()
        },
    );
    eager.record(&[problem("9000")]).await;
    eager.record(&[problem("9000")]).await;
    let found = events_about(&events, "ConfigMap", "tcp-services").await;
    assert_eq!(found.len(), 2);
    let counts: Vec<Option<i32>> = found.iter().map(|e| e.count).collect();
    assert!(counts.contains(&Some(3)), "{counts:?}");
}
