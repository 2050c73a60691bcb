//! The access log (`--access-log off|stdout|PATH`, `--access-log-format json|text`): one
//! line per request, as ingress-nginx writes by default.
//!
//! Kept off the request path: a request that opts in carries a small [`Pending`] record;
//! when its response body is dropped (sent, or abandoned) the line is formatted on the
//! serving thread and handed to a writer thread through a bounded queue with `try_send`.
//! A full queue (the disk or the stdout reader is slower than the traffic) drops the line
//! and counts it (`xdp_ingress_access_log_dropped_lines_total`); a request never waits for
//! the log.
//!
//! The writer drains the queue every [`DRAIN_EVERY`] rather than waking for each line: a
//! wake-up per request (a futex call and two context switches on a CPU the serving thread
//! shares) cost as much as a fifth of the CPU of a proxied HTTPS request.

pub mod format;

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    task::{Context, Poll},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use hyper::{
    HeaderMap, Method, Uri, Version,
    body::{Body as HttpBody, Frame, SizeHint},
    header::{self, HeaderValue},
};
use prometheus_client::metrics::counter::Counter;
use tracing::warn;

pub use self::format::{Format, Line};
use super::body::BoxError;
use crate::snapshot::routes::Backend;

/// Lines queued between the serving threads and the writer; beyond, lines are dropped.
const QUEUE_LINES: usize = 16_384;

/// How long the writer sleeps after writing a batch: how late a line may appear, and (with
/// [`QUEUE_LINES`]) the request rate the log keeps up with (16,384 lines per 20 ms: 800k/s).
const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// Where access log lines go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// No access log (the library default; the binary's `--access-log` is `stdout`).
    #[default]
    Off,
    /// Standard output (the process's own logs go to standard error).
    Stdout,
    /// Appended to this file (created if missing).
    File(PathBuf),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Err("expected off, stdout or a file path".into()),
            "off" => Ok(Self::Off),
            "stdout" | "-" => Ok(Self::Stdout),
            path => Ok(Self::File(PathBuf::from(path))),
        }
    }
}

/// Where and how the log is written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Where (`--access-log`).
    pub target: Target,
    /// How (`--access-log-format`).
    pub format: Format,
}

/// Opening the log target failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened for appending.
    #[error("opening access log {path}: {source}")]
    Open {
        /// The `--access-log` path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The writer thread could not start.
    #[error("starting the access log writer: {0}")]
    Thread(#[source] io::Error),
}

/// The sending side, shared by every serving thread.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<Vec<u8>>,
    format: Format,
    dropped: Counter,
}

/// The writer thread; [`Writer::finish`] waits for it to write what is queued.
#[derive(Debug)]
pub struct Writer(JoinHandle<()>);

impl Writer {
    /// Waits (at most `limit`) for the writer to drain the queue and flush. Call after
    /// every [`AccessLog`] is dropped, or it waits the whole `limit`.
    pub async fn finish(self, limit: Duration) {
        let joined = tokio::task::spawn_blocking(move || {
            let _ = self.0.join();
        });
        let _ = tokio::time::timeout(limit, joined).await;
    }
}

impl AccessLog {
    /// Opens `target` and starts its writer thread; `None` for [`Target::Off`]. Lines that
    /// cannot be queued or written are counted in `dropped`.
    pub fn start(opts: &Options, dropped: Counter) -> Result<Option<(Arc<Self>, Writer)>, Error> {
        let format = opts.format;
        let out: Box<dyn Write + Send> = match &opts.target {
            Target::Off => return Ok(None),
            Target::Stdout => Box::new(io::stdout()),
            Target::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| Error::Open {
                        path: path.clone(),
                        source,
                    })?,
            ),
        };
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let counted = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("xi-access-log".into())
            .spawn(move || write_lines(&rx, out, &counted))
            .map_err(Error::Thread)?;
        Ok(Some((
            Arc::new(Self {
                tx,
                format,
                dropped,
            }),
            Writer(thread),
        )))
    }

    /// Formats and queues one line; drops (and counts) it when the queue is full.
    fn log(&self, line: &Line<'_>) {
        let mut buf = Vec::with_capacity(512);
        line.write(self.format, &mut buf);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(buf) {
            self.dropped.inc();
        }
    }
}

/// The writer thread: writes what is queued, in batches, flushing whenever the queue runs
/// empty and then sleeping [`DRAIN_EVERY`], until every sender is gone.
fn write_lines(rx: &Receiver<Vec<u8>>, out: Box<dyn Write + Send>, dropped: &Counter) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    let warned = AtomicBool::new(false);
    let failed = |e: &io::Error, lines: u64| {
        dropped.inc_by(lines);
        if !warned.swap(true, Ordering::Relaxed) {
            warn!(error = %e, "writing the access log failed; lines are dropped (and counted)");
        }
    };
    while let Ok(line) = rx.recv() {
        let mut batch = 1;
        let mut result = out.write_all(&line);
        while let Ok(line) = rx.try_recv() {
            batch += 1;
            if result.is_ok() {
                result = out.write_all(&line);
            }
        }
        if let Err(e) = result.and_then(|()| out.flush()) {
            failed(&e, batch);
        }
        std::thread::sleep(DRAIN_EVERY);
    }
    if let Err(e) = out.flush() {
        failed(&e, 0);
    }
}

