//! Client certificates per host (`auth-tls-*`): the annotations as typed values, the CA
//! they resolve to, and what the router decides for a request. Built by `config` with the
//! Snapshot; the TLS listener asks for a certificate only on hosts that have one of these.

use std::{fmt, sync::Arc};

use regex::Regex;
use rustls_pki_types::CertificateDer;

/// `auth-tls-verify-client` (nginx's `ssl_verify_client`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VerifyClient {
    /// A certificate signed by the CA is required (the default).
    #[default]
    On,
    /// No certificate is asked for.
    Off,
    /// Asked for; without one the request is served; a bad one is refused.
    Optional,
    /// Asked for, not verified: passed to the upstream whatever it is.
    OptionalNoCa,
}

/// `auth-tls-match-cn`: a regex the client certificate's subject DN (RFC 2253, as nginx's
/// `$ssl_client_s_dn`) must match. Compared by pattern.
#[derive(Clone, Debug)]
pub struct MatchCn(pub Regex);

impl PartialEq for MatchCn {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for MatchCn {}

/// The `auth-tls-*` annotations, parsed; `secret` is required for any to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthTls {
    /// `auth-tls-secret`: `(namespace, name)` of a Secret with `ca.crt`.
    pub secret: Option<(String, String)>,
    /// `auth-tls-verify-client`.
    pub verify: VerifyClient,
    /// `auth-tls-verify-depth` (default 1): most intermediate CA certificates between the
    /// client's and the CA.
    pub depth: u32,
    /// `auth-tls-pass-certificate-to-upstream`: the `ssl-client-cert` header.
    pub pass_certificate: bool,
    /// `auth-tls-error-page`: where a client without a valid certificate is redirected
    /// (302) instead of getting 400.
    pub error_page: Option<String>,
    /// `auth-tls-match-cn`.
    pub match_cn: Option<MatchCn>,
}

impl Default for AuthTls {
    fn default() -> Self {
        Self {
            secret: None,
            verify: VerifyClient::On,
            depth: 1,
            pass_certificate: false,
            error_page: None,
            match_cn: None,
        }
    }
}

/// One host's client certificate requirement, resolved with its Secret's `ca.crt`.
#[derive(Clone)]
pub struct ClientAuth {
    /// The settings.
    pub settings: AuthTls,
    /// The CA certificates of `ca.crt`.
    pub cas: Arc<Vec<CertificateDer<'static>>>,
    /// Identifies settings and CA (a hash): the TLS listener keeps one server config per
    /// distinct requirement.
    pub id: u64,
    /// `namespace/name` of the Secret, for messages.
    pub secret: String,
}

impl PartialEq for ClientAuth {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.settings == other.settings && self.secret == other.secret
    }
}

impl Eq for ClientAuth {}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClientAuth({} {:?} {:016x})",
            self.secret, self.settings, self.id
        )
    }
}

/// What the client certificate of a TLS connection was, checked against the requirement
/// of the host its SNI named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerCert {
    /// None was sent.
    Missing,
    /// Sent and verified against the CA; its leaf and subject DN.
    Valid {
        /// The leaf.
        leaf: CertificateDer<'static>,
        /// Its subject, RFC 2253.
        subject: String,
    },
    /// Sent, but not signed by the CA (or otherwise unusable): why.
    Invalid {
        /// The leaf.
        leaf: CertificateDer<'static>,
        /// Its subject, RFC 2253 (empty if unreadable).
        subject: String,
        /// Why it failed.
        reason: String,
    },
}

/// The client certificate state of one TLS connection, made after its handshake on a
/// host that asks for one; requests carry it as an extension.
#[derive(Clone, Debug)]
pub struct ConnCert {
    /// The SNI host (lower case) the connection was established for.
    pub sni: String,
    /// The requirement it was checked against.
    pub auth: Arc<ClientAuth>,
    /// The result.
    pub peer: PeerCert,
}

/// What the router does with a request to a host that has a [`ClientAuth`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Served; with the certificate to pass upstream as `ssl-client-cert`, if asked.
    Serve(Option<CertificateDer<'static>>),
    /// 421: the connection was not established for this host (its SNI named another, or
    /// none), so no certificate was asked for it (nginx: "client attempted to request the
    /// server name different from the one that was negotiated").
    Misdirected,
    /// 400 "No required SSL certificate was sent" (nginx's internal 496), or the error
    /// page.
    NoCertificate,
    /// 400 "The SSL certificate error" (nginx's internal 495), or the error page.
    BadCertificate,
    /// 403 "client certificate unauthorized": `auth-tls-match-cn` did not match.
    Unauthorized,
}

