//! Support for the L7 router suites (`tests/tests/http_*.rs`): real HTTP and WebSocket
//! backends that name themselves, fixture objects as YAML, a test CA, the real router on
//! 127.0.0.1 port 0, and clients (pooled HTTP, TLS with SNI and ALPN, raw TCP).

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{
    Request, Response, StatusCode,
    body::{Frame, Incoming},
    header,
    service::service_fn,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, handshake::derive_accept_key, protocol::Role},
};
use xdp_ingress::{
    config::{self, Snapshot, Store},
    http::{self, Limits, Metrics, Router},
};

/// A real HTTP/1.1 backend on 127.0.0.1 that answers with its own name.
///
/// - any path: `200`, headers `x-backend: NAME`, `x-request-uri: PATH?QUERY` (as
///   received) and `x-request-method: METHOD`, body `NAME\n` then every request header as
///   `name: value` lines (so tests can check what the proxy forwarded); a request header
///   `x-echo-set-header: Name:value,Other:value` adds those response headers (as the
///   Gateway API conformance echo server does, to test response filters);
/// - `/stream/N/MS`: `N` chunks `chunk-i\n`, `MS` milliseconds apart;
/// - `/status/N`: the usual answer, with status `N`;
/// - a WebSocket upgrade: echoes every message back unchanged.
pub struct TestBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name.
    pub name: String,
    /// Requests it has received.
    pub requests: Arc<AtomicUsize>,
    /// Every request it has received (the last [`SEEN_KEPT`] of them), in arrival order.
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: JoinHandle<()>,
}

/// How many requests a [`TestBackend`] remembers in [`TestBackend::seen`].
pub const SEEN_KEPT: usize = 4096;

/// One request as a [`TestBackend`] received it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    /// The method.
    pub method: String,
    /// The path and query.
    pub uri: String,
    /// The headers, names lowercase, in order.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    /// Every value of header `name` (case-insensitive), joined with `,`; `None` if absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestBackend {
    /// Starts a backend named `name`.
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a backend named `name` on `addr` (e.g. another 127.0.0.x address, port 0).
    ///
    /// # Panics
    /// If `addr` cannot be bound.
    pub async fn start_on(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (n, count, log) = (name.to_owned(), Arc::clone(&requests), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (n, count, log) = (n.clone(), Arc::clone(&count), Arc::clone(&log));
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        record(&log, &req);
                        backend_answer(n.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            addr,
            name: name.to_owned(),
            requests,
            seen,
            task,
        }
    }

    /// Requests received so far.
    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The requests received so far that carry header `name` with value `value`.
    pub fn seen_with(&self, name: &str, value: &str) -> Vec<SeenRequest> {
        self.seen
            .lock()
            .expect("seen lock")
            .iter()
            .filter(|r| r.header(name).as_deref() == Some(value))
            .cloned()
            .collect()
    }
}

fn record(log: &Mutex<Vec<SeenRequest>>, req: &Request<Incoming>) {
    let seen = SeenRequest {
        method: req.method().to_string(),
        uri: req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or("<binary>").to_owned(),
                )
            })
            .collect(),
    };
    let mut log = log.lock().expect("seen lock");
    if log.len() >= SEEN_KEPT {
        log.remove(0);
    }
    log.push(seen);
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn backend_answer(
    name: String,
    mut req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    if req.headers().contains_key(header::UPGRADE) {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| derive_accept_key(k.as_bytes()))
            .unwrap_or_default();
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                let echo = matches!(msg, Message::Text(_) | Message::Binary(_));
                if msg.is_close() || (echo && ws.send(msg).await.is_err()) {
                    break;
                }
            }
        });
        let resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header("sec-websocket-accept", key)
            .header("x-backend", name.as_str())
            .body(Full::new(Bytes::new()).boxed())
            .expect("101 response");
        return Ok(resp);
    }
    let path = req.uri().path().to_owned();
    if let Some(spec) = path.strip_prefix("/stream/") {
        let mut it = spec.split('/').map(|s| s.parse::<u64>().unwrap_or(0));
        let (n, ms) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
        let chunks = futures::stream::unfold(0, move |i| async move {
            if i >= n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let frame = Frame::data(Bytes::from(format!("chunk-{i}\n")));
            Some((Ok::<_, Infallible>(frame), i + 1))
        });
        let resp = Response::builder()
            .header("x-backend", name.as_str())
            .body(BodyExt::boxed(StreamBody::new(chunks)))
            .expect("stream response");
        return Ok(resp);
    }
    let mut body = format!("{name}\n");
    for (k, v) in req.headers() {
        body.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("<binary>")));
    }
    let uri = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut resp = Response::builder()
        .header("x-backend", name.as_str())
        .header("x-request-uri", uri)
        .header("x-request-method", req.method().as_str());
    for set in req.headers().get_all("x-echo-set-header") {
        for pair in set.to_str().unwrap_or("").split(',') {
            if let Some((k, v)) = pair.split_once(':') {
                resp = resp.header(k.trim(), v.trim());
            }
        }
    }
    // `/status/N`: answers with status N (for error-page tests).
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
    {
        resp = resp.status(code);
    }
    Ok(resp
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("response"))
}