/// What the log needs to know about a request, gathered as it is served.
#[derive(Debug)]
pub struct Pending {
    start: Instant,
    client: SocketAddr,
    method: Method,
    uri: Uri,
    version: Version,
    host: Option<HeaderValue>,
    /// The backend the request matched.
    pub backend: Option<Arc<Backend>>,
    /// The request id sent upstream.
    pub request_id: Option<HeaderValue>,
    /// The endpoint last tried.
    pub upstream_addr: Option<SocketAddr>,
    /// The upstream's status.
    pub upstream_status: Option<u16>,
    /// Time to the upstream's response head (or failure).
    pub upstream_time: Option<Duration>,
    status: u16,
}

impl Pending {
    /// A record of the request with this head, from the client at `client`, started now.
    pub fn new(
        client: SocketAddr,
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
    ) -> Box<Self> {
        let host = headers.get(header::HOST).cloned().or_else(|| {
            uri.authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        Box::new(Self {
            start: Instant::now(),
            client,
            method: method.clone(),
            uri: uri.clone(),
            version,
            host,
            backend: None,
            request_id: None,
            upstream_addr: None,
            upstream_status: None,
            upstream_time: None,
            status: 0,
        })
    }

    fn line(&self, time: SystemTime, bytes_sent: u64) -> Line<'_> {
        let backend = self.backend.as_deref();
        fn text(v: &Arc<String>) -> Option<&str> {
            Some(v.as_str()).filter(|s| !s.is_empty())
        }
        Line {
            time,
            client: self.client,
            method: self.method.as_str(),
            target: self.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            version: version_str(self.version),
            host: self.host.as_ref().and_then(|h| h.to_str().ok()),
            status: self.status,
            bytes_sent,
            duration: self.start.elapsed(),
            upstream_addr: self.upstream_addr,
            upstream_status: self.upstream_status,
            upstream_time: self.upstream_time,
            request_id: self.request_id.as_ref().and_then(|v| v.to_str().ok()),
            route_kind: backend
                .and_then(|b| b.ingress.as_ref())
                .map(|r| r.kind.as_str()),
            route: backend.and_then(|b| text(&b.names.0)),
            service: backend.and_then(|b| text(&b.names.1)),
        }
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The `X-Request-ID` a forwarded request carries: the client's, kept in `headers`, else the
/// generated one among the `extra` header lines the proxy adds.
pub fn request_id(headers: &HeaderMap, extra: &[u8]) -> Option<HeaderValue> {
    const NAME: &[u8] = b"x-request-id: ";
    if let Some(v) = headers.get("x-request-id") {
        return Some(v.clone());
    }
    let at = extra.windows(NAME.len()).position(|w| w == NAME)? + NAME.len();
    let len = extra[at..].iter().position(|&b| b == b'\r')?;
    HeaderValue::from_bytes(&extra[at..at + len]).ok()
}

/// A response body that writes the request's log line when dropped, with the bytes it
/// carried.
pub struct Logged<B> {
    body: B,
    sent: u64,
    pending: Box<Pending>,
    log: Arc<AccessLog>,
}

impl<B> Logged<B> {
    /// Wraps the body of a response with `status`.
    pub fn new(body: B, status: u16, mut pending: Box<Pending>, log: Arc<AccessLog>) -> Self {
        pending.status = status;
        Self {
            body,
            sent: 0,
            pending,
            log,
        }
    }
}

impl<B> Drop for Logged<B> {
    fn drop(&mut self) {
        self.log
            .log(&self.pending.line(SystemTime::now(), self.sent));
    }
}

impl<B> HttpBody for Logged<B>
where
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.sent += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        for (given, want) in [
            ("off", Ok(Target::Off)),
            ("stdout", Ok(Target::Stdout)),
            ("-", Ok(Target::Stdout)),
            (
                "/var/log/x.log",
                Ok(Target::File(PathBuf::from("/var/log/x.log"))),
            ),
            ("", Err(())),
        ] {
            assert_eq!(given.parse::<Target>().map_err(|_| ()), want, "{given:?}");
        }
    }

    #[test]
    fn request_id_is_the_kept_header_else_the_generated_line() {
        let mut kept = HeaderMap::new();
        kept.insert("x-request-id", HeaderValue::from_static("client-id"));
        let extra = b"x-real-ip: 1.2.3.4\r\nx-request-id: 00ab\r\nx-forwarded-port: 80\r\n";
        for (name, headers, extra, want) in [
            ("client's", &kept, &extra[..], Some("client-id")),
            ("generated", &HeaderMap::new(), &extra[..], Some("00ab")),
            ("none", &HeaderMap::new(), &b"x-real-ip: 1\r\n"[..], None),
        ] {
            let got = request_id(headers, extra);
            assert_eq!(got.as_ref().and_then(|v| v.to_str().ok()), want, "{name}");
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dropped = Counter::default();
        let (tx, rx) = sync_channel(2);
        let log = Arc::new(AccessLog {
            tx,
            format: Format::Text,
            dropped: dropped.clone(),
        });
        let pending = || {
            Pending::new(
                "10.0.0.1:1".parse().unwrap(),
                &Method::GET,
                &Uri::from_static("/x"),
                Version::HTTP_11,
                &HeaderMap::new(),
            )
        };
        for _ in 0..5 {
            drop(Logged::new(
                super::super::body::empty(),
                404,
                pending(),
                log.clone(),
            ));
        }
        assert_eq!(dropped.get(), 3);
        let first = String::from_utf8(rx.recv().unwrap()).unwrap();
        assert!(
            first.contains("\"GET /x HTTP/1.1\" host=- status=404 bytes=0"),
            "{first}"
        );
    }
}
