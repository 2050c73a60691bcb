//! The fast path's wire format: which requests it takes (pure parsing), and response heads.
//!
//! It takes only the plain, common request: HTTP/1.1, origin-form target, no body, no
//! upgrade, no `Expect`. Everything else is declined with the reason, and the connection
//! goes to hyper, which answers exactly as it always has (400, 431, bodies, upgrades).

use std::{cell::RefCell, mem::MaybeUninit, time::SystemTime};

use bytes::BytesMut;
use hyper::{
    HeaderMap, Method, Request, StatusCode, Uri, Version,
    header::{self, HeaderName, HeaderValue},
    http::response::Parts,
};

use crate::http::headers::write_decimal;

/// As many header lines as hyper's HTTP/1 server accepts by default.
const MAX_HEADERS: usize = 100;

/// Why a request is not the fast path's to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decline {
    /// The head is not complete in the buffer (hyper waits for it, with its timeout).
    Partial,
    /// Not HTTP/1.1 syntax that parses, or a name, value or target hyper would refuse.
    Malformed,
    /// Longer than the head limit, or too many header lines (hyper answers 431).
    TooLarge,
    /// HTTP/1.0 (and older): keep-alive and framing differ.
    Version,
    /// `CONNECT`, or a target that is not origin-form (`*`, absolute-form).
    Target,
    /// A body (`Content-Length` other than 0, or `Transfer-Encoding`).
    Body,
    /// `Upgrade`, `Expect` (100-continue) or `Connection: upgrade`.
    Special,
}

/// A request the fast path serves.
#[derive(Debug)]
pub struct Accepted {
    /// The head, with an empty body.
    pub req: Request<()>,
    /// The client asked to close the connection after the response.
    pub close: bool,
}

/// Parses the request head at the start of `buf`. When the request is one the fast path
/// serves, its head is taken off the buffer (values are slices of it, not copies);
/// otherwise the buffer is untouched, ready to hand to hyper.
pub fn parse_request(buf: &mut BytesMut, max_head: usize) -> Result<Accepted, Decline> {
    let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut lines)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err(Decline::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Decline::TooLarge),
        Err(_) => return Err(Decline::Malformed),
    };
    if len > max_head {
        return Err(Decline::TooLarge);
    }
    if req.version != Some(1) {
        return Err(Decline::Version);
    }
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    if method == "CONNECT" || !target.starts_with('/') {
        return Err(Decline::Target);
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Decline::Malformed)?;
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let target = span(target.as_bytes());
    let mut close = false;
    let mut has_length = false;
    let mut fields = Vec::with_capacity(req.headers.len());
    for line in req.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes()).map_err(|_| Decline::Malformed)?;
        if name == header::CONNECTION {
            for token in line.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"upgrade") {
                    return Err(Decline::Special);
                }
                close |= token.eq_ignore_ascii_case(b"close");
            }
        } else if name == header::CONTENT_LENGTH {
            // hyper keeps one line of repeated equal lengths; such a request is its to
            // serve, so both servers forward the same head (found by h1_differential).
            if has_length || line.value.trim_ascii() != b"0" {
                return Err(Decline::Body);
            }
            has_length = true;
        } else if name == header::TRANSFER_ENCODING {
            return Err(Decline::Body);
        } else if name == header::UPGRADE || name == header::EXPECT {
            return Err(Decline::Special);
        }
        fields.push((name, span(line.value)));
    }
    // The head becomes shared bytes the values point into. Should hyper's `Uri` or
    // `HeaderValue` refuse what httparse let through, the buffer is put back together
    // (a copy, on a path that ends in 400 anyway).
    let head = buf.split_to(len).freeze();
    let built = Uri::from_maybe_shared(head.slice(target))
        .ok()
        .and_then(|uri| {
            let mut headers = HeaderMap::with_capacity(fields.len());
            for (name, range) in fields {
                headers.append(
                    name,
                    HeaderValue::from_maybe_shared(head.slice(range)).ok()?,
                );
            }
            Some((uri, headers))
        });
    let Some((uri, headers)) = built else {
        let mut whole = BytesMut::with_capacity(head.len() + buf.len());
        whole.extend_from_slice(&head);
        whole.extend_from_slice(buf);
        *buf = whole;
        return Err(Decline::Malformed);
    };
    let mut out = Request::new(());
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = headers;
    Ok(Accepted { req: out, close })
}

