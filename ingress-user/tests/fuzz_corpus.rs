//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz bodies in
//! `xdp_ingress::fuzz`, so the ordinary `cargo test` (and CI) keeps every seed and every
//! crash once found passing, without nightly or cargo-fuzz. Fuzzing itself is
//! `cargo xtask fuzz`.

use std::{fs, path::PathBuf};

use xdp_ingress::fuzz;

/// Every input of one target's corpus through its fuzz body; the corpus must not be empty,
/// so a corpus that vanishes fails the test instead of passing it silently.
fn replay(target: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        println!("{target}: {}", path.display());
        assert!(fuzz::run(target, &data), "no fuzz target {target}");
    }
    println!("{target}: replayed {} inputs", files.len());
}

#[test]
fn every_target_has_a_test_here() {
    let mut here = [
        "h1_request",
        "h1_differential",
        "upstream_response",
        "proxy_protocol",
        "manifests",
    ];
    let mut targets = fuzz::TARGETS.to_vec();
    here.sort_unstable();
    targets.sort_unstable();
    assert_eq!(targets, here);
}

#[test]
fn h1_request_corpus() {
    replay("h1_request");
}

#[test]
fn h1_differential_corpus() {
    replay("h1_differential");
}

#[test]
fn upstream_response_corpus() {
    replay("upstream_response");
}

#[test]
fn proxy_protocol_corpus() {
    replay("proxy_protocol");
}

#[test]
fn manifests_corpus() {
    replay("manifests");
}
