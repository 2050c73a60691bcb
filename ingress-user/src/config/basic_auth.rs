//! `auth-type: basic` with `auth-secret`, `auth-secret-type` and `auth-realm`: the users
//! of an Ingress, read from its Secret when the Ingress is translated.
//!
//! As ingress-nginx (`internal/ingress/annotations/auth/main.go`): `auth-secret` is `name`
//! or `namespace/name`, another namespace is refused (`allow-cross-namespace-resources`
//! defaults to false); `auth-file` (the default) reads the htpasswd file in key `auth`,
//! `auth-map` takes every key as a user and its value as the hash. Any of it unusable
//! (no Secret, no key, a bad annotation value) fails closed: every request of the Ingress
//! gets 503, as ingress-nginx's "location denied", never served without authentication.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::core::v1::Secret;

use super::{ObjectRef, Problem, backend::Resolver, problem::Severity, store::Key};
use crate::snapshot::{htpasswd::Htpasswd, policy::BasicAuth};

/// Where the users are in the Secret (`auth-secret-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretType {
    /// `auth-file`: an htpasswd file in key `auth`.
    AuthFile,
    /// `auth-map`: each key a user, each value a hash.
    AuthMap,
}

/// `auth-type`: `Ok(true)` for basic; digest is handled as unsupported by the caller.
pub fn auth_type(value: &str) -> Result<(), String> {
    match value {
        "basic" => Ok(()),
        _ => Err(format!(
            "{value:?} is not an authentication type (basic or digest); every request gets 503"
        )),
    }
}

/// Why `auth-type: digest` is not served.
pub const DIGEST_NOTE: &str = "digest authentication is not supported (use auth-type: basic); fail closed: every request gets 503";

/// `auth-secret-type`.
pub fn secret_type(value: &str) -> Result<SecretType, String> {
    match value {
        "auth-file" => Ok(SecretType::AuthFile),
        "auth-map" => Ok(SecretType::AuthMap),
        _ => Err(format!(
            "{value:?} is not auth-file or auth-map; with auth-type set, every request gets 503"
        )),
    }
}

/// `auth-secret`: `name` or `namespace/name` (DNS names, as Kubernetes allows).
pub fn secret_name(value: &str) -> Result<(Option<&str>, &str), String> {
    let dns = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    let (ns, name) = match value.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, value),
    };
    if ns.is_some_and(|ns| !dns(ns)) || !dns(name) {
        return Err(format!(
            "{value:?} is not a Secret name or namespace/name; with auth-type set, every request gets 503"
        ));
    }
    Ok((ns, name))
}

/// `auth-realm`: shown by browsers; sent inside quotes, so no `"`, `\` or control
/// characters (ingress-nginx allows letters, digits, spaces and some punctuation).
pub fn realm(value: &str) -> Result<&str, String> {
    match value
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ') || matches!(c, '"' | '\\'))
    {
        Some(c) => Err(format!(
            "{value:?} contains {c:?}: not usable in WWW-Authenticate; the realm is empty"
        )),
        None => Ok(value),
    }
}

/// What an Ingress's auth annotations give.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The users, when all is usable.
    pub auth: Option<Arc<BasicAuth>>,
    /// Authentication is asked for but unusable: every request gets 503.
    pub denied: bool,
    /// The Secret read (a change to it translates the Ingress again).
    pub secret: Option<Key>,
    /// What is wrong beyond single annotation values (those the annotation table reports).
    pub problems: Vec<Problem>,
}

