//! The L7 router: route matching (pure), and the hyper server/proxy that reads it.

pub mod balance;
pub mod body;
pub mod headers;
pub mod limits;
pub mod metrics;
pub mod preface;
pub mod proxy;
pub mod rescue;
pub mod route;
pub mod router;
pub mod server;
pub mod tls;

pub use balance::Balance;
pub use limits::Limits;
pub use metrics::Metrics;
pub use router::Router;
pub use server::{Options, Server, serve};