/// Decides for a request to `host` (lower case, no port) whose host requires `auth`, on a
/// connection that is TLS or not (`tls`) and carries `conn` (`None`: no certificate was
/// asked for on it). Fails closed: plain HTTP never reaches a host that requires a
/// certificate.
pub fn decide(auth: &ClientAuth, host: &str, tls: bool, conn: Option<&ConnCert>) -> Decision {
    let s = &auth.settings;
    if s.verify == VerifyClient::Off {
        return Decision::Serve(None);
    }
    let Some(conn) = conn.filter(|c| tls && c.sni.eq_ignore_ascii_case(host)) else {
        return if tls {
            Decision::Misdirected
        } else if s.verify == VerifyClient::On {
            Decision::NoCertificate
        } else {
            Decision::Serve(None)
        };
    };
    if conn.auth.id != auth.id {
        // The requirement changed since the handshake: the connection was checked against
        // another CA.
        return Decision::Misdirected;
    }
    let (leaf, subject) = match &conn.peer {
        PeerCert::Missing if s.verify == VerifyClient::On => return Decision::NoCertificate,
        PeerCert::Missing => (None, ""),
        PeerCert::Invalid { .. } if s.verify != VerifyClient::OptionalNoCa => {
            return Decision::BadCertificate;
        }
        PeerCert::Invalid { leaf, subject, .. } | PeerCert::Valid { leaf, subject } => {
            (Some(leaf), subject.as_str())
        }
    };
    if let Some(cn) = &s.match_cn
        && !cn.0.is_match(subject)
    {
        return Decision::Unauthorized;
    }
    Decision::Serve(leaf.filter(|_| s.pass_certificate).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(verify: VerifyClient, pass: bool, cn: Option<&str>) -> ClientAuth {
        ClientAuth {
            settings: AuthTls {
                secret: Some(("a".into(), "ca".into())),
                verify,
                pass_certificate: pass,
                match_cn: cn.map(|c| MatchCn(Regex::new(c).unwrap())),
                ..AuthTls::default()
            },
            cas: Arc::default(),
            id: 1,
            secret: "a/ca".into(),
        }
    }

    /// (mode, pass, match-cn, request host, tls, the connection's SNI and cert, decision)
    type Row<'a> = (
        VerifyClient,
        bool,
        Option<&'a str>,
        &'a str,
        bool,
        Option<(&'a str, &'a PeerCert)>,
        Decision,
    );

    #[test]
    fn decisions_follow_nginx_ssl_verify_client() {
        use Decision as D;
        use VerifyClient as V;
        let leaf = CertificateDer::from(vec![1, 2, 3]);
        let valid = PeerCert::Valid {
            leaf: leaf.clone(),
            subject: "CN=client.test".into(),
        };
        let invalid = PeerCert::Invalid {
            leaf: leaf.clone(),
            subject: "CN=stranger".into(),
            reason: "unknown issuer".into(),
        };
        let missing = PeerCert::Missing;
        // (mode, pass, match-cn, request host, tls, the connection's SNI and cert, decision)
        let rows: Vec<Row<'_>> = vec![
            (
                V::On,
                false,
                None,
                "a.test",
                true,
                Some(("a.test", &valid)),
                D::Serve(None),
            ),
            (
                V::On,
                true,
                None,
                "a.test",
                true,
                Some(("a.test", &valid)),
                D::Serve(Some(leaf.clone())),
            ),
            (
                V::On,
                true,
                None,
                "A.test",
                true,
                Some(("a.test", &valid)),
                D::Serve(Some(leaf.clone())),
            ),
            (
                V::On,
                false,
                None,
                "a.test",
                true,
                Some(("a.test", &missing)),
                D::NoCertificate,
            ),
            (
                V::On,
                false,
                None,
                "a.test",
                true,
                Some(("a.test", &invalid)),
                D::BadCertificate,
            ),
            (
                V::Optional,
                false,
                None,
                "a.test",
                true,
                Some(("a.test", &missing)),
                D::Serve(None),
            ),
            (
                V::Optional,
                true,
                None,
                "a.test",
                true,
                Some(("a.test", &invalid)),
                D::BadCertificate,
            ),
            (
                V::OptionalNoCa,
                true,
                None,
                "a.test",
                true,
                Some(("a.test", &invalid)),
                D::Serve(Some(leaf.clone())),
            ),
            (
                V::OptionalNoCa,
                true,
                None,
                "a.test",
                true,
                Some(("a.test", &missing)),
                D::Serve(None),
            ),
            (V::Off, true, None, "a.test", false, None, D::Serve(None)),
            // Another SNI, or none: this host's certificate was never asked for.
            (
                V::On,
                false,
                None,
                "a.test",
                true,
                Some(("b.test", &valid)),
                D::Misdirected,
            ),
            (
                V::Optional,
                false,
                None,
                "a.test",
                true,
                None,
                D::Misdirected,
            ),
            // Plain HTTP: fail closed when a certificate is required.
            (V::On, false, None, "a.test", false, None, D::NoCertificate),
            (
                V::Optional,
                false,
                None,
                "a.test",
                false,
                None,
                D::Serve(None),
            ),
            // match-cn: the subject DN must match; no certificate matches nothing.
            (
                V::On,
                false,
                Some("CN=client"),
                "a.test",
                true,
                Some(("a.test", &valid)),
                D::Serve(None),
            ),
            (
                V::On,
                false,
                Some("CN=(other|more)"),
                "a.test",
                true,
                Some(("a.test", &valid)),
                D::Unauthorized,
            ),
            (
                V::Optional,
                false,
                Some("CN=client"),
                "a.test",
                true,
                Some(("a.test", &missing)),
                D::Unauthorized,
            ),
        ];
        for (mode, pass, cn, host, tls, conn, want) in rows {
            let a = Arc::new(auth(mode, pass, cn));
            let conn = conn.map(|(sni, peer)| ConnCert {
                sni: sni.into(),
                auth: Arc::clone(&a),
                peer: peer.clone(),
            });
            assert_eq!(
                decide(&a, host, tls, conn.as_ref()),
                want,
                "{mode:?} pass={pass} cn={cn:?} {host} tls={tls} {conn:?}"
            );
        }
    }

    #[test]
    fn a_connection_checked_against_another_requirement_is_misdirected() {
        let a = auth(VerifyClient::On, false, None);
        let mut other = a.clone();
        other.id = 2;
        let conn = ConnCert {
            sni: "a.test".into(),
            auth: Arc::new(other),
            peer: PeerCert::Valid {
                leaf: CertificateDer::from(vec![1]),
                subject: String::new(),
            },
        };
        assert_eq!(
            decide(&a, "a.test", true, Some(&conn)),
            Decision::Misdirected
        );
    }
}
