//! A manifest directory as [`Change`]s. Each file is parsed on its own and remembered with
//! its size, mtime and inode, so a rescan reads only the files that changed and sends the
//! Changes of the objects in them: editing one of 200 files costs one file's parse.
//!
//! The result equals [`load`](super::files::load) of the whole directory: an object
//! defined in several files comes from the first in name order, and each later definition
//! gets a `duplicate_object` Warning.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::files::{LoadError, Loader, duplicate, file_problem, manifest_files};
use crate::config::{
    Change,
    problem::Severity,
    store::{Key, Kind, Object},
};

/// What identifies a file's version without reading it.
type Stamp = (u64, Option<SystemTime>, u64);

/// An object and where a file defines it.
#[derive(Debug)]
struct Definition {
    object: Object,
    /// The kind as written (`Endpoints` for a converted EndpointSlice).
    written_as: &'static str,
    line: Option<usize>,
}

/// One parsed file.
#[derive(Debug)]
struct File {
    stamp: Stamp,
    objects: HashMap<(Kind, Key), Definition>,
}

/// The parsed state of a manifest directory.
#[derive(Debug)]
pub struct ManifestDir {
    dir: PathBuf,
    files: BTreeMap<PathBuf, File>,
    /// The files defining each object, in name order (the first one wins).
    owners: HashMap<(Kind, Key), BTreeSet<PathBuf>>,
}

/// What one [`ManifestDir::rescan`] found.
#[derive(Debug, Default)]
pub struct Rescan {
    /// The Changes, in order.
    pub changes: Vec<Change>,
    /// Files read and parsed (new or changed).
    pub read: usize,
    /// Files that disappeared.
    pub removed: usize,
    /// Manifest files in the directory.
    pub files: usize,
}

impl ManifestDir {
    /// Nothing read yet: the first rescan reads every file.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            files: BTreeMap::new(),
            owners: HashMap::new(),
        }
    }

    /// Lists and stats the directory, and reads the files that are new or changed.
    pub fn rescan(&mut self) -> Result<Rescan, LoadError> {
        let listed: Vec<(PathBuf, Stamp)> = manifest_files(&self.dir)?
            .into_iter()
            .filter_map(|p| {
                let m = fs::metadata(&p).ok()?;
                let stamp = (m.len(), m.modified().ok(), m.ino());
                Some((p, stamp))
            })
            .collect();
        let mut out = Rescan {
            files: listed.len(),
            ..Rescan::default()
        };
        let mut touched = BTreeSet::new();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !listed.iter().any(|(l, _)| l == *p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(file) = self.files.remove(&path) {
                self.disown(&path, file.objects.into_keys(), &mut touched);
            }
            out.changes.push(problems(&path, Vec::new()));
            out.removed += 1;
        }
        for (path, stamp) in listed {
            if self.files.get(&path).is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            out.read += 1;
            let (file, found) = parse(&path, stamp);
            for key in file.objects.keys() {
                self.owners
                    .entry(key.clone())
                    .or_default()
                    .insert(path.clone());
                touched.insert(key.clone());
            }
            if let Some(old) = self.files.insert(path.clone(), file) {
                let still = &self.files[&path].objects;
                let dropped: Vec<_> = old
                    .objects
                    .into_keys()
                    .filter(|k| !still.contains_key(k))
                    .collect();
                self.disown(&path, dropped, &mut touched);
            }
            out.changes.push(problems(&path, found));
        }
        for key in touched {
            out.changes.extend(self.resolve(key));
        }
        Ok(out)
    }

    fn disown(
        &mut self,
        path: &Path,
        keys: impl IntoIterator<Item = (Kind, Key)>,
        touched: &mut BTreeSet<(Kind, Key)>,
    ) {
        for key in keys {
            if let Some(owners) = self.owners.get_mut(&key) {
                owners.remove(path);
                if owners.is_empty() {
                    self.owners.remove(&key);
                }
            }
            touched.insert(key);
        }
    }

    /// The Changes for one object whose definitions changed: the first definition (or a
    /// delete), and the duplicate Warnings of the others.
    fn resolve(&self, key: (Kind, Key)) -> Vec<Change> {
        let origin = format!("duplicates of {:?} {}/{}", key.0, key.1.0, key.1.1);
        let defs: Vec<(&PathBuf, &Definition)> = self
            .owners
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p, self.files.get(p)?.objects.get(&key)?)))
            .collect();
        let Some(((_, first), later)) = defs.split_first() else {
            return vec![
                Change::Delete(key.0, key.1),
                Change::Problems {
                    origin,
                    problems: Vec::new(),
                },
            ];
        };
        let warnings = later
            .iter()
            .map(|(path, d)| duplicate(path, d.line, d.written_as, &key.1.0, &key.1.1))
            .collect();
        vec![
            Change::Apply(first.object.clone()),
            Change::Problems {
                origin,
                problems: warnings,
            },
        ]
    }
}

/// The source Problems of one file.
fn problems(path: &Path, problems: Vec<crate::config::Problem>) -> Change {
    Change::Problems {
        origin: format!("file {}", path.display()),
        problems,
    }
}

