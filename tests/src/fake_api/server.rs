//! HTTP front of the fake API server: path routing, the REST verbs, discovery and watch streams.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Frame, Incoming},
    header::{CONTENT_TYPE, HeaderValue},
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::{
    patch,
    resources::{self, RESOURCES},
    selector::Selector,
    store::{ApiError, ApiResult, Change, ChangeKind, ObjectStore, WatchStart},
};

/// Response body: a whole document or a watch stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What every request handler shares.
pub struct Shared {
    /// The objects.
    pub store: Arc<ObjectStore>,
    /// `host:port` of the server, for `/api`'s serverAddressByClientCIDRs.
    pub address: String,
    /// Bumped to end every open watch stream.
    pub kill_watches: watch::Receiver<u64>,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// `group/version/plural` of resources not served (see `FakeApi::hide`).
    pub hidden: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Shared {
    fn hides(&self, group: &str, version: &str, plural: &str) -> bool {
        self.hidden
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&format!("{group}/{version}/{plural}"))
    }
}

/// A request's path, decoded into what it addresses.
struct Target {
    /// The row whose storage holds the objects.
    res: usize,
    /// The row the path named (another version of `res`, or `res` itself): objects are
    /// shown with its `apiVersion`.
    served: usize,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
    watch: bool,
}

/// Serve one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(error(&ApiError::new(400, "BadRequest", e.to_string()))),
    };
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = parts.uri.path().trim_end_matches('/').to_owned();
    if !body.is_empty() && (content_type.contains("protobuf") || content_type.contains("cbor")) {
        // Only JSON (and YAML) bodies are understood; client-go falls back to JSON on 415.
        let msg = format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type})"
        );
        return Ok(error(&ApiError::new(415, "UnsupportedMediaType", msg)));
    }
    let resp = route(&shared, &parts.method, &path, &query, &content_type, &body).await;
    Ok(resp.unwrap_or_else(|e| error(&e)))
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &Query,
    content_type: &str,
    body: &[u8],
) -> ApiResult<Response<Body>> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Discovery.
    let doc = match segs.as_slice() {
        ["version"] => Some(resources::version()),
        ["api"] => Some(resources::core_versions(&shared.address)),
        ["apis"] => Some(resources::group_list()),
        ["api", v] => resources::resource_list("", v),
        ["apis", g] => resources::group(g),
        ["apis", g, v] => resources::resource_list(g, v).map(|mut doc| {
            if let Some(list) = doc["resources"].as_array_mut() {
                list.retain(|r| {
                    let name = r["name"].as_str().unwrap_or("");
                    let plural = name.split('/').next().unwrap_or(name);
                    !shared.hides(g, v, plural)
                });
            }
            doc
        }),
        ["openapi", "v3"] => Some(resources::openapi_root()),
        ["openapi", "v3", "api", v] => resources::openapi_gv("", v),
        ["openapi", "v3", "apis", g, v] => resources::openapi_gv(g, v),
        ["healthz" | "readyz" | "livez"] => return Ok(text(StatusCode::OK, "ok")),
        _ => None,
    };
    if let Some(doc) = doc {
        return Ok(json_response(StatusCode::OK, &doc));
    }
    let target = parse_target(&segs).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    })?;
    let served = &RESOURCES[target.served];
    if shared.hides(served.group, served.version, served.plural) {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let r = &RESOURCES[target.res];
    let ns = target.namespace.clone().unwrap_or_default();
    if r.namespaced && target.name.is_some() && target.namespace.is_none() {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    let store = &shared.store;
    let shown = |obj: &Value| resources::as_served(obj, target.served);
    let watch = target.watch || query.get("watch").is_some_and(|v| v == "true" || v == "1");
    match (method, &target.name) {
        (&Method::GET, None) if watch => watch_stream(shared, &target, query),
        (&Method::GET, None) => list(store, &target, query),
        (&Method::POST, None) => {
            let obj = parse_body(body)?;
            Ok(json_response(
                StatusCode::CREATED,
                &shown(&*store.create(target.res, &ns, obj, dry_run)?),
            ))
        }
        (&Method::GET, Some(name)) => Ok(json_response(
            StatusCode::OK,
            &shown(&*store.get(target.res, &ns, name)?),
        )),
        (&Method::PUT, Some(name)) => {
            let obj = parse_body(body)?;
            let out = store.replace(target.res, &ns, name, obj, target.status, dry_run)?;
            Ok(json_response(StatusCode::OK, &shown(&out)))
        }
        (&Method::PATCH, Some(name)) => {
            let (existing, created) = match store.get(target.res, &ns, name) {
                Ok(o) => ((*o).clone(), false),
                Err(e) if content_type.starts_with("application/apply-patch") && !target.status => {
                    let _ = e;
                    (json!({"metadata": {"name": name}}), true)
                }
                Err(e) => return Err(e),
            };
            let mut patched = existing;
            patch::apply(&mut patched, content_type, body).map_err(|e| {
                let code = if matches!(e, patch::PatchError::ContentType(_)) {
                    415
                } else {
                    422
                };
                ApiError::new(code, "Invalid", e.to_string())
            })?;
            if created {
                return Ok(json_response(
                    StatusCode::CREATED,
                    &shown(&*store.create(target.res, &ns, patched, dry_run)?),
                ));
            }
            let out = store.replace(target.res, &ns, name, patched, target.status, dry_run)?;
            Ok(json_response(StatusCode::OK, &shown(&out)))
        }
        (&Method::DELETE, Some(name)) if !target.status => Ok(json_response(
            StatusCode::OK,
            &shown(&*store.delete(target.res, &ns, name, dry_run)?),
        )),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported here"),
        )),
    }
}

