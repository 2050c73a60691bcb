//! `backend-protocol: HTTPS | GRPCS` and the `proxy-ssl-*` annotations: parsing their
//! values, and resolving them with their Secret into the [`UpstreamTls`] client the router
//! connects with. Pure: no IO, the Secret comes from the object store.
//!
//! As ingress-nginx (`internal/ingress/annotations/proxyssl/main.go`): nothing of
//! `proxy-ssl-*` applies without `proxy-ssl-secret`; the Secret must be in the Ingress's
//! namespace; a Secret that cannot be used denies the Ingress's paths (503), rather than
//! talk to the upstream without the verification or client certificate asked for. The
//! upstream's certificate is not verified unless `proxy-ssl-verify: on`, and no SNI is
//! sent unless `proxy-ssl-server-name: on` (nginx's defaults).

use std::{
    hash::{DefaultHasher, Hash as _, Hasher as _},
    sync::Arc,
};

use k8s_openapi::api::core::v1::Secret;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, aws_lc_rs},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::{
    annotations::{Finding, Parsed, Status},
    backend::Resolver,
    problem::Severity,
    store::Key,
    tls,
};
use crate::snapshot::{
    policy::RoutePolicy,
    upstream_tls::{ProxySsl, TlsVersion, UpstreamTls},
};

/// `on` or `off`, as ingress-nginx's `proxySSLOnOffRegex` accepts them.
fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{value:?} is not on or off; off is used")),
    }
}

fn settings(p: &mut RoutePolicy) -> &mut ProxySsl {
    p.proxy_ssl.get_or_insert_with(ProxySsl::default)
}

/// `proxy-ssl-secret`: `namespace/name`.
pub(super) fn secret(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    match value.split_once('/') {
        Some((ns, name))
            if !ns.is_empty() && !name.is_empty() && !name.contains('/') && !ns.contains(' ') =>
        {
            settings(p).secret = Some((ns.to_owned(), name.to_owned()));
            Ok(())
        }
        _ => {
            // Fail closed: the Ingress asked for a TLS client it cannot have.
            p.denied = true;
            Err(format!(
                "{value:?} is not namespace/name; every request to this Ingress's paths gets 503"
            ))
        }
    }
}

/// `proxy-ssl-verify`: on or off.
pub(super) fn verify(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let on = on_off(value);
    settings(p).verify = *on.as_ref().unwrap_or(&false);
    on.map(drop)
}

/// `proxy-ssl-server-name`: on or off.
pub(super) fn server_name(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let on = on_off(value);
    settings(p).server_name = *on.as_ref().unwrap_or(&false);
    on.map(drop)
}

/// `proxy-ssl-verify-depth`: a whole number above 0 (0 or garbage: 1, as ingress-nginx).
pub(super) fn verify_depth(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let depth = super::annotations::verify_depth(value);
    settings(p).verify_depth = *depth.as_ref().unwrap_or(&1);
    depth.map(drop)
}

/// `proxy-ssl-name`: a DNS name (no variables), verified and sent as SNI.
pub(super) fn name(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        && ServerName::try_from(value).is_ok();
    if !ok {
        return Err(format!(
            "{value:?} is not a DNS name; the Service's name <name>.<namespace>.svc is used"
        ));
    }
    settings(p).name = Some(value.to_ascii_lowercase());
    Ok(())
}

/// `proxy-ssl-protocols`: space-separated `TLSv1.2`, `TLSv1.3` (rustls speaks no older
/// version: `TLSv1`, `TLSv1.1`, `SSLv2`, `SSLv3` are dropped with a Problem). None left:
/// TLS 1.2 and 1.3.
pub(super) fn protocols(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let mut versions = Vec::new();
    let mut dropped = Vec::new();
    for word in value.split_ascii_whitespace() {
        match word {
            "TLSv1.2" => versions.push(TlsVersion::Tls12),
            "TLSv1.3" => versions.push(TlsVersion::Tls13),
            other => dropped.push(other),
        }
    }
    versions.sort_unstable();
    versions.dedup();
    if versions.is_empty() {
        settings(p).versions = ProxySsl::default().versions;
        return Err(format!(
            "{value:?} names neither TLSv1.2 nor TLSv1.3 (the versions spoken here); both are used"
        ));
    }
    settings(p).versions = versions;
    if dropped.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} not spoken here (only TLSv1.2 and TLSv1.3); dropped",
            dropped.join(" ")
        ))
    }
}