/// Reads and parses one file: its objects and its own Problems.
fn parse(path: &Path, stamp: Stamp) -> (File, Vec<crate::config::Problem>) {
    let mut loader = Loader::default();
    match fs::read_to_string(path) {
        Ok(text) => loader.add_file(path, &text),
        Err(e) => loader.store.problems.push(file_problem(
            path,
            None,
            "unreadable_file",
            format!("cannot read: {e}"),
            Severity::Error,
        )),
    }
    let Loader {
        mut store, lines, ..
    } = loader;
    let found = std::mem::take(&mut store.problems);
    let mut objects = HashMap::new();
    for change in store.into_changes("") {
        let Change::Apply(object) = change else {
            continue;
        };
        let key = object.key();
        let written_as = written_as(object.kind());
        let line = lines
            .get(&(written_as, key.0.clone(), key.1.clone()))
            .or_else(|| lines.get(&("Endpoints", key.0.clone(), key.1.clone())))
            .copied();
        let written_as = match (object.kind(), line.is_some()) {
            (Kind::EndpointSlice, true)
                if !lines.contains_key(&("EndpointSlice", key.0.clone(), key.1.clone())) =>
            {
                "Endpoints"
            }
            _ => written_as,
        };
        objects.insert(
            (object.kind(), key),
            Definition {
                object,
                written_as,
                line,
            },
        );
    }
    (File { stamp, objects }, found)
}

/// The kind's name as the loader writes it in messages.
fn written_as(kind: Kind) -> &'static str {
    match kind {
        Kind::Ingress => "Ingress",
        Kind::IngressClass => "IngressClass",
        Kind::Service => "Service",
        Kind::EndpointSlice => "EndpointSlice",
        Kind::Secret => "Secret",
        Kind::ConfigMap => "ConfigMap",
        Kind::Namespace => "Namespace",
        Kind::GatewayClass => "GatewayClass",
        Kind::Gateway => "Gateway",
        Kind::HTTPRoute => "HTTPRoute",
        Kind::TCPRoute => "TCPRoute",
        Kind::UDPRoute => "UDPRoute",
        Kind::TLSRoute => "TLSRoute",
        Kind::ReferenceGrant => "ReferenceGrant",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Objects,
        source::{Follower, Update, test_dir::TempDir},
    };

    fn svc(name: &str, port: u16) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: {port}}}]}}\n---\n"
        )
    }

    /// Random edits of a few files (objects moving between files, duplicates, broken YAML,
    /// removals): after every rescan, the Changes sent so far rebuild exactly what loading
    /// the whole directory gives.
    #[test]
    fn rescans_always_equal_a_full_load() {
        let dir = TempDir::new();
        let mut state = ManifestDir::new(dir.0.clone());
        let mut follower = Follower::default();
        let mut x: u64 = 7;
        let mut rand = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for step in 0..120 {
            let file = dir.0.join(format!("f{}.yaml", rand(4)));
            match rand(5) {
                0 => {
                    let _ = fs::remove_file(&file);
                }
                1 => {
                    fs::write(&file, "apiVersion: v1\nkind: Service\nmetadata: {name: [\n")
                        .unwrap();
                }
                _ => {
                    let text: String = (0..rand(4))
                        .map(|_| {
                            svc(
                                &format!("s{}", rand(5)),
                                80 + u16::try_from(rand(3)).unwrap(),
                            )
                        })
                        .collect();
                    fs::write(&file, text).unwrap();
                }
            }
            // A write within the mtime granularity keeps the stamp when the size is the
            // same; bump the mtime like a real later write would.
            if file.exists() {
                let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + step);
                fs::File::options()
                    .write(true)
                    .open(&file)
                    .unwrap()
                    .set_modified(t)
                    .unwrap();
            }
            let r = state.rescan().unwrap();
            follower.apply(Update::Changes(r.changes));
            let want = Objects::from_store(&super::super::files::load(&dir.0).unwrap());
            let got = &follower.objects;
            assert_eq!(got.services, want.services, "step {step}");
            let mut got_p: Vec<_> = got.problems.values().flatten().cloned().collect();
            let mut want_p: Vec<_> = want.problems.values().flatten().cloned().collect();
            got_p.sort_by_key(ToString::to_string);
            want_p.sort_by_key(ToString::to_string);
            assert_eq!(got_p, want_p, "step {step}");
        }
    }

    #[test]
    fn only_changed_files_are_read() {
        let dir = TempDir::new();
        for i in 0..5 {
            fs::write(dir.0.join(format!("f{i}.yaml")), svc(&format!("s{i}"), 80)).unwrap();
        }
        let mut state = ManifestDir::new(dir.0.clone());
        let r = state.rescan().unwrap();
        assert_eq!((r.read, r.files), (5, 5));
        assert_eq!(state.rescan().unwrap().read, 0, "nothing changed");

        fs::write(dir.0.join("f2.yaml"), svc("s2", 8080)).unwrap();
        let r = state.rescan().unwrap();
        assert_eq!(r.read, 1);
        let applied: Vec<_> = r
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Apply(o) => Some(o.key().1),
                _ => None,
            })
            .collect();
        assert_eq!(applied, ["s2"]);

        fs::remove_file(dir.0.join("f4.yaml")).unwrap();
        let r = state.rescan().unwrap();
        assert_eq!((r.read, r.removed), (0, 1));
        assert!(r.changes.contains(&Change::Delete(
            Kind::Service,
            ("default".into(), "s4".into())
        )));
    }
}
