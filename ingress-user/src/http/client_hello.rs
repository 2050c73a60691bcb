//! Reads the server name (SNI) from the first bytes of a TLS connection, without
//! terminating it: what TLS passthrough routes by. Pure (bytes in, verdict out).
//!
//! The ClientHello is a handshake message carried in one or more TLS records (RFC 8446
//! section 5.1: a handshake message may be fragmented across records, and one TCP read
//! may hold part of a record), so [`parse`] reassembles the handshake bytes of the
//! records buffered so far and says whether it needs more. Limits: the ClientHello may
//! be at most [`MAX_HELLO`] bytes (a post-quantum key share makes a browser's about 2 KB;
//! rustls refuses none smaller), so a client can make us buffer at most [`MAX_READ`]
//! bytes; the caller also gives it a deadline.

/// The largest ClientHello accepted (the handshake message, without its 4-byte header).
pub const MAX_HELLO: usize = 16 * 1024;

/// The most bytes buffered before giving up: [`MAX_HELLO`] plus the headers of the
/// records it may be split into (one record per 256 bytes at most; more is abuse).
pub const MAX_READ: usize = MAX_HELLO + 4 + RECORD_HEADER * (MAX_HELLO / 256 + 1);

const RECORD_HEADER: usize = 5;
/// TLSPlaintext.length limit (RFC 8446 section 5.1).
const MAX_RECORD: usize = 1 << 14;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;

/// A complete ClientHello's routing facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The `server_name` host name, lowercase without a trailing dot; `None` when the
    /// client sent no SNI.
    pub sni: Option<String>,
}

/// Why the bytes are not a ClientHello we accept; the label is a metric's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadHello {
    /// The first record is not a TLS handshake record (plain HTTP on the TLS port, say).
    #[error("not a TLS handshake record")]
    NotTls,
    /// A record header is wrong (version, zero or oversized length, another content type
    /// in the middle of the handshake).
    #[error("malformed TLS record")]
    BadRecord,
    /// The first handshake message is not a ClientHello.
    #[error("first handshake message is not a ClientHello")]
    NotClientHello,
    /// Longer than [`MAX_HELLO`].
    #[error("ClientHello longer than {MAX_HELLO} bytes")]
    Oversized,
    /// A length inside the ClientHello does not add up.
    #[error("malformed ClientHello")]
    Malformed,
    /// The `server_name` extension is malformed, repeated, or not a valid host name.
    #[error("malformed server_name extension")]
    BadSni,
}

impl BadHello {
    /// A stable snake_case label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotTls => "not_tls",
            Self::BadRecord => "bad_record",
            Self::NotClientHello => "not_client_hello",
            Self::Oversized => "oversized",
            Self::Malformed => "malformed",
            Self::BadSni => "bad_sni",
        }
    }
}

/// Parses the bytes a client sent so far: `Ok(None)` means a correct prefix of a
/// ClientHello that needs more bytes (the caller stops at [`MAX_READ`] or its deadline).
pub fn parse(buf: &[u8]) -> Result<Option<Hello>, BadHello> {
    if let Some(body) = in_first_record(buf) {
        return client_hello(body).map(Some);
    }
    let mut handshake = Vec::new();
    let mut rest = buf;
    let mut first = true;
    loop {
        // The handshake message, once its header and body are in.
        if handshake.len() >= 4 {
            if handshake[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(BadHello::NotClientHello);
            }
            let len = u24(&handshake[1..4]);
            if len > MAX_HELLO {
                return Err(BadHello::Oversized);
            }
            if handshake.len() >= 4 + len {
                return client_hello(&handshake[4..4 + len]).map(Some);
            }
        }
        if rest.is_empty() {
            return Ok(None);
        }
        if rest[0] != CONTENT_HANDSHAKE {
            return Err(if first {
                BadHello::NotTls
            } else {
                BadHello::BadRecord
            });
        }
        // Legacy record version 0x0300..=0x0304 (a ClientHello's record says 0x0301 or
        // 0x0303; SSLv3 framing is tolerated as peers do).
        if rest.len() >= 2 && rest[1] != 3 {
            return Err(if first {
                BadHello::NotTls
            } else {
                BadHello::BadRecord
            });
        }
        if rest.len() < RECORD_HEADER {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err(BadHello::BadRecord);
        }
        let available = (rest.len() - RECORD_HEADER).min(len);
        handshake.extend_from_slice(&rest[RECORD_HEADER..RECORD_HEADER + available]);
        if available < len {
            // A partial record: its bytes count, the next read brings the rest.
            rest = &[];
        } else {
            rest = &rest[RECORD_HEADER + len..];
        }
        first = false;
    }
}

