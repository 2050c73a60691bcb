//! A backend that terminates TLS itself (tokio-rustls on 127.0.0.1), for TLS passthrough
//! tests: it serves its own certificate, signed by a [`TestCa`] the client trusts and
//! the ingress does not hold, so a client that verifies it has talked to this backend
//! through an untouched TLS stream. After the handshake it writes one line naming
//! itself and the SNI it saw, then echoes what it reads.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

use crate::http_support::TestCa;

/// The running backend; stops accepting on drop.
pub struct TlsBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsBackend {
    /// A backend `name` with a certificate for `hosts` signed by `ca`.
    pub async fn start(name: &str, ca: &TestCa, hosts: &[&str]) -> Self {
        let secret = ca.secret(&format!("{name}-own"), hosts);
        let data = secret.data.expect("secret data");
        let chain = vec![CertificateDer::from_pem_slice(&data["tls.crt"].0).expect("tls.crt")];
        let key = PrivateKeyDer::from_pem_slice(&data["tls.key"].0).expect("tls.key");
        let config = ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("backend certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&handshakes);
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, name, count) = (acceptor.clone(), name.clone(), Arc::clone(&count));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let sni = tls.get_ref().1.server_name().unwrap_or("-").to_owned();
                    let hello = format!("backend {name} sni {sni}\n");
                    if tls.write_all(hello.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            addr,
            handshakes,
            task,
        }
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects with SNI `sni` to `addr` through `connector`, verifying the certificate
/// for `sni`; returns the stream and the backend's first line.
pub async fn greet(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<(TlsStream<TcpStream>, String)> {
    let tcp = TcpStream::connect(addr).await?;
    greet_over(connector, tcp, sni).await
}

/// As [`greet`], with every write split into `chunk` bytes, flushed one by one (as
/// ingress-nginx's e2e test "on throttled connections" sends its ClientHello), so the
/// ClientHello reaches the ingress in several TCP segments.
pub async fn greet_chunked(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
    chunk: usize,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (_, line) = greet_over(connector, ChunkedWrites { inner: tcp, chunk }, sni).await?;
    Ok(line)
}

async fn greet_over<IO: AsyncRead + AsyncWrite + Unpin>(
    connector: &TlsConnector,
    io: IO,
    sni: &str,
) -> std::io::Result<(TlsStream<IO>, String)> {
    let name = ServerName::try_from(sni.to_owned()).expect("SNI name");
    let mut stream = connector.connect(name, io).await?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    Ok((stream, String::from_utf8_lossy(&line).into_owned()))
}

/// A stream whose writes take at most `chunk` bytes each.
struct ChunkedWrites<S> {
    inner: S,
    chunk: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for ChunkedWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ChunkedWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.chunk);
        Pin::new(&mut self.inner).poll_write(cx, &buf[..n])
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