/// Decode `[watch/]…` paths under `/api/v1` or `/apis/<g>/<v>`.
fn parse_target(segs: &[&str]) -> Option<Target> {
    let (group, version, mut rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let mut watch = false;
    if let ["watch", r @ ..] = rest {
        watch = true;
        rest = r;
    }
    let namespaced =
        |p: &str| resources::find(group, version, p).filter(|i| RESOURCES[*i].namespaced);
    let (served, namespace, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] if namespaced(plural).is_some() => {
            (namespaced(plural)?, Some((*ns).to_owned()), tail)
        }
        [plural, tail @ ..] => (resources::find(group, version, plural)?, None, tail),
        [] => return None,
    };
    let (name, status) = match tail {
        [] => (None, false),
        [name] => (Some((*name).to_owned()), false),
        [name, "status"] if RESOURCES[served].status => (Some((*name).to_owned()), true),
        _ => return None,
    };
    Some(Target {
        res: resources::storage(served),
        served,
        namespace,
        name,
        status,
        watch,
    })
}

/// Query parameters, percent-decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_query(q: &str) -> Query {
    Query(
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect(),
    )
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn selectors(query: &Query) -> ApiResult<(Selector, Selector)> {
    let bad = |e: super::selector::SelectorError| ApiError::new(400, "BadRequest", e.to_string());
    let labels = Selector::parse(query.get("labelSelector").unwrap_or("")).map_err(bad)?;
    let fields = Selector::parse(query.get("fieldSelector").unwrap_or("")).map_err(bad)?;
    Ok((labels, fields))
}

fn list(store: &ObjectStore, target: &Target, query: &Query) -> ApiResult<Response<Body>> {
    let r = &RESOURCES[target.served];
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let (rv, mut items) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => store.take_page(token)?,
        None => {
            let (labels, fields) = selectors(query)?;
            let (rv, objs) = store.snapshot(target.res, target.namespace.as_deref());
            let items = objs
                .iter()
                .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
                .map(|o| resources::as_served(o, target.served))
                .collect();
            (rv, items)
        }
    };
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if items.len() > limit {
        let rest = items.split_off(limit);
        metadata["remainingItemCount"] = json!(rest.len());
        metadata["continue"] = Value::String(store.save_page(rv, rest));
    }
    let doc = json!({
        "kind": format!("{}List", r.kind), "apiVersion": r.api_version(),
        "metadata": metadata, "items": items,
    });
    Ok(json_response(StatusCode::OK, &doc))
}

