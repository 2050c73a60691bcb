//! `/metrics` after real traffic: the real controller builds the Snapshot from a Store, the
//! real router and userspace L4 proxy serve requests and TCP connections on 127.0.0.1, and
//! the health server's exposition is scraped over HTTP.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ingress_tests::{
    http_support::{TestBackend, get, http_client, ingress_yaml, service_yaml, store_from_yaml},
    servers::{TcpEchoServer, free_tcp_port},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
};
use xdp_ingress::{
    config::{NamespacedName, Options},
    controller,
    http::{self, Metrics},
    l4::proxy::{self, L4Proxy, Selection},
    ops::{Ops, health::HealthServer, metrics::Sources},
};

/// Guards every wait against hanging; never a timing assertion.
const HANG: Duration = Duration::from_secs(20);

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

async fn scrape(addr: SocketAddr, path: &str) -> (u16, String) {
    let client = http_client();
    let a = get(&client, addr, "localhost", path).await;
    (a.status.as_u16(), a.body)
}

fn tcp_services_yaml(port: u16) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tcp-services\n  namespace: ingress\ndata:\n  \"{port}\": \"default/echo:80\"\n  \"not-a-port\": \"default/echo:80\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_http_and_l4_traffic_carry_the_expected_labels_and_values() {
    let web = TestBackend::start("web").await;
    let echo = TcpEchoServer::start().await;
    let l4_port = free_tcp_port();
    let yaml = format!(
        "{}{}{}{}",
        service_yaml("web", &[web.addr]),
        ingress_yaml("web", Some("web.test"), &[("/", "Prefix", "web")]),
        service_yaml("echo", &[echo.addr()]),
        tcp_services_yaml(l4_port),
    );
    let (store_tx, store_rx) = xdp_ingress::source::channel();
    let mut store_tx = xdp_ingress::source::StoreFeed::new(store_tx);
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
    store_tx.publish(&store_from_yaml(&yaml));
    let mut ready = handle.ready.clone();
    tokio::time::timeout(HANG, ready.wait_for(|r| *r))
        .await
        .expect("controller ready")
        .expect("controller alive");

    let http_metrics = Arc::new(Metrics::default());
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
        http_metrics.clone(),
    )
    .await
    .expect("bind router");
    let router = server.http_addr().unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let router_task = tokio::spawn(server.run(stopped(stop_rx.clone())));
    let l4 = Arc::new(L4Proxy::new(proxy::Options {
        bind_address: [127, 0, 0, 1].into(),
        ..proxy::Options::default()
    }));
    let l4_task = {
        let l4 = l4.clone();
        let snaps = handle.snapshots.clone();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { l4.run(snaps, Selection::All, stop).await })
    };
    let ops = Ops::new(
        &handle,
        Sources {
            http: http_metrics,
            l4_proxy: Some(l4.clone()),
            kernel_maps: None,
            ..Sources::default()
        },
    );
    ops.readiness.set_attached();
    let health = HealthServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let health_addr = health.local_addr().unwrap();
    let health_task = tokio::spawn(health.run(ops.clone(), stopped(stop_rx.clone())));

    // Real traffic: 3 routed requests, 1 unrouted one, one TCP echo through the L4 proxy.
    let client = http_client();
    for _ in 0..3 {
        let a = get(&client, router, "web.test", "/hello").await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.backend(), "web");
    }
    assert_eq!(get(&client, router, "nobody.test", "/").await.status, 404);
    let l4_addr = tokio::time::timeout(HANG, async {
        loop {
            if let Some(a) = l4
                .local_addr(xdp_ingress::config::L4Protocol::Tcp, l4_port)
                .await
            {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("L4 listener opened");
    let mut conn = TcpStream::connect(l4_addr).await.unwrap();
    conn.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    tokio::time::timeout(HANG, conn.read_exact(&mut buf))
        .await
        .expect("echo")
        .unwrap();
    assert_eq!(&buf, b"hello");
    conn.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(HANG, conn.read_to_end(&mut rest))
        .await
        .expect("close")
        .unwrap();

    let (status, text) = scrape(health_addr, "/metrics").await;
    assert_eq!(status, 200);
    let l4_labels = format!("protocol=\"tcp\",port=\"{l4_port}\",service=\"default/echo:80\"");
    for (series, want) in [
        (
            r#"xdp_ingress_http_requests_total{ingress="default/web",service="default/web:80",status="200"}"#.to_owned(),
            3.0,
        ),
        (
            r#"xdp_ingress_http_requests_total{ingress="",service="",status="404"}"#.to_owned(),
            1.0,
        ),
        (
            "xdp_ingress_problems{kind=\"invalid_port_key\",severity=\"error\"}".to_owned(),
            1.0,
        ),
        (format!("xdp_ingress_l4_proxy_connections_total{{{l4_labels}}}"), 1.0),
        (
            format!("xdp_ingress_l4_proxy_bytes_total{{{l4_labels},direction=\"in\"}}"),
            5.0,
        ),
        (
            format!("xdp_ingress_l4_proxy_bytes_total{{{l4_labels},direction=\"out\"}}"),
            5.0,
        ),
    ] {
        assert_eq!(sample(&text, &series), Some(want), "{series} in\n{text}");
    }
    let builds = sample(&text, "xdp_ingress_snapshot_builds_total").expect("builds");
    assert!(builds >= 1.0, "{text}");
    assert!(
        sample(&text, "xdp_ingress_snapshot_last_success_timestamp_seconds")
            .is_some_and(|t| t > 1.0e9),
        "{text}"
    );
    assert!(
        text.contains("# TYPE xdp_ingress_snapshot_build_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "one exposition, one EOF");
    assert_eq!(text.matches("# EOF").count(), 1);

    // A rebuild (after a real change: an unchanged Store publishes nothing) shows up as a
    // histogram sample.
    let mut changed = store_from_yaml(&yaml);
    changed.ingresses.clear();
    store_tx.publish(&changed);
    tokio::time::timeout(HANG, async {
        loop {
            let (_, text) = scrape(health_addr, "/metrics").await;
            if sample(&text, "xdp_ingress_snapshot_build_duration_seconds_count")
                .is_some_and(|c| c >= 1.0)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a build duration sample");

    let _ = stop_tx.send(true);
    router_task.await.unwrap();
    l4_task.await.unwrap();
    health_task.await.unwrap();
}
