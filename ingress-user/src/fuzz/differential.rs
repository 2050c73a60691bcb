//! hyper's own HTTP/1 server as the reference for the fast path: the bytes go in through an
//! in-memory pipe, and a service records the first request head hyper hands it.

use std::{cell::RefCell, convert::Infallible, rc::Rc};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, Response, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::http::limits::{Limits, MIN_HTTP1_BUF};

/// A request head as the router sees it, in a form two parsers' results can be compared in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Head {
    /// The method.
    pub method: String,
    /// The whole target as `Uri` holds it (origin-form: path and query).
    pub target: String,
    /// The version.
    pub version: hyper::Version,
    /// Every header line in `HeaderMap` order (lowercase names; values of one name in the
    /// order they came).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    pub fn of<B>(req: &Request<B>) -> Self {
        Self {
            method: req.method().as_str().to_owned(),
            target: req.uri().to_string(),
            version: req.version(),
            headers: req
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
                .collect(),
        }
    }
}

/// What hyper did with a connection that sent `data` and then closed its write side.
#[derive(Debug)]
pub(super) struct Served {
    /// The first request hyper handed to the service, if any. hyper closes the connection
    /// after a head it cannot parse, so a request here is always the connection's first.
    pub first: Option<Head>,
    /// The status of hyper's first response, if it wrote one (400, 431 ... when it refused).
    pub status: Option<u16>,
}

thread_local! {
    /// One runtime per thread: creating it per input would cost more than the parse.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime needs no resources that can fail");
}

/// Serves `data` with hyper's HTTP/1 server, configured as the router configures it (no
/// timer: the input is all there, and the pipe's end closes the connection).
pub(super) fn serve(data: &[u8]) -> Served {
    RUNTIME.with(|rt| rt.block_on(serve_async(data)))
}

async fn serve_async(data: &[u8]) -> Served {
    let first = Rc::new(RefCell::new(None));
    let record = Rc::clone(&first);
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        record.borrow_mut().get_or_insert_with(|| Head::of(&req));
        async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
    });
    let (client, server) = tokio::io::duplex(16 * 1024);
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let limits = Limits::default();
    let conn = http1::Builder::new()
        .max_buf_size(limits.max_header_bytes.max(MIN_HTTP1_BUF))
        .keep_alive(true)
        .serve_connection(TokioIo::new(server), service);
    // All three at once, so neither side blocks on a full pipe. The connection's end
    // drops the server half, which ends the read.
    let send = async {
        let _ = to_server.write_all(data).await;
        let _ = to_server.shutdown().await;
    };
    let receive = async {
        let mut out = Vec::new();
        let _ = from_server.read_to_end(&mut out).await;
        out
    };
    let ((), _, out) = tokio::join!(send, conn, receive);
    let first = first.borrow_mut().take();
    Served {
        first,
        status: status(&out),
    }
}

/// The status code of the response at the start of `out`.
fn status(out: &[u8]) -> Option<u16> {
    let code = out.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}