fn watch_stream(shared: &Arc<Shared>, target: &Target, query: &Query) -> ApiResult<Response<Body>> {
    let (labels, fields) = selectors(query)?;
    let from = match query.get("resourceVersion") {
        None | Some("" | "0") => None,
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            ApiError::new(400, "BadRequest", format!("invalid resourceVersion {rv:?}"))
        })?),
    };
    let initial_events = query.get("sendInitialEvents") == Some("true");
    let from = if initial_events { None } else { from };
    let bookmarks = query.get("allowWatchBookmarks") == Some("true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let start = shared
        .store
        .watch(target.res, target.namespace.as_deref(), from);
    let w = WatchTask {
        shared: shared.clone(),
        served: target.served,
        namespace: target.namespace.clone(),
        labels,
        fields,
        bookmarks,
        initial_events,
        tx,
    };
    tokio::spawn(w.run(start, timeout));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(UnsyncBoxBody::new(StreamBody::new(stream)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(
        "cache-control",
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

struct WatchTask {
    shared: Arc<Shared>,
    /// The row the watch asked for (events show its `apiVersion`).
    served: usize,
    namespace: Option<String>,
    labels: Selector,
    fields: Selector,
    bookmarks: bool,
    initial_events: bool,
    tx: mpsc::Sender<Bytes>,
}

impl WatchTask {
    async fn run(self, start: WatchStart, timeout: Option<Duration>) {
        let (replay, mut sub, start_rv) = match start {
            WatchStart::Gone(e) => {
                let _ = self
                    .send(&json!({"type": "ERROR", "object": e.status()}))
                    .await;
                return;
            }
            WatchStart::Ok { replay, sub, rv } => (replay, sub, rv),
        };
        let mut kill = self.shared.kill_watches.clone();
        kill.mark_unchanged();
        let deadline = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(3600)));
        tokio::pin!(deadline);
        for c in &replay {
            if !self.emit(c).await {
                return;
            }
        }
        if self.initial_events {
            let mut bm = self.bookmark(start_rv);
            bm["object"]["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            if !self.send(&bm).await {
                return;
            }
        }
        let mut tick = tokio::time::interval(self.shared.bookmark_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                change = sub.rx.recv() => match change {
                    Some(c) => if !self.emit(&c).await { return },
                    None => return, // dropped by the store (fault hook)
                },
                _ = tick.tick(), if self.bookmarks => {
                    // Every change up to `rv` was queued before we read it: drain, then mark.
                    let rv = self.shared.store.resource_version();
                    while let Ok(c) = sub.rx.try_recv() {
                        if !self.emit(&c).await { return }
                    }
                    if !self.send(&self.bookmark(rv)).await { return }
                }
                _ = kill.changed() => return,
                () = &mut deadline => return,
                () = self.tx.closed() => return,
            }
        }
    }

    fn bookmark(&self, rv: u64) -> Value {
        let r = &RESOURCES[self.served];
        json!({"type": "BOOKMARK", "object": {
            "kind": r.kind, "apiVersion": r.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
        }})
    }

    fn selected(&self, obj: &Value) -> bool {
        let ns_ok = self.namespace.as_deref().is_none_or(|ns| {
            obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
        });
        ns_ok && self.labels.matches_labels(obj) && self.fields.matches_fields(obj)
    }

    /// Send one change as the watch event it is for this watch's selectors.
    async fn emit(&self, c: &Change) -> bool {
        let now = self.selected(&c.new);
        let before = c.old.as_deref().is_some_and(|o| self.selected(o));
        let kind = match c.kind {
            ChangeKind::Added if now => "ADDED",
            ChangeKind::Modified if now && before => "MODIFIED",
            ChangeKind::Modified if now => "ADDED",
            ChangeKind::Modified if before => "DELETED",
            ChangeKind::Deleted if before || now => "DELETED",
            _ => return true,
        };
        let object = resources::as_served(&c.new, self.served);
        self.send(&json!({"type": kind, "object": object})).await
    }

    async fn send(&self, event: &Value) -> bool {
        let mut line = serde_json::to_vec(event).expect("json values serialize");
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }
}

fn parse_body(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| ApiError::new(400, "BadRequest", format!("the body does not parse: {e}")))
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let mut resp = Response::new(UnsyncBoxBody::new(Full::new(Bytes::from(
        serde_json::to_vec(v).expect("json values serialize"),
    ))));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text(code: StatusCode, s: &'static str) -> Response<Body> {
    let mut resp = Response::new(UnsyncBoxBody::new(Full::new(Bytes::from_static(
        s.as_bytes(),
    ))));
    *resp.status_mut() = code;
    resp
}

fn error(e: &ApiError) -> Response<Body> {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_escapes_plus_and_truncation() {
        assert_eq!(percent_decode("a%3Db%2Fc"), "a=b/c");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn paths_decode_into_resource_namespace_name_and_subresource() {
        let t = |p: &str| {
            let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
            parse_target(&segs).map(|t| {
                (
                    RESOURCES[t.res].plural,
                    t.namespace,
                    t.name,
                    t.status,
                    t.watch,
                )
            })
        };
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            t("/api/v1/configmaps"),
            Some(("configmaps", None, None, false, false))
        );
        assert_eq!(
            t("/api/v1/namespaces/a/configmaps/b"),
            Some(("configmaps", s("a"), s("b"), false, false))
        );
        assert_eq!(
            t("/api/v1/namespaces/a"),
            Some(("namespaces", None, s("a"), false, false))
        );
        assert_eq!(
            t("/api/v1/namespaces"),
            Some(("namespaces", None, None, false, false))
        );
        assert_eq!(
            t("/apis/networking.k8s.io/v1/namespaces/n/ingresses/i/status"),
            Some(("ingresses", s("n"), s("i"), true, false))
        );
        assert_eq!(
            t("/api/v1/watch/namespaces/a/secrets"),
            Some(("secrets", s("a"), None, false, true))
        );
        assert_eq!(
            t("/apis/networking.k8s.io/v1/ingressclasses/x"),
            Some(("ingressclasses", None, s("x"), false, false))
        );
        assert_eq!(t("/api/v1/namespaces/a/configmaps/b/status"), None);
        assert_eq!(t("/apis/nope/v1/things"), None);
    }
}
