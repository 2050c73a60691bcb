//! The fake API server against its real clients: the installed `kubectl` and kube-rs.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use ingress_tests::fake_api::FakeApi;
use k8s_openapi::api::{core::v1::ConfigMap, networking::v1::Ingress};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    runtime::{WatchStreamExt, reflector, watcher},
};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(10);

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "kubectl failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "data": data.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_replaces_gets_and_deletes_configmap_and_ingress() {
    let api = FakeApi::start().await;
    let dir = api.kubeconfig_path.parent().unwrap().to_owned();
    let cm1 = write(
        &dir,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tcp-services, namespace: ingress-nginx}\ndata:\n  \"9000\": \"default/redis:6379\"\n",
    );
    let cm2 = write(
        &dir,
        "cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tcp-services, namespace: ingress-nginx}\ndata:\n  \"9000\": \"default/redis:6380\"\n",
    );
    let ing = write(
        &dir,
        "ing.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: dashboard-ingress, namespace: kube-system}\nspec:\n  rules:\n  - host: k8sui.test.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: kubernetes-dashboard, port: {number: 80}}}}\n",
    );
    let f = |p: &std::path::Path| p.to_str().unwrap().to_owned();

    assert!(
        ok(&api.kubectl(&["create", "-f", &f(&cm1)]).await)
            .contains("configmap/tcp-services created")
    );
    let got: Value = serde_json::from_str(&ok(&api
        .kubectl(&[
            "get",
            "cm",
            "-n",
            "ingress-nginx",
            "tcp-services",
            "-o",
            "json",
        ])
        .await))
    .unwrap();
    assert_eq!(got["data"]["9000"], "default/redis:6379");
    let rv1: u64 = got["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!got["metadata"]["uid"].as_str().unwrap().is_empty());

    let again = api.kubectl(&["create", "-f", &f(&cm1)]).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("AlreadyExists"),
        "{again:?}"
    );

    assert!(ok(&api.kubectl(&["replace", "-f", &f(&cm2)]).await).contains("replaced"));
    let got: Value = serde_json::from_str(&ok(&api
        .kubectl(&[
            "get",
            "cm",
            "-n",
            "ingress-nginx",
            "tcp-services",
            "-o",
            "json",
        ])
        .await))
    .unwrap();
    assert_eq!(got["data"]["9000"], "default/redis:6380");
    let rv2: u64 = got["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv2 > rv1,
        "replace must bump resourceVersion: {rv1} -> {rv2}"
    );

    ok(&api.kubectl(&["create", "-f", &f(&ing)]).await);
    let list: Value = serde_json::from_str(&ok(&api
        .kubectl(&["get", "ingress", "-A", "-o", "json"])
        .await))
    .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["name"], "dashboard-ingress");
    assert_eq!(items[0]["metadata"]["namespace"], "kube-system");
    assert_eq!(items[0]["spec"]["rules"][0]["host"], "k8sui.test.com");
    assert_eq!(items[0]["metadata"]["generation"], 1);
    assert!(ok(&api.kubectl(&["get", "ingress", "-A"]).await).contains("dashboard-ingress"));

    // apply: a second apply of a changed file patches the existing object.
    let applied = write(
        &dir,
        "applied.yaml",
        &std::fs::read_to_string(&ing)
            .unwrap()
            .replace("dashboard-ingress", "applied"),
    );
    assert!(ok(&api.kubectl(&["apply", "-f", &f(&applied)]).await).contains("created"));
    std::fs::write(
        &applied,
        std::fs::read_to_string(&applied)
            .unwrap()
            .replace("k8sui.test.com", "other.test.com"),
    )
    .unwrap();
    assert!(ok(&api.kubectl(&["apply", "-f", &f(&applied)]).await).contains("configured"));
    let got: Value = serde_json::from_str(&ok(&api
        .kubectl(&[
            "get",
            "ingress",
            "-n",
            "kube-system",
            "applied",
            "-o",
            "json",
        ])
        .await))
    .unwrap();
    assert_eq!(got["spec"]["rules"][0]["host"], "other.test.com");
    assert_eq!(got["metadata"]["generation"], 2);
    ok(&api.kubectl(&["delete", "-f", &f(&applied)]).await);

    ok(&api.kubectl(&["delete", "-f", &f(&ing)]).await);
    ok(&api.kubectl(&["delete", "-f", &f(&cm2)]).await);
    let list: Value = serde_json::from_str(&ok(&api
        .kubectl(&["get", "cm,ingress", "-A", "-o", "json"])
        .await))
    .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_client_lists_in_pages_with_one_resource_version_and_selectors() {
    let api = FakeApi::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    for i in 0..25 {
        let mut c = cm(&format!("cm-{i:02}"), &[("k", "v")]);
        if i % 5 == 0 {
            c.labels_mut().insert("app".into(), "other".into());
        }
        cms.create(&PostParams::default(), &c).await.unwrap();
    }
    let mut names = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    let mut rvs = Vec::new();
    loop {
        let mut lp = ListParams::default().limit(10);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        rvs.push(page.metadata.resource_version.clone().unwrap());
        // A write between pages must not show up in the paginated result.
        if pages == 1 {
            cms.create(&PostParams::default(), &cm("zz-late", &[]))
                .await
                .unwrap();
        }
        names.extend(page.items.iter().map(ResourceExt::name_any));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(names, want);
    assert_eq!(pages, 3);
    assert!(
        rvs.iter().all(|rv| *rv == rvs[0]),
        "one consistent resourceVersion: {rvs:?}"
    );

    let all = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 26);
    let other = cms
        .list(&ListParams::default().labels("app=other"))
        .await
        .unwrap();
    assert_eq!(other.items.len(), 5);
    let not_other = cms
        .list(&ListParams::default().labels("app!=other"))
        .await
        .unwrap();
    assert_eq!(not_other.items.len(), 21);
    let one = cms
        .list(&ListParams::default().fields("metadata.name=cm-07"))
        .await
        .unwrap();
    assert_eq!(
        one.items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        ["cm-07"]
    );
    let elsewhere: Api<ConfigMap> = Api::namespaced(api.client().await, "kube-system");
    assert!(
        elsewhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let everywhere: Api<ConfigMap> = Api::all(api.client().await);
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        26
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_watcher_sees_create_update_delete() {
    let api = FakeApi::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let mut events = watcher(cms.clone(), watcher::Config::default()).boxed();
    // The initial (empty) list completes first.
    loop {
        match tokio::time::timeout(DEADLINE, events.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => panic!("watcher ended"),
        }
    }
    cms.create(&PostParams::default(), &cm("a", &[("k", "1")]))
        .await
        .unwrap();
    let mut c = cms.get("a").await.unwrap();
    c.data.as_mut().unwrap().insert("k".into(), "2".into());
    cms.replace("a", &PostParams::default(), &c).await.unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(DEADLINE, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev {
            watcher::Event::Apply(o) => {
                seen.push(format!("apply {} k={}", o.name_any(), o.data.unwrap()["k"]));
            }
            watcher::Event::Delete(o) => seen.push(format!("delete {}", o.name_any())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["apply a k=1", "apply a k=2", "delete a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_compacted_version_gets_410_as_an_error_event() {
    let api = FakeApi::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let first = cms
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    let old_rv = first.resource_version().unwrap();

    // Before compaction, a watch from the first version replays the later create.
    let mut s = cms
        .watch(&WatchParams::default().timeout(5), &old_rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(DEADLINE, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Added(o) => assert_eq!(o.name_any(), "b"),
        other => panic!("expected ADDED b, got {other:?}"),
    }
    drop(s);

    api.force_gone();
    let mut s = cms
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(DEADLINE, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(DEADLINE, s.next())
            .await
            .unwrap()
            .is_none(),
        "stream ends after 410"
    );
    assert_eq!(api.store().gone_served(), 1);

    // Watching from the current version is still fine.
    let now = api.store().resource_version().to_string();
    let wp = WatchParams {
        bookmarks: false,
        ..WatchParams::default().timeout(1)
    };
    let events: Vec<_> = cms.watch(&wp, &now).await.unwrap().collect().await;
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(api.store().gone_served(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_get_bookmarks_and_end_at_their_timeout() {
    let api = FakeApi::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    cms.create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let rv = api.store().resource_version().to_string();
    let mut s = cms
        .watch(&WatchParams::default().timeout(3), &rv)
        .await
        .unwrap()
        .boxed();
    let mut bookmarks = 0;
    let started = Instant::now();
    while let Some(ev) = tokio::time::timeout(DEADLINE, s.next())
        .await
        .expect("watch must end by its timeout")
    {
        match ev.unwrap() {
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.metadata.resource_version, rv);
                bookmarks += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(started.elapsed() < DEADLINE);
    }
    assert!(bookmarks >= 1, "asked for bookmarks, got none");

    // Without bookmarks asked for, none come.
    let wp = WatchParams {
        bookmarks: false,
        ..WatchParams::default().timeout(2)
    };
    let events: Vec<_> = cms.watch(&wp, &rv).await.unwrap().collect().await;
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_is_apart_from_spec() {
    let api = FakeApi::start().await;
    let ings: Api<Ingress> = Api::namespaced(api.client().await, "default");
    let ing: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
    }))
    .unwrap();
    let created = ings.create(&PostParams::default(), &ing).await.unwrap();
    assert!(created.status.is_none(), "create ignores status");
    assert_eq!(created.metadata.generation, Some(1));

    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}});
    let after = ings
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(
        after
            .status
            .unwrap()
            .load_balancer
            .unwrap()
            .ingress
            .unwrap()[0]
            .ip
            .as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status writes keep the generation"
    );

    let spec = json!({"spec": {"defaultBackend": {"service": {"name": "web2", "port": {"number": 80}}}}, "status": null});
    let after = ings
        .patch("web", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert_eq!(
        after.metadata.generation,
        Some(2),
        "spec writes bump the generation"
    );
    assert!(after.status.is_some(), "spec writes keep the status");

    let mut stale = created.clone();
    stale.metadata.labels = Some(BTreeMap::from([("x".into(), "y".into())]));
    let err = ings
        .replace("web", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "{err}"
    );

    let apply = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "applied"},
                       "spec": {"defaultBackend": {"service": {"name": "a", "port": {"number": 1}}}}});
    ings.patch(
        "applied",
        &PatchParams::apply("test"),
        &Patch::Apply(&apply),
    )
    .await
    .unwrap();
    assert!(ings.get("applied").await.is_ok(), "apply-patch creates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_converges_after_gone_and_dropped_watches() {
    let api = FakeApi::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    for i in 0..20 {
        cms.create(
            &PostParams::default(),
            &cm(&format!("cm-{i:02}"), &[("v", "0")]),
        )
        .await
        .unwrap();
    }
    let (reader, writer) = reflector::store();
    let cfg = watcher::Config::default().page_size(7);
    let stream = watcher(cms.clone(), cfg)
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(DEADLINE, reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.len(), 20);

    let server_state = |api: &FakeApi| -> BTreeMap<String, String> {
        let (_, objs) = api.store().snapshot(3, Some("default"));
        objs.iter()
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap().to_owned(),
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect()
    };
    let reader_state = |reader: &reflector::Store<ConfigMap>| -> BTreeMap<String, String> {
        reader
            .state()
            .iter()
            .map(|o| (o.name_any(), o.resource_version().unwrap()))
            .collect()
    };
    let converge = |reader: reflector::Store<ConfigMap>, api: &FakeApi| {
        let want = server_state(api);
        async move {
            let deadline = Instant::now() + DEADLINE;
            loop {
                let got = reader_state(&reader);
                if got == want {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "reflector did not converge:\n got {got:?}\nwant {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // 1: changes while the client cannot watch, then history compacted: the re-watch gets
    //    410 and the watcher lists again.
    api.set_down(true).await;
    for i in 20..25 {
        api.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:02}"), "namespace": "default"}}));
    }
    for i in 0..3 {
        assert!(api.remove("v1", "ConfigMap", "default", &format!("cm-{i:02}")));
    }
    api.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-10", "namespace": "default"}, "data": {"v": "1"}}));
    let gone_before = api.store().gone_served();
    api.force_gone();
    api.set_down(false).await;
    converge(reader.clone(), &api).await;
    assert!(
        api.store().gone_served() > gone_before,
        "the re-watch must have hit 410"
    );
    assert_eq!(reader.len(), 22);

    // 2: a dropped watch alone resumes from its resourceVersion and catches up.
    let watches_before = api.store().watches_started();
    api.drop_watches();
    cms.delete("cm-05", &DeleteParams::default()).await.unwrap();
    let patch = json!({"data": {"v": "2"}});
    cms.patch("cm-11", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("cm-99", &[]))
        .await
        .unwrap();
    converge(reader.clone(), &api).await;
    assert!(
        api.store().watches_started() > watches_before,
        "a new watch was started"
    );
    assert_eq!(reader.len(), 22);
    assert_eq!(
        reader_state(&reader).len(),
        reader.state().len(),
        "no duplicates"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_down_refuses_connections_and_up_serves_again_on_the_same_port() {
    let api = FakeApi::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    cms.create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    api.set_down(true).await;
    assert!(
        tokio::net::TcpStream::connect(api.addr).await.is_err(),
        "port must refuse while down"
    );
    assert!(cms.get("a").await.is_err());
    api.set_down(false).await;
    assert_eq!(
        cms.get("a").await.unwrap().name_any(),
        "a",
        "objects survive a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher_syncs_from_initial_events() {
    let api = FakeApi::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}"), &[]))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store();
    let stream = watcher(cms.clone(), watcher::Config::default().streaming_lists())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(DEADLINE, reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        reader.len(),
        5,
        "ready only after the initial-events-end bookmark"
    );
    cms.create(&PostParams::default(), &cm("late", &[]))
        .await
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while reader.len() != 6 {
        assert!(Instant::now() < deadline, "the later create never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}

/// The Gateway API group: what kubectl and kube-rs see of it.
mod gateway_api {
    use kube::{
        api::{ApiResource, DynamicObject, GroupVersionKind},
        discovery::Discovery,
    };

    use super::*;

    const OBJECTS: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: infra, labels: {gateway-conformance: infra}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: xdp
  addresses: [{type: IPAddress, value: 127.0.0.9}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: grant, namespace: infra}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: other}]
  to: [{group: \"\", kind: Service}]
";

    fn api_resource(version: &str, kind: &str, plural: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", version, kind),
            plural,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kubectl_applies_and_gets_gateway_objects_in_both_versions() {
        let api = FakeApi::start().await;
        let dir = api.kubeconfig_path.parent().unwrap().to_owned();
        let file = write(&dir, "gateway.yaml", OBJECTS);
        let out = ok(&api.kubectl(&["apply", "-f", file.to_str().unwrap()]).await);
        for created in [
            "gatewayclass.gateway.networking.k8s.io/xdp created",
            "gateway.gateway.networking.k8s.io/gw created",
            "httproute.gateway.networking.k8s.io/route created",
            "referencegrant.gateway.networking.k8s.io/grant created",
        ] {
            assert!(out.contains(created), "{created:?} in {out}");
        }
        let out = ok(&api.kubectl(&["apply", "-f", file.to_str().unwrap()]).await);
        assert!(
            out.contains("gateway.gateway.networking.k8s.io/gw unchanged"),
            "{out}"
        );

        let names = ok(&api
            .kubectl(&[
                "get",
                "gatewayclasses,gateways,httproutes,referencegrants",
                "-A",
                "-o",
                "name",
            ])
            .await);
        let mut names: Vec<&str> = names.lines().collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "gateway.gateway.networking.k8s.io/gw",
                "gatewayclass.gateway.networking.k8s.io/xdp",
                "httproute.gateway.networking.k8s.io/route",
                "referencegrant.gateway.networking.k8s.io/grant",
            ]
        );
        // One object, two versions: each shown with the apiVersion asked for.
        for (version, kind) in [
            ("v1", "referencegrants"),
            ("v1beta1", "referencegrants"),
            ("v1beta1", "gateways"),
        ] {
            let resource = format!("{kind}.{version}.gateway.networking.k8s.io");
            let out = ok(&api
                .kubectl(&["get", &resource, "-n", "infra", "-o", "json"])
                .await);
            let list: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                list["items"].as_array().unwrap().len(),
                1,
                "{resource}: {out}"
            );
            assert_eq!(
                list["items"][0]["apiVersion"],
                format!("gateway.networking.k8s.io/{version}"),
                "{resource}"
            );
        }
        // Short names and the cluster scope of GatewayClass.
        let out = ok(&api
            .kubectl(&["get", "gc", "xdp", "-o", "jsonpath={.spec.controllerName}"])
            .await);
        assert_eq!(out, "xdp-ingress.dev/controller");
        let out = ok(&api
            .kubectl(&["get", "ns", "infra", "-o", "jsonpath={.metadata.labels}"])
            .await);
        assert!(out.contains("\"gateway-conformance\":\"infra\""), "{out}");
        assert!(
            out.contains("\"kubernetes.io/metadata.name\":\"infra\""),
            "every Namespace is labelled with its name: {out}"
        );
        let out = ok(&api
            .kubectl(&[
                "api-resources",
                "--api-group=gateway.networking.k8s.io",
                "-o",
                "name",
            ])
            .await);
        for r in [
            "gatewayclasses",
            "gateways",
            "httproutes",
            "referencegrants",
        ] {
            assert!(
                out.contains(&format!("{r}.gateway.networking.k8s.io")),
                "{r} in {out}"
            );
        }
        ok(&api.kubectl(&["delete", "-f", file.to_str().unwrap()]).await);
        assert!(
            api.object(
                "gateway.networking.k8s.io/v1",
                "HTTPRoute",
                "infra",
                "route"
            )
            .is_none()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kube_client_discovers_both_versions() {
        let api = FakeApi::start().await;
        let discovery = Discovery::new(api.client().await).run().await.unwrap();
        let group = discovery
            .groups()
            .find(|g| g.name() == "gateway.networking.k8s.io")
            .expect("gateway group discovered");
        assert_eq!(
            group.versions().collect::<Vec<_>>(),
            ["v1", "v1beta1", "v1alpha2"]
        );
        assert_eq!(group.preferred_version_or_latest(), "v1");
        let kinds: Vec<String> = group
            .versioned_resources("v1beta1")
            .into_iter()
            .map(|(r, _)| r.kind)
            .collect();
        for kind in ["GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"] {
            assert!(
                kinds.iter().any(|k| k == kind),
                "{kind} in v1beta1: {kinds:?}"
            );
        }
        // TCPRoute and UDPRoute: v1alpha2 (what the controller watches) and v1.
        for version in ["v1alpha2", "v1"] {
            let kinds: Vec<String> = group
                .versioned_resources(version)
                .into_iter()
                .map(|(r, _)| r.kind)
                .collect();
            for kind in ["TCPRoute", "UDPRoute"] {
                assert!(
                    kinds.iter().any(|k| k == kind),
                    "{kind} in {version}: {kinds:?}"
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn generation_follows_spec_and_status_patches_as_kube_rs_sends_them() {
        let api = FakeApi::start().await;
        let client = api.client().await;
        let routes: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            "infra",
            &api_resource("v1", "HTTPRoute", "httproutes"),
        );
        let route: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "infra"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "a", "port": 80}]}]},
        }))
        .unwrap();
        let created = routes.create(&PostParams::default(), &route).await.unwrap();
        assert_eq!(created.metadata.generation, Some(1));

        // Server-side apply of status, as a controller's Api::patch_status sends it.
        let parents = |generation: i64| {
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "status": {"parents": [{
                    "parentRef": {"name": "gw"}, "controllerName": "xdp-ingress.dev/controller",
                    "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                        "message": "", "observedGeneration": generation,
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}]}
            })
        };
        let applied = routes
            .patch_status(
                "r",
                &PatchParams::apply("xdp-ingress").force(),
                &Patch::Apply(&parents(1)),
            )
            .await
            .unwrap();
        assert_eq!(
            applied.metadata.generation,
            Some(1),
            "status writes keep the generation"
        );
        assert_eq!(
            applied.data["status"]["parents"][0]["conditions"][0]["observedGeneration"],
            1
        );

        let meta = json!({"metadata": {"labels": {"x": "y"}}});
        let labelled = routes
            .patch("r", &PatchParams::default(), &Patch::Merge(&meta))
            .await
            .unwrap();
        assert_eq!(
            labelled.metadata.generation,
            Some(1),
            "metadata writes keep the generation"
        );

        let spec = json!({"spec": {"rules": [{"backendRefs": [{"name": "b", "port": 80}]}]}});
        let changed = routes
            .patch("r", &PatchParams::default(), &Patch::Merge(&spec))
            .await
            .unwrap();
        assert_eq!(
            changed.metadata.generation,
            Some(2),
            "spec writes bump the generation"
        );
        assert_eq!(
            changed.data["status"]["parents"][0]["conditions"][0]["observedGeneration"], 1,
            "spec writes keep the status"
        );

        let merged = routes
            .patch_status("r", &PatchParams::default(), &Patch::Merge(&parents(2)))
            .await
            .unwrap();
        assert_eq!(
            merged.data["status"]["parents"][0]["conditions"][0]["observedGeneration"],
            2
        );
        assert_eq!(merged.metadata.generation, Some(2));

        // The same object through v1beta1, and a watch there sees v1beta1 objects.
        let beta: Api<DynamicObject> = Api::namespaced_with(
            client,
            "infra",
            &api_resource("v1beta1", "HTTPRoute", "httproutes"),
        );
        let got = beta.get("r").await.unwrap();
        assert_eq!(
            got.types.unwrap().api_version,
            "gateway.networking.k8s.io/v1beta1"
        );
        let mut events = watcher(beta, watcher::Config::default())
            .applied_objects()
            .boxed();
        let first = tokio::time::timeout(DEADLINE, events.try_next())
            .await
            .expect("watch event")
            .unwrap()
            .unwrap();
        assert_eq!(first.name_any(), "r");
        assert_eq!(
            first.types.unwrap().api_version,
            "gateway.networking.k8s.io/v1beta1"
        );
    }
}
