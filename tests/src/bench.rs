//! `cargo xtask bench`: side-by-side measurements on the network-namespace topology, run by
//! the `bench-net` binary. Each group writes its raw samples as JSON; xtask turns them into
//! Markdown tables, SVG charts and BENCHMARKS.md. Nothing here asserts a timing.

pub mod churn;
pub mod handshakes;
pub mod http;
pub mod l4;
pub mod l4_limits;
pub mod peers;
pub mod propagation;
pub mod results;
pub mod rig;
pub mod scale;
pub mod test_run;
pub mod tls;
pub mod tools;

pub use results::Results;