/// The ClientHello body when the first record holds all of it (what clients send): read
/// in place, without reassembly. Anything else is [`parse`]'s general path, which gives
/// the same answer for these bytes.
fn in_first_record(buf: &[u8]) -> Option<&[u8]> {
    let header = buf.get(..RECORD_HEADER)?;
    if header[0] != CONTENT_HANDSHAKE || header[1] != 3 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let record = buf.get(RECORD_HEADER..RECORD_HEADER + len)?;
    if record.len() < 4 || record[0] != HANDSHAKE_CLIENT_HELLO {
        return None;
    }
    let hello = u24(&record[1..4]);
    (hello <= MAX_HELLO)
        .then(|| record.get(4..4 + hello))
        .flatten()
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// A cursor over a length-prefixed structure; every read checks bounds.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BadHello> {
        if self.0.len() < n {
            return Err(BadHello::Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, BadHello> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, BadHello> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a 1- or 2-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], BadHello> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Result<&'a [u8], BadHello> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// The ClientHello body (RFC 8446 section 4.1.2; TLS 1.0 to 1.2 share the layout).
fn client_hello(body: &[u8]) -> Result<Hello, BadHello> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    if r.vec8()?.len() > 32 {
        return Err(BadHello::Malformed); // legacy_session_id
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(BadHello::Malformed);
    }
    if r.vec8()?.is_empty() {
        return Err(BadHello::Malformed); // legacy_compression_methods
    }
    if r.0.is_empty() {
        // No extensions at all (an old TLS 1.0 client): no SNI.
        return Ok(Hello { sni: None });
    }
    let mut extensions = Reader(r.vec16()?);
    if !r.0.is_empty() {
        return Err(BadHello::Malformed);
    }
    let mut sni = None;
    let mut seen = false;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if kind == EXT_SERVER_NAME {
            if seen {
                return Err(BadHello::BadSni);
            }
            seen = true;
            sni = server_name(data)?;
        }
    }
    Ok(Hello { sni })
}

/// The `server_name` extension (RFC 6066 section 3): a list holding at most one
/// host_name, which must be a DNS name (no IP literals are sent here, none accepted).
fn server_name(data: &[u8]) -> Result<Option<String>, BadHello> {
    let mut outer = Reader(data);
    let list = outer.vec16().map_err(|_| BadHello::BadSni)?;
    if !outer.0.is_empty() || list.is_empty() {
        return Err(BadHello::BadSni);
    }
    let mut list = Reader(list);
    let mut host = None;
    while !list.0.is_empty() {
        let kind = list.u8().map_err(|_| BadHello::BadSni)?;
        let name = list.vec16().map_err(|_| BadHello::BadSni)?;
        if kind != NAME_TYPE_HOST {
            continue; // Other name types are unknown; RFC 6066 says to skip them.
        }
        if host.is_some() {
            return Err(BadHello::BadSni);
        }
        host = Some(host_name(name)?);
    }
    Ok(host)
}

/// A DNS host name: letters, digits, `-`, `_` and dots; at most 253 bytes; lowercased,
/// one trailing dot dropped.
fn host_name(name: &[u8]) -> Result<String, BadHello> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name
            .split(|b| *b == b'.')
            .all(|l| !l.is_empty() && l.len() <= 63);
    if !ok {
        return Err(BadHello::BadSni);
    }
    Ok(String::from_utf8_lossy(name).to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
