//! The kube source (kube-rs watchers) against the fake API server with the real kube-rs
//! client: what the Changes it sends add up to, and what survives 410s, dropped watches and
//! an API server that is down.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use ingress_tests::fake_api::FakeApi;
use kube::{
    Api,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    },
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use xdp_ingress::{
    config::Store,
    source::{
        self, Follower, UpdateRx,
        kube::{KubeSourceConfig, run, wait_reachable},
    },
};

const DEADLINE: Duration = Duration::from_secs(15);

fn cfg() -> KubeSourceConfig {
    KubeSourceConfig {
        watch_namespace: None,
        tcp_configmap: Some(("ingress-nginx".into(), "tcp-services".into())),
        udp_configmap: Some(("ingress-nginx".into(), "udp-services".into())),
        all_configmaps: false,
    }
}

/// The served kinds: (apiVersion, kind, plural).
const KINDS: &[(&str, &str, &str)] = &[
    ("networking.k8s.io/v1", "Ingress", "ingresses"),
    ("networking.k8s.io/v1", "IngressClass", "ingressclasses"),
    ("v1", "Service", "services"),
    ("discovery.k8s.io/v1", "EndpointSlice", "endpointslices"),
    ("v1", "Secret", "secrets"),
    ("v1", "ConfigMap", "configmaps"),
];

