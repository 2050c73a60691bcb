//! Sources of Kubernetes objects: a cluster (kube-rs watchers) or a manifest directory.
//!
//! A source tells the controller what changed, never the whole world again: a watch event
//! becomes one [`Change`], a rewritten manifest file the Changes of the objects in it. So
//! a change costs the controller what it changes, whatever the cluster holds.

pub mod dir_watch;
pub mod files;
pub mod kube;
pub mod manifest_dir;
#[cfg(test)]
mod test_dir;

use tokio::sync::mpsc;

use crate::config::{Change, Objects, Store, store::Kind};

/// What a source tells the controller.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Objects changed; applied in order.
    Changes(Vec<Change>),
    /// Everything sent so far is the complete initial state: the controller may publish.
    /// Sent once; a source that later loses its cluster sends nothing, and the last
    /// Snapshot keeps serving.
    Synced,
}

/// Where a source sends its [`Update`]s (unbounded: the controller drains it in bursts).
pub type UpdateTx = mpsc::UnboundedSender<Update>;
/// The receiving end of [`UpdateTx`].
pub type UpdateRx = mpsc::UnboundedReceiver<Update>;

/// A new update channel.
pub fn channel() -> (UpdateTx, UpdateRx) {
    mpsc::unbounded_channel()
}

/// A source fed whole [`Store`]s (tests, `check`, tools): each one is compared with the
/// last and only the difference is sent, followed by [`Update::Synced`].
#[derive(Debug)]
pub struct StoreFeed {
    tx: UpdateTx,
    last: Objects,
}

impl StoreFeed {
    /// A feed into `tx`.
    pub fn new(tx: UpdateTx) -> Self {
        Self {
            tx,
            last: Objects::default(),
        }
    }

    /// Sends the difference between `store` and the last one; `false` once the controller
    /// is gone.
    pub fn publish(&mut self, store: &Store) -> bool {
        let next = Objects::from_store(store);
        let changes = diff(&self.last, &next);
        self.last = next;
        self.tx.send(Update::Changes(changes)).is_ok() && self.tx.send(Update::Synced).is_ok()
    }
}

/// The Changes that turn `old` into `new`.
pub fn diff(old: &Objects, new: &Objects) -> Vec<Change> {
    use std::{collections::BTreeMap, sync::Arc};

    use crate::config::{store::Key, store::Object};

    fn kind<T: PartialEq>(
        kind: Kind,
        old: &BTreeMap<Key, Arc<T>>,
        new: &BTreeMap<Key, Arc<T>>,
        wrap: fn(Arc<T>) -> Object,
        out: &mut Vec<Change>,
    ) {
        for key in old.keys().filter(|k| !new.contains_key(*k)) {
            out.push(Change::Delete(kind, key.clone()));
        }
        for (key, o) in new {
            if old.get(key).is_none_or(|was| **was != **o) {
                out.push(Change::Apply(wrap(o.clone())));
            }
        }
    }
    let mut out = Vec::new();
    kind(
        Kind::Ingress,
        &old.ingresses,
        &new.ingresses,
        Object::Ingress,
        &mut out,
    );
    kind(
        Kind::IngressClass,
        &old.ingress_classes,
        &new.ingress_classes,
        Object::IngressClass,
        &mut out,
    );
    kind(
        Kind::Service,
        &old.services,
        &new.services,
        Object::Service,
        &mut out,
    );
    kind(
        Kind::EndpointSlice,
        &old.endpoint_slices,
        &new.endpoint_slices,
        Object::EndpointSlice,
        &mut out,
    );
    kind(
        Kind::Secret,
        &old.secrets,
        &new.secrets,
        Object::Secret,
        &mut out,
    );
    kind(
        Kind::ConfigMap,
        &old.config_maps,
        &new.config_maps,
        Object::ConfigMap,
        &mut out,
    );
    for origin in old
        .problems
        .keys()
        .filter(|o| !new.problems.contains_key(*o))
    {
        out.push(Change::Problems {
            origin: origin.clone(),
            problems: Vec::new(),
        });
    }
    for (origin, problems) in &new.problems {
        if old.problems.get(origin) != Some(problems) {
            out.push(Change::Problems {
                origin: origin.clone(),
                problems: problems.clone(),
            });
        }
    }
    out
}

/// Follows a source's updates into [`Objects`] (tests and tools that look at what a source
/// sent, rather than at Snapshots).
#[derive(Debug, Default)]
pub struct Follower {
    /// What was sent so far.
    pub objects: Objects,
    /// Whether [`Update::Synced`] came.
    pub synced: bool,
}

impl Follower {
    /// Applies one update.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Changes(changes) => {
                for c in changes {
                    self.objects.apply(c);
                }
            }
            Update::Synced => self.synced = true,
        }
    }

    /// Waits for the next update and applies it, and any others already queued; `false`
    /// when the source is gone.
    pub async fn next(&mut self, rx: &mut UpdateRx) -> bool {
        let Some(u) = rx.recv().await else {
            return false;
        };
        self.apply(u);
        while let Ok(u) = rx.try_recv() {
            self.apply(u);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::{IngressBuilder, service};

    #[test]
    fn a_feed_sends_only_the_difference_and_a_follower_rebuilds_the_store() {
        let (tx, mut rx) = channel();
        let mut feed = StoreFeed::new(tx);
        let mut s = Store::default();
        s.services.push(service("ns", "web", &[("", 80, "80")]));
        s.ingresses.push(IngressBuilder::new("ns", "a").build());
        assert!(feed.publish(&s));
        let mut f = Follower::default();
        while let Ok(u) = rx.try_recv() {
            f.apply(u);
        }
        assert!(f.synced);
        assert_eq!(f.objects.ingresses.len(), 1);

        s.ingresses.clear();
        s.ingresses.push(IngressBuilder::new("ns", "b").build());
        assert!(feed.publish(&s));
        let Ok(Update::Changes(changes)) = rx.try_recv() else {
            panic!("changes first");
        };
        assert_eq!(
            changes.len(),
            2,
            "delete a, apply b; the Service is unchanged"
        );
        f.apply(Update::Changes(changes));
        let keys: Vec<_> = f.objects.ingresses.keys().cloned().collect();
        assert_eq!(keys, vec![("ns".to_owned(), "b".to_owned())]);
    }
}
