//! The HTTP/1.1 fast path's request codec, checked against httparse (what it parses with)
//! and against hyper (what serves every request it declines).

use bytes::BytesMut;
use hyper::{
    Method, Uri, Version,
    header::{self, HeaderName, HeaderValue},
};

use super::{
    differential::{self, Head},
    show,
};
use crate::http::{
    h1::codec::{Accepted, Decline, parse_request},
    limits::Limits,
};

/// As many header lines as the codec (and hyper) take.
const MAX_HEADERS: usize = 100;

/// The fast path's codec alone: it takes exactly the head httparse parsed and builds it
/// unchanged, or declines for the reason it names and leaves the buffer as it was (hyper
/// gets those bytes next). Checked with the router's head limit, and again with a limit
/// derived from the first byte, so that [`Decline::TooLarge`] is exercised too.
pub fn h1_request(data: &[u8]) {
    let raw = Raw::parse(data);
    check_codec(data, &raw, Limits::default().max_header_bytes);
    check_codec(
        data,
        &raw,
        usize::from(data.first().copied().unwrap_or(0)) * 4,
    );
}

/// The fast path against hyper, on the same bytes as a whole connection (sent, then
/// closed):
/// - a request the fast path serves, hyper accepts too, with the same method, target,
///   version and header lines: the fast path never serves what hyper would refuse, nor
///   reads a request differently (request smuggling lives in such differences);
/// - `Partial` (the connection ends inside the head), `Malformed` and `TooLarge`: hyper
///   refuses too. In production these declines hand the bytes to hyper, so disagreeing
///   here is not unsafe by itself, but it means the fast path's parser has drifted from
///   hyper's, which is what the first property depends on.
///
/// The other declines (`Version`, `Target`, `Body`, `Special`) claim nothing about
/// validity: they are requests hyper is there to serve, so there is nothing to compare.
pub fn h1_differential(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let fast = parse_request(&mut buf, Limits::default().max_header_bytes);
    let served = match &fast {
        Ok(_) | Err(Decline::Partial | Decline::Malformed | Decline::TooLarge) => {
            differential::serve(data)
        }
        Err(Decline::Version | Decline::Target | Decline::Body | Decline::Special) => return,
    };
    match fast {
        Ok(accepted) => {
            let ours = Head::of(&accepted.req);
            let Some(theirs) = served.first else {
                panic!(
                    "the fast path serves a request hyper refuses (status {:?}): {ours:?}\ninput: {}",
                    served.status,
                    show(data)
                );
            };
            assert_eq!(
                ours,
                theirs,
                "the fast path (left) and hyper (right) read the request differently\ninput: {}",
                show(data)
            );
        }
        Err(why) => assert!(
            served.first.is_none(),
            "the fast path declines as {why:?} a request hyper serves: {:?}\ninput: {}",
            served.first,
            show(data)
        ),
    }
}

fn check_codec(data: &[u8], raw: &Raw, max_head: usize) {
    let mut buf = BytesMut::from(data);
    match parse_request(&mut buf, max_head) {
        Ok(accepted) => {
            let Raw::Complete(head) = raw else {
                panic!(
                    "accepted what httparse calls {raw:?} (limit {max_head})\ninput: {}",
                    show(data)
                );
            };
            check_accepted(data, head, &accepted, &buf, max_head);
        }
        Err(why) => {
            assert!(
                buf[..] == *data,
                "declined as {why:?} but the buffer changed (limit {max_head})\ninput: {}\nafter: {}",
                show(data),
                show(&buf)
            );
            assert!(
                why_holds(why, raw, max_head),
                "declined as {why:?}, but httparse says {raw:?} (limit {max_head})\ninput: {}",
                show(data)
            );
        }
    }
}

fn check_accepted(data: &[u8], head: &RawHead, got: &Accepted, rest: &[u8], max_head: usize) {
    let ctx = || format!("(limit {max_head})\ninput: {}", show(data));
    assert!(head.len <= max_head, "a head over the limit {}", ctx());
    assert!(
        rest == &data[head.len..],
        "the buffer did not lose exactly the head ({} bytes) {}",
        head.len,
        ctx()
    );
    assert_eq!(head.version, 1, "{}", ctx());
    let req = &got.req;
    assert_eq!(req.version(), Version::HTTP_11, "{}", ctx());
    assert_eq!(req.method().as_str(), head.method, "{}", ctx());
    assert_ne!(req.method(), Method::CONNECT, "{}", ctx());
    // `Uri` keeps an origin-form target byte for byte, up to a fragment (which has no
    // place in a request, and which hyper drops the same way).
    let origin = head.target.split('#').next().unwrap_or_default();
    assert_eq!(req.uri().to_string(), origin, "{}", ctx());
    assert!(req.uri().authority().is_none() && req.uri().scheme().is_none());
    assert_eq!(
        Head::of(req).headers,
        grouped(&head.headers),
        "the header lines differ {}",
        ctx()
    );
    let close = head
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(header::CONNECTION.as_str()))
        .any(|(_, value)| tokens(value).any(|t| t.eq_ignore_ascii_case(b"close")));
    assert_eq!(got.close, close, "Connection: close {}", ctx());
    assert!(
        !needs_hyper(head),
        "served a request hyper must serve {}",
        ctx()
    );
}

