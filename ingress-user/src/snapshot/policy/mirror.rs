//! `mirror-target`: where copies of an Ingress's requests go, parsed strictly (the
//! annotation was an nginx configuration injection vector: its value went into a
//! `proxy_pass` line). Pure.

use std::{fmt, net::IpAddr, str::FromStr};

/// A `mirror-target` URL: `http://HOST[:PORT][/PATH][$request_uri]`. HOST is an IP
/// address or a Service's cluster DNS name (`svc`, `svc.ns`, `svc.ns.svc`,
/// `svc.ns.svc.cluster.local`), resolved when the Snapshot is built; nothing is looked up
/// in DNS. `$request_uri` (only at the end) appends the original path and query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorTarget {
    /// Where copies are sent.
    pub host: MirrorHost,
    /// The port (80 when the URL has none).
    pub port: u16,
    /// The path before `$request_uri` (may be empty when it is appended).
    pub path: String,
    /// Whether the original request's path and query are appended.
    pub append_uri: bool,
    /// The URL's `host[:port]`, the copies' default `Host`.
    pub authority: String,
}

/// The host of a [`MirrorTarget`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorHost {
    /// An address.
    Ip(IpAddr),
    /// A Service: (namespace if the name gives one, name).
    Service(Option<String>, String),
}

/// Why a `mirror-target` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct MirrorTargetError(pub String);

impl fmt::Display for MirrorTargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MirrorTarget {
    type Err = MirrorTargetError;

    fn from_str(s: &str) -> Result<Self, MirrorTargetError> {
        let err = |why: &str| MirrorTargetError(format!("{s:?}: {why}"));
        if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(err(&format!("{c:?} is not allowed in a URL")));
        }
        let (s, append_uri) = match s.strip_suffix("$request_uri") {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        if s.contains('$') {
            return Err(err(
                "nginx variables are not expanded; only a final $request_uri is",
            ));
        }
        if s.starts_with("https://") {
            return Err(err("copies are sent over plain HTTP only; use http://"));
        }
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| err("not an http:// URL"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains(['@', '#']) || path.contains('#') {
            return Err(err("user information and fragments are not allowed"));
        }
        let uri: hyper::Uri = format!("http://{authority}/")
            .parse()
            .map_err(|_| err("not a host[:port]"))?;
        let host = uri.host().ok_or_else(|| err("no host"))?;
        let port = match authority
            .strip_prefix(host)
            .and_then(|r| r.strip_prefix(':'))
        {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| err("not a port number"))?,
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host = match bare.parse::<IpAddr>() {
            Ok(ip) => MirrorHost::Ip(ip),
            Err(_) => service_name(&host.to_ascii_lowercase()).ok_or_else(|| {
                err("the host must be an IP address or a Service's cluster name (svc, svc.ns, svc.ns.svc[.cluster.local])")
            })?,
        };
        if !path.is_empty() && !path.starts_with('/') {
            return Err(err("the path must start with /"));
        }
        Ok(Self {
            host,
            port,
            path: path.to_owned(),
            append_uri,
            authority: authority.to_ascii_lowercase(),
        })
    }
}

/// `svc`, `svc.ns`, `svc.ns.svc` or `svc.ns.svc.cluster.local` as a Service reference.
fn service_name(host: &str) -> Option<MirrorHost> {
    let labels: Vec<&str> = host.split('.').collect();
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !labels.iter().all(|l| label(l)) {
        return None;
    }
    match labels.as_slice() {
        [svc] => Some(MirrorHost::Service(None, (*svc).to_owned())),
        [svc, ns] | [svc, ns, "svc"] | [svc, ns, "svc", "cluster", "local"] => Some(
            MirrorHost::Service(Some((*ns).to_owned()), (*svc).to_owned()),
        ),
        _ => None,
    }
}

impl MirrorTarget {
    /// The path and query a copy of a request for `original` (path and query) goes to.
    pub fn path_for(&self, original: &str) -> String {
        let mut out = self.path.clone();
        if self.append_uri {
            if out.ends_with('/') && original.starts_with('/') {
                out.pop();
            }
            out.push_str(original);
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_strictly() {
        let svc =
            |ns: Option<&str>, n: &str| MirrorHost::Service(ns.map(str::to_owned), n.to_owned());
        for (given, want) in [
            (
                "http://10.0.0.1/mirror",
                Some((
                    MirrorHost::Ip("10.0.0.1".parse().unwrap()),
                    80,
                    "/mirror",
                    false,
                )),
            ),
            (
                "http://127.0.0.1:8080$request_uri",
                Some((MirrorHost::Ip("127.0.0.1".parse().unwrap()), 8080, "", true)),
            ),
            (
                "http://[::1]:81/a$request_uri",
                Some((MirrorHost::Ip("::1".parse().unwrap()), 81, "/a", true)),
            ),
            ("http://mirror", Some((svc(None, "mirror"), 80, "", false))),
            (
                "http://mirror.ns:9000/x",
                Some((svc(Some("ns"), "mirror"), 9000, "/x", false)),
            ),
            (
                "http://Mirror.ns.svc.cluster.local/",
                Some((svc(Some("ns"), "mirror"), 80, "/", false)),
            ),
            ("https://test.env.com/$request_uri", None),
            ("http://test.env.com/", None),
            (
                "http://localhost/mirror",
                Some((svc(None, "localhost"), 80, "/mirror", false)),
            ),
            ("http://10.0.0.1/$host", None),
            ("http://10.0.0.1/a b", None),
            ("http://u@10.0.0.1/", None),
            ("ftp://10.0.0.1/", None),
            ("10.0.0.1", None),
            ("http://10.0.0.1:99999/", None),
        ] {
            let got = given.parse::<MirrorTarget>().ok();
            let got = got.map(|t| (t.host, t.port, t.path, t.append_uri));
            let want = want.map(|(h, p, path, a)| (h, p, path.to_owned(), a));
            assert_eq!(got, want, "{given}");
        }
    }

    #[test]
    fn copies_go_to_the_path_with_the_uri_appended() {
        for (target, original, want) in [
            ("http://10.0.0.1/mirror", "/x?y=1", "/mirror"),
            ("http://10.0.0.1$request_uri", "/x?y=1", "/x?y=1"),
            ("http://10.0.0.1/$request_uri", "/x", "/x"),
            ("http://10.0.0.1/m$request_uri", "/x", "/m/x"),
            ("http://10.0.0.1", "/x", "/"),
        ] {
            let t: MirrorTarget = target.parse().unwrap();
            assert_eq!(t.path_for(original), want, "{target} {original}");
        }
    }
}
