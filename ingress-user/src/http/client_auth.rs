//! Client certificates on the HTTPS listener (`auth-tls-*`): a certificate is asked for
//! only on hosts whose Ingress requires one. The server config is chosen once the
//! ClientHello's SNI is known ([`LazyConfigAcceptor`]); hosts that ask get a copy of the
//! listener's config (same certificates, same shared session resumption: a resumed
//! session keeps its SNI, as rustls refuses another, and its client certificate) with a
//! verifier that asks for a certificate.
//!
//! As nginx with `ssl_verify_client`, the handshake never fails over the client
//! certificate: it is checked against the host's CA right after, and the router answers
//! each request ([`decide`](crate::snapshot::client_auth::decide)): 400 without a valid
//! one (or the `auth-tls-error-page` redirect), 421 for a request whose host is not the
//! one the connection's SNI named.

use std::{
    fmt::Write as _,
    io,
    sync::{Arc, Mutex, PoisonError},
};

use arc_swap::ArcSwap;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    server::{
        Acceptor, WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor, server::TlsStream};
use tracing::debug;

use hyper::{
    Response, StatusCode,
    header::{self, HeaderName, HeaderValue},
};

use super::{
    FastMap,
    body::{Body, full},
};
use crate::snapshot::{
    Snapshot,
    client_auth::{ClientAuth, ConnCert, Decision, PeerCert, VerifyClient, decide},
};

/// Most server configs kept (one per listener and distinct requirement); past it the
/// cache starts over (they are cheap to make again).
const MAX_CONFIGS: usize = 256;

/// The server configs of hosts that ask for a client certificate.
pub struct ClientAuthTls {
    snapshot: Arc<ArcSwap<Snapshot>>,
    configs: Mutex<FastMap<(usize, u64), Arc<Prepared>>>,
}

impl std::fmt::Debug for ClientAuthTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuthTls").finish_non_exhaustive()
    }
}

/// A requirement made ready: the server config asking for a certificate, and the
/// verifier checking it against the CA.
struct Prepared {
    config: Arc<ServerConfig>,
    strict: Arc<dyn ClientCertVerifier>,
}

impl ClientAuthTls {
    /// Reads the hosts' requirements from the Snapshot in `snapshot`.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Self {
        Self {
            snapshot,
            configs: Mutex::default(),
        }
    }

    /// Runs the TLS handshake of an Ingress listener connection: `base`'s config, or, when
    /// the SNI names a host requiring a client certificate, that config asking for one.
    /// The certificate is checked right after.
    pub async fn accept<IO>(
        &self,
        base: &TlsAcceptor,
        stream: IO,
    ) -> io::Result<(TlsStream<IO>, Option<Arc<ConnCert>>)>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let sni = start
            .client_hello()
            .server_name()
            .map(str::to_ascii_lowercase);
        let auth = sni.as_deref().and_then(|sni| {
            self.snapshot
                .load()
                .http
                .client_auth(sni)
                .filter(|a| a.settings.verify != VerifyClient::Off)
                .cloned()
        });
        let (Some(sni), Some(auth)) = (sni, auth) else {
            return Ok((start.into_stream(Arc::clone(base.config())).await?, None));
        };
        let prepared = self
            .prepared(base.config(), &auth)
            .map_err(io::Error::other)?;
        let tls = start.into_stream(Arc::clone(&prepared.config)).await?;
        let peer = check(
            &auth,
            &*prepared.strict,
            tls.get_ref().1.peer_certificates(),
        );
        debug!(%sni, secret = %auth.secret, ?peer, "client certificate checked");
        Ok((tls, Some(Arc::new(ConnCert { sni, auth, peer }))))
    }

    fn prepared(
        &self,
        base: &Arc<ServerConfig>,
        auth: &ClientAuth,
    ) -> Result<Arc<Prepared>, rustls::Error> {
        let key = (Arc::as_ptr(base) as usize, auth.id);
        let mut configs = self.configs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = configs.get(&key) {
            return Ok(Arc::clone(p));
        }
        let prepared = Arc::new(prepare(base, auth)?);
        if configs.len() >= MAX_CONFIGS {
            configs.clear();
        }
        configs.insert(key, Arc::clone(&prepared));
        Ok(prepared)
    }
}

