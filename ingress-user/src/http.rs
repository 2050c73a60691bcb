//! The L7 router: route matching (pure), and the hyper server/proxy that reads it.
//!
//! - [`server`]: thread-per-core workers (`--http-workers`), each with its own listeners
//!   (`--http-port`: HTTP/1.1 + h2c prior knowledge; `--https-port`: rustls with ALPN
//!   h2/http1.1), limits, graceful shutdown; Gateway API listening addresses open and close
//!   as Snapshots change. Entry point: [`serve`].
//! - [`h1`]: the HTTP/1.1 fast path on plain connections (bodiless keep-alive requests);
//!   anything else goes to hyper with the bytes already read ([`rewind`]).
//! - [`router`]: per request, load the current Snapshot (`ArcSwap`), match, redirect
//!   plain HTTP for TLS hosts (308, `--no-ssl-redirect` turns it off), or answer with the
//!   default backend (built in: `/healthz` 200, else 404). Requests on a Gateway API
//!   address follow its HTTPRoutes and their filters instead.
//! - [`proxy`]: forwarding with one retry on another endpoint when connecting fails, and
//!   upgrades (WebSocket) tunnelled both ways; [`balance`] picks endpoints.
//! - [`h2c`]: HTTP/2 cleartext upstreams (Service port `appProtocol: kubernetes.io/h2c`,
//!   `grpc`, ...), for gRPC.
//! - [`client`]: the HTTP/1.1 upstream client, run inline by the serving task, with a
//!   connection pool per worker.
//! - [`tls`]: certificate by SNI from the Snapshot, else a self-signed default certificate
//!   (`ingress.local`) generated at start.
//! - [`host`]: the one validated host per request (duplicate, missing or ambiguous → 400).
//! - [`upload`]: request bodies: the client body timeout, and small bodies read whole
//!   before an upstream connection is taken.
//! - [`rescue`]: the one mapping from failure to status, body and metrics label.
//! - [`cors`]: the response headers an Ingress's annotations set (`custom-headers`, CORS)
//!   and CORS preflights.
//!
//! A new Snapshot applies to the next request; open connections, upgraded tunnels and
//! streaming responses are never cut by it.

pub mod access_log;
pub mod admission;
pub mod affinity;
pub mod balance;
pub mod body;
pub mod client;
pub mod client_auth;
pub mod client_hello;
pub mod cors;
pub mod drain;
pub mod h1;
pub mod h2c;
pub mod headers;
pub mod host;
pub mod limits;
pub mod metrics;
pub mod passthrough;
pub mod preface;
pub mod proxy;
pub mod rescue;
pub mod rewind;
pub mod router;
pub mod server;
pub mod tls;
pub mod upload;

pub(crate) use crate::snapshot::FastMap;

pub use balance::Balance;
pub use limits::Limits;
pub use metrics::Metrics;
pub use router::Router;
pub use server::{Options, Server, serve};