/// Reads the auth annotations under `prefix` of the Ingress `ingress` (in namespace `ns`)
/// and the Secret they name.
pub fn resolve(
    annotations: Option<&BTreeMap<String, String>>,
    prefix: &str,
    ingress: &ObjectRef,
    ns: &str,
    resolver: Resolver<'_>,
) -> Resolved {
    let mut out = Resolved::default();
    let key = |name: &str| format!("{prefix}/{name}");
    let get = |name: &str| {
        annotations
            .and_then(|a| a.get(&key(name)))
            .map(|v| v.trim())
    };
    let Some(kind) = get("auth-type") else {
        return out;
    };
    let deny = |out: &mut Resolved, annotation: &str, kind: &'static str, message: String| {
        out.denied = true;
        out.problems.push(Problem {
            object: ingress.clone(),
            field: Some(format!("metadata.annotations[{:?}]", key(annotation))),
            kind,
            message,
            severity: Severity::Error,
        });
    };
    // Bad values were reported by the annotation table: deny without a second Problem.
    let secret_type = get("auth-secret-type").map_or(Ok(SecretType::AuthFile), secret_type);
    let (Ok(()), Ok(secret_type)) = (auth_type(kind), secret_type) else {
        out.denied = true;
        return out;
    };
    let Some(value) = get("auth-secret") else {
        deny(
            &mut out,
            "auth-type",
            "auth_secret_missing",
            "auth-type basic needs auth-secret (the Secret holding the users); every request gets 503".to_owned(),
        );
        return out;
    };
    let Ok((secret_ns, name)) = secret_name(value) else {
        out.denied = true;
        return out;
    };
    if secret_ns.is_some_and(|s| s != ns) {
        let message = format!(
            "Secret {value} is in another namespace than the Ingress ({ns}): cross-namespace Secrets are not allowed, as in ingress-nginx; every request gets 503"
        );
        deny(
            &mut out,
            "auth-secret",
            "auth_secret_cross_namespace",
            message,
        );
        return out;
    }
    out.secret = Some((ns.to_owned(), name.to_owned()));
    let Some(secret) = resolver.secret(ns, name) else {
        let message = format!("Secret {ns}/{name} not found; every request gets 503");
        deny(&mut out, "auth-secret", "auth_secret_not_found", message);
        return out;
    };
    let users = match users(secret, secret_type) {
        Ok((users, entry_problems)) => {
            for m in entry_problems {
                let m = format!("Secret {ns}/{name} {m}");
                out.problems.push(Problem {
                    object: ingress.clone(),
                    field: Some(format!("metadata.annotations[{:?}]", key("auth-secret"))),
                    kind: "auth_secret_invalid_entry",
                    message: m,
                    severity: Severity::Error,
                });
            }
            users
        }
        Err(m) => {
            let m = format!("Secret {ns}/{name} {m}; every request gets 503");
            deny(&mut out, "auth-secret", "auth_secret_invalid", m);
            return out;
        }
    };
    let realm = get("auth-realm").and_then(|r| realm(r).ok()).unwrap_or("");
    out.auth = Some(Arc::new(BasicAuth {
        realm: realm.to_owned(),
        users,
    }));
    out
}

