//! `auth-tls-*`: client certificates per host. Parses the annotations and resolves
//! `auth-tls-secret` into the [`ClientAuth`] the TLS listener and the router enforce.
//! Pure: the Secret comes from the object store.
//!
//! As ingress-nginx (`internal/ingress/annotations/authtls/main.go`): nothing applies
//! without `auth-tls-secret`; a Secret that is missing, in another namespace or without a
//! usable `ca.crt` denies the Ingress's paths (503) rather than serve clients unverified.

use std::{
    hash::{DefaultHasher, Hash as _, Hasher as _},
    sync::Arc,
};

use regex::RegexBuilder;

use super::{
    annotations::{Finding, Parsed, Status},
    backend::Resolver,
    problem::Severity,
    proxy_ssl::{Trouble, secret_key},
    store::Key,
    tls,
};
use crate::snapshot::{
    client_auth::{AuthTls, ClientAuth, MatchCn, VerifyClient},
    policy::RoutePolicy,
};

/// Most memory `auth-tls-match-cn` may compile to (the value is user input).
const MATCH_CN_SIZE_LIMIT: usize = 64 * 1024;

fn settings(p: &mut RoutePolicy) -> &mut AuthTls {
    p.auth_tls.get_or_insert_with(AuthTls::default)
}

/// `auth-tls-secret`: `namespace/name`.
pub(super) fn secret(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            settings(p).secret = Some((ns.to_owned(), name.to_owned()));
            Ok(())
        }
        _ => {
            p.denied = true;
            Err(format!(
                "{value:?} is not namespace/name; every request to this Ingress's paths gets 503"
            ))
        }
    }
}

/// `auth-tls-verify-client`: on, off, optional or optional_no_ca (else on, as
/// ingress-nginx).
pub(super) fn verify_client(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let mode = match value {
        "on" => VerifyClient::On,
        "off" => VerifyClient::Off,
        "optional" => VerifyClient::Optional,
        "optional_no_ca" => VerifyClient::OptionalNoCa,
        _ => {
            settings(p).verify = VerifyClient::On;
            return Err(format!(
                "{value:?} is not on, off, optional or optional_no_ca; on is used"
            ));
        }
    };
    settings(p).verify = mode;
    Ok(())
}

/// `auth-tls-verify-depth`: 1 to 100 (else 1).
pub(super) fn verify_depth(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let depth = super::annotations::verify_depth(value);
    settings(p).depth = *depth.as_ref().unwrap_or(&1);
    depth.map(drop)
}

/// `auth-tls-pass-certificate-to-upstream`: a boolean.
pub(super) fn pass_certificate(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let on = super::annotations::boolean(value);
    settings(p).pass_certificate = *on.as_ref().unwrap_or(&false);
    on.map(drop)
}

/// `auth-tls-error-page`: an absolute URL clients without a valid certificate are
/// redirected to.
pub(super) fn error_page(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let url = super::annotations::redirect_url(value)
        .map_err(|e| format!("{e}; such clients get 400"))?;
    settings(p).error_page = Some(url);
    Ok(())
}

/// `auth-tls-match-cn`: `CN=` then a regex, matched against the subject DN, compiled with
/// a size limit. Unusable: fail closed (every request of the Ingress is refused 403, as
/// no certificate can match).
pub(super) fn match_cn(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let compiled = value
        .starts_with("CN=")
        .then(|| {
            RegexBuilder::new(value)
                .size_limit(MATCH_CN_SIZE_LIMIT)
                .build()
        })
        .transpose();
    match compiled {
        Ok(Some(re)) => {
            settings(p).match_cn = Some(MatchCn(re));
            Ok(())
        }
        Ok(None) => {
            settings(p).match_cn = Some(MatchCn(never()));
            Err(format!(
                "{value:?} does not start with CN=; no client certificate is accepted (403)"
            ))
        }
        Err(e) => {
            settings(p).match_cn = Some(MatchCn(never()));
            Err(format!(
                "{value:?} is not a usable regex ({e}); no client certificate is accepted (403)"
            ))
        }
    }
}

/// A regex that matches nothing.
fn never() -> regex::Regex {
    regex::Regex::new(r"[^\s\S]").expect("a valid regex")
}