/// Whether the decline's reason is true of the head.
fn why_holds(why: Decline, raw: &Raw, max_head: usize) -> bool {
    let head = match (why, raw) {
        (Decline::Partial, Raw::Partial) => return true,
        (Decline::TooLarge, Raw::Error(httparse::Error::TooManyHeaders)) => return true,
        (Decline::Malformed, Raw::Error(e)) => return *e != httparse::Error::TooManyHeaders,
        (_, Raw::Complete(head)) => head,
        _ => return false,
    };
    if why == Decline::TooLarge {
        return head.len > max_head;
    }
    if head.len > max_head {
        return false;
    }
    match why {
        Decline::Version => head.version != 1,
        Decline::Target => {
            head.version == 1 && (head.method == "CONNECT" || !head.target.starts_with('/'))
        }
        Decline::Malformed => head.version == 1 && refused_by_http(head),
        // More than one `Content-Length` line (equal ones, or it would be a body) is fair
        // to hand to hyper too: it keeps only the first.
        Decline::Body => head.version == 1 && (needs_hyper(head) || lengths(head) > 1),
        Decline::Special => head.version == 1 && needs_hyper(head),
        Decline::Partial | Decline::TooLarge => false,
    }
}

/// A name, value, method or target the `http` types refuse although httparse took it.
fn refused_by_http(head: &RawHead) -> bool {
    Method::from_bytes(head.method.as_bytes()).is_err()
        || Uri::try_from(head.target.as_str()).is_err()
        || head.headers.iter().any(|(name, value)| {
            HeaderName::from_bytes(name.as_bytes()).is_err()
                || HeaderValue::from_bytes(value).is_err()
        })
}

/// A body, an upgrade or an `Expect`: hyper's to serve.
fn needs_hyper(head: &RawHead) -> bool {
    head.headers.iter().any(|(name, value)| {
        let is = |h: &HeaderName| name.eq_ignore_ascii_case(h.as_str());
        is(&header::TRANSFER_ENCODING)
            || is(&header::UPGRADE)
            || is(&header::EXPECT)
            || (is(&header::CONTENT_LENGTH) && value.trim_ascii() != b"0")
            || (is(&header::CONNECTION)
                && tokens(value).any(|t| t.eq_ignore_ascii_case(b"upgrade")))
    })
}

/// How many `Content-Length` lines the head has.
fn lengths(head: &RawHead) -> usize {
    head.headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(header::CONTENT_LENGTH.as_str()))
        .count()
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Header lines in `HeaderMap` iteration order: names lowercased, grouped by name in the
/// order each name first appears, values of a name in their order.
fn grouped(lines: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in lines {
        let name = name.to_ascii_lowercase();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
        .iter()
        .flat_map(|name| {
            lines
                .iter()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .map(move |(_, v)| (name.clone(), v.clone()))
        })
        .collect()
}

/// What httparse alone, configured as the codec configures it, makes of the input.
#[derive(Debug)]
enum Raw {
    Complete(RawHead),
    Partial,
    Error(httparse::Error),
}

/// A complete head as httparse returned it, owned.
#[derive(Debug)]
struct RawHead {
    len: usize,
    method: String,
    target: String,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

impl Raw {
    fn parse(data: &[u8]) -> Self {
        let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut lines);
        match httparse::ParserConfig::default().parse_request(&mut req, data) {
            Ok(httparse::Status::Complete(len)) => Raw::Complete(RawHead {
                len,
                method: req.method.unwrap_or_default().to_owned(),
                target: req.path.unwrap_or_default().to_owned(),
                version: req.version.unwrap_or_default(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
            }),
            Ok(httparse::Status::Partial) => Raw::Partial,
            Err(e) => Raw::Error(e),
        }
    }
}
