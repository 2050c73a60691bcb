//! Decoding `Transfer-Encoding: chunked` response bodies (RFC 9112 §7.1) in place, over the
//! connection's read buffer: data comes out as zero-copy slices of it. Chunk extensions
//! and trailer fields are read and dropped. Pure: no IO.

use bytes::{Buf as _, Bytes, BytesMut};

/// Longest chunk-size line (size, extensions, CRLF) accepted.
const MAX_LINE: usize = 4096;
/// Most trailer bytes accepted.
const MAX_TRAILERS: usize = 64 * 1024;

/// A chunked body that cannot be decoded; the response is cut and the connection closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkedError {
    /// The chunk-size line is not hex digits (then optional extensions) and CRLF.
    #[error("invalid chunk size line")]
    BadSize,
    /// The chunk-size line or the trailers are too long.
    #[error("chunk size line or trailers too long")]
    TooLong,
    /// Chunk data is not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
}

/// What one decoding step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// The buffer ends mid-message: read more and call again.
    NeedMore,
    /// The last chunk and the trailers were read; the body is complete.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// The decoder's position in the body.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Self { state: State::Size }
    }
}

impl Decoder {
    /// Consumes what it can from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkedError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(end) = find_crlf(buf, MAX_LINE)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = parse_size(&buf[..end])?;
                    buf.advance(end + 2);
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let Some(end) = find_crlf(buf, MAX_TRAILERS - seen)? else {
                        return Ok(Step::NeedMore);
                    };
                    buf.advance(end + 2);
                    self.state = if end == 0 {
                        State::Done
                    } else {
                        State::Trailers(seen + end + 2)
                    };
                }
                State::Done => return Ok(Step::Done),
            }
        }
    }
}

/// The position of the first CRLF, if it comes within `limit` bytes.
fn find_crlf(buf: &[u8], limit: usize) -> Result<Option<usize>, ChunkedError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i <= limit => Ok(Some(i)),
        Some(_) => Err(ChunkedError::TooLong),
        None if buf.len() > limit => Err(ChunkedError::TooLong),
        None => Ok(None),
    }
}

/// `1a;name=value` → 26. Whitespace before the extensions is tolerated.
fn parse_size(line: &[u8]) -> Result<u64, ChunkedError> {
    let digits = line
        .iter()
        .position(|&b| b == b';' || b == b' ' || b == b'\t')
        .map_or(line, |i| &line[..i]);
    if digits.is_empty() || digits.len() > 15 {
        return Err(ChunkedError::BadSize);
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16).ok_or(ChunkedError::BadSize)?;
        Ok(n << 4 | u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes; returns the body or the error.
    fn decode_all(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), ChunkedError> {
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf)? {
                Step::Data(b) => body.extend_from_slice(&b),
                Step::Done => return Ok((body, buf.is_empty())),
                Step::NeedMore if fed >= wire.len() => return Ok((body, false)),
                Step::NeedMore => {
                    let n = step.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn bodies_decode_the_same_whatever_the_read_sizes() {
        for (wire, body) in [
            ("5\r\nhello\r\n0\r\n\r\n", "hello"),
            ("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"),
            ("A;ext=1\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
            ("a ; ext\r\n0123456789\r\n0;last\r\n\r\n", "0123456789"),
            ("3\r\nabc\r\n0\r\nx-sum: 1\r\nx-more: 2\r\n\r\n", "abc"),
            ("0\r\n\r\n", ""),
        ] {
            for step in [1, 2, 3, 7, 1000] {
                let (got, complete) = decode_all(wire.as_bytes(), step).unwrap();
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    body,
                    "{wire:?} step {step}"
                );
                assert!(complete, "{wire:?} step {step}: not complete");
            }
        }
    }

    #[test]
    fn truncated_bodies_are_not_complete() {
        for wire in [
            "5\r\nhel",
            "5\r\nhello\r\n",
            "5\r\nhello\r\n0\r\n",
            "5\r\nhello\r\n0\r\nx: 1\r\n",
        ] {
            let (_, complete) = decode_all(wire.as_bytes(), 4).unwrap();
            assert!(!complete, "{wire:?}");
        }
    }

    #[test]
    fn malformed_framing_is_an_error() {
        let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(MAX_LINE));
        let long_trailer = format!("0\r\nx: {}\r\n\r\n", "t".repeat(MAX_TRAILERS));
        for (wire, want) in [
            ("zz\r\nhello\r\n0\r\n\r\n", ChunkedError::BadSize),
            ("\r\nhello\r\n0\r\n\r\n", ChunkedError::BadSize),
            ("-5\r\nhello\r\n0\r\n\r\n", ChunkedError::BadSize),
            ("1000000000000000\r\n", ChunkedError::BadSize),
            ("5\r\nhelloXX0\r\n\r\n", ChunkedError::MissingCrlf),
            (long_ext.as_str(), ChunkedError::TooLong),
            (long_trailer.as_str(), ChunkedError::TooLong),
        ] {
            assert_eq!(
                decode_all(wire.as_bytes(), 4096),
                Err(want),
                "{:?}",
                &wire[..wire.len().min(40)]
            );
        }
    }

    #[test]
    fn bytes_after_the_body_are_left_in_the_buffer() {
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&b"1\r\nx\r\n0\r\n\r\nHTTP/1.1"[..]);
        assert_eq!(d.decode(&mut buf), Ok(Step::Data(Bytes::from_static(b"x"))));
        assert_eq!(d.decode(&mut buf), Ok(Step::Done));
        assert_eq!(&buf[..], b"HTTP/1.1");
    }
}
