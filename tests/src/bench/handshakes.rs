//! A TLS handshake load generator (neither wrk nor h2load resumes sessions or reports how
//! a handshake went): `conns` clients on one thread pinned to the load CPU in the client
//! namespace, each looping connect → TLS 1.3 handshake → one `GET /` with
//! `Connection: close` → read to the end. With `resume`, the clients share one session
//! store, so every connection after the first few offers a ticket.
//!
//! The client does not verify certificates (a bench client; the tests verify them): that
//! keeps its own cost, the same for every server, low enough that the server it drives is
//! the bottleneck. Key exchange is X25519, the group every peer picks first.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use rustls::{
    ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme,
    client::{
        Resumption,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::aws_lc_rs,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use crate::{
    bench::rig::{LOAD_CPU, pin, spawn_in},
    netns::Netns,
};

/// What to drive.
#[derive(Clone, Debug)]
pub struct Params {
    /// The server.
    pub addr: SocketAddr,
    /// SNI name and `Host` header.
    pub host: String,
    /// Concurrent clients.
    pub conns: u32,
    /// Seconds of load.
    pub secs: f64,
    /// Offer saved sessions (tickets), or never.
    pub resume: bool,
}

/// One run's outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    /// Completed connections (handshake and a 200 answer) per second.
    pub per_sec: f64,
    /// Completed connections.
    pub done: u64,
    /// Of those, the resumed handshakes.
    pub resumed: u64,
    /// Connections that failed (connect, handshake, or no 200 answer).
    pub errors: u64,
}

/// Runs the load from a thread in `ns` pinned to the load CPU.
pub fn run(ns: &Netns, p: Params) -> anyhow::Result<Run> {
    spawn_in(ns, move || {
        pin(0, LOAD_CPU)?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(drive(p))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("handshake load thread panicked"))?
}

async fn drive(p: Params) -> anyhow::Result<Run> {
    let connector = connector(p.resume);
    let name = ServerName::try_from(p.host.clone()).context("SNI name")?;
    let request: Arc<[u8]> = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        p.host
    )
    .into_bytes()
    .into();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(p.secs);
    let clients = (0..p.conns).map(|_| {
        let (connector, name, request) = (connector.clone(), name.clone(), Arc::clone(&request));
        async move {
            let mut run = Run::default();
            while Instant::now() < deadline {
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    once(&connector, p.addr, name.clone(), &request),
                )
                .await
                {
                    Ok(Ok(resumed)) => {
                        run.done += 1;
                        run.resumed += u64::from(resumed);
                    }
                    _ => run.errors += 1,
                }
            }
            run
        }
    });
    let runs = futures::future::join_all(clients).await;
    let secs = start.elapsed().as_secs_f64();
    let mut total = runs.into_iter().fold(Run::default(), |a, r| Run {
        per_sec: 0.0,
        done: a.done + r.done,
        resumed: a.resumed + r.resumed,
        errors: a.errors + r.errors,
    });
    total.per_sec = total.done as f64 / secs;
    Ok(total)
}

/// One connection; whether its handshake was resumed.
async fn once(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
    request: &[u8],
) -> std::io::Result<bool> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name, tcp).await?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    tls.write_all(request).await?;
    let mut head = [0u8; 12];
    let mut got = 0;
    let mut buf = [0u8; 4096];
    loop {
        let n = match tls.read(&mut buf).await {
            Ok(n) => n,
            // A peer that closes without close_notify after its answer is done too.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && got > 0 => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        let take = n.min(head.len() - got);
        head[got..got + take].copy_from_slice(&buf[..take]);
        got += take;
    }
    if &head[..] != b"HTTP/1.1 200" {
        return Err(std::io::Error::other("no 200 answer"));
    }
    Ok(resumed)
}

fn connector(resume: bool) -> TlsConnector {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if resume {
        Resumption::in_memory_sessions(4096)
    } else {
        Resumption::disabled()
    };
    TlsConnector::from(Arc::new(config))
}

/// Accepts any certificate and signature (see the module docs).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