/// The expected body of `/stream/N/MS`.
pub fn stream_body(n: u64) -> String {
    (0..n).map(|i| format!("chunk-{i}\n")).collect()
}

/// Parses multi-document YAML (Ingress, Service, EndpointSlice, Secret, IngressClass,
/// ConfigMap) into a [`Store`]. Panics on anything else: fixtures are ours.
pub fn store_from_yaml(yaml: &str) -> Store {
    let mut store = Store::default();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc).expect("fixture YAML");
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().expect("fixture kind").to_owned();
        match kind.as_str() {
            "Ingress" => store.ingresses.push(from_value(value)),
            "Service" => store.services.push(from_value(value)),
            "EndpointSlice" => store.endpoint_slices.push(from_value(value)),
            "Secret" => store.secrets.push(from_value(value)),
            "IngressClass" => store.ingress_classes.push(from_value(value)),
            "ConfigMap" => store.config_maps.push(from_value(value)),
            other => panic!("fixture kind {other} not supported"),
        }
    }
    store
}

use serde::Deserialize as _;

fn from_value<T: serde::de::DeserializeOwned>(v: serde_yaml::Value) -> T {
    serde_yaml::from_value(v).expect("fixture object")
}

/// One-rule Ingress manifests with ingress-nginx annotations, as the annotation suites
/// write them: `default/NAME`, class `xdp`, `host` `path` → Service `service` port 80.
#[derive(Clone, Copy, Debug)]
pub struct AnnotatedIngress<'a> {
    /// `metadata.name` (namespace `default`).
    pub name: &'a str,
    /// The rule's host.
    pub host: &'a str,
    /// The rule's one path.
    pub path: &'a str,
    /// Its `pathType`.
    pub path_type: &'a str,
    /// The backend Service (port 80).
    pub service: &'a str,
    /// Annotations, names without the `nginx.ingress.kubernetes.io/` prefix.
    pub annotations: &'a [(&'a str, &'a str)],
    /// A `tls` entry for the host with this Secret.
    pub tls_secret: Option<&'a str>,
}

impl AnnotatedIngress<'_> {
    /// The manifest.
    pub fn yaml(&self) -> String {
        let Self {
            name,
            host,
            path,
            path_type,
            service,
            annotations,
            tls_secret,
        } = *self;
        let mut y = format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n"
        );
        if !annotations.is_empty() {
            y.push_str("  annotations:\n");
            for (k, v) in annotations {
                y.push_str(&format!("    nginx.ingress.kubernetes.io/{k}: {v:?}\n"));
            }
        }
        y.push_str("spec:\n  ingressClassName: xdp\n");
        if let Some(secret) = tls_secret {
            y.push_str(&format!(
                "  tls:\n  - hosts: [\"{host}\"]\n    secretName: {secret}\n"
            ));
        }
        y.push_str(&format!(
            "  rules:\n  - host: \"{host}\"\n    http:\n      paths:\n      - path: {path:?}\n        pathType: {path_type}\n        backend:\n          service:\n            name: {service}\n            port:\n              number: 80\n"
        ));
        y
    }
}

