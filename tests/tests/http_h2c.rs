//! h2c upstreams: a Service port with `appProtocol: kubernetes.io/h2c` is spoken to in
//! HTTP/2 with prior knowledge, as gRPC services need: the request body goes up, the
//! response body and its trailers come back, from HTTP/2 and HTTP/1.1 clients alike.

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use futures::stream;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::{
    HeaderMap, Request, Response,
    body::{Frame, Incoming},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ingress_tests::http_support::{
    RunningRouter, get, http_client, ingress_yaml, service_yaml, snapshot,
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use xdp_ingress::http::Limits;

/// An HTTP/2-only backend: echoes the request body, reports what it saw in `x-seen-*`
/// headers, and ends every response with the trailer `grpc-status: 0`.
async fn h2c_backend() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let seen = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let resp = Response::builder()
                        .header("x-seen-version", format!("{:?}", req.version()))
                        .header("x-seen-te", seen("te"))
                        .header("x-seen-xff", seen("x-forwarded-for"))
                        .header(
                            "x-seen-authority",
                            req.uri()
                                .authority()
                                .map(ToString::to_string)
                                .unwrap_or_default(),
                        );
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    let frames = [Frame::data(body), Frame::trailers(trailers)];
                    let body = StreamBody::new(stream::iter(frames.map(Ok::<_, Infallible>)));
                    Ok::<_, Infallible>(resp.body(body).unwrap())
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

async fn router_to(backend: SocketAddr) -> RunningRouter {
    let service = service_yaml("grpc", &[backend]).replace(
        "    targetPort: 8080\n",
        "    targetPort: 8080\n    appProtocol: kubernetes.io/h2c\n",
    );
    let yaml = format!(
        "{service}{}",
        ingress_yaml("grpc", Some("grpc.test"), &[("/", "Prefix", "grpc")])
    );
    RunningRouter::start(snapshot(&yaml, Vec::new()), Limits::default()).await
}

#[tokio::test]
async fn grpc_over_h2c_carries_the_body_and_the_trailers_both_ways() {
    let (backend, _task) = h2c_backend().await;
    let router = router_to(backend).await;
    // An HTTP/2 client with prior knowledge on the plain port, as gRPC clients connect.
    let io = TokioIo::new(TcpStream::connect(router.http).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    for message in ["ping", "second call on the same connection"] {
        let req = Request::post("http://grpc.test/pkg.Echo/Say")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(message)))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let h = resp.headers().clone();
        assert_eq!(h["x-seen-version"], "HTTP/2.0", "HTTP/2 to the backend");
        assert_eq!(h["x-seen-te"], "trailers");
        assert_eq!(h["x-seen-authority"], "grpc.test");
        assert_eq!(h["x-seen-xff"], "127.0.0.1", "forwarding headers go up too");
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("response trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(collected.to_bytes(), message.as_bytes());
    }
}

#[tokio::test]
async fn http1_clients_reach_an_h2c_backend_too() {
    let (backend, _task) = h2c_backend().await;
    let router = router_to(backend).await;
    let client = http_client();
    for _ in 0..3 {
        let answer = get(&client, router.http, "grpc.test", "/plain").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.headers["x-seen-version"], "HTTP/2.0");
        assert_eq!(answer.headers["x-seen-authority"], "grpc.test");
        assert_eq!(answer.headers["x-seen-te"], "", "not gRPC: no TE");
    }
}

#[tokio::test]
async fn a_dead_h2c_endpoint_gets_502_and_the_router_keeps_serving() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let router = router_to(dead).await;
    let client = http_client();
    let answer = get(&client, router.http, "grpc.test", "/").await;
    assert_eq!(answer.status, 502, "{answer:?}");
    let health = get(&client, router.http, "any.test", "/healthz").await;
    assert_eq!(health.status, 200);
}
