//! The in-memory object store: one global, increasing resourceVersion; a bounded history of
//! changes that watches replay from; consistent pages for `limit`/`continue`.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::resources::{RESOURCES, Resource};

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Replaced or patched.
    Modified,
    /// Deleted.
    Deleted,
}

/// One write, as watches see it.
#[derive(Debug)]
pub struct Change {
    /// The resourceVersion of the write.
    pub rv: u64,
    /// Index into [`RESOURCES`].
    pub res: usize,
    /// Created, modified or deleted.
    pub kind: ChangeKind,
    /// The object before a modification (to tell a selector match from a mismatch).
    pub old: Option<Arc<Value>>,
    /// The object after the write (for a delete: the last state, with the delete's rv).
    pub new: Arc<Value>,
}

/// An API error, rendered as a `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, `Expired`, ...).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    /// The `Status` object the real server sends.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        })
    }

    fn not_found(r: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{}.{} \"{name}\" not found", r.plural, r.group).replace(". \"", " \""),
        )
    }
}

/// Result of a store operation.
pub type ApiResult<T> = Result<T, ApiError>;

/// A watch registered with the store: every change of its resource is sent to it.
pub struct Subscription {
    /// Changes after the subscription point.
    pub rx: mpsc::UnboundedReceiver<Arc<Change>>,
}

/// What a new watch starts with.
pub enum WatchStart {
    /// The watch asked for a resourceVersion that is no longer in the history window.
    Gone(ApiError),
    /// Replay these (objects as ADDED for rv 0/unset, or history), then follow `sub`.
    Ok {
        replay: Vec<Arc<Change>>,
        sub: Subscription,
        rv: u64,
    },
}

type Key = (usize, String, String);

struct Page {
    rv: u64,
    items: Vec<Value>,
}

struct State {
    objects: BTreeMap<Key, Arc<Value>>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    /// The oldest resourceVersion a watch may start from.
    floor: u64,
    history_limit: usize,
    watchers: Vec<(usize, mpsc::UnboundedSender<Arc<Change>>)>,
    pages: HashMap<u64, Page>,
}

/// The object store shared by the HTTP handlers and the test's fault hooks.
pub struct ObjectStore {
    state: Mutex<State>,
    ids: AtomicU64,
    gone: AtomicU64,
    watches: AtomicU64,
}

impl Default for ObjectStore {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl ObjectStore {
    /// An empty store keeping the last `history_limit` changes for watches.
    pub fn new(history_limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                rv: 1,
                history: VecDeque::new(),
                floor: 1,
                history_limit,
                watchers: Vec::new(),
                pages: HashMap::new(),
            }),
            ids: AtomicU64::new(1),
            gone: AtomicU64::new(0),
            watches: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current (newest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Compact the whole history as etcd compaction does (the revision moves on), and end every
    /// watch: each re-watch from an older resourceVersion gets 410 Gone, and continue tokens
    /// expire. A fresh list returns the new version, which can be watched from.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.rv += 1;
        st.floor = st.rv;
        st.history.clear();
        st.pages.clear();
        st.watchers.clear();
    }

    /// Close every registered watch (their streams end, clients re-watch).
    pub fn drop_watchers(&self) {
        self.lock().watchers.clear();
    }

    /// Number of watches currently registered (for tests of the fault hooks).
    pub fn watcher_count(&self) -> usize {
        let mut st = self.lock();
        st.watchers.retain(|(_, tx)| !tx.is_closed());
        st.watchers.len()
    }

    /// How many watches were refused with 410 Gone so far (to check a test hit that path).
    pub fn gone_served(&self) -> u64 {
        self.gone.load(Ordering::Relaxed)
    }

    /// How many watches were started so far.
    pub fn watches_started(&self) -> u64 {
        self.watches.load(Ordering::Relaxed)
    }

    /// One object, if present.
    pub fn get(&self, res: usize, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
        self.lock()
            .objects
            .get(&(res, ns.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&RESOURCES[res], name))
    }

    /// All objects of a resource, optionally in one namespace, in key order.
    pub fn snapshot(&self, res: usize, ns: Option<&str>) -> (u64, Vec<Arc<Value>>) {
        let st = self.lock();
        (st.rv, select(&st, res, ns))
    }

