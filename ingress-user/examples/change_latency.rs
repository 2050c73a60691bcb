//! Change → published Snapshot latency in file mode (a benchmark, not a test).
//!
//! A manifest directory with 200 Ingresses is watched by `source::files` feeding
//! `controller`; each round rewrites one file (write + rename, like editors and mounted
//! ConfigMaps) with a new path and times until a Snapshot routes it. Prints p50/p99/max.
//!
//! `cargo run --release -p ingress-user --example change_latency [-- ROUNDS]`

use std::{
    fs,
    time::{Duration, Instant},
};

use xdp_ingress::{
    config::Options,
    controller,
    source::{dir_watch, files},
};

fn ingress(i: usize, path: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: ing{i}, namespace: bench}}
spec:
  ingressClassName: xdp
  rules:
  - host: host{i}.example.com
    http:
      paths:
      - {{path: {path}, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"
    )
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(200, |a| a.parse().expect("ROUNDS"));
    let dir = std::env::temp_dir().join(format!("xdp-ingress-latency-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("service.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: bench}\nspec: {ports: [{port: 80}]}\n",
    )
    .unwrap();
    for i in 0..200 {
        fs::write(dir.join(format!("ing{i:03}.yaml")), ingress(i, "/")).unwrap();
    }
    let (tx, rx) = xdp_ingress::source::channel();
    tokio::spawn(files::run(dir.clone(), tx));
    let mut h = controller::spawn(rx, Options::default());
    while !*h.ready.borrow_and_update() {
        h.ready.changed().await.unwrap();
    }
    let mut lat = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let i = r % 200;
        let path = format!("/round{r}");
        let tmp = dir.join(".tmp.yaml");
        // Stagger the writes over the poll period, as real edits are.
        tokio::time::sleep(Duration::from_millis(7 * (r as u64 % 11))).await;
        let t = Instant::now();
        fs::write(&tmp, ingress(i, &path)).unwrap();
        fs::rename(&tmp, dir.join(format!("ing{i:03}.yaml"))).unwrap();
        let host = format!("host{i}.example.com");
        loop {
            h.snapshots.changed().await.unwrap();
            if h.snapshots
                .borrow_and_update()
                .http
                .route(&host, &path)
                .is_some()
            {
                break;
            }
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)].as_secs_f64() * 1e3
    };
    println!(
        "file change -> published Snapshot over {rounds} changes (200 Ingresses, inotify with a {:?} poll behind it): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        dir_watch::SLOW_POLL,
        pct(0.5),
        pct(0.99),
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    let _ = fs::remove_dir_all(&dir);
}
