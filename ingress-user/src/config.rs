//! The control plane's pure half: Kubernetes objects in, one immutable `Snapshot` out.
//! No IO, no tokio, no kube client here; sources (`crate::source`) fill a [`Store`].

pub mod problem;
pub mod store;

pub use problem::{ObjectRef, Problem};
pub use store::Store;