/// Nothing of `auth-tls-*` applies without `auth-tls-secret`: their verdicts become
/// ignored, with a warning each.
pub(super) fn without_secret(policy: &mut RoutePolicy, prefix: &str, out: &mut Parsed) {
    if policy.auth_tls.as_ref().is_none_or(|s| s.secret.is_some()) {
        return;
    }
    policy.auth_tls = None;
    let note =
        "ignored: auth-tls-* annotations apply only with auth-tls-secret (as in ingress-nginx)";
    for v in &mut out.verdicts {
        if v.name.starts_with("auth-tls-") && v.name != "auth-tls-secret" {
            v.status = Status::Ignored;
            v.note = note.to_owned();
            let field = format!("metadata.annotations[\"{prefix}/{}\"]", v.name);
            out.findings.retain(|f| f.field != field);
            out.findings.push(Finding {
                field,
                kind: "annotation_ignored",
                message: note.to_owned(),
                severity: Severity::Warning,
            });
        }
    }
}

/// Resolves `auth-tls-secret` (the Ingress is in `ns`) into the policy's
/// [`ClientAuth`], or denies the paths. Returns the Secret read (a dependency, present or
/// not) and what is wrong.
pub fn resolve(
    policy: Option<Arc<RoutePolicy>>,
    ns: &str,
    resolver: Resolver<'_>,
    prefix: &str,
) -> (Option<Arc<RoutePolicy>>, Option<Key>, Vec<Trouble>) {
    let Some((sns, sname)) = policy
        .as_ref()
        .and_then(|p| p.auth_tls.as_ref())
        .and_then(|a| a.secret.clone())
    else {
        return (policy, None, Vec::new());
    };
    let mut p = policy.as_deref().cloned().unwrap_or_default();
    let settings = p.auth_tls.clone().unwrap_or_default();
    let field = format!("metadata.annotations[\"{prefix}/auth-tls-secret\"]");
    let fail = |message: String| (field.clone(), "auth_tls_secret", message);
    let mut dependency = None;
    let result = if sns == ns {
        dependency = Some((sns.clone(), sname.clone()));
        resolver
            .secret(&sns, &sname)
            .ok_or_else(|| format!("Secret {sns}/{sname} not found"))
            .and_then(|secret| {
                secret_key(secret, "ca.crt")
                    .ok_or_else(|| format!("Secret {sns}/{sname} has no key ca.crt"))
            })
            .and_then(|pem| {
                tls::parse_chain(&pem).map_err(|e| format!("Secret {sns}/{sname}: ca.crt: {e}"))
            })
    } else {
        Err(format!(
            "Secret {sns}/{sname} is in another namespace than the Ingress; cross-namespace Secrets are refused (as in ingress-nginx)"
        ))
    };
    let mut troubles = Vec::new();
    match result {
        Ok(cas) => {
            let mut hasher = DefaultHasher::new();
            format!("{settings:?}").hash(&mut hasher);
            for ca in &cas {
                ca.as_ref().hash(&mut hasher);
            }
            p.client_auth = Some(Arc::new(ClientAuth {
                settings,
                cas: Arc::new(cas),
                id: hasher.finish(),
                secret: format!("{sns}/{sname}"),
            }));
        }
        Err(message) => {
            p.denied = true;
            troubles.push(fail(format!(
                "{message}; every request to this Ingress's paths gets 503"
            )));
        }
    }
    (Some(Arc::new(p)), dependency, troubles)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{
        Objects,
        annotations::{self, DEFAULT_PREFIX},
        fixtures::{CERT_PEM, secret as make_secret},
    };

    fn parse(pairs: &[(&str, &str)]) -> Parsed {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("{DEFAULT_PREFIX}/{k}"), (*v).to_owned()))
            .collect();
        annotations::parse(Some(&map), DEFAULT_PREFIX)
    }

    #[test]
    fn values_become_the_settings_and_bad_ones_say_what_is_used() {
        let base = || AuthTls {
            secret: Some(("a".into(), "ca".into())),
            ..AuthTls::default()
        };
        // (annotation, value, settings after, a word of the Problem or "")
        for (name, value, want, word) in [
            (
                "auth-tls-verify-client",
                "optional",
                AuthTls {
                    verify: VerifyClient::Optional,
                    ..base()
                },
                "",
            ),
            (
                "auth-tls-verify-client",
                "optional_no_ca",
                AuthTls {
                    verify: VerifyClient::OptionalNoCa,
                    ..base()
                },
                "",
            ),
            (
                "auth-tls-verify-client",
                "off",
                AuthTls {
                    verify: VerifyClient::Off,
                    ..base()
                },
                "",
            ),
            ("auth-tls-verify-client", "maybe", base(), "on is used"),
            (
                "auth-tls-verify-depth",
                "2",
                AuthTls { depth: 2, ..base() },
                "",
            ),
            ("auth-tls-verify-depth", "0", base(), "1 is used"),
            (
                "auth-tls-pass-certificate-to-upstream",
                "true",
                AuthTls {
                    pass_certificate: true,
                    ..base()
                },
                "",
            ),
            (
                "auth-tls-pass-certificate-to-upstream",
                "yes",
                base(),
                "not a boolean",
            ),
            (
                "auth-tls-error-page",
                "http://err.test/error",
                AuthTls {
                    error_page: Some("http://err.test/error".into()),
                    ..base()
                },
                "",
            ),
            ("auth-tls-error-page", "/error", base(), "get 400"),
            (
                "auth-tls-match-cn",
                "CN=(alice|bob)",
                AuthTls {
                    match_cn: Some(MatchCn(regex::Regex::new("CN=(alice|bob)").unwrap())),
                    ..base()
                },
                "",
            ),
        ] {
            let p = parse(&[("auth-tls-secret", "a/ca"), (name, value)]);
            let got = p.policy.unwrap().auth_tls.clone().unwrap();
            assert_eq!(got, want, "{name}: {value}");
            assert_eq!(
                p.findings.len(),
                usize::from(!word.is_empty()),
                "{name}: {value}"
            );
            if let Some(f) = p.findings.first() {
                assert!(f.message.contains(word), "{}", f.message);
            }
        }
    }

    #[test]
    fn a_bad_match_cn_matches_no_certificate() {
        for value in ["alice", "CN=(", "CN=a{99999}{99999}"] {
            let p = parse(&[("auth-tls-secret", "a/ca"), ("auth-tls-match-cn", value)]);
            assert_eq!(p.findings.len(), 1, "{value}");
            assert!(
                p.findings[0].message.contains("403"),
                "{}",
                p.findings[0].message
            );
            let policy = p.policy.unwrap();
            let cn = policy.auth_tls.as_ref().unwrap().match_cn.as_ref().unwrap();
            assert!(!cn.0.is_match("CN=alice") && !cn.0.is_match(""), "{value}");
        }
    }

    #[test]
    fn nothing_of_auth_tls_applies_without_its_secret() {
        let p = parse(&[
            ("auth-tls-verify-client", "on"),
            ("auth-tls-verify-depth", "2"),
        ]);
        assert_eq!(p.policy, None);
        assert!(p.verdicts.iter().all(|v| v.status == Status::Ignored));
        assert_eq!(p.findings.len(), 2);
    }

    #[test]
    fn the_secret_resolves_into_the_requirement_or_denies_the_paths() {
        let mut objects = Objects::default();
        for (name, data) in [
            ("ca", &[("ca.crt", CERT_PEM)][..]),
            ("junk", &[("ca.crt", "junk")][..]),
            ("no-ca", &[("tls.crt", CERT_PEM)][..]),
        ] {
            objects.secrets.insert(
                ("a".into(), name.into()),
                Arc::new(make_secret("a", name, "Opaque", data)),
            );
        }
        let key = |n: &str| Some(("a".to_owned(), n.to_owned()));
        for (secret, ok, dep, word) in [
            ("a/ca", true, key("ca"), ""),
            (
                "a/missing",
                false,
                key("missing"),
                "Secret a/missing not found",
            ),
            ("a/junk", false, key("junk"), "a/junk: ca.crt"),
            ("a/no-ca", false, key("no-ca"), "has no key ca.crt"),
            ("b/ca", false, None, "another namespace"),
        ] {
            let parsed = parse(&[("auth-tls-secret", secret)]);
            let (p, got_dep, troubles) =
                resolve(parsed.policy, "a", Resolver::new(&objects), DEFAULT_PREFIX);
            let p = p.unwrap();
            assert_eq!(got_dep, dep, "{secret}");
            assert_eq!(p.client_auth.is_some(), ok, "{secret}");
            assert_eq!(p.denied, !ok, "{secret}: fails closed");
            if ok {
                assert!(troubles.is_empty());
                assert_eq!(p.client_auth.as_ref().unwrap().cas.len(), 1);
            } else {
                assert_eq!(troubles.len(), 1);
                assert!(troubles[0].0.ends_with("/auth-tls-secret\"]"));
                assert!(
                    troubles[0].2.contains(word) && troubles[0].2.contains("503"),
                    "{}",
                    troubles[0].2
                );
            }
        }
    }
}
