//! `xdp-ingress check` run as a real process against manifest directories.

use std::{
    fs,
    path::PathBuf,
    process::{Command, Output},
};

/// A fresh manifest directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("xdp-ingress-check-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn write(&self, name: &str, text: &str) -> &Self {
        fs::write(self.0.join(name), text).unwrap();
        self
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn check(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_xdp-ingress"))
        .arg("check")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        status.code().expect("exited by signal"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

const GOOD: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  ingressClassName: xdp
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: api, namespace: shop}
subsets: [{addresses: [{ip: 127.0.0.1}], ports: [{name: http, port: 8080}]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: tcp-services, namespace: ingress}
data: {\"6379\": shop/api:80}
";

#[test]
fn one_good_and_one_broken_file_prints_the_routes_and_fails() {
    let dir = Dir::new("bad");
    dir.write("good.yaml", GOOD).write(
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: x\n",
    );
    let m = dir.0.to_str().unwrap();
    let (code, out, err) = check(&[
        "--manifests",
        m,
        "--tcp-services-configmap",
        "ingress/tcp-services",
    ]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let route = out
        .lines()
        .find(|l| l.contains("shop.example.com"))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<_> = route.split_whitespace().collect();
    assert_eq!(
        cells,
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
    let broken = format!("{}/broken.yaml", m);
    let problem = out
        .lines()
        .find(|l| l.contains("invalid_manifest"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        problem.starts_with(&format!(
            "  error[invalid_manifest]: File {broken} line 4: not valid YAML: "
        )),
        "{problem}"
    );
    assert!(out.contains("Problems (1 errors, 0 warnings):"), "{out}");
}

#[test]
fn warnings_alone_do_not_fail() {
    let dir = Dir::new("seed");
    dir.write(
        "dashboard.yaml",
        "apiVersion: extensions/v1beta1
kind: Ingress
metadata: {name: dashboard-ingress, namespace: kube-system, annotations: {kubernetes.io/ingress.class: nginx}}
spec:
  rules:
  - host: k8sui.test.com
    http:
      paths:
      - path: /
        backend: {serviceName: kubernetes-dashboard, servicePort: 80}
---
apiVersion: v1
kind: Service
metadata: {name: kubernetes-dashboard, namespace: kube-system}
spec: {ports: [{port: 80, targetPort: 9090}]}
",
    );
    let (code, out, err) = check(&[
        "--manifests",
        dir.0.to_str().unwrap(),
        "--ingress-class",
        "nginx",
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("Problems (0 errors, 1 warnings):"), "{out}");
    assert!(
        out.contains("warning[legacy_api_version]: Ingress kube-system/dashboard-ingress apiVersion: converted from extensions/v1beta1"),
        "{out}"
    );
    let route = out
        .lines()
        .find(|l| l.contains("k8sui.test.com"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        route.split_whitespace().collect::<Vec<_>>(),
        [
            "k8sui.test.com",
            "/",
            "ImplementationSpecific",
            "kube-system/kubernetes-dashboard:80",
            "(none)",
            "kube-system/dashboard-ingress"
        ]
    );
}

#[test]
fn class_filter_applies_in_check() {
    let dir = Dir::new("class");
    dir.write("good.yaml", GOOD);
    let (code, out, _) = check(&[
        "--manifests",
        dir.0.to_str().unwrap(),
        "--ingress-class",
        "other",
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("HTTP routes (0):"), "{out}");
}

#[test]
fn missing_directory_fails_with_its_name() {
    let (code, _, err) = check(&["--manifests", "/nonexistent/xdp-ingress-check"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("reading manifest directory /nonexistent/xdp-ingress-check"),
        "{err}"
    );
}

#[test]
fn bad_namespaced_name_is_rejected_by_the_parser() {
    let (code, _, err) = check(&[
        "--manifests",
        "/tmp",
        "--tcp-services-configmap",
        "tcp-services",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "expected namespace/name (e.g. ingress-nginx/tcp-services), got \"tcp-services\""
        ),
        "{err}"
    );
}
