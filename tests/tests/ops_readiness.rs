//! Readiness over the lifecycle, against the real controller, router and health server on
//! 127.0.0.1: 503 until the source synced and the planes are attached, 200 while serving,
//! 503 as soon as the drain starts while an in-flight request still completes, and
//! `/healthz` stays 200 throughout.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::BodyExt;
use ingress_tests::http_support::{
    TestBackend, get, http_client, ingress_yaml, service_yaml, store_from_yaml, stream_body,
};
use tokio::sync::watch;
use xdp_ingress::{
    config::Options,
    controller,
    http::{self, Metrics},
    ops::{Ops, health::HealthServer, metrics::Sources},
};

/// Guards every wait against hanging; never a timing assertion.
const HANG: Duration = Duration::from_secs(20);

async fn status(addr: SocketAddr, path: &str) -> (u16, String) {
    let a = get(&http_client(), addr, "localhost", path).await;
    (a.status.as_u16(), a.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_sync_attach_and_drain_while_in_flight_requests_complete() {
    let web = TestBackend::start("web").await;
    let yaml = format!(
        "{}{}",
        service_yaml("web", &[web.addr]),
        ingress_yaml("web", Some("web.test"), &[("/", "Prefix", "web")]),
    );
    let (store_tx, store_rx) = xdp_ingress::source::channel();
    let mut store_tx = xdp_ingress::source::StoreFeed::new(store_tx);
    let handle = controller::spawn(store_rx, Options::default());
    let metrics = Arc::new(Metrics::default());
    let ops = Ops::new(
        &handle,
        Sources {
            http: metrics.clone(),
            l4_proxy: None,
            kernel_maps: None,
            ..Sources::default()
        },
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (health_stop_tx, health_stop_rx) = watch::channel(false);
    let health = HealthServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let health_addr = health.local_addr().unwrap();
    let health_task = tokio::spawn(health.run(ops.clone(), stopped(health_stop_rx)));

    // Not synced yet.
    let (code, body) = status(health_addr, "/readyz").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "not ready: sources not synced\n")
    );
    assert_eq!(status(health_addr, "/healthz").await.0, 200);

    // Synced, not attached.
    store_tx.publish(&store_from_yaml(&yaml));
    let mut ready = handle.ready.clone();
    tokio::time::timeout(HANG, ready.wait_for(|r| *r))
        .await
        .expect("controller ready")
        .unwrap();
    let (code, body) = status(health_addr, "/readyz").await;
    assert_eq!(
        (code, body.as_str()),
        (503, "not ready: data planes not attached\n")
    );

    let server = http::Server::bind(
        http::Options {
            http: "127.0.0.1:0".parse().unwrap(),
            https: None,
            ssl_redirect: false,
            balance: http::Balance::RoundRobin,
            limits: http::Limits::default(),
            workers: 1,
            allow_underscores_in_headers: false,
            access_log: http::access_log::Options::default(),
        },
        handle.snapshots.clone(),
        metrics,
    )
    .await
    .unwrap();
    let router = server.http_addr().unwrap();
    let router_task = tokio::spawn(server.run(stopped(stop_rx)));
    ops.readiness.set_attached();
    assert_eq!(
        status(health_addr, "/readyz").await,
        (200, "ok\n".to_owned())
    );

    // A slow streamed response is in flight when SIGTERM arrives.
    let client = http_client();
    let req = hyper::Request::get(format!("http://{router}/stream/6/150"))
        .header(hyper::header::HOST, "web.test")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(HANG, client.request(req))
        .await
        .expect("response head")
        .expect("response");
    assert_eq!(resp.status(), 200);
    let in_flight = tokio::spawn(async move {
        resp.into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
    });

    // What main.rs does on SIGTERM: readiness first, then the drain.
    ops.readiness.start_draining();
    stop_tx.send_replace(true);
    let (code, body) = status(health_addr, "/readyz").await;
    assert_eq!((code, body.as_str()), (503, "not ready: shutting down\n"));
    assert_eq!(
        status(health_addr, "/healthz").await.0,
        200,
        "liveness holds during the drain"
    );

    let body = tokio::time::timeout(HANG, in_flight)
        .await
        .expect("in-flight request finished")
        .unwrap()
        .expect("complete body");
    assert_eq!(
        String::from_utf8_lossy(&body),
        stream_body(6),
        "the whole stream arrived"
    );
    tokio::time::timeout(HANG, router_task)
        .await
        .expect("router drained")
        .unwrap();
    // Still answering (503) after the router is gone, until the process exits.
    assert_eq!(status(health_addr, "/readyz").await.0, 503);
    health_stop_tx.send_replace(true);
    health_task.await.unwrap();
}
