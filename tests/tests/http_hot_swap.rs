//! Route changes under load: a new Snapshot takes effect for the next request while open
//! WebSockets, streaming responses and keep-alive connections continue untouched.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use ingress_tests::http_support::{
    RunningRouter, TestBackend, get, http_client, ingress_yaml, service_yaml, snapshot, stream_body,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use xdp_ingress::http::Limits;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_change_keeps_websocket_stream_and_keepalive_and_moves_new_requests() {
    let (old, new) = (
        TestBackend::start("old").await,
        TestBackend::start("new").await,
    );
    let services = format!(
        "{}{}",
        service_yaml("old", &[old.addr]),
        service_yaml("new", &[new.addr])
    );
    let to = |svc: &str| {
        snapshot(
            &format!(
                "{services}{}",
                ingress_yaml("swap", Some("swap.test"), &[("/", "Prefix", svc)])
            ),
            Vec::new(),
        )
    };
    let router = Arc::new(RunningRouter::start(to("old"), Limits::default()).await);

    // A WebSocket, a slow streaming response and a keep-alive connection, all on "old".
    let tcp = TcpStream::connect(router.http).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://swap.test/ws", tcp)
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-backend"], "old");
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    let keepalive = TcpStream::connect(router.http).await.unwrap();
    let (mut ka, ka_conn) = hyper::client::conn::http1::handshake(TokioIo::new(keepalive))
        .await
        .unwrap();
    let ka_task = tokio::spawn(ka_conn);
    let ka_get = |path: &'static str| {
        Request::get(path)
            .header("host", "swap.test")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let first = ka.send_request(ka_get("/ka")).await.unwrap();
    assert_eq!(first.headers()["x-backend"], "old");
    let _ = first.into_body().collect().await.unwrap();

    const CHUNKS: u64 = 20;
    let stream_client = http_client();
    let stream_addr = router.http;
    let streaming = tokio::spawn(async move {
        get(
            &stream_client,
            stream_addr,
            "swap.test",
            &format!("/stream/{CHUNKS}/50"),
        )
        .await
    });
    // Let the stream start before the swap.
    tokio::time::sleep(Duration::from_millis(150)).await;

    // Load while the routes change back and forth, ending on "new".
    let load = {
        let router = Arc::clone(&router);
        tokio::spawn(async move {
            let client = http_client();
            let mut statuses = Vec::new();
            for _ in 0..200 {
                statuses.push(
                    get(&client, router.http, "swap.test", "/load")
                        .await
                        .status
                        .as_u16(),
                );
            }
            statuses
        })
    };
    for svc in ["new", "old", "new", "old", "new"] {
        router.publish(to(svc)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // New requests follow the new route, on a new and on the kept-alive connection.
    let fresh = get(&http_client(), router.http, "swap.test", "/after").await;
    assert_eq!(fresh.backend(), "new");
    let again = ka
        .send_request(ka_get("/ka2"))
        .await
        .expect("keep-alive connection survives");
    assert_eq!(again.headers()["x-backend"], "new");
    let _ = again.into_body().collect().await.unwrap();
    assert!(
        !ka_task.is_finished(),
        "the keep-alive connection is still open"
    );

    // The WebSocket still talks to "old", byte-exact.
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(payload.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(payload));
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("after"));
    ws.close(None).await.unwrap();

    // The stream completes byte-exact from "old".
    let streamed = streaming.await.unwrap();
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.headers["x-backend"], "old");
    assert_eq!(streamed.body, stream_body(CHUNKS));

    let statuses = load.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every request during the changes succeeds: {statuses:?}"
    );
}