/// ingress-nginx applies no `proxy-ssl-*` annotation without `proxy-ssl-secret`: their
/// verdicts become ignored, with a warning each.
pub(super) fn without_secret(policy: &mut RoutePolicy, prefix: &str, out: &mut Parsed) {
    if policy.proxy_ssl.as_ref().is_none_or(|s| s.secret.is_some()) {
        return;
    }
    policy.proxy_ssl = None;
    let note =
        "ignored: proxy-ssl-* annotations apply only with proxy-ssl-secret (as in ingress-nginx)";
    for v in &mut out.verdicts {
        if v.name.starts_with("proxy-ssl-")
            && !matches!(v.name.as_str(), "proxy-ssl-ciphers" | "proxy-ssl-secret")
        {
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

/// A Problem found resolving the policy: (field, kind, message).
pub type Trouble = (String, &'static str, String);

/// Resolves an Ingress's policy against its `proxy-ssl-secret` (in namespace `ns`): the
/// [`UpstreamTls`] of HTTPS/GRPCS upstreams, or `denied` when the Secret is unusable.
/// Returns the Secret it read (a dependency, present or not) and what is wrong.
pub fn resolve(
    policy: Option<Arc<RoutePolicy>>,
    ns: &str,
    resolver: Resolver<'_>,
    prefix: &str,
) -> (Option<Arc<RoutePolicy>>, Option<Key>, Vec<Trouble>) {
    let Some(policy) = policy else {
        return (None, None, Vec::new());
    };
    if policy.proxy_ssl.is_none() && !policy.backend_protocol.is_tls() {
        return (Some(policy), None, Vec::new());
    }
    let mut p = (*policy).clone();
    let ssl = p.proxy_ssl.clone().unwrap_or_default();
    let field = format!("metadata.annotations[\"{prefix}/proxy-ssl-secret\"]");
    let mut troubles = Vec::new();
    let mut dependency = None;
    let mut material = None;
    if let Some((sns, sname)) = &ssl.secret {
        if sns == ns {
            dependency = Some((sns.clone(), sname.clone()));
            match resolver.secret(sns, sname).ok_or_else(|| {
                (
                    field.clone(),
                    "proxy_ssl_secret",
                    format!("Secret {sns}/{sname} not found"),
                )
            }) {
                Ok(secret) => match read_secret(secret, sns, sname, &field) {
                    Ok(m) => material = Some(m),
                    Err(t) => troubles.push(t),
                },
                Err(t) => troubles.push(t),
            }
        } else {
            troubles.push((
                field.clone(),
                "proxy_ssl_secret",
                format!(
                    "Secret {sns}/{sname} is in another namespace than the Ingress; cross-namespace Secrets are refused (as in ingress-nginx)"
                ),
            ));
        }
        if material.is_none() {
            p.denied = true;
            for t in &mut troubles {
                t.2.push_str("; every request to this Ingress's paths gets 503");
            }
        }
    }
    if p.backend_protocol.is_tls() && !p.denied {
        match client(&ssl, material.as_ref(), p.backend_protocol.is_h2()) {
            Ok(tls) => p.upstream_tls = Some(Arc::new(tls)),
            Err(e) => {
                p.denied = true;
                troubles.push((
                    field,
                    "proxy_ssl_secret",
                    format!("{e}; every request to this Ingress's paths gets 503"),
                ));
            }
        }
    }
    (Some(Arc::new(p)), dependency, troubles)
}

/// What a `proxy-ssl-secret` holds, parsed.
struct Material {
    secret: String,
    cas: Vec<CertificateDer<'static>>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// The bytes of `key` in a Secret (`stringData` first, as the API server merges it).
pub(super) fn secret_key(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|s| s.as_bytes().to_vec())
        .or_else(|| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.clone())
        })
}

fn read_secret(secret: &Secret, ns: &str, name: &str, field: &str) -> Result<Material, Trouble> {
    let get = |k: &str| secret_key(secret, k);
    let bad = |message: String| (field.to_owned(), "proxy_ssl_secret", message);
    let ca = get("ca.crt").ok_or_else(|| bad(format!("Secret {ns}/{name} has no key ca.crt")))?;
    let cas = tls::parse_chain(&ca).map_err(|e| bad(format!("Secret {ns}/{name}: ca.crt: {e}")))?;
    let client = match (get("tls.crt"), get("tls.key")) {
        (None, None) => None,
        (Some(crt), Some(key)) => {
            let chain = tls::parse_chain(&crt)
                .map_err(|e| bad(format!("Secret {ns}/{name}: tls.crt: {e}")))?;
            let key = tls::parse_key(&key)
                .map_err(|e| bad(format!("Secret {ns}/{name}: tls.key: {e}")))?;
            Some((chain, key))
        }
        (Some(_), None) => {
            return Err(bad(format!(
                "Secret {ns}/{name} has tls.crt but no tls.key"
            )));
        }
        (None, Some(_)) => {
            return Err(bad(format!(
                "Secret {ns}/{name} has tls.key but no tls.crt"
            )));
        }
    };
    Ok(Material {
        secret: format!("{ns}/{name}"),
        cas,
        client,
    })
}

/// The rustls client for `ssl` (with the Secret's `material`, if any), offering `h2` or
/// `http/1.1` by ALPN.
fn client(ssl: &ProxySsl, material: Option<&Material>, h2: bool) -> Result<UpstreamTls, String> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = ssl
        .versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let verifier: Arc<dyn ServerCertVerifier> = match material.filter(|_| ssl.verify) {
        Some(m) => {
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(m.cas.iter().cloned());
            if added == 0 {
                return Err(format!(
                    "Secret {}: ca.crt holds no usable CA certificate",
                    m.secret
                ));
            }
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("Secret {}: ca.crt: {e}", m.secret))?;
            Arc::new(Depth {
                inner,
                depth: ssl.verify_depth,
                anchors: m.cas.clone(),
            })
        }
        None => Arc::new(NoVerify(Arc::clone(&provider))),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("proxy-ssl-protocols: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match material.and_then(|m| m.client.as_ref()) {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| {
                format!(
                    "Secret {}: tls.crt/tls.key: {e}",
                    material.map_or("", |m| m.secret.as_str())
                )
            })?,
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = ssl.server_name;
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];

    let mut hasher = DefaultHasher::new();
    ssl.hash(&mut hasher);
    h2.hash(&mut hasher);
    if let Some(m) = material {
        for ca in &m.cas {
            ca.as_ref().hash(&mut hasher);
        }
        if let Some((chain, key)) = &m.client {
            for c in chain {
                c.as_ref().hash(&mut hasher);
            }
            key.secret_der().hash(&mut hasher);
        }
    }
    let summary = format!(
        "{} verify={} depth={} name={:?} sni={} versions={:?} secret={:?} client_cert={}",
        if h2 { "h2" } else { "http/1.1" },
        ssl.verify,
        ssl.verify_depth,
        ssl.name,
        ssl.server_name,
        ssl.versions,
        material.map(|m| m.secret.as_str()),
        material.is_some_and(|m| m.client.is_some()),
    );
    Ok(UpstreamTls {
        config: Arc::new(config),
        name: ssl.name.clone(),
        id: hasher.finish(),
        summary,
    })
}

