//! A blocking HTTP/1.1 client on one keep-alive connection: small enough to poll every
//! millisecond from a plain thread without a runtime's timer granularity in the way.

use std::{
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first line of the body: a `TestBackend`'s name.
    pub fn first_line(&self) -> &str {
        let end = self
            .body
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(self.body.len());
        std::str::from_utf8(&self.body[..end]).unwrap_or("")
    }
}

/// One keep-alive connection to `addr`, reopened when the server closes it.
pub struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    /// Requests sent.
    pub sent: u64,
}

impl Client {
    /// A client for `addr` (connects on first use).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            conn: None,
            sent: 0,
        }
    }

    /// `GET /` with `Host: host`.
    pub fn get(&mut self, host: &str) -> io::Result<Response> {
        self.request("GET", "/", host, None)
    }

    /// `method path` with `Host: host` and an optional JSON body; retried once on a fresh
    /// connection if the kept-alive one fails (the server may have closed it meanwhile).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        host: &str,
        json: Option<&[u8]>,
    ) -> io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        if let Some(body) = json {
            head += &format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        head += "\r\n";
        let mut msg = head.into_bytes();
        msg.extend_from_slice(json.unwrap_or_default());
        let reused = self.conn.is_some();
        match self.exchange(&msg) {
            Err(_) if reused => self.exchange(&msg),
            other => other,
        }
    }

    fn exchange(&mut self, msg: &[u8]) -> io::Result<Response> {
        self.sent += 1;
        let result = self.try_exchange(msg);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn try_exchange(&mut self, msg: &[u8]) -> io::Result<Response> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().expect("connected above");
        conn.get_mut().write_all(msg)?;
        let (resp, close) = read_response(conn)?;
        if close {
            self.conn = None;
        }
        Ok(resp)
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads one response (Content-Length or chunked framing); also whether the server closes.
fn read_response(r: &mut BufReader<TcpStream>) -> io::Result<(Response, bool)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("status line {line:?}")))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap_or((l, ""));
        let value = value.trim().to_ascii_lowercase();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().ok(),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value.contains("close"),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(r)?
    } else {
        let mut body = vec![0; length.unwrap_or(0)];
        r.read_exact(&mut body)?;
        body
    };
    Ok((Response { status, body }, close))
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).map_err(|e| bad(format!("chunk size: {e}")))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                line.clear();
                r.read_line(&mut line)?;
                if line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size + 2, 0);
        r.read_exact(&mut body[start..])?;
        body.truncate(start + size);
    }
}
