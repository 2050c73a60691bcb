//! Ingress status with leader election: two controller instances (each its own kube-rs
//! client, kube source and ops tasks) against the fake API server with short leases. One
//! leads and writes the status; when it dies without releasing anything, the other takes
//! over once the Lease expires and keeps the status right.

use std::time::Duration;

use ingress_tests::fake_api::FakeApi;
use k8s_openapi::api::{coordination::v1::Lease, networking::v1::Ingress};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tokio::{sync::watch, task::JoinHandle};
use xdp_ingress::{
    config::Options,
    controller,
    ops::{
        election::ElectionConfig,
        events::EventsConfig,
        kube::{KubeOps, run},
        status::{self, AddressSource, StatusConfig},
    },
    source::kube::{KubeSourceConfig, run as source},
};

/// Generous bound on every wait (many lease durations); never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(30);
const LEASE: Duration = Duration::from_secs(2);
const NS: &str = "ingress";
const ELECTION: &str = "xdp-ingress-leader";

struct Instance {
    identity: &'static str,
    leading: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Instance {
    async fn start(api: &FakeApi, identity: &'static str, address: &str) -> Self {
        let client = api.client().await;
        let (store_tx, store_rx) = xdp_ingress::source::channel();
        let src = tokio::spawn(source(
            client.clone(),
            KubeSourceConfig::default(),
            store_tx,
        ));
        let handle = controller::spawn(store_rx, Options::default());
        let cfg = KubeOps {
            election: ElectionConfig {
                namespace: NS.into(),
                name: ELECTION.into(),
                identity: identity.into(),
                lease_duration: LEASE,
                renew_interval: LEASE / 4,
            },
            status: Some(StatusConfig {
                addresses: AddressSource::Members,
                namespace: NS.into(),
                election_id: ELECTION.into(),
                resync: LEASE / 4,
            }),
            own_addresses: vec![address.to_owned()],
            events: EventsConfig::default(),
            controller: Options::default().controller_class,
        };
        let (leading_tx, leading) = watch::channel(false);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let ops = tokio::spawn(async move {
            let _keep = _stop_tx;
            run(
                client,
                cfg,
                handle.ingresses.clone(),
                handle.gateways.clone(),
                handle.snapshots.clone(),
                stop_rx,
                leading_tx,
            )
            .await;
        });
        Self {
            identity,
            leading,
            tasks: vec![src, ops],
        }
    }

    /// Dies like a killed process: nothing is released or deleted.
    fn kill(self) {
        for t in self.tasks {
            t.abort();
        }
    }

    fn leads(&self) -> bool {
        *self.leading.borrow()
    }
}

fn ingress(name: &str, class: &str) -> serde_json::Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ingressClassName": class, "rules": [{"host": format!("{name}.test"), "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    })
}

async fn addresses(api: &Api<Ingress>, name: &str) -> Vec<String> {
    status::current(&api.get(name).await.expect("get Ingress"))
}

async fn wait_for_addresses(api: &Api<Ingress>, name: &str, want: &[&str]) {
    let got = tokio::time::timeout(DEADLINE, async {
        loop {
            let got = addresses(api, name).await;
            if got == want {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        got.is_ok(),
        "{name}: status never became {want:?}; last {:?}",
        addresses(api, name).await
    );
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(ELECTION)
        .await
        .expect("get Lease")
        .and_then(|l| l.spec?.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_writes_the_status_and_the_other_takes_over_when_it_dies() {
    let api = FakeApi::start().await;
    api.put(ingress("web", "xdp"));
    api.put(ingress("theirs", "nginx"));
    api.put(ingress("stale", "nginx"));
    let client = api.client().await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "default");
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    // Another controller's status, and a stale one of ours on an Ingress we do not serve.
    for (name, ip) in [("theirs", "192.0.2.7"), ("stale", "127.0.0.1")] {
        ingresses
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
            )
            .await
            .expect("seed status");
    }

    let a = Instance::start(&api, "ctrl-a", "127.0.0.1").await;
    let b = Instance::start(&api, "ctrl-b", "127.0.0.2").await;
    let instances = [a, b];

    // Exactly one leads, and the Lease names it.
    tokio::time::timeout(DEADLINE, async {
        while !instances.iter().any(Instance::leads) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("nobody became leader");
    wait_for_addresses(&ingresses, "web", &["127.0.0.1", "127.0.0.2"]).await;
    let leaders: Vec<&str> = instances
        .iter()
        .filter(|i| i.leads())
        .map(|i| i.identity)
        .collect();
    assert_eq!(leaders.len(), 1, "leaders: {leaders:?}");
    assert_eq!(holder(&leases).await.as_deref(), Some(leaders[0]));
    wait_for_addresses(&ingresses, "stale", &[]).await;
    assert_eq!(
        addresses(&ingresses, "theirs").await,
        ["192.0.2.7"],
        "not ours: untouched"
    );

    // Kill the leader; the survivor takes over and drops the dead instance's address.
    let [first, second] = instances;
    let (dead, survivor) = if first.leads() {
        (first, second)
    } else {
        (second, first)
    };
    let survivor_ip = if survivor.identity == "ctrl-a" {
        "127.0.0.1"
    } else {
        "127.0.0.2"
    };
    let dead_name = dead.identity;
    dead.kill();
    let mut leading = survivor.leading.clone();
    tokio::time::timeout(DEADLINE, leading.wait_for(|l| *l))
        .await
        .expect("the survivor never took over")
        .unwrap();
    assert_eq!(holder(&leases).await.as_deref(), Some(survivor.identity));
    assert_ne!(survivor.identity, dead_name);
    wait_for_addresses(&ingresses, "web", &[survivor_ip]).await;

    // An Ingress that moves to another class is cleared by the new leader (via kubectl).
    let out = api
        .kubectl(&[
            "patch",
            "ingress",
            "web",
            "-n",
            "default",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"ingressClassName":"nginx"}}"#,
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_addresses(&ingresses, "web", &[]).await;
    survivor.kill();
}
