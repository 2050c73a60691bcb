//! The upstream client's response decoding: heads (`client::codec`) and chunked bodies
//! (`client::chunked`), fed as the client feeds them, one read at a time.

use bytes::BytesMut;
use hyper::{Method, StatusCode, header};

use super::show;
use crate::http::client::{
    chunked::{ChunkedError, Decoder, Step},
    codec::{Framing, Head, HeadError, parse_response},
};

/// Input: byte 0 picks the request method (`H` HEAD, `P` POST, `C` CONNECT, else GET),
/// byte 1 seeds the read sizes, the rest is what the upstream sends. The client's loop
/// runs twice, once with everything in one read and once in reads of the seeded sizes:
/// - the outcome is the same: the same heads (1xx ones skipped as the client skips them),
///   the same body bytes, the same end (complete with the same bytes left over, waiting
///   for more, or the same error);
/// - a head that is not complete yet leaves the buffer untouched;
/// - each head's framing obeys RFC 9112 §6.3 (no body for HEAD, 1xx, 204 and 304;
///   `Transfer-Encoding` overrides `Content-Length`, which is then dropped and the
///   connection not reused; a body until close ends the connection);
/// - a chunked body never yields an empty piece (which a reader could take for its end).
pub fn upstream_response(data: &[u8]) {
    let [m, seed, wire @ ..] = data else {
        return;
    };
    let method = match m {
        b'H' => Method::HEAD,
        b'P' => Method::POST,
        b'C' => Method::CONNECT,
        _ => Method::GET,
    };
    let whole = exchange(wire, &method, &mut Reads::whole());
    let split = exchange(wire, &method, &mut Reads::seeded(*seed));
    assert_eq!(
        whole,
        split,
        "one read (left) and reads seeded by {seed} (right) decode differently\ninput: {}",
        show(data)
    );
}

/// Everything the client made of one response stream.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// Every head.
    heads: Vec<Summary>,
    /// The decoded body of a chunked response.
    body: Vec<u8>,
    end: End,
}

/// A head, as (status, header lines, framing, keep-alive).
type Summary = (u16, Vec<(String, Vec<u8>)>, Framing, bool);

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The stream ended before the head was complete.
    HeadIncomplete,
    /// The head was refused.
    Head(HeadError),
    /// A final head whose body is not chunked (its framing is the client's to follow),
    /// with what was left after it.
    NotChunked(Vec<u8>),
    /// The chunked body ended, with these bytes after it.
    Done(Vec<u8>),
    /// The stream ended inside the chunked body.
    BodyIncomplete,
    /// The chunked body was refused.
    Body(ChunkedError),
}

/// Read sizes: everything at once, or sizes from a small generator.
struct Reads {
    state: u32,
    max: u32,
}

impl Reads {
    fn whole() -> Self {
        Self { state: 0, max: 0 }
    }

    fn seeded(seed: u8) -> Self {
        Self {
            state: u32::from(seed) | 0x100,
            max: u32::from(seed % 32) + 1,
        }
    }

    /// The next read size (at least 1; `usize::MAX` for one read).
    fn next(&mut self) -> usize {
        if self.max == 0 {
            return usize::MAX;
        }
        // xorshift32: deterministic, cheap, and varied enough to move the split points.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        (self.state % self.max + 1) as usize
    }
}

/// The client's loop over `wire`, read by `reads`.
fn exchange(wire: &[u8], method: &Method, reads: &mut Reads) -> Outcome {
    let mut input = wire;
    let mut buf = BytesMut::new();
    let mut read = |buf: &mut BytesMut| {
        let n = reads.next().min(input.len());
        buf.extend_from_slice(&input[..n]);
        input = &input[n..];
        n > 0
    };
    let mut heads = Vec::new();
    let head = loop {
        if !buf.is_empty() {
            let before = buf.clone();
            match parse_response(&mut buf, method) {
                Ok(Some(head)) => {
                    check_framing(&head, method);
                    heads.push(summary(&head));
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue;
                    }
                    break head;
                }
                Ok(None) => assert!(buf == before, "an incomplete head changed the buffer"),
                Err(e) => return outcome(heads, Vec::new(), End::Head(e)),
            }
        }
        if !read(&mut buf) {
            return outcome(heads, Vec::new(), End::HeadIncomplete);
        }
    };
    if head.framing != Framing::Chunked {
        let mut rest = buf.to_vec();
        rest.extend_from_slice(input);
        return outcome(heads, Vec::new(), End::NotChunked(rest));
    }
    let mut decoder = Decoder::default();
    let mut body = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Step::Data(piece)) => {
                assert!(!piece.is_empty(), "an empty piece of chunked body");
                body.extend_from_slice(&piece);
            }
            Ok(Step::NeedMore) => {
                if !read(&mut buf) {
                    return outcome(heads, body, End::BodyIncomplete);
                }
            }
            Ok(Step::Done) => {
                let mut rest = buf.to_vec();
                rest.extend_from_slice(input);
                return outcome(heads, body, End::Done(rest));
            }
            Err(e) => return outcome(heads, body, End::Body(e)),
        }
    }
}

fn outcome(heads: Vec<Summary>, body: Vec<u8>, end: End) -> Outcome {
    Outcome { heads, body, end }
}

fn summary(head: &Head) -> Summary {
    let lines = head
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    (head.status.as_u16(), lines, head.framing, head.keep_alive)
}

/// RFC 9112 §6.3, as the proxy relies on it.
fn check_framing(head: &Head, method: &Method) {
    let status = head.status;
    let has_coding = head.headers.contains_key(header::TRANSFER_ENCODING);
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let lengths: Vec<_> = head
        .headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .collect();
    match head.framing {
        _ if bodiless => assert_eq!(head.framing, Framing::Empty, "a bodiless response"),
        Framing::Chunked | Framing::UntilClose if has_coding => {
            assert!(
                lengths.is_empty(),
                "Content-Length kept beside Transfer-Encoding"
            );
        }
        framing if has_coding => panic!("{framing:?} despite Transfer-Encoding"),
        Framing::Chunked => panic!("chunked without Transfer-Encoding"),
        Framing::Length(n) => assert!(
            n > 0 && declares(&lengths, n),
            "Length({n}) from Content-Length {lengths:?}"
        ),
        Framing::Empty => assert!(
            declares(&lengths, 0),
            "Empty from Content-Length {lengths:?}"
        ),
        Framing::UntilClose => assert!(lengths.is_empty(), "until close with a Content-Length"),
    }
    if matches!(head.framing, Framing::UntilClose) {
        assert!(
            !head.keep_alive,
            "a body until close on a reused connection"
        );
    }
}

/// Whether the `Content-Length` lines are there and every item of them is `n` in digits.
fn declares(lines: &[&hyper::header::HeaderValue], n: u64) -> bool {
    !lines.is_empty()
        && lines.iter().all(|value| {
            value.as_bytes().split(|&b| b == b',').all(|item| {
                let item = item.trim_ascii();
                !item.is_empty()
                    && item.iter().all(u8::is_ascii_digit)
                    && std::str::from_utf8(item)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        == Some(n)
            })
        })
}