/// `base` asking for a client certificate of `auth`'s CA.
fn prepare(base: &ServerConfig, auth: &ClientAuth) -> Result<Prepared, rustls::Error> {
    let provider = Arc::clone(base.crypto_provider());
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(auth.cas.iter().cloned());
    let hints = roots.subjects();
    let roots = Arc::new(roots);
    let strict: Arc<dyn ClientCertVerifier> = if roots.is_empty() {
        Arc::new(Lenient {
            provider: Arc::clone(&provider),
            hints: Vec::new(),
            accept: false,
        })
    } else {
        WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?
    };
    let lenient = Arc::new(Lenient {
        provider: Arc::clone(&provider),
        hints,
        accept: true,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(lenient)
        .with_cert_resolver(Arc::clone(&base.cert_resolver));
    config.alpn_protocols.clone_from(&base.alpn_protocols);
    config.ignore_client_order = base.ignore_client_order;
    config.ticketer = Arc::clone(&base.ticketer);
    config.session_storage = Arc::clone(&base.session_storage);
    config.send_tls13_tickets = base.send_tls13_tickets;
    config.max_early_data_size = base.max_early_data_size;
    Ok(Prepared {
        config: Arc::new(config),
        strict,
    })
}

/// Checks what the client sent against the CA (`strict`) and `auth-tls-verify-depth`.
fn check(
    auth: &ClientAuth,
    strict: &dyn ClientCertVerifier,
    chain: Option<&[CertificateDer<'static>]>,
) -> PeerCert {
    let Some((leaf, intermediates)) = chain.and_then(<[_]>::split_first) else {
        return PeerCert::Missing;
    };
    let subject = subject_dn(leaf).unwrap_or_default();
    let invalid = |reason: String| PeerCert::Invalid {
        leaf: leaf.clone(),
        subject: subject.clone(),
        reason,
    };
    if let Err(e) = strict.verify_client_cert(leaf, intermediates, UnixTime::now()) {
        return invalid(e.to_string());
    }
    let above = intermediates
        .iter()
        .filter(|c| !auth.cas.iter().any(|a| a.as_ref() == c.as_ref()))
        .count();
    if above > auth.settings.depth as usize {
        return invalid(format!(
            "chain of {above} intermediates is deeper than auth-tls-verify-depth {}",
            auth.settings.depth
        ));
    }
    PeerCert::Valid {
        leaf: leaf.clone(),
        subject,
    }
}

/// Asks for a client certificate without requiring one, takes any at the handshake (so
/// it never fails over it; [`check`] decides after), and still verifies the handshake
/// signatures, so the client holds the key of what it sent. With `accept: false`, refuses
/// every certificate (a CA nothing could be parsed from).
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    hints: Vec<DistinguishedName>,
    accept: bool,
}

impl ClientCertVerifier for Lenient {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.accept {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::General("no usable CA certificate".into()))
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What `auth-tls-pass-certificate-to-upstream` does to a request's headers: the
/// client's own `ssl-client-cert` is dropped, and the checked certificate sent instead.
#[derive(Debug, Default)]
pub struct PassCert(Option<Option<HeaderValue>>);

/// The `ssl-client-cert` header.
static SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("ssl-client-cert");

impl PassCert {
    /// Applies it to the headers going upstream.
    pub fn apply(self, headers: &mut hyper::HeaderMap) {
        if let Some(value) = self.0 {
            headers.remove(&SSL_CLIENT_CERT);
            if let Some(v) = value {
                headers.insert(SSL_CLIENT_CERT.clone(), v);
            }
        }
    }
}

/// Checks a request to `host` (no port) against the host's client certificate
/// requirement, if it has one: `Err` is the answer (421, 400, 403, or the error page's
/// 302); `Ok` says what to send upstream. `extensions` are the request's (they carry the
/// connection's [`ConnCert`] on connections that asked for one).
pub fn check_request(
    snapshot: &Snapshot,
    host: &str,
    tls: bool,
    extensions: &hyper::http::Extensions,
) -> Result<PassCert, Box<Response<Body>>> {
    let Some(auth) = snapshot.http.client_auth(host) else {
        return Ok(PassCert::default());
    };
    let conn = extensions.get::<Arc<ConnCert>>().map(|c| &**c);
    let refuse = |status: StatusCode, text: &'static str| {
        let mut resp = Response::new(full(text));
        *resp.status_mut() = status;
        Box::new(resp)
    };
    let to_error_page = |text| match auth.settings.error_page.as_deref() {
        Some(url) => {
            let mut resp = Response::new(full("302 found\n"));
            *resp.status_mut() = StatusCode::FOUND;
            if let Ok(v) = HeaderValue::try_from(url) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Box::new(resp)
        }
        None => refuse(StatusCode::BAD_REQUEST, text),
    };
    match decide(auth, host, tls, conn) {
        Decision::Serve(leaf) => {
            Ok(PassCert(auth.settings.pass_certificate.then(|| {
                leaf.and_then(|l| HeaderValue::try_from(escaped_pem(&l)).ok())
            })))
        }
        Decision::Misdirected => Err(refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "421 misdirected request: this host requires a client certificate; connect with its name (SNI)\n",
        )),
        Decision::NoCertificate => Err(to_error_page(
            "400 bad request: no required SSL certificate was sent\n",
        )),
        Decision::BadCertificate => Err(to_error_page(
            "400 bad request: the SSL certificate error\n",
        )),
        Decision::Unauthorized => Err(refuse(
            StatusCode::FORBIDDEN,
            "403 forbidden: client certificate unauthorized\n",
        )),
    }
}

/// The `ssl-client-cert` header value: the leaf as PEM, URL-escaped as nginx's
/// `$ssl_client_escaped_cert` (every byte but `A-Z a-z 0-9 - . _ ~` as `%XX`).
pub fn escaped_pem(leaf: &CertificateDer<'_>) -> String {
    let mut text = String::from("-----BEGIN CERTIFICATE-----\n");
    let b64 = base64(leaf.as_ref());
    for line in b64.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap_or_default());
        text.push('\n');
    }
    text.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The subject of a certificate as an RFC 2253 string (`CN=client,O=Example`, last RDN
/// first), as nginx's `$ssl_client_s_dn`. `None` if the DER is not a certificate.
pub fn subject_dn(cert: &CertificateDer<'_>) -> Option<String> {
    let (cert, _) = der(cert.as_ref(), 0x30)?;
    let (tbs, _) = der(cert, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der(rest, 0xa0)?.1; // version
    }
    rest = der(rest, 0x02)?.1; // serialNumber
    rest = der(rest, 0x30)?.1; // signature
    rest = der(rest, 0x30)?.1; // issuer
    rest = der(rest, 0x30)?.1; // validity
    let (mut name, _) = der(rest, 0x30)?; // subject
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (mut set, next) = der(name, 0x31)?;
        name = next;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (atv, next) = der(set, 0x30)?;
            set = next;
            let (oid, value) = der(atv, 0x06)?;
            let (tag, text) = (value.first()?, der_any(value)?);
            let key = match oid {
                [0x55, 0x04, 0x03] => "CN".to_owned(),
                [0x55, 0x04, 0x06] => "C".to_owned(),
                [0x55, 0x04, 0x07] => "L".to_owned(),
                [0x55, 0x04, 0x08] => "ST".to_owned(),
                [0x55, 0x04, 0x0a] => "O".to_owned(),
                [0x55, 0x04, 0x0b] => "OU".to_owned(),
                [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".to_owned(),
                [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".to_owned(),
                other => other.iter().fold(String::from("OID."), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                }),
            };
            // UTF8String, PrintableString, IA5String, T61String as text; others as hex.
            let value = if matches!(tag, 0x0c | 0x13 | 0x16 | 0x14) {
                escape_dn(&String::from_utf8_lossy(text))
            } else {
                text.iter().fold(String::from("#"), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                })
            };
            parts.push(format!("{key}={value}"));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// RFC 2253 escaping of an attribute value.
fn escape_dn(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && matches!(c, ' ' | '#')) || (i == last && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One DER element with tag `tag` at the start of `input`: (its contents, what follows).
fn der(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let (len, header): (usize, usize) = match *input.get(1)? {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 => (usize::from(*input.get(2)?), 3),
        0x82 => (
            usize::from(*input.get(2)?) << 8 | usize::from(*input.get(3)?),
            4,
        ),
        0x83 => (
            usize::from(*input.get(2)?) << 16
                | usize::from(*input.get(3)?) << 8
                | usize::from(*input.get(4)?),
            5,
        ),
        _ => return None,
    };
    let end = header.checked_add(len)?;
    Some((input.get(header..end)?, input.get(end..)?))
}

/// The contents of the one DER element of `input`, whatever its tag.
fn der_any(input: &[u8]) -> Option<&[u8]> {
    der(input, *input.first()?).map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dn: &[(rcgen::DnType, &str)]) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn subjects_read_as_rfc2253_last_rdn_first() {
        use rcgen::DnType as T;
        for (dn, want) in [
            (vec![(T::CommonName, "client.test")], "CN=client.test"),
            (
                vec![
                    (T::CountryName, "DE"),
                    (T::OrganizationName, "Example, Inc"),
                    (T::CommonName, "alice"),
                ],
                "CN=alice,O=Example\\, Inc,C=DE",
            ),
            (vec![], ""),
        ] {
            assert_eq!(subject_dn(&cert(&dn)).as_deref(), Some(want), "{dn:?}");
        }
        assert_eq!(subject_dn(&CertificateDer::from(vec![0x30, 0x05, 1])), None);
    }

    #[test]
    fn the_certificate_header_is_url_escaped_pem() {
        let leaf = cert(&[(rcgen::DnType::CommonName, "c")]);
        let escaped = escaped_pem(&leaf);
        assert!(
            escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
            "{escaped}"
        );
        assert!(
            escaped.ends_with("-----END%20CERTIFICATE-----%0A"),
            "{escaped}"
        );
        assert!(!escaped.contains(['/', '+', '=', ' ', '\n']), "{escaped}");
        // Unescaped, it is the certificate's PEM.
        let mut pem = Vec::new();
        let bytes = escaped.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                pem.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                pem.push(bytes[i]);
                i += 1;
            }
        }
        let parsed = rustls_pki_types::pem::PemObject::from_pem_slice(&pem);
        let parsed: CertificateDer<'_> = parsed.unwrap();
        assert_eq!(parsed, leaf);
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        for (input, want) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"\xfb\xff", "+/8="),
        ] {
            assert_eq!(base64(input), want);
        }
    }
}
