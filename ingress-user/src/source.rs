//! Sources of Kubernetes objects: a cluster (kube-rs reflectors) or a manifest directory.
//! Each publishes complete [`Store`]s; the controller rebuilds the Snapshot from the newest.

pub mod dir_watch;
pub mod files;
pub mod kube;

use std::sync::Arc;

use crate::config::Store;

/// Where a source publishes. `None` until the initial sync is complete, so the controller
/// can tell "no objects yet" from "synced, and there are no objects".
pub type StoreTx = tokio::sync::watch::Sender<Option<Arc<Store>>>;
/// The receiving end of [`StoreTx`].
pub type StoreRx = tokio::sync::watch::Receiver<Option<Arc<Store>>>;
