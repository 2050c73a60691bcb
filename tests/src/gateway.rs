//! Gateway API conformance support for `tests/tests/gateway_http.rs`: the conformance
//! suite's base objects (three namespaces, the Gateways `same-namespace`, `all-namespaces`
//! and `backend-namespaces`, the `infra-backend-v*`, `app-backend-v*` and `web-backend`
//! Services) with one real echo backend per Service, the real binary in file mode or in kube
//! mode (objects loaded with `kubectl apply` into the fake API server, `--update-status`),
//! request rows with what the client and the backend must see, and status expectations read
//! back from the fake API server (kube mode) or from `xdp-ingress check` (file mode).
//!
//! Every Gateway listens on its own loopback address, `127.<mode>.<slot>.<n>` (`spec.addresses`),
//! so tests run in parallel and Gateways share port 80. Every wait has a deadline: a missing
//! feature fails with expected against got, never hangs.
//!
//! ```no_run
//! # async fn demo() {
//! use ingress_tests::gateway::{Mode, World, get};
//! let world = World::start(Mode::File, 1, "").await;
//! world.run("HTTPRouteSimpleSameNamespace", &[get("/").to("infra-backend-v1")]).await;
//! # }
//! ```

pub mod request;
pub mod status;
pub mod world;

pub use request::{Row, get, request};
pub use world::{Mode, World};

/// The conformance suite's infrastructure namespace (label `gateway-conformance: infra`).
pub const INFRA: &str = "gateway-conformance-infra";
/// A backend namespace (label `gateway-conformance: backend`).
pub const APP: &str = "gateway-conformance-app-backend";
/// The other backend namespace (label `gateway-conformance: backend`).
pub const WEB: &str = "gateway-conformance-web-backend";
/// The GatewayClass every test's Gateways use.
pub const CLASS: &str = "xdp-conformance";
/// `spec.controllerName` of [`CLASS`]: the `--controller-class` default.
pub const CONTROLLER: &str = "xdp-ingress.dev/controller";
/// The Gateway API group and version of the objects.
pub const GATEWAY_V1: &str = "gateway.networking.k8s.io/v1";
