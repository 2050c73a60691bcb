//! TCP: accept, optionally read the client's PROXY header, connect to an endpoint (one retry
//! on another), optionally send a PROXY header, then copy both ways with half-close.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::AtomicU64},
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tracing::{debug, warn};

use super::{
    Shared, Target,
    proxy_protocol::{self, Addresses, Decoded},
    stats::{Gauge, ServiceStats},
};

/// Accepts until the task is aborted (listener removed or proxy shut down). Each connection
/// runs in its own task, so closing the listener leaves them running.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(connection(stream, peer, Arc::clone(&shared)));
            }
            Err(e) => {
                // Transient (out of file descriptors, aborted handshake): back off, go on.
                warn!(port = shared.port, error = %e, "accepting an L4 connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(client: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _tracked = shared.conns.track();
    let stats = &*shared.stats;
    ServiceStats::inc(&stats.accepted);
    let _active = Gauge::up(&stats.active);
    let mut kill = shared.kill.clone();
    tokio::select! {
        () = forward(client, peer, &shared) => {}
        _ = kill.wait_for(|&k| k) => debug!(%peer, port = shared.port, "L4 connection closed at shutdown"),
    }
}

async fn forward(mut client: TcpStream, peer: SocketAddr, shared: &Shared) {
    let stats = &*shared.stats;
    let target = shared.target.load_full();
    if target.endpoints.is_empty() {
        ServiceStats::inc(&stats.no_endpoint);
        debug!(%peer, port = shared.port, service = %target.service, "no endpoints; resetting the connection");
        reset(&client);
        return;
    }
    let _ = client.set_nodelay(true);
    let mut addresses = Addresses {
        source: peer,
        destination: client
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(shared.opts.bind_address, shared.port)),
    };
    let mut early = Vec::new();
    if target.proxy_protocol_in {
        match tokio::time::timeout(shared.opts.proxy_protocol_timeout, read_header(&mut client))
            .await
        {
            Ok(Ok((header, rest))) => {
                debug!(%peer, port = shared.port, ?header, "PROXY protocol header received");
                if let Some(a) = header.addresses {
                    addresses = a;
                }
                early = rest;
            }
            Ok(Err(e)) => {
                ServiceStats::inc(&stats.proxy_protocol_errors);
                warn!(%peer, port = shared.port, service = %target.service, error = %e, "bad PROXY protocol header; closing");
                return;
            }
            Err(_) => {
                ServiceStats::inc(&stats.proxy_protocol_errors);
                warn!(%peer, port = shared.port, service = %target.service, timeout = ?shared.opts.proxy_protocol_timeout, "no PROXY protocol header in time; closing");
                return;
            }
        }
    }
    let Some((mut upstream, endpoint)) = connect(shared, &target, peer).await else {
        ServiceStats::inc(&stats.no_endpoint);
        reset(&client);
        return;
    };
    let mut preamble = Vec::new();
    if target.proxy_protocol_out {
        preamble = proxy_protocol::encode(shared.opts.proxy_protocol_version, &addresses);
    }
    preamble.extend_from_slice(&early);
    if !preamble.is_empty() {
        if let Err(e) = upstream.write_all(&preamble).await {
            debug!(%peer, %endpoint, error = %e, "writing to the endpoint failed");
            return;
        }
        ServiceStats::add(&stats.bytes_in, early.len() as u64);
    }
    let size = shared.opts.buffer_size;
    let mut client = Counted::new(client, &stats.bytes_in);
    let mut upstream = Counted::new(upstream, &stats.bytes_out);
    match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, size, size).await {
        Ok((sent, received)) => debug!(%peer, %endpoint, sent, received, "L4 connection done"),
        Err(e) => debug!(%peer, %endpoint, error = %e, "L4 connection ended with an error"),
    }
}

/// Reads exactly a PROXY header, returning it and any stream bytes that came with it.
async fn read_header(
    client: &mut TcpStream,
) -> Result<(proxy_protocol::Header, Vec<u8>), HeaderError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        if client.read_buf(&mut buf).await? == 0 {
            return Err(HeaderError::Eof(buf.len()));
        }
        if let Decoded::Header { header, len } = proxy_protocol::decode(&buf)? {
            return Ok((header, buf.split_off(len)));
        }
        // Incomplete; decode bounds the header size, so the buffer stays small.
    }
}

#[derive(Debug, thiserror::Error)]
enum HeaderError {
    #[error(transparent)]
    Invalid(#[from] proxy_protocol::Error),
    #[error("connection closed after {0} bytes, before a whole PROXY protocol header")]
    Eof(usize),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

/// Connects to the next endpoint, and once more to another one if that fails.
async fn connect(
    shared: &Shared,
    target: &Target,
    peer: SocketAddr,
) -> Option<(TcpStream, SocketAddr)> {
    let mut failed = None;
    let attempts = target.endpoints.len().min(2);
    for _ in 0..attempts {
        let endpoint = shared.pick(target, failed)?;
        let error =
            match tokio::time::timeout(shared.opts.connect_timeout, TcpStream::connect(endpoint))
                .await
            {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, endpoint));
                }
                Ok(Err(e)) => e,
                Err(_) => io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            };
        ServiceStats::inc(&shared.stats.connect_errors);
        warn!(%peer, %endpoint, port = shared.port, service = %target.service, error = %error, "connecting to the endpoint failed");
        failed = Some(endpoint);
    }
    None
}

/// Closes with a RST (SO_LINGER 0), as a port with no endpoints should.
fn reset(stream: &TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        debug!(error = %e, "setting SO_LINGER 0 failed; closing normally");
    }
}

/// A stream that counts the bytes read from it.
struct Counted<'a, S> {
    inner: S,
    read: &'a AtomicU64,
}

impl<'a, S> Counted<'a, S> {
    fn new(inner: S, read: &'a AtomicU64) -> Self {
        Self { inner, read }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            ServiceStats::add(this.read, n as u64);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