fn object(kind: &str, ns: &str, name: &str) -> Value {
    let (api_version, _, _) = KINDS.iter().find(|k| k.1 == kind).unwrap();
    let mut o = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
    if kind != "IngressClass" {
        o["metadata"]["namespace"] = json!(ns);
    }
    match kind {
        "Ingress" => {
            o["spec"] = json!({"rules": [{"host": format!("{name}.test"), "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]});
        }
        "IngressClass" => o["spec"] = json!({"controller": "xdp-ingress.dev/controller"}),
        "Service" => {
            o["spec"] = json!({"ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
        }
        "EndpointSlice" => {
            o["addressType"] = json!("IPv4");
            o["metadata"]["labels"] = json!({"kubernetes.io/service-name": "web"});
            o["endpoints"] = json!([{"addresses": ["127.0.0.2"], "conditions": {"ready": true}}]);
            o["ports"] = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);
        }
        "Secret" => {
            o["type"] = json!("kubernetes.io/tls");
            o["data"] = json!({"tls.crt": "Y2VydA==", "tls.key": "a2V5"});
        }
        "ConfigMap" => o["data"] = json!({"9000": "default/redis:6379"}),
        _ => unreachable!(),
    }
    o
}

fn dynamic_api(client: &kube::Client, kind: &str, ns: &str) -> Api<DynamicObject> {
    let (api_version, kind, plural) = KINDS.iter().find(|k| k.1 == kind).unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    if *kind == "IngressClass" {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), ns, &ar)
    }
}

/// Every object of a Store as (kind, namespace/name, resourceVersion, labels).
fn contents(store: &Store) -> Vec<(String, String, String, Value)> {
    fn add<T: serde::Serialize>(
        kind: &str,
        items: &[T],
        out: &mut Vec<(String, String, String, Value)>,
    ) {
        for item in items {
            let v = serde_json::to_value(item).unwrap();
            let m = &v["metadata"];
            let key = format!(
                "{}/{}",
                m["namespace"].as_str().unwrap_or(""),
                m["name"].as_str().unwrap()
            );
            out.push((
                kind.into(),
                key,
                m["resourceVersion"].as_str().unwrap().into(),
                m["labels"].clone(),
            ));
        }
    }
    let mut out = Vec::new();
    add("Ingress", &store.ingresses, &mut out);
    add("IngressClass", &store.ingress_classes, &mut out);
    add("Service", &store.services, &mut out);
    add("EndpointSlice", &store.endpoint_slices, &mut out);
    add("Secret", &store.secrets, &mut out);
    add("ConfigMap", &store.config_maps, &mut out);
    out.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    out
}

/// (kind, namespace/name) of every object in a Store.
fn keys(store: &Store) -> BTreeSet<(String, String)> {
    contents(store)
        .into_iter()
        .map(|(k, n, _, _)| (k, n))
        .collect()
}

/// What the source should hold per the server: every object of the watched kinds, TLS and
/// Opaque (`auth-secret`) Secrets only, the two named ConfigMaps only; as (kind, ns/name,
/// resourceVersion).
fn expected(api: &FakeApi) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (api_version, kind, plural) in KINDS {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let res = ingress_tests::fake_api::resources::find(group, version, plural).unwrap();
        for o in api.store().snapshot(res, None).1 {
            let m = &o["metadata"];
            let key = format!(
                "{}/{}",
                m["namespace"].as_str().unwrap_or(""),
                m["name"].as_str().unwrap()
            );
            let wanted = match *kind {
                "Secret" => o["type"] == "kubernetes.io/tls" || o["type"] == "Opaque",
                "ConfigMap" => {
                    key == "ingress-nginx/tcp-services" || key == "ingress-nginx/udp-services"
                }
                _ => true,
            };
            if wanted {
                out.push((
                    (*kind).to_owned(),
                    key,
                    m["resourceVersion"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn without_labels(c: Vec<(String, String, String, Value)>) -> Vec<(String, String, String)> {
    c.into_iter().map(|(k, n, rv, _)| (k, n, rv)).collect()
}

struct Source {
    rx: Followed,
    task: JoinHandle<()>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start(client: kube::Client, cfg: KubeSourceConfig) -> Source {
    let (tx, rx) = source::channel();
    let task = tokio::spawn(run(client, cfg, tx));
    Source {
        rx: Followed {
            rx,
            f: Follower::default(),
        },
        task,
    }
}

/// The source's updates, added up.
struct Followed {
    rx: UpdateRx,
    f: Follower,
}

impl Followed {
    /// What the source sent so far, once it has synced.
    fn current(&mut self) -> Option<Arc<Store>> {
        while let Ok(u) = self.rx.try_recv() {
            self.f.apply(u);
        }
        self.f.synced.then(|| Arc::new(self.f.objects.to_store()))
    }
}

/// Wait (generous deadline) until what the source sent satisfies `pred`; return it.
async fn wait_for(rx: &mut Followed, what: &str, pred: impl Fn(&Store) -> bool) -> Arc<Store> {
    let got = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(s) = rx.current()
                && pred(&s)
            {
                return Some(s);
            }
            if !rx.f.next(&mut rx.rx).await {
                return None;
            }
        }
    })
    .await;
    match got {
        Ok(Some(s)) => s,
        Ok(None) => panic!("source ended while waiting for {what}"),
        Err(_) => panic!(
            "timed out waiting for {what}; last store: {:?}",
            rx.current().as_deref().map(contents)
        ),
    }
}

/// Wait until the Store holds exactly what the server holds (nothing lost, nothing stale),
/// and check nothing is duplicated.
async fn converge(rx: &mut Followed, api: &FakeApi, what: &str) {
    let want = expected(api);
    let store = wait_for(rx, what, |s| without_labels(contents(s)) == want).await;
    let all = contents(&store);
    assert_eq!(keys(&store).len(), all.len(), "duplicates in {all:?}");
}

async fn kubectl_ok(api: &FakeApi, args: &[&str]) {
    let out = api.kubectl(args).await;
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn seed(api: &FakeApi) {
    for ns in ["default", "other"] {
        for kind in ["Ingress", "Service", "EndpointSlice", "Secret"] {
            for i in 0..3 {
                api.put(object(kind, ns, &format!("{}-{i}", kind.to_lowercase())));
            }
        }
    }
    api.put(object("IngressClass", "", "xdp"));
    api.put(object("ConfigMap", "ingress-nginx", "tcp-services"));
    api.put(object("ConfigMap", "ingress-nginx", "unrelated"));
    let mut opaque = object("Secret", "default", "opaque");
    opaque["type"] = json!("Opaque");
    api.put(opaque);
    let mut helm = object("Secret", "default", "helm-release");
    helm["type"] = json!("helm.sh/release.v1");
    api.put(helm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_publish_is_complete_and_filtered() {
    let api = FakeApi::start().await;
    seed(&api);
    let mut with_fields = object("Ingress", "default", "managed");
    with_fields["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Update", "apiVersion": "networking.k8s.io/v1"}]);
    api.put(with_fields);

    let mut src = start(api.client().await, cfg());
    let store = wait_for(&mut src.rx, "the initial sync", |_| true).await;
    // The very first Store published is already complete.
    assert_eq!(without_labels(contents(&store)), expected(&api));
    assert_eq!(store.ingresses.len(), 7);
    assert_eq!(
        store.secrets.len(),
        7,
        "only kubernetes.io/tls and Opaque Secrets"
    );
    assert!(
        store
            .secrets
            .iter()
            .all(|s| matches!(s.type_.as_deref(), Some("kubernetes.io/tls" | "Opaque")))
    );
    let cms: Vec<_> = store
        .config_maps
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(cms, ["tcp-services"], "only the named ConfigMaps");
    let managed = store
        .ingresses
        .iter()
        .find(|i| i.metadata.name.as_deref() == Some("managed"))
        .unwrap();
    assert!(
        managed
            .metadata
            .managed_fields
            .as_ref()
            .is_none_or(Vec::is_empty),
        "managedFields stripped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_delete_of_each_kind_reach_the_next_store() {
    let api = FakeApi::start().await;
    let client = api.client().await;
    let mut src = start(client.clone(), cfg());
    wait_for(&mut src.rx, "the initial sync", |_| true).await;

    for (_, kind, _) in KINDS {
        let (ns, name) = match *kind {
            "ConfigMap" => ("ingress-nginx", "udp-services"),
            _ => ("default", "probe"),
        };
        let key = (
            (*kind).to_owned(),
            format!("{}/{name}", if *kind == "IngressClass" { "" } else { ns }),
        );
        let dynapi = dynamic_api(&client, kind, ns);
        let obj: DynamicObject = serde_json::from_value(object(kind, ns, name)).unwrap();
        dynapi.create(&PostParams::default(), &obj).await.unwrap();
        wait_for(&mut src.rx, &format!("{kind} created"), |s| {
            keys(s).contains(&key)
        })
        .await;

        let patch = json!({"metadata": {"labels": {"rev": "2"}}});
        dynapi
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        wait_for(&mut src.rx, &format!("{kind} updated"), |s| {
            contents(s)
                .iter()
                .any(|(k, n, _, labels)| (k, n) == (&key.0, &key.1) && labels["rev"] == "2")
        })
        .await;

        dynapi.delete(name, &DeleteParams::default()).await.unwrap();
        wait_for(&mut src.rx, &format!("{kind} deleted"), |s| {
            !keys(s).contains(&key)
        })
        .await;
    }
    converge(&mut src.rx, &api, "the end state").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_converges_after_forced_410_and_after_dropped_watches() {
    let api = FakeApi::start().await;
    seed(&api);
    let client = api.client().await;
    let mut src = start(client.clone(), cfg());
    converge(&mut src.rx, &api, "the initial sync").await;

    // Changes the source cannot see live, then compaction: every re-watch gets 410 and relists.
    api.set_down(true).await;
    assert!(api.remove("networking.k8s.io/v1", "Ingress", "default", "ingress-0"));
    assert!(api.remove("v1", "Secret", "other", "secret-1"));
    api.put(object("Service", "default", "added-while-down"));
    let mut changed = object("EndpointSlice", "default", "endpointslice-2");
    changed["endpoints"][0]["addresses"] = json!(["127.0.0.3"]);
    api.put(changed);
    api.put(object("ConfigMap", "ingress-nginx", "udp-services"));
    let gone = api.store().gone_served();
    api.force_gone();
    api.set_down(false).await;
    converge(&mut src.rx, &api, "convergence after 410").await;
    // A reflector whose kind did not change may still be in its retry backoff when the
    // Store has converged; its re-watch into the 410 comes after.
    let all_gone = tokio::time::timeout(DEADLINE, async {
        while api.store().gone_served() < gone + 7 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        all_gone.is_ok(),
        "every reflector re-watched into a 410 (served {} of 7)",
        api.store().gone_served() - gone
    );
    let store = src.rx.current().unwrap();
    let slice = store
        .endpoint_slices
        .iter()
        .find(|e| e.metadata.name.as_deref() == Some("endpointslice-2"))
        .unwrap();
    assert_eq!(slice.endpoints[0].addresses, ["127.0.0.3"]);

    // Dropped watches: they resume from their resourceVersion; changes made meanwhile arrive.
    api.drop_watches();
    let ings = dynamic_api(&client, "Ingress", "other");
    ings.delete("ingress-2", &DeleteParams::default())
        .await
        .unwrap();
    let obj: DynamicObject =
        serde_json::from_value(object("Ingress", "other", "after-drop")).unwrap();
    ings.create(&PostParams::default(), &obj).await.unwrap();
    api.drop_watches();
    api.put(object("IngressClass", "", "second"));
    converge(&mut src.rx, &api, "convergence after dropped watches").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_at_start_is_retried_then_synced() {
    let api = FakeApi::start().await;
    seed(&api);
    api.set_down(true).await;
    let client = api.client().await;
    let mut src = start(client.clone(), cfg());
    let reached = tokio::spawn(async move { wait_reachable(&client).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        src.rx.current().is_none(),
        "nothing is published while the server is down"
    );
    assert!(
        !reached.is_finished(),
        "wait_reachable keeps retrying while the server is down"
    );

    api.set_down(false).await;
    tokio::time::timeout(DEADLINE, reached)
        .await
        .expect("wait_reachable returns once up")
        .unwrap();
    converge(&mut src.rx, &api, "the sync once the server is up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_later_keeps_the_last_store() {
    let api = FakeApi::start().await;
    seed(&api);
    let mut src = start(api.client().await, cfg());
    converge(&mut src.rx, &api, "the initial sync").await;
    let before = contents(&src.rx.current().unwrap());

    api.set_down(true).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // long enough for watch retries to fail
    let now = src.rx.current().expect("still published");
    assert_eq!(
        contents(&now),
        before,
        "the last Store stays while the server is down"
    );

    api.set_down(false).await;
    api.put(object("Ingress", "default", "after-outage"));
    converge(&mut src.rx, &api, "recovery after the outage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespace_limits_namespaced_kinds() {
    let api = FakeApi::start().await;
    seed(&api);
    let cfg = KubeSourceConfig {
        watch_namespace: Some("other".into()),
        ..cfg()
    };
    let mut src = start(api.client().await, cfg);
    let store = wait_for(&mut src.rx, "the initial sync", |_| true).await;
    let namespaces: BTreeSet<String> = keys(&store)
        .into_iter()
        .map(|(_, n)| n.split('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        namespaces,
        BTreeSet::from(["".into(), "ingress-nginx".into(), "other".into()])
    );
    assert_eq!(store.ingresses.len(), 3);
    assert_eq!(
        store.ingress_classes.len(),
        1,
        "cluster-scoped kinds are always watched"
    );
    assert_eq!(
        store.config_maps.len(),
        1,
        "ConfigMaps are watched in their own namespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_and_replace_of_the_seed_configmap_reach_the_store() {
    let api = FakeApi::start().await;
    let mut src = start(api.client().await, cfg());
    wait_for(&mut src.rx, "the initial sync", |_| true).await;
    let dir = api.kubeconfig_path.parent().unwrap().to_owned();
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tcp-services, namespace: ingress-nginx}\ndata:\n  \"9000\": \"default/redis:6379\"\n";
    let file = dir.join("tcp-services.yaml");
    std::fs::write(&file, yaml).unwrap();
    let entry = |s: &Store| {
        s.config_maps
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some("tcp-services"))
            .and_then(|c| c.data.as_ref()?.get("9000").cloned())
    };
    kubectl_ok(&api, &["create", "-f", file.to_str().unwrap()]).await;
    wait_for(&mut src.rx, "the created ConfigMap", |s| {
        entry(s).as_deref() == Some("default/redis:6379")
    })
    .await;

    std::fs::write(&file, yaml.replace("6379", "6380")).unwrap();
    kubectl_ok(&api, &["replace", "-f", file.to_str().unwrap()]).await;
    wait_for(&mut src.rx, "the replaced ConfigMap", |s| {
        entry(s).as_deref() == Some("default/redis:6380")
    })
    .await;

    kubectl_ok(&api, &["delete", "-f", file.to_str().unwrap()]).await;
    wait_for(&mut src.rx, "the deleted ConfigMap", |s| entry(s).is_none()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_changes_all_arrive() {
    let api = FakeApi::start().await;
    let client = api.client().await;
    let mut src = start(client.clone(), cfg());
    wait_for(&mut src.rx, "the initial sync", |_| true).await;
    let svcs = dynamic_api(&client, "Service", "default");
    for i in 0..100 {
        let obj: DynamicObject =
            serde_json::from_value(object("Service", "default", &format!("burst-{i:03}"))).unwrap();
        svcs.create(&PostParams::default(), &obj).await.unwrap();
    }
    converge(&mut src.rx, &api, "all 100 Services").await;
    assert_eq!(src.rx.current().unwrap().services.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_configmap_named_for_tcp_and_udp_appears_once() {
    let api = FakeApi::start().await;
    api.put(object("ConfigMap", "ingress-nginx", "tcp-services"));
    let both = ("ingress-nginx".to_owned(), "tcp-services".to_owned());
    let cfg = KubeSourceConfig {
        tcp_configmap: Some(both.clone()),
        udp_configmap: Some(both),
        ..cfg()
    };
    let mut src = start(api.client().await, cfg);
    let store = wait_for(&mut src.rx, "the initial sync", |_| true).await;
    assert_eq!(store.config_maps.len(), 1);
}
