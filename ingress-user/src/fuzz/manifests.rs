//! Manifest files: the `--manifests` loader (`source::files::Loader`) and the translation
//! (`config::build`) on whatever a file holds.

use std::path::Path;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::show;
use crate::{
    config::{self, NamespacedName, Options, Problem, Snapshot, Store},
    source::files::Loader,
};

/// Longest input looked at: a manifest file's worth, and YAML parsing stays cheap per run.
const MAX_INPUT: usize = 16 * 1024;

/// The bytes as one manifest file (JSON when they start with `{`, else YAML, as the file
/// name would say), loaded, then built into a Snapshot twice: with the Store as loaded
/// and with every list in it reversed.
/// - nothing panics, and every Problem names an object or the file, says what is wrong
///   with a non-empty message, and carries a metrics label;
/// - the problems and L4 services are the same both times: `build` promises a result
///   independent of input order.
///
/// The Options make the input count: its first ConfigMaps are the tcp- and udp-services
/// ones, its first Service the default backend, and Ingresses without a class are served
/// for inputs of even length.
pub fn manifests(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    let text = String::from_utf8_lossy(data);
    let path = Path::new(if text.trim_start().starts_with('{') {
        "fuzz.json"
    } else {
        "fuzz.yaml"
    });
    let mut loader = Loader::default();
    loader.add_file(path, &text);
    let store = loader.store;
    let opts = options(&store, data.len().is_multiple_of(2));
    let snapshot = config::build(&store, &opts);
    for problem in &snapshot.problems {
        check_problem(problem, path, data);
    }
    let again = config::build(&reversed(&store), &opts);
    assert_eq!(
        outcome(&snapshot),
        outcome(&again),
        "the Store in order (left) and reversed (right) build differently\ninput: {}",
        show(data)
    );
}

fn options(store: &Store, watch_without_class: bool) -> Options {
    let name = |meta: &ObjectMeta| NamespacedName {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    };
    let mut maps = store.config_maps.iter().map(|c| name(&c.metadata));
    Options {
        watch_without_class,
        tcp_services: maps.next(),
        udp_services: maps.next(),
        default_backend_service: store.services.first().map(|s| name(&s.metadata)),
        ..Options::default()
    }
}

fn check_problem(problem: &Problem, path: &Path, data: &[u8]) {
    let object = &problem.object;
    let ok = !object.kind.is_empty()
        && !object.name.is_empty()
        && object.namespace.as_ref().is_none_or(|ns| !ns.is_empty())
        && (object.kind != "File" || object.name == path.display().to_string())
        && problem.field.as_ref().is_none_or(|f| !f.is_empty())
        && !problem.kind.is_empty()
        && problem
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !problem.message.trim().is_empty();
    assert!(ok, "{problem:?} ({problem})\ninput: {}", show(data));
}

fn reversed(store: &Store) -> Store {
    let mut store = store.clone();
    store.ingresses.reverse();
    store.ingress_classes.reverse();
    store.services.reverse();
    store.endpoint_slices.reverse();
    store.secrets.reverse();
    store.config_maps.reverse();
    store.problems.reverse();
    store
}

/// What the order of the Store must not change.
fn outcome(snapshot: &Snapshot) -> (&[Problem], &[config::L4Service]) {
    (&snapshot.problems, &snapshot.l4)
}