    /// Store the rest of a paginated list; returns its continue token.
    pub fn save_page(&self, rv: u64, items: Vec<Value>) -> String {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        self.lock().pages.insert(id, Page { rv, items });
        format!("page-{id}")
    }

    /// Take the rest of a paginated list by its continue token.
    pub fn take_page(&self, token: &str) -> ApiResult<(u64, Vec<Value>)> {
        let expired = || {
            ApiError::new(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            )
        };
        let id: u64 = token
            .strip_prefix("page-")
            .and_then(|s| s.parse().ok())
            .ok_or_else(expired)?;
        let page = self.lock().pages.remove(&id).ok_or_else(expired)?;
        Ok((page.rv, page.items))
    }

    /// Register a watch on `res` from resourceVersion `from` (`None` = send current objects first).
    pub fn watch(&self, res: usize, ns: Option<&str>, from: Option<u64>) -> WatchStart {
        let mut st = self.lock();
        let replay = match from {
            None => select(&st, res, ns)
                .into_iter()
                .map(|o| {
                    Arc::new(Change {
                        rv: st.rv,
                        res,
                        kind: ChangeKind::Added,
                        old: None,
                        new: o,
                    })
                })
                .collect(),
            Some(rv) if rv < st.floor => {
                self.gone.fetch_add(1, Ordering::Relaxed);
                return WatchStart::Gone(ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {rv} ({})", st.floor),
                ));
            }
            Some(rv) => st
                .history
                .iter()
                .filter(|c| c.res == res && c.rv > rv)
                .cloned()
                .collect(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        st.watchers.push((res, tx));
        self.watches.fetch_add(1, Ordering::Relaxed);
        WatchStart::Ok {
            replay,
            sub: Subscription { rx },
            rv: st.rv,
        }
    }

    /// Create an object (409 if it exists). `dry_run` validates and returns without storing.
    pub fn create(
        &self,
        res: usize,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> ApiResult<Arc<Value>> {
        let r = &RESOURCES[res];
        normalize(r, ns, &mut obj)?;
        if obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            let prefix = obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if prefix.is_empty() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!("{} \"\" is invalid: metadata.name: Required value", r.kind),
                ));
            }
            let n = self.ids.fetch_add(1, Ordering::Relaxed);
            obj["metadata"]["name"] = Value::String(format!("{prefix}{n:05x}"));
        }
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut st = self.lock();
        let key = (res, ns.to_owned(), name.clone());
        if st.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{}.{} \"{name}\" already exists", r.plural, r.group)
                    .replace(". \"", " \""),
            ));
        }
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let meta = obj["metadata"].as_object_mut().expect("normalized");
        meta.insert(
            "uid".into(),
            Value::String(format!("00000000-0000-4000-8000-{id:012x}")),
        );
        meta.insert("creationTimestamp".into(), Value::String(now()));
        if r.generation {
            meta.insert("generation".into(), json!(1));
        }
        if r.status && r.kind != "Namespace" {
            obj.as_object_mut().expect("normalized").remove("status");
        }
        if dry_run {
            return Ok(Arc::new(obj));
        }
        Ok(commit(&mut st, key, ChangeKind::Added, None, obj))
    }

    /// Replace an object (`status_only`: only its status; otherwise everything but its status).
    /// A given `metadata.resourceVersion` must be current (409 otherwise).
    pub fn replace(
        &self,
        res: usize,
        ns: &str,
        name: &str,
        mut obj: Value,
        status_only: bool,
        dry_run: bool,
    ) -> ApiResult<Arc<Value>> {
        let r = &RESOURCES[res];
        normalize(r, ns, &mut obj)?;
        if obj["metadata"]
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != name)
        {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            ));
        }
        let mut st = self.lock();
        let key = (res, ns.to_owned(), name.to_owned());
        let old = st
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(r, name))?;
        if let Some(rv) = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && !rv.is_empty()
            && Some(rv)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", r.plural, r.group).replace(". \"", " \""),
            ));
        }
        let mut new = if status_only {
            let mut n = (*old).clone();
            n["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
            n
        } else {
            if r.status && r.kind != "Namespace" {
                match old.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        obj.as_object_mut().expect("normalized").remove("status");
                    }
                }
            }
            obj
        };
        for field in ["uid", "creationTimestamp", "generation"] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    new["metadata"]
                        .as_object_mut()
                        .expect("normalized")
                        .remove(field);
                }
            }
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == *old {
            return Ok(old);
        }
        if r.generation && strip_meta_status(&new) != strip_meta_status(&old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if dry_run {
            return Ok(Arc::new(new));
        }
        Ok(commit(&mut st, key, ChangeKind::Modified, Some(old), new))
    }

    /// Delete an object; returns its last state.
    pub fn delete(&self, res: usize, ns: &str, name: &str, dry_run: bool) -> ApiResult<Arc<Value>> {
        let mut st = self.lock();
        let key = (res, ns.to_owned(), name.to_owned());
        let old = st
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&RESOURCES[res], name))?;
        if dry_run {
            return Ok(old);
        }
        st.objects.remove(&key);
        st.rv += 1;
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = Value::String(st.rv.to_string());
        let last = Arc::new(last);
        let change = Arc::new(Change {
            rv: st.rv,
            res,
            kind: ChangeKind::Deleted,
            old: Some(old),
            new: last.clone(),
        });
        publish(&mut st, change);
        Ok(last)
    }
}