/// YAML for a Service `name` (port 80, named `http`, target 8080) and an EndpointSlice
/// whose endpoints are `addrs` (all on the port of the first address, or 8080 if none).
pub fn service_yaml(name: &str, addrs: &[SocketAddr]) -> String {
    let port = addrs.first().map_or(8080, SocketAddr::port);
    // Each address must carry its own port; tests use one slice per distinct port.
    let mut slices = String::new();
    let mut by_port: BTreeMap<u16, Vec<SocketAddr>> = BTreeMap::new();
    for a in addrs {
        by_port.entry(a.port()).or_default().push(*a);
    }
    if by_port.is_empty() {
        by_port.insert(port, Vec::new());
    }
    for (i, (port, addrs)) in by_port.iter().enumerate() {
        let eps: String = if addrs.is_empty() {
            "endpoints: []\n".to_owned()
        } else {
            let mut s = "endpoints:\n".to_owned();
            for a in addrs {
                s.push_str(&format!(
                    "  - addresses: [\"{}\"]\n    conditions: {{ready: true}}\n",
                    a.ip()
                ));
            }
            s
        };
        slices.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{i}\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {name}\naddressType: IPv4\nports:\n  - name: http\n    port: {port}\n    protocol: TCP\n{eps}"
        ));
    }
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n{slices}"
    )
}

/// YAML for an Ingress `default/NAME` of class `xdp` with one rule for `host` (`None`: any
/// host) and `paths` as `(path, pathType, service)`; the services' port is 80.
pub fn ingress_yaml(name: &str, host: Option<&str>, paths: &[(&str, &str, &str)]) -> String {
    let mut y = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ingressClassName: xdp\n  rules:\n  - "
    );
    if let Some(h) = host {
        y.push_str(&format!("host: \"{h}\"\n    "));
    }
    y.push_str("http:\n      paths:\n");
    for (path, ty, svc) in paths {
        y.push_str(&format!(
            "      - path: \"{path}\"\n        pathType: {ty}\n        backend:\n          service:\n            name: {svc}\n            port:\n              number: 80\n"
        ));
    }
    y
}

/// Builds a Snapshot from fixture YAML plus extra Secrets, with default [`config::Options`].
/// Panics if the translation reported an error Problem (a broken fixture).
pub fn snapshot(yaml: &str, secrets: Vec<Secret>) -> Snapshot {
    let mut store = store_from_yaml(yaml);
    store.secrets.extend(secrets);
    let snap = config::build(&store, &config::Options::default());
    let errors: Vec<String> = snap
        .problems
        .iter()
        .filter(|p| p.severity == config::problem::Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "fixture problems: {errors:#?}");
    snap
}

