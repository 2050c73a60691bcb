//! `xdp-ingress check` against a cluster: the real binary, the kube source and the fake API
//! server, objects created with the installed `kubectl`.

use std::{process::Output, time::Duration};

use ingress_tests::{fake_api::FakeApi, xdp_ingress_bin};

const MANIFESTS: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  ingressClassName: xdp
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /gone, pathType: Exact, backend: {service: {name: gone, port: {number: 80}}}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: shop, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: tcp-services, namespace: ingress-nginx}
data: {\"6379\": \"shop/api:http\"}
";

async fn check(api: &FakeApi, args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(xdp_ingress_bin())
            .arg("check")
            .args(args)
            .env("KUBECONFIG", &api.kubeconfig_path)
            .env("RUST_LOG", "warn")
            .output(),
    )
    .await
    .expect("check finished within 60 s")
    .expect("xdp-ingress runs");
    (
        status.code().expect("exited by signal"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_the_cluster_and_fails_on_an_unknown_service() {
    let api = FakeApi::start().await;
    let file = api.kubeconfig_path.with_file_name("objects.yaml");
    std::fs::write(&file, MANIFESTS).unwrap();
    let out = api.kubectl(&["create", "-f", file.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, out, err) = check(
        &api,
        &["--tcp-services-configmap", "ingress-nginx/tcp-services"],
    )
    .await;
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let route = out
        .lines()
        .find(|l| l.contains("/api"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        route.split_whitespace().collect::<Vec<_>>(),
        [
            "shop.example.com",
            "/api",
            "Prefix",
            "shop/api:80",
            "127.0.0.1:8080",
            "shop/web"
        ]
    );
    let l4 = out
        .lines()
        .find(|l| l.trim_start().starts_with("TCP"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        l4.split_whitespace().collect::<Vec<_>>(),
        ["TCP", "6379", "shop/api:80", "127.0.0.1:8080", "-"]
    );
    assert!(
        out.contains("  error[unknown_service]: Ingress shop/web spec.rules[0].http.paths[1].backend.service.name: Service shop/gone not found; requests get 503"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_with_an_unreachable_api_server_fails_clearly() {
    let api = FakeApi::start().await;
    api.set_down(true).await;
    let (code, out, err) = check(&api, &[]).await;
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("the Kubernetes API server did not answer within 15s"),
        "{err}"
    );
}
