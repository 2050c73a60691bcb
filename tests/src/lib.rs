//! Test support for xdp-ingress integration suites: network-namespace topologies, packet
//! builders and (in other modules) the fake Kubernetes API server.

pub mod bench;
pub mod datapath;
pub mod fake_api;
pub mod gateway;
pub mod gateway_support;
pub mod http_support;
// The shared fixture names this crate as its suites do.
extern crate self as ingress_tests;

/// The NAT fixture of the packet suites (the real programs in a namespace with static
/// neighbours, run through BPF_PROG_TEST_RUN), shared with `bench l4-limits`. The suites
/// include the same file as a module of their own, so they can add methods to `Fixture`.
#[path = "../tests/support/nat_fixture.rs"]
pub mod nat_fixture;
pub mod netns;
pub mod packet;
pub mod process;
pub mod scripted;
pub mod seed;
pub mod servers;
pub mod tls_backend;
pub mod topology;

/// Path of the `xdp-ingress` binary next to this test executable (`target/<profile>/`).
///
/// Cargo only exposes `CARGO_BIN_EXE_*` to the package that owns the binary, so suites in
/// this crate find it from their own location. `cargo xtask test` builds it first.
/// `XDP_INGRESS_BIN` overrides it (e.g. to benchmark an older build side by side).
pub fn xdp_ingress_bin() -> std::path::PathBuf {
    match std::env::var_os("XDP_INGRESS_BIN") {
        Some(bin) => bin.into(),
        None => target_bin("xdp-ingress", "cargo build -p ingress-user"),
    }
}

/// Path of a binary built into `target/<profile>/` beside the running test executable.
pub fn target_bin(name: &str, build_hint: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("executable has a directory");
    // Test executables live in target/<profile>/deps, binaries in target/<profile>.
    if dir.ends_with("deps") {
        dir = dir.parent().expect("deps has a parent");
    }
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it with `{build_hint}` (cargo xtask test does)",
        bin.display()
    );
    bin
}
