//! Fuzz bodies for the hand-written parsers: one plain function per target, which panics
//! when a property is violated.
//!
//! They live in the library, not in the `fuzz/` crate, so that the same code runs two ways:
//! under libFuzzer (`cargo xtask fuzz`, nightly, `fuzz/fuzz_targets/<name>.rs` calls the
//! function of the same name), and in the ordinary `cargo test` (`tests/fuzz_corpus.rs`
//! replays every committed input of `fuzz/corpus/<name>/`), so CI keeps the corpora passing
//! without nightly or cargo-fuzz.
//!
//! The targets, and the properties they check beyond "never panics":
//! - [`h1_request`]: the fast path's request codec takes exactly the head httparse parsed,
//!   builds it unchanged, and leaves the buffer untouched when it declines, for the reason
//!   it names.
//! - [`h1_differential`]: what the fast path serves, hyper's HTTP/1 server serves with the
//!   same head; what it calls malformed or incomplete, hyper refuses.
//! - [`upstream_response`]: the upstream client's response heads and chunked bodies decode
//!   the same however the bytes are split into reads, and obey RFC 9112's framing rules.
//! - [`proxy_protocol`]: the PROXY protocol decoder gives the same answer on every prefix
//!   as the bytes arrive, and what it decodes encodes back to the same addresses.
//! - [`manifests`]: any manifest file loads and translates, and every Problem names an
//!   object or the file.

mod differential;
mod manifests;
mod proxy_protocol;
mod request;
mod response;

pub use self::{
    manifests::manifests,
    proxy_protocol::proxy_protocol,
    request::{h1_differential, h1_request},
    response::upstream_response,
};

/// The names of the targets, as the `fuzz/` crate and the corpus directories spell them.
pub const TARGETS: &[&str] = &[
    "h1_request",
    "h1_differential",
    "upstream_response",
    "proxy_protocol",
    "manifests",
];

/// Runs the target called `name` on `data`; `false` when there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "h1_request" => h1_request(data),
        "h1_differential" => h1_differential(data),
        "upstream_response" => upstream_response(data),
        "proxy_protocol" => proxy_protocol(data),
        "manifests" => manifests(data),
        _ => return false,
    }
    true
}

/// Bytes for a failure message: text where printable, escapes elsewhere, cut when long.
fn show(data: &[u8]) -> String {
    const MAX: usize = 600;
    let shown: String = data
        .iter()
        .take(MAX)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if data.len() > MAX {
        format!("b\"{shown}\"... ({} bytes)", data.len())
    } else {
        format!("b\"{shown}\"")
    }
}
