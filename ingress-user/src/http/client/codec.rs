//! The HTTP/1.1 wire format of the upstream client: request heads out, response heads in,
//! and how a response body is delimited (RFC 9112 §6). Pure: no IO, tested with tables.

use std::{io::Write as _, mem::MaybeUninit};

use bytes::BytesMut;
use hyper::{
    HeaderMap, Method, StatusCode,
    header::{self, HeaderName, HeaderValue},
};

/// Largest response head accepted from an upstream (nginx gives 502 for "upstream sent
/// too big header" at a few KiB; this is generous).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response header lines accepted from an upstream.
pub const MAX_HEADERS: usize = 128;

/// Why an upstream response head is unusable. Every one ends the exchange with a 502.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    /// httparse rejected the bytes.
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    /// The head did not end within [`MAX_HEAD_BYTES`].
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    /// A header name or value http cannot carry.
    #[error("unusable response header {0:?}")]
    BadHeader(String),
    /// `Content-Length` is not one non-negative integer.
    #[error("invalid content-length {0:?}")]
    BadContentLength(String),
}

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304, or `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// How the request body is sent upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body, and no framing header (but `content-length: 0` for methods that
    /// normally carry one, so the upstream does not wait).
    Empty,
    /// `Content-Length`, as the client declared it.
    Length(u64),
    /// `Transfer-Encoding: chunked` (an HTTP/1 chunked or HTTP/2 body of unknown length).
    Chunked,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// The status.
    pub status: StatusCode,
    /// The header lines, as sent (hop-by-hop ones are the proxy's to remove).
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Writes the request line, `headers`, then the `extra` lines the proxy adds (encoded,
/// each ending in CRLF).
/// `Content-Length`, `Transfer-Encoding` and `Expect` from `headers` are replaced by what
/// `framing` says (the client side already answered any `100-continue`).
pub fn encode_request(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    extra: &[u8],
    framing: RequestFraming,
    out: &mut Vec<u8>,
) {
    out.reserve(256 + headers.len() * 48 + extra.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::EXPECT
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra);
    match framing {
        RequestFraming::Empty if expects_body(method) => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Methods whose requests normally carry a body, so an empty one is announced.
fn expects_body(method: &Method) -> bool {
    *method == Method::POST || *method == Method::PUT || *method == Method::PATCH
}

/// The chunk-size line for a chunk of `len` bytes.
pub fn chunk_size_line(len: usize, out: &mut Vec<u8>) {
    let _ = write!(out, "{len:x}\r\n");
}

/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Parses a response head from the start of `buf` and, when it is complete, takes it
/// off the buffer. `Ok(None)`: incomplete, read more. Header values are slices of the
/// head's bytes, not copies. `method` is the request's (a HEAD response has no body
/// whatever it declares).
pub fn parse_response(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, HeadError> {
    let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut lines);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e)),
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let code = resp.code.unwrap_or_default();
    let status =
        StatusCode::from_u16(code).map_err(|_| HeadError::Malformed(httparse::Error::Status))?;
    let http10 = resp.version == Some(0);
    let base = buf.as_ptr() as usize;
    let mut fields = Vec::with_capacity(resp.headers.len());
    // The framing headers are read here, from the raw lines, so the usual response needs
    // no lookups in the map afterwards. A bad length only matters if the length is used.
    let (mut close, mut keep_alive_listed, mut has_coding) = (false, false, false);
    let mut length: Result<Option<u64>, HeadError> = Ok(None);
    for line in resp.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes())
            .map_err(|_| HeadError::BadHeader(line.name.to_owned()))?;
        if name == header::CONNECTION {
            for token in line.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_listed |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name == header::CONTENT_LENGTH {
            if let Ok(found) = &length {
                length = content_length_line(line.value, *found);
            }
        } else if name == header::TRANSFER_ENCODING {
            has_coding = true;
        }
        let start = line.value.as_ptr() as usize - base;
        fields.push((name, start..start + line.value.len()));
    }
    let raw = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, range) in fields {
        let value = HeaderValue::from_maybe_shared(raw.slice(range))
            .map_err(|_| HeadError::BadHeader(name.as_str().to_owned()))?;
        headers.append(name, value);
    }
    let mut keep_alive = if http10 { keep_alive_listed } else { !close };
    let framing = if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if has_coding {
        // Transfer-Encoding overrides Content-Length, which must then not reach the client;
        // a message with both is suspect, so the connection is not reused (RFC 9112 §6.3).
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            keep_alive = false;
        }
        if last_coding_is_chunked(&headers) {
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::UntilClose
        }
    } else if let Some(n) = length? {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        headers,
        framing,
        keep_alive,
    }))
}

fn last_coding_is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|t| !t.is_empty())
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
}

/// The declared length after one more `Content-Length` line: every line (and
/// comma-separated item) must be the same integer.
fn content_length_line(value: &[u8], found: Option<u64>) -> Result<Option<u64>, HeadError> {
    let bad = || HeadError::BadContentLength(String::from_utf8_lossy(value).into());
    let mut found = found;
    for item in value.split(|&b| b == b',') {
        let n = decimal(item.trim_ascii()).ok_or_else(bad)?;
        if found.is_some_and(|f| f != n) {
            return Err(bad());
        }
        found = Some(n);
    }
    Ok(found)
}

/// A non-empty run of ASCII digits as a number, if it fits in a `u64`.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `raw`; a complete head must consume it all.
    fn parse(raw: &str, method: &Method) -> Result<Option<Head>, HeadError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        let head = parse_response(&mut buf, method)?;
        if head.is_some() {
            assert!(buf.is_empty(), "{raw:?}: {} bytes left", buf.len());
        } else {
            assert_eq!(buf.len(), raw.len(), "{raw:?}: consumed while partial");
        }
        Ok(head)
    }

    #[test]
    fn response_framing_follows_rfc_9112_section_6_3() {
        use Framing::*;
        let get = Method::GET;
        for (raw, method, framing, keep_alive) in [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                &get,
                Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                &get,
                Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n",
                &get,
                Length(7),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                &get,
                Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
                &get,
                Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 9\r\n\r\n",
                &get,
                Chunked,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                &get,
                UntilClose,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", &get, UntilClose, false),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                &Method::HEAD,
                Empty,
                true,
            ),
            (
                "HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
                &get,
                Empty,
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
                &get,
                Empty,
                true,
            ),
            (
                "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n",
                &get,
                Empty,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n",
                &get,
                Length(5),
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nConnection: Keep-Alive, Close\r\n\r\n",
                &get,
                Length(5),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n",
                &get,
                Length(5),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\n",
                &get,
                Length(5),
                true,
            ),
        ] {
            let head = parse(raw, method).unwrap().expect(raw);
            assert_eq!(
                (head.framing, head.keep_alive),
                (framing, keep_alive),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn chunked_with_content_length_drops_the_length_header() {
        let raw = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 9\r\n\r\n";
        let head = parse(raw, &Method::GET).unwrap().unwrap();
        assert!(!head.headers.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn unusable_heads_are_errors_naming_the_problem() {
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "x: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        for (raw, want) in [
            ("HELLO\r\n\r\n", "malformed response head"),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
                "invalid content-length",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
                "invalid content-length",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
                "invalid content-length",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
                "invalid content-length",
            ),
            (huge.as_str(), "larger than"),
            (many.as_str(), "larger than"),
        ] {
            let err = parse(raw, &Method::GET).expect_err(&raw[..raw.len().min(60)]);
            assert!(
                err.to_string().contains(want),
                "{err} for {:?}",
                &raw[..raw.len().min(60)]
            );
        }
    }

    #[test]
    fn partial_heads_ask_for_more() {
        for raw in [
            "",
            "HTTP/1.1 200",
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n",
        ] {
            assert!(parse(raw, &Method::GET).unwrap().is_none(), "{raw:?}");
        }
    }

    #[test]
    fn repeated_headers_keep_their_order() {
        let raw =
            "HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 0\r\n\r\n";
        let head = parse(raw, &Method::GET).unwrap().unwrap();
        let cookies: Vec<_> = head.headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
    }

    #[test]
    fn request_heads_carry_the_framing_they_are_given() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a.test"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        headers.append("x-multi", HeaderValue::from_static("1"));
        headers.append("x-multi", HeaderValue::from_static("2"));
        let base = "host: a.test\r\nx-multi: 1\r\nx-multi: 2\r\n";
        for (method, framing, tail) in [
            (Method::GET, RequestFraming::Empty, ""),
            (Method::POST, RequestFraming::Empty, "content-length: 0\r\n"),
            (
                Method::POST,
                RequestFraming::Length(12),
                "content-length: 12\r\n",
            ),
            (
                Method::PUT,
                RequestFraming::Chunked,
                "transfer-encoding: chunked\r\n",
            ),
        ] {
            let mut out = Vec::new();
            encode_request(&method, "/a%20b?x=1", &headers, b"", framing, &mut out);
            let want = format!("{method} /a%20b?x=1 HTTP/1.1\r\n{base}{tail}\r\n");
            assert_eq!(
                String::from_utf8(out).unwrap(),
                want,
                "{method} {framing:?}"
            );
        }
    }

    #[test]
    fn chunk_size_lines_are_hex() {
        for (len, want) in [(1, "1\r\n"), (255, "ff\r\n"), (65536, "10000\r\n")] {
            let mut out = Vec::new();
            chunk_size_line(len, &mut out);
            assert_eq!(out, want.as_bytes());
        }
    }
}
