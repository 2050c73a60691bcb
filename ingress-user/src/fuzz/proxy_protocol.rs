//! The PROXY protocol decoder (`l4::proxy::proxy_protocol`), fed as a connection feeds it:
//! the L4 proxy calls `decode` on everything received so far after every read.

use super::show;
use crate::l4::proxy::proxy_protocol::{
    Decoded, Header, V1_MAX_LEN, V2_MAX_PAYLOAD, Version, decode, encode,
};

/// Longest input looked at: past the largest v2 header, every answer is settled.
const MAX_INPUT: usize = 16 + V2_MAX_PAYLOAD + 64;

/// The decoder on every prefix of the input, as if the bytes came one at a time:
/// - a complete header keeps its answer (same header, same length) once it is complete,
///   and every shorter prefix is `Incomplete`: where the reads split cannot change it;
/// - an error, once reached, stays an error: more bytes never make garbage valid;
/// - the length is within the input and the version's limit;
/// - the addresses decoded encode back (in the same version) to a header that decodes
///   to them again.
pub fn proxy_protocol(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    let whole = decode(data);
    let mut failed = None;
    for cut in 0..=data.len() {
        let got = decode(&data[..cut]);
        match (&whole, &got) {
            (Ok(Decoded::Header { len, .. }), _) if cut < *len => assert_eq!(
                got,
                Ok(Decoded::Incomplete),
                "a prefix of {cut} bytes of a {len}-byte header\ninput: {}",
                show(data)
            ),
            (Ok(Decoded::Header { .. }) | Ok(Decoded::Incomplete), _) => assert_eq!(
                got,
                whole,
                "the prefix of {cut} bytes\ninput: {}",
                show(data)
            ),
            (Err(_), Err(_)) => {
                failed.get_or_insert(cut);
            }
            (Err(_), Ok(Decoded::Incomplete)) => assert!(
                failed.is_none(),
                "an error at {failed:?} bytes is valid again at {cut}\ninput: {}",
                show(data)
            ),
            (Err(e), Ok(Decoded::Header { .. })) => panic!(
                "the prefix of {cut} bytes is a header, the whole input is {e:?}\ninput: {}",
                show(data)
            ),
        }
    }
    if let Ok(Decoded::Header { header, len }) = whole {
        check_header(data, header, len);
    }
}

fn check_header(data: &[u8], header: Header, len: usize) {
    let limit = match header.version {
        Version::V1 => V1_MAX_LEN,
        Version::V2 => 16 + V2_MAX_PAYLOAD,
    };
    assert!(
        len <= data.len() && len <= limit,
        "length {len}\ninput: {}",
        show(data)
    );
    let Some(addresses) = header.addresses else {
        return;
    };
    // A decoded header has one family on both sides, so encoding keeps the addresses.
    assert_eq!(
        addresses.source.is_ipv4(),
        addresses.destination.is_ipv4(),
        "mixed families\ninput: {}",
        show(data)
    );
    let again = encode(header.version, &addresses);
    assert_eq!(
        decode(&again),
        Ok(Decoded::Header {
            header,
            len: again.len()
        }),
        "{header:?} does not survive encode then decode\ninput: {}",
        show(data)
    );
}