/// The users of `secret`, and what is wrong with single entries (those users get 500).
/// `Err` when there is nothing usable to read at all.
fn users(secret: &Secret, ty: SecretType) -> Result<(Htpasswd, Vec<String>), String> {
    let mut data: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        data.insert(k, &v.0);
    }
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k, v.as_bytes());
    }
    let text = |k: &str, v: &[u8]| {
        std::str::from_utf8(v)
            .map(str::to_owned)
            .map_err(|_| format!("key {k:?} is not UTF-8 text"))
    };
    let (users, problems) = match ty {
        SecretType::AuthFile => {
            let Some(file) = data.get("auth") else {
                return Err(
                    "has no key \"auth\" (auth-secret-type auth-file: an htpasswd file, e.g. from htpasswd -c auth USER)".to_owned(),
                );
            };
            let file = text("auth", file)?;
            let (users, errors) = Htpasswd::parse(&file);
            let problems = errors
                .into_iter()
                .map(|(line, e)| format!("key \"auth\" line {line}: {e}; that user gets 500"))
                .collect();
            (users, problems)
        }
        SecretType::AuthMap => {
            let pairs = data
                .iter()
                .map(|(k, v)| Ok((*k, text(k, v)?)))
                .collect::<Result<Vec<_>, String>>()?;
            let (users, errors) = Htpasswd::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
            let problems = errors
                .into_iter()
                .map(|e| format!("(auth-map): {e}; that user gets 500"))
                .collect();
            (users, problems)
        }
    };
    if users.is_empty() {
        return Err("holds no user".to_owned());
    }
    Ok((users, problems))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;
    use crate::{config::store::Objects, snapshot::htpasswd::Check};

    const PREFIX: &str = "nginx.ingress.kubernetes.io";

    fn ingress() -> ObjectRef {
        ObjectRef {
            kind: "Ingress".to_owned(),
            namespace: Some("default".to_owned()),
            name: "web".to_owned(),
        }
    }

    fn secret(name: &str, data: &[(&str, &str)]) -> Arc<Secret> {
        Arc::new(Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("default".to_owned()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            type_: Some("Opaque".to_owned()),
            ..Default::default()
        })
    }

    #[test]
    fn annotations_and_secrets_become_users_or_503() {
        let mut objects = Objects::default();
        for s in [
            // htpasswd -nbm foo bar
            secret(
                "file",
                &[("auth", "foo:$apr1$uRuMjICa$f.Wtl8rF.VJoTKfqhD5GA/\n")],
            ),
            secret("map", &[("foo", "{PLAIN}bar"), ("baz", "")]),
            secret("nokey", &[("users", "foo:{PLAIN}bar")]),
            secret("empty", &[("auth", "# nobody\n")]),
            secret("bad", &[("auth", "foo:\n")]),
        ] {
            let key = ("default".to_owned(), s.metadata.name.clone().unwrap());
            objects.secrets.insert(key, s);
        }
        // (annotations, users?, denied, problem kinds)
        for (pairs, users, denied, kinds) in [
            (vec![], false, false, vec![]),
            (vec![("auth-secret", "file")], false, false, vec![]),
            (
                vec![("auth-type", "basic"), ("auth-secret", "file")],
                true,
                false,
                vec![],
            ),
            (
                vec![("auth-type", "basic"), ("auth-secret", "default/file")],
                true,
                false,
                vec![],
            ),
            (
                vec![
                    ("auth-type", "basic"),
                    ("auth-secret", "map"),
                    ("auth-secret-type", "auth-map"),
                ],
                true,
                false,
                vec!["auth_secret_invalid_entry"],
            ),
            (
                vec![("auth-type", "basic"), ("auth-secret", "bad")],
                true,
                false,
                vec!["auth_secret_invalid_entry"],
            ),
            (
                vec![("auth-type", "basic")],
                false,
                true,
                vec!["auth_secret_missing"],
            ),
            (
                vec![("auth-type", "basic"), ("auth-secret", "something")],
                false,
                true,
                vec!["auth_secret_not_found"],
            ),
            (
                vec![("auth-type", "basic"), ("auth-secret", "other/file")],
                false,
                true,
                vec!["auth_secret_cross_namespace"],
            ),
            (
                vec![("auth-type", "basic"), ("auth-secret", "nokey")],
                false,
                true,
                vec!["auth_secret_invalid"],
            ),
            (
                vec![("auth-type", "basic"), ("auth-secret", "empty")],
                false,
                true,
                vec!["auth_secret_invalid"],
            ),
            // Reported by the annotation table; denied here without a second Problem.
            (
                vec![("auth-type", "digest"), ("auth-secret", "file")],
                false,
                true,
                vec![],
            ),
            (
                vec![("auth-type", "Basic"), ("auth-secret", "file")],
                false,
                true,
                vec![],
            ),
            (
                vec![
                    ("auth-type", "basic"),
                    ("auth-secret", "file"),
                    ("auth-secret-type", "file"),
                ],
                false,
                true,
                vec![],
            ),
            (
                vec![("auth-type", "basic"), ("auth-secret", "a/b/c")],
                false,
                true,
                vec![],
            ),
        ] {
            let map: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (format!("{PREFIX}/{k}"), (*v).to_owned()))
                .collect();
            let r = resolve(
                Some(&map),
                PREFIX,
                &ingress(),
                "default",
                Resolver::new(&objects),
            );
            assert_eq!(r.auth.is_some(), users, "{pairs:?}");
            assert_eq!(r.denied, denied, "{pairs:?}");
            let got: Vec<_> = r.problems.iter().map(|p| p.kind).collect();
            assert_eq!(got, kinds, "{pairs:?}");
        }
        let map: BTreeMap<String, String> = [("auth-type", "basic"), ("auth-secret", "file")]
            .iter()
            .map(|(k, v)| (format!("{PREFIX}/{k}"), (*v).to_owned()))
            .collect();
        let r = resolve(
            Some(&map),
            PREFIX,
            &ingress(),
            "default",
            Resolver::new(&objects),
        );
        assert_eq!(r.secret, Some(("default".to_owned(), "file".to_owned())));
        let users = &r.auth.unwrap().users;
        assert_eq!(users.check("foo", b"bar"), Check::Valid);
        assert_eq!(users.check("foo", b"baz"), Check::Invalid);
    }

    #[test]
    fn realm_and_names_are_checked() {
        assert_eq!(realm("test auth"), Ok("test auth"));
        assert!(realm("a\"b").is_err());
        assert!(realm("a\nb").is_err());
        assert_eq!(secret_name("ns/name"), Ok((Some("ns"), "name")));
        assert_eq!(secret_name("name"), Ok((None, "name")));
        for bad in ["", "/x", "x/", "X", "a b", "a/b/c"] {
            assert!(secret_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(secret_type("auth-map"), Ok(SecretType::AuthMap));
        assert!(secret_type("map").is_err());
    }
}