/// How a response body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body bytes at all (HEAD, 1xx, 204, 304): the head is all.
    Bodiless,
    /// No body bytes, but `Content-Length: n` announces what a GET would get: a HEAD
    /// answered here, whose head has no length of its own (as hyper does).
    Announced(u64),
    /// `Content-Length: n`, then n bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`: the length is not known up front.
    Chunked,
}

/// The framing of a response to a request with `method`: its body's exact length if
/// known, else a valid `Content-Length` it carries (as hyper trusts one), else chunked.
pub fn framing(method: &Method, parts: &Parts, exact: Option<u64>) -> Framing {
    let status = parts.status;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Framing::Bodiless;
    }
    if *method == Method::HEAD {
        let framed = parts.headers.contains_key(header::CONTENT_LENGTH)
            || parts.headers.contains_key(header::TRANSFER_ENCODING);
        return match exact {
            Some(n) if n > 0 && !framed => Framing::Announced(n),
            _ => Framing::Bodiless,
        };
    }
    let declared = || {
        let mut values = parts.headers.get_all(header::CONTENT_LENGTH).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok()?.trim().parse().ok(),
            _ => None,
        }
    };
    exact
        .or_else(declared)
        .map_or(Framing::Chunked, Framing::Length)
}

/// Encodes the status line and headers. The framing headers are ours: any
/// `Content-Length` or `Transfer-Encoding` in `parts` is replaced by what `framing` says,
/// except on bodiless responses to HEAD and 304, where they describe the resource and are
/// kept. Adds `Date` when missing, and `Connection: close` when `close`.
pub fn encode_response_head(parts: &Parts, framing: Framing, close: bool, out: &mut Vec<u8>) {
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let keep_framing = matches!(framing, Framing::Bodiless | Framing::Announced(_))
        && status != StatusCode::NO_CONTENT
        && !status.is_informational();
    let mut has_date = false;
    for (name, value) in &parts.headers {
        if (name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING) && !keep_framing {
            continue;
        }
        has_date |= name == header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) | Framing::Announced(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(write_decimal(n, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Bodiless => {}
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        date(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Calls `f` with the current `Date` value (IMF-fixdate), formatted at most once a second
/// per thread.
fn date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        f(text.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use hyper::Response;

    use super::*;

    fn parse(raw: &str) -> Result<Accepted, Decline> {
        parse_request(&mut BytesMut::from(raw), 32 * 1024)
    }

    #[test]
    fn plain_requests_are_taken_and_everything_else_declined() {
        use Decline::*;
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: 1\r\n".repeat(101));
        let table: &[(&str, Result<(), Decline>)] = &[
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(())),
            ("DELETE /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n", Ok(())),
            ("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Ok(())),
            (
                "GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
                Err(Body),
            ),
            (
                "GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
                Ok(()),
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\n", Err(Partial)),
            ("GET / HTT", Err(Partial)),
            ("", Err(Partial)),
            ("GET / HTTP/1.0\r\n\r\n", Err(Version)),
            ("G@T / HTTP/1.1\r\n\r\n", Err(Malformed)),
            ("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", Err(Malformed)),
            ("GET /\x7f HTTP/1.1\r\n\r\n", Err(Malformed)),
            ("GET http://a/ HTTP/1.1\r\n\r\n", Err(Target)),
            ("OPTIONS * HTTP/1.1\r\n\r\n", Err(Target)),
            ("CONNECT a:443 HTTP/1.1\r\n\r\n", Err(Target)),
            ("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", Err(Body)),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(Body),
            ),
            ("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", Err(Special)),
            (
                "GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n",
                Err(Special),
            ),
            (
                "PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
                Err(Special),
            ),
            (&big, Err(TooLarge)),
            (&many, Err(TooLarge)),
        ];
        for (raw, want) in table {
            let got = parse(raw).map(|_| ());
            assert_eq!(&got, want, "{:?}", &raw[..raw.len().min(60)]);
        }
    }

    #[test]
    fn a_taken_request_leaves_the_next_one_in_the_buffer() {
        let mut buf = BytesMut::from(
            "GET /a?q=1 HTTP/1.1\r\nHost: Up.Test\r\nX-Two: 1\r\nx-two: 2\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n",
        );
        let got = parse_request(&mut buf, 1024).unwrap();
        assert!(got.close);
        assert_eq!(got.req.method(), Method::GET);
        assert_eq!(got.req.uri().path_and_query().unwrap().as_str(), "/a?q=1");
        assert_eq!(got.req.headers()["host"], "Up.Test");
        let twos: Vec<_> = got.req.headers().get_all("x-two").iter().collect();
        assert_eq!(twos, ["1", "2"], "repeated headers keep their order");
        assert_eq!(&buf[..], b"GET /b HTTP/1.1\r\n");
    }

    #[test]
    fn a_declined_request_leaves_the_buffer_whole() {
        let raw = "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
        let mut buf = BytesMut::from(raw);
        assert_eq!(parse_request(&mut buf, 1024).unwrap_err(), Decline::Body);
        assert_eq!(&buf[..], raw.as_bytes());
    }

    #[test]
    fn framing_follows_method_status_and_length() {
        let get = Method::GET;
        let head = Method::HEAD;
        for (method, status, exact, declared, want) in [
            (&get, 200, Some(3), None, Framing::Length(3)),
            (&get, 200, Some(0), None, Framing::Length(0)),
            (&get, 200, None, None, Framing::Chunked),
            (&get, 200, None, Some("12"), Framing::Length(12)),
            (&get, 200, Some(3), Some("12"), Framing::Length(3)),
            (&get, 200, None, Some("x"), Framing::Chunked),
            (&get, 404, Some(10), None, Framing::Length(10)),
            (&head, 200, Some(0), Some("12"), Framing::Bodiless),
            (&head, 200, Some(0), None, Framing::Bodiless),
            (&head, 404, Some(47), None, Framing::Announced(47)),
            (&head, 200, Some(47), Some("12"), Framing::Bodiless),
            (&get, 204, Some(0), None, Framing::Bodiless),
            (&get, 304, None, Some("12"), Framing::Bodiless),
        ] {
            let mut resp = Response::builder().status(status);
            if let Some(len) = declared {
                resp = resp.header("content-length", len);
            }
            let (parts, ()) = resp.body(()).unwrap().into_parts();
            assert_eq!(
                framing(method, &parts, exact),
                want,
                "{method} {status} {declared:?}"
            );
        }
    }

    fn head(resp: Response<()>, framing: Framing, close: bool) -> String {
        let (parts, ()) = resp.into_parts();
        let mut out = Vec::new();
        encode_response_head(&parts, framing, close, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_heads_carry_our_framing_and_keep_the_rest() {
        let resp = Response::builder()
            .status(200)
            .header("x-a", "1")
            .header("content-length", "999")
            .header("transfer-encoding", "chunked")
            .header("date", "Fri, 27 Nov 2026 21:00:00 GMT")
            .body(())
            .unwrap();
        assert_eq!(
            head(resp, Framing::Length(3), false),
            "HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: Fri, 27 Nov 2026 21:00:00 GMT\r\ncontent-length: 3\r\n\r\n"
        );

        let resp = Response::builder()
            .status(404)
            .header("content-length", "5")
            .body(())
            .unwrap();
        let text = head(resp, Framing::Chunked, true);
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\ndate: "),
            "{text}"
        );
        assert!(
            text.ends_with(" GMT\r\nconnection: close\r\n\r\n"),
            "{text}"
        );

        // A HEAD or 304 response keeps the length of the resource it describes.
        let resp = Response::builder()
            .status(304)
            .header("content-length", "42")
            .header("date", "x")
            .body(())
            .unwrap();
        assert_eq!(
            head(resp, Framing::Bodiless, false),
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 42\r\ndate: x\r\n\r\n"
        );
        // A HEAD answered here announces its body's length.
        let resp = Response::builder()
            .status(404)
            .header("date", "x")
            .body(())
            .unwrap();
        assert_eq!(
            head(resp, Framing::Announced(47), false),
            "HTTP/1.1 404 Not Found\r\ndate: x\r\ncontent-length: 47\r\n\r\n"
        );
        // A 204 has none.
        let resp = Response::builder()
            .status(204)
            .header("content-length", "0")
            .header("date", "x")
            .body(())
            .unwrap();
        assert_eq!(
            head(resp, Framing::Bodiless, false),
            "HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n"
        );
    }
}