/// `proxy-ssl-verify: off` (ingress-nginx's default): any upstream certificate is taken,
/// but the handshake's signatures are still checked, so the session is with whoever holds
/// the key of the certificate it sent.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// WebPKI verification against `ca.crt`, with `proxy-ssl-verify-depth`: OpenSSL's depth
/// counts the CA certificates above the upstream's own, the trust anchor excepted; here
/// the intermediates the upstream presents, not counting copies of a `ca.crt` certificate.
#[derive(Debug)]
struct Depth {
    inner: Arc<WebPkiServerVerifier>,
    depth: u32,
    anchors: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Depth {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let above = intermediates
            .iter()
            .filter(|c| !self.anchors.iter().any(|a| a.as_ref() == c.as_ref()))
            .count();
        if above > self.depth as usize {
            return Err(rustls::Error::General(format!(
                "certificate chain of {above} intermediates is deeper than proxy-ssl-verify-depth {}",
                self.depth
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        config::{
            Objects,
            annotations::{self, DEFAULT_PREFIX},
            fixtures::{CERT_PEM, KEY_PEM, secret as make_secret},
        },
        snapshot::upstream_tls::BackendProtocol,
    };

    fn parse(pairs: &[(&str, &str)]) -> Parsed {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("{DEFAULT_PREFIX}/{k}"), (*v).to_owned()))
            .collect();
        annotations::parse(Some(&map), DEFAULT_PREFIX)
    }

    /// (namespace, name, data) of a Secret.
    type SecretSpec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn objects(secrets: &[SecretSpec<'_>]) -> Objects {
        let mut o = Objects::default();
        for (ns, name, data) in secrets {
            o.secrets.insert(
                ((*ns).to_owned(), (*name).to_owned()),
                Arc::new(make_secret(ns, name, "Opaque", data)),
            );
        }
        o
    }

    #[test]
    fn values_become_the_settings() {
        let p = parse(&[
            ("backend-protocol", "HTTPS"),
            ("proxy-ssl-secret", "a/ca"),
            ("proxy-ssl-verify", "on"),
            ("proxy-ssl-verify-depth", "2"),
            ("proxy-ssl-name", "Api.Internal"),
            ("proxy-ssl-server-name", "on"),
            ("proxy-ssl-protocols", "TLSv1.3 TLSv1.2 TLSv1.3"),
        ]);
        assert!(p.findings.is_empty(), "{:?}", p.findings);
        let policy = p.policy.unwrap();
        assert_eq!(policy.backend_protocol, BackendProtocol::Https);
        assert_eq!(
            policy.proxy_ssl,
            Some(ProxySsl {
                secret: Some(("a".into(), "ca".into())),
                verify: true,
                verify_depth: 2,
                name: Some("api.internal".into()),
                server_name: true,
                versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            })
        );
    }

    #[test]
    fn bad_values_get_the_nginx_default_and_a_problem() {
        // (annotation, value, what the settings hold after, a word of the Problem)
        let base = ProxySsl {
            secret: Some(("a".into(), "ca".into())),
            ..ProxySsl::default()
        };
        for (name, value, want, word) in [
            ("proxy-ssl-verify", "true", base.clone(), "not on or off"),
            (
                "proxy-ssl-server-name",
                "yes",
                base.clone(),
                "not on or off",
            ),
            ("proxy-ssl-verify-depth", "0", base.clone(), "1 is used"),
            ("proxy-ssl-verify-depth", "x", base.clone(), "1 is used"),
            ("proxy-ssl-name", "$host", base.clone(), "not a DNS name"),
            ("proxy-ssl-name", "a b", base.clone(), "not a DNS name"),
            (
                "proxy-ssl-protocols",
                "TLSv1 TLSv1.1",
                base.clone(),
                "both are used",
            ),
            (
                "proxy-ssl-protocols",
                "TLSv1.1 TLSv1.2",
                ProxySsl {
                    versions: vec![TlsVersion::Tls12],
                    ..base.clone()
                },
                "TLSv1.1 not spoken here",
            ),
        ] {
            let p = parse(&[("proxy-ssl-secret", "a/ca"), (name, value)]);
            assert_eq!(
                p.policy.unwrap().proxy_ssl.as_ref(),
                Some(&want),
                "{name}: {value}"
            );
            assert_eq!(p.findings.len(), 1, "{name}: {value}");
            assert!(
                p.findings[0].message.contains(word),
                "{}",
                p.findings[0].message
            );
            assert!(p.findings[0].field.ends_with(&format!("/{name}\"]")));
        }
    }

    #[test]
    fn an_invalid_secret_keeps_its_own_problem_and_denies() {
        let p = parse(&[("proxy-ssl-secret", "nope"), ("proxy-ssl-verify", "on")]);
        let secret = p
            .verdicts
            .iter()
            .find(|v| v.name == "proxy-ssl-secret")
            .unwrap();
        assert_eq!(secret.status, Status::Invalid);
        assert!(p.policy.unwrap().denied);
        assert_eq!(p.findings.len(), 2, "{:?}", p.findings);
    }

    #[test]
    fn nothing_of_proxy_ssl_applies_without_its_secret() {
        let p = parse(&[("proxy-ssl-verify", "on"), ("proxy-ssl-name", "x.y")]);
        assert_eq!(p.policy, None);
        assert!(
            p.verdicts
                .iter()
                .all(|v| v.status == Status::Ignored
                    && v.note.contains("only with proxy-ssl-secret"))
        );
        assert_eq!(p.findings.len(), 2);
        assert!(p.findings.iter().all(|f| f.severity == Severity::Warning));
    }

    fn resolved(
        pairs: &[(&str, &str)],
        objects: &Objects,
    ) -> (RoutePolicy, Option<Key>, Vec<Trouble>) {
        let parsed = parse(pairs);
        let (p, dep, troubles) =
            resolve(parsed.policy, "a", Resolver::new(objects), DEFAULT_PREFIX);
        (p.map(|p| (*p).clone()).unwrap_or_default(), dep, troubles)
    }

    #[test]
    fn secrets_resolve_into_the_tls_client_or_deny_the_paths() {
        let ca: &[(&str, &str)] = &[("ca.crt", CERT_PEM)];
        let mtls: &[(&str, &str)] = &[
            ("ca.crt", CERT_PEM),
            ("tls.crt", CERT_PEM),
            ("tls.key", KEY_PEM),
        ];
        let junk: &[(&str, &str)] = &[("ca.crt", "junk")];
        let no_ca: &[(&str, &str)] = &[("tls.crt", CERT_PEM), ("tls.key", KEY_PEM)];
        let no_key: &[(&str, &str)] = &[("ca.crt", CERT_PEM), ("tls.crt", CERT_PEM)];
        let objects = objects(&[
            ("a", "ca", ca),
            ("a", "mtls", mtls),
            ("a", "junk", junk),
            ("a", "no-ca", no_ca),
            ("a", "no-key", no_key),
            ("b", "ca", ca),
        ]);
        let key = |n: &str| Some(("a".to_owned(), n.to_owned()));
        // (secret, served with TLS (and a client certificate), dependency, Problem word)
        for (secret, tls, dep, word) in [
            ("a/ca", Some(false), key("ca"), ""),
            ("a/mtls", Some(true), key("mtls"), ""),
            (
                "a/missing",
                None,
                key("missing"),
                "Secret a/missing not found",
            ),
            ("a/junk", None, key("junk"), "a/junk: ca.crt"),
            ("a/no-ca", None, key("no-ca"), "has no key ca.crt"),
            ("a/no-key", None, key("no-key"), "tls.crt but no tls.key"),
            ("b/ca", None, None, "another namespace"),
        ] {
            let (p, got_dep, troubles) = resolved(
                &[("backend-protocol", "HTTPS"), ("proxy-ssl-secret", secret)],
                &objects,
            );
            assert_eq!(got_dep, dep, "{secret}");
            match tls {
                Some(client_cert) => {
                    assert!(troubles.is_empty(), "{secret}: {troubles:?}");
                    assert!(!p.denied);
                    let t = p.upstream_tls.expect(secret);
                    assert_eq!(t.summary.contains("client_cert=true"), client_cert);
                    assert_eq!(t.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
                    assert!(!t.config.enable_sni, "nginx sends no SNI by default");
                }
                None => {
                    assert!(p.denied, "{secret}: fails closed");
                    assert!(p.upstream_tls.is_none());
                    assert_eq!(troubles.len(), 1, "{secret}");
                    let (field, _, message) = &troubles[0];
                    assert!(field.ends_with("/proxy-ssl-secret\"]"));
                    assert!(
                        message.contains(word) && message.contains("503"),
                        "{message}"
                    );
                }
            }
        }
    }

    #[test]
    fn protocols_pick_the_tls_client_and_its_alpn() {
        let objects = Objects::default();
        let (p, dep, troubles) = resolved(&[("backend-protocol", "GRPCS")], &objects);
        assert!(troubles.is_empty() && dep.is_none());
        let t = p.upstream_tls.unwrap();
        assert_eq!(t.config.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(t.summary.contains("verify=false"));
        // Cleartext protocols have no TLS client; a good Secret on them denies nothing.
        let objects = self::objects(&[("a", "ca", &[("ca.crt", CERT_PEM)])]);
        for protocol in ["HTTP", "GRPC"] {
            let (p, dep, troubles) = resolved(
                &[("backend-protocol", protocol), ("proxy-ssl-secret", "a/ca")],
                &objects,
            );
            assert!(p.upstream_tls.is_none() && !p.denied && troubles.is_empty());
            assert!(dep.is_some(), "still a dependency");
        }
    }

    #[test]
    fn the_client_id_follows_settings_and_secret_contents() {
        let id = |pairs: &[(&str, &str)], ca: &str| {
            let objects = objects(&[("a", "ca", &[("ca.crt", ca)])]);
            resolved(pairs, &objects).0.upstream_tls.unwrap().id
        };
        let https = [("backend-protocol", "HTTPS"), ("proxy-ssl-secret", "a/ca")];
        let verify = [
            ("backend-protocol", "HTTPS"),
            ("proxy-ssl-secret", "a/ca"),
            ("proxy-ssl-verify", "on"),
        ];
        let other_ca = rcgen::generate_simple_self_signed(vec!["x".into()])
            .unwrap()
            .cert
            .pem();
        assert_eq!(id(&https, CERT_PEM), id(&https, CERT_PEM));
        assert_ne!(id(&https, CERT_PEM), id(&verify, CERT_PEM));
        assert_ne!(id(&verify, CERT_PEM), id(&verify, &other_ca));
    }
}
