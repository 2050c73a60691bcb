use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection, RootCertStore};
use rustls_pki_types::ServerName;

use super::*;

/// A real ClientHello, as rustls writes it (one record), for `sni` (`None`: an IP
/// address, for which clients send no SNI).
fn rustls_hello(sni: Option<&str>) -> Vec<u8> {
    let config = Arc::new(
        ClientConfig::builder_with_provider(crate::http::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
    );
    let name = match sni {
        Some(host) => ServerName::try_from(host.to_owned()).unwrap(),
        None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    let mut c = ClientConnection::new(config, name).unwrap();
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    out
}

/// The handshake bytes of a one-record hello, split into records of at most `size` bytes.
fn refragment(record: &[u8], size: usize) -> Vec<u8> {
    let body = &record[RECORD_HEADER..];
    let mut out = Vec::new();
    for chunk in body.chunks(size) {
        out.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
        out.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// A ClientHello built by hand: `extensions` as given (`None`: no extensions block).
fn hello(extensions: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
    body.extend_from_slice(&[1, 0]); // null compression
    if let Some(ext) = extensions {
        body.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
        body.extend_from_slice(ext);
    }
    wrap(&body)
}

/// A handshake message of type ClientHello around `body`, in one record.
fn wrap(body: &[u8]) -> Vec<u8> {
    let len = body.len();
    let mut hs = vec![
        HANDSHAKE_CLIENT_HELLO,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
    ];
    hs.extend_from_slice(body);
    let mut out = vec![CONTENT_HANDSHAKE, 3, 1];
    out.extend_from_slice(&u16::try_from(hs.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&hs);
    out
}

/// A handshake message of type ClientHello around `body` in one unchecked "record"
/// (possibly over 2^14 bytes: only for [`refragment`]).
fn wrap_big(body: &[u8]) -> Vec<u8> {
    let len = body.len();
    let mut out = vec![CONTENT_HANDSHAKE, 3, 1, 0, 0];
    out.extend_from_slice(&[
        HANDSHAKE_CLIENT_HELLO,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
    ]);
    out.extend_from_slice(body);
    out
}

/// A server_name extension with these (name type, name) entries.
fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (kind, name) in names {
        list.push(*kind);
        list.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
        list.extend_from_slice(name);
    }
    let mut data = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
    ext.extend_from_slice(&data);
    ext
}

/// What [`parse`] answers.
type Verdict = Result<Option<Hello>, BadHello>;

fn sni(name: &str) -> Verdict {
    Ok(Some(Hello {
        sni: Some(name.to_owned()),
    }))
}

const NO_SNI: Verdict = Ok(Some(Hello { sni: None }));

#[test]
fn whole_client_hellos() {
    let two = [sni_ext(&[(0, b"a.test")]), sni_ext(&[(0, b"b.test")])].concat();
    let other_first = [vec![0, 10, 0, 2, 0, 29], sni_ext(&[(0, b"x.test")])].concat();
    let cases: Vec<(&str, Vec<u8>, Verdict)> = vec![
        (
            "rustls, with SNI",
            rustls_hello(Some("Site.Test")),
            sni("site.test"),
        ),
        (
            "rustls, to an IP address: no SNI",
            rustls_hello(None),
            NO_SNI,
        ),
        ("no extensions block", hello(None), NO_SNI),
        ("empty extensions", hello(Some(&[])), NO_SNI),
        (
            "SNI after another extension",
            hello(Some(&other_first)),
            sni("x.test"),
        ),
        (
            "trailing dot dropped",
            hello(Some(&sni_ext(&[(0, b"a.test.")]))),
            sni("a.test"),
        ),
        (
            "unknown name type skipped",
            hello(Some(&sni_ext(&[(9, b"zz"), (0, b"a.test")]))),
            sni("a.test"),
        ),
        (
            "two server_name extensions",
            hello(Some(&two)),
            Err(BadHello::BadSni),
        ),
        (
            "two host names",
            hello(Some(&sni_ext(&[(0, b"a.test"), (0, b"b.test")]))),
            Err(BadHello::BadSni),
        ),
        (
            "empty host name",
            hello(Some(&sni_ext(&[(0, b"")]))),
            Err(BadHello::BadSni),
        ),
        (
            "empty name list",
            hello(Some(&sni_ext(&[]))),
            Err(BadHello::BadSni),
        ),
        (
            "NUL in the name",
            hello(Some(&sni_ext(&[(0, b"a\0.test")]))),
            Err(BadHello::BadSni),
        ),
        (
            "space in the name",
            hello(Some(&sni_ext(&[(0, b"a .test")]))),
            Err(BadHello::BadSni),
        ),
        (
            "empty label",
            hello(Some(&sni_ext(&[(0, b"a..test")]))),
            Err(BadHello::BadSni),
        ),
        (
            "non-ASCII name",
            hello(Some(&sni_ext(&[(0, "é.test".as_bytes())]))),
            Err(BadHello::BadSni),
        ),
        (
            "extension longer than its block",
            hello(Some(&[0, 0, 0, 9, 1])),
            Err(BadHello::Malformed),
        ),
        (
            "bytes after the extensions",
            [hello(Some(&[]))[..].to_vec()].concat().tap(|v| {
                // One byte more in the body, the record and the handshake lengths.
                v.push(0);
                v[4] += 1;
                v[8] += 1;
            }),
            Err(BadHello::Malformed),
        ),
        (
            "plain HTTP",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            Err(BadHello::NotTls),
        ),
        (
            "TLS alert record first",
            vec![21, 3, 3, 0, 2, 2, 40],
            Err(BadHello::NotTls),
        ),
        (
            "SSLv2-style first byte",
            vec![0x80, 0x2e, 1, 3, 1],
            Err(BadHello::NotTls),
        ),
        (
            "record version 2.x",
            vec![22, 2, 0, 0, 4, 1, 0, 0, 0],
            Err(BadHello::NotTls),
        ),
        (
            "zero-length record",
            vec![22, 3, 1, 0, 0],
            Err(BadHello::BadRecord),
        ),
        (
            "record over 2^14",
            vec![22, 3, 1, 0x40, 0x01],
            Err(BadHello::BadRecord),
        ),
        (
            "ServerHello instead",
            vec![22, 3, 3, 0, 4, 2, 0, 0, 0],
            Err(BadHello::NotClientHello),
        ),
        (
            "ClientHello over MAX_HELLO",
            vec![22, 3, 3, 0, 4, 1, 0, 0x40, 0x01],
            Err(BadHello::Oversized),
        ),
        (
            "session id over 32 bytes",
            wrap(
                &[
                    [3u8, 3].as_slice(),
                    &[0; 32],
                    &[33],
                    &[0; 33],
                    &[0, 2, 0x13, 1, 1, 0],
                ]
                .concat(),
            ),
            Err(BadHello::Malformed),
        ),
        (
            "no cipher suites",
            wrap(&[[3u8, 3].as_slice(), &[0; 32], &[0], &[0, 0], &[1, 0]].concat()),
            Err(BadHello::Malformed),
        ),
        (
            "no compression methods",
            wrap(&[[3u8, 3].as_slice(), &[0; 32], &[0], &[0, 2, 0x13, 1], &[0]].concat()),
            Err(BadHello::Malformed),
        ),
        (
            "body shorter than its random",
            wrap(&[3, 3, 1, 2]),
            Err(BadHello::Malformed),
        ),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(parse(&bytes), want, "{name}");
    }
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for Vec<u8> {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

/// A hello split across records (RFC 8446 section 5.1 allows any split of a handshake
/// message, down to one byte per record) and across TCP reads: every prefix is "need
/// more", the whole gives the name.
#[test]
fn fragmented_records_and_partial_reads() {
    let one = rustls_hello(Some("frag.test"));
    for (name, bytes) in [
        ("one record", one.clone()),
        ("records of 100 bytes", refragment(&one, 100)),
        ("the handshake header split", refragment(&one, 3)),
        ("one byte per record", refragment(&one, 1)),
    ] {
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Ok(None), "{name}: prefix of {cut}");
        }
        assert_eq!(parse(&bytes), sni("frag.test"), "{name}");
        // Bytes after the hello (the client's next flight) change nothing.
        let mut more = bytes.clone();
        more.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
        assert_eq!(parse(&more), sni("frag.test"), "{name}: followed by more");
    }
    // Another content type between the fragments of the handshake.
    let split = refragment(&one, 100);
    let mut interleaved = split[..105].to_vec();
    interleaved.extend_from_slice(&[21, 3, 3, 0, 2, 1, 0]);
    interleaved.extend_from_slice(&split[105..]);
    assert_eq!(parse(&interleaved), Err(BadHello::BadRecord));
    // The largest hello accepted, in 256-byte records, fits in MAX_READ; one byte more
    // is refused.
    let base = [
        [3u8, 3].as_slice(),
        &[0; 32],
        &[0],
        &[0, 2, 0x13, 1],
        &[1, 0],
    ]
    .concat();
    let pad = MAX_HELLO - base.len() - 2 - 4;
    let padding = [
        &[0u8, 21][..],
        &u16::try_from(pad).unwrap().to_be_bytes(),
        &vec![0; pad],
    ]
    .concat();
    let exts = [
        &u16::try_from(padding.len()).unwrap().to_be_bytes()[..],
        &padding,
    ]
    .concat();
    let largest = refragment(&wrap_big(&[base.clone(), exts].concat()), 256);
    assert!(largest.len() <= MAX_READ, "{} > {MAX_READ}", largest.len());
    assert_eq!(parse(&largest), NO_SNI);
    let over = wrap_big(&[base, vec![0; MAX_HELLO]].concat());
    assert_eq!(
        parse(&refragment(&over, 256)[..300]),
        Err(BadHello::Oversized)
    );
}

/// Fuzz-style: random bytes, random mutations and truncations of real hellos, never
/// panic; every answer is stable under appending bytes once complete or refused.
#[test]
fn random_and_mutated_input_never_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds = [
        rustls_hello(Some("a.test")),
        refragment(&rustls_hello(Some("b.test")), 50),
        hello(Some(&sni_ext(&[(0, b"c.test")]))),
    ];
    for i in 0..20_000 {
        let mut bytes = if i % 4 == 0 {
            let len = (next() % 600) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = v.first_mut() {
                *b = 22; // get past the first check now and then
            }
            v
        } else {
            seeds[i % seeds.len()].clone()
        };
        for _ in 0..=next() % 4 {
            if bytes.is_empty() {
                break;
            }
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        let cut = (next() as usize) % (bytes.len() + 1);
        let verdict = parse(&bytes[..cut]);
        if let Ok(Some(_)) | Err(_) = verdict {
            let mut longer = bytes[..cut].to_vec();
            longer.extend_from_slice(&[0, 1, 2]);
            assert_eq!(parse(&longer), verdict, "a decided verdict stays decided");
        }
    }
}