/// A test certificate authority and the leaf certificates it signs.
pub struct TestCa {
    /// The CA certificate, to trust in clients.
    pub cert: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A fresh CA.
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "xdp-ingress test CA");
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA cert");
        Self {
            cert: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A `kubernetes.io/tls` Secret `default/NAME` for `hosts`, signed by this CA, with an
    /// ECDSA P-256 key.
    pub fn secret(&self, name: &str, hosts: &[&str]) -> Secret {
        self.secret_with(name, hosts, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// As [`secret`](Self::secret), with a key of algorithm `alg` (e.g.
    /// `rcgen::PKCS_RSA_SHA256` for RSA-2048).
    pub fn secret_with(
        &self,
        name: &str,
        hosts: &[&str],
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> Secret {
        let params = rcgen::CertificateParams::new(
            hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
        )
        .expect("leaf params");
        let key = rcgen::KeyPair::generate_for(alg).expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        let mut data = BTreeMap::new();
        data.insert("tls.crt".to_owned(), ByteString(cert.pem().into_bytes()));
        data.insert(
            "tls.key".to_owned(),
            ByteString(key.serialize_pem().into_bytes()),
        );
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("default".to_owned()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Default::default()
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// The real router, serving on 127.0.0.1 port 0 (HTTP and HTTPS).
pub struct RunningRouter {
    /// Plain HTTP address.
    pub http: SocketAddr,
    /// HTTPS address.
    pub https: SocketAddr,
    /// The router, to check which Snapshot is in force.
    pub router: Arc<Router>,
    /// The router's metrics.
    pub metrics: Arc<Metrics>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningRouter {
    /// Starts the router with `snapshot` and `limits` (redirects on, round-robin).
    pub async fn start(snapshot: Snapshot, limits: Limits) -> Self {
        Self::start_with(snapshot, limits, http::Balance::RoundRobin).await
    }

    /// Starts the router with a chosen balancing mode.
    pub async fn start_with(snapshot: Snapshot, limits: Limits, balance: http::Balance) -> Self {
        let (tx, rx) = watch::channel(Arc::new(snapshot));
        let metrics = Arc::new(Metrics::default());
        let opts = http::Options {
            http: "127.0.0.1:0".parse().expect("addr"),
            https: Some("127.0.0.1:0".parse().expect("addr")),
            ssl_redirect: true,
            balance,
            limits,
            // Two workers, so the suites exercise shared SO_REUSEPORT listeners and
            // per-worker upstream pools.
            workers: 2,
            allow_underscores_in_headers: false,
            access_log: http::access_log::Options::default(),
        };
        let server = http::Server::bind(opts, rx, Arc::clone(&metrics))
            .await
            .expect("bind router");
        let http = server.http_addr().expect("http addr");
        let https = server
            .https_addr()
            .expect("https listener")
            .expect("https addr");
        let router = Arc::clone(server.router());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stop_rx.await;
        }));
        Self {
            http,
            https,
            router,
            metrics,
            snapshots: tx,
            shutdown: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Publishes a new Snapshot through the watch channel and waits until the router
    /// uses it (so the next request sees it).
    pub async fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        self.snapshots.send_replace(Arc::clone(&snapshot));
        for _ in 0..500 {
            if Arc::ptr_eq(&self.router.snapshot(), &snapshot) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("the router did not pick up the new snapshot");
    }

    /// Starts graceful shutdown; returns the server task to await.
    pub fn shutdown(&mut self) -> JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("router task")
    }
}

impl Drop for RunningRouter {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A response read fully.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body as text.
    pub body: String,
}

impl Answer {
    /// The first body line: the backend's name for backend answers.
    pub fn backend(&self) -> &str {
        self.body.lines().next().unwrap_or("")
    }

    /// A request header as the backend saw it (from the echoed header lines).
    pub fn seen_header(&self, name: &str) -> Option<&str> {
        self.body
            .lines()
            .skip(1)
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
    }
}

/// A pooled plain-HTTP/1.1 client.
pub fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `GET http://ADDR PATH` with `Host: HOST` through `client`.
pub async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Answer {
    let req = Request::get(format!("http://{addr}{path}"))
        .header(header::HOST, host)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client
        .request(req)
        .await
        .expect("request through the router");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A TLS connector trusting only `ca`, offering `alpn`.
pub fn tls_connector(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA into root store");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// Connects to `addr` with SNI `sni`; the certificate is verified for that name.
pub async fn tls_connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("SNI name");
    connector.connect(name, tcp).await
}

/// Sends `GET PATH` with `Host: HOST` on an established TLS stream, using HTTP/2 when
/// ALPN chose `h2`, else HTTP/1.1. Returns the response version too.
pub async fn tls_get(
    stream: TlsStream<TcpStream>,
    host: &str,
    path: &str,
) -> (hyper::Version, Answer) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        let req = Request::get(format!("https://{host}{path}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        send.send_request(req).await.expect("h2 request")
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(header::HOST, host)
            .body(Full::new(Bytes::new()))
            .expect("request");
        send.send_request(req).await.expect("h1 request")
    };
    let version = resp.version();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        version,
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        },
    )
}

/// Writes `bytes` on a fresh TCP connection to `addr` and reads until the peer closes or
/// `limit` passes. Returns what was read and whether the peer closed.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, stream.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// The certificate chain a TLS stream's server presented.
pub fn peer_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server certificate")
        .clone()
        .into_owned()
}