fn select(st: &State, res: usize, ns: Option<&str>) -> Vec<Arc<Value>> {
    let lo = (res, ns.unwrap_or("").to_owned(), String::new());
    st.objects
        .range(lo..)
        .take_while(|((r, n, _), _)| *r == res && ns.is_none_or(|ns| n == ns))
        .map(|(_, v)| v.clone())
        .collect()
}

fn commit(
    st: &mut State,
    key: Key,
    kind: ChangeKind,
    old: Option<Arc<Value>>,
    mut obj: Value,
) -> Arc<Value> {
    st.rv += 1;
    obj["metadata"]["resourceVersion"] = Value::String(st.rv.to_string());
    let obj = Arc::new(obj);
    let res = key.0;
    st.objects.insert(key, obj.clone());
    let change = Arc::new(Change {
        rv: st.rv,
        res,
        kind,
        old,
        new: obj.clone(),
    });
    publish(st, change);
    obj
}

fn publish(st: &mut State, change: Arc<Change>) {
    st.watchers
        .retain(|(res, tx)| *res != change.res || tx.send(change.clone()).is_ok());
    st.history.push_back(change);
    while st.history.len() > st.history_limit {
        if let Some(c) = st.history.pop_front() {
            st.floor = c.rv;
        }
    }
}

/// Check the object's namespace against the path and fill in kind/apiVersion/namespace.
fn normalize(r: &Resource, ns: &str, obj: &mut Value) -> ApiResult<()> {
    let Value::Object(map) = obj else {
        return Err(ApiError::new(
            400,
            "BadRequest",
            "the body is not a JSON object",
        ));
    };
    map.insert("apiVersion".into(), Value::String(r.api_version()));
    map.insert("kind".into(), Value::String(r.kind.to_owned()));
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    let Value::Object(meta) = meta else {
        return Err(ApiError::new(
            400,
            "BadRequest",
            "metadata is not an object",
        ));
    };
    if r.kind == "Namespace"
        && let Some(name) = meta.get("name").and_then(Value::as_str).map(str::to_owned)
    {
        // As the real API server (since 1.22): every Namespace carries its name as a label.
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Value::Object(labels) = labels {
            labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
        }
    }
    match (r.namespaced, meta.get("namespace").and_then(Value::as_str)) {
        (true, Some(n)) if !n.is_empty() && n != ns => Err(ApiError::new(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        (true, _) => {
            meta.insert("namespace".into(), Value::String(ns.to_owned()));
            Ok(())
        }
        (false, _) => {
            meta.remove("namespace");
            Ok(())
        }
    }
}

fn strip_meta_status(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// Now, as a Kubernetes timestamp (RFC 3339, whole seconds, UTC).
fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
