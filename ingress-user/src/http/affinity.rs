//! Cookie session affinity on the request path: which endpoint a request is held to before
//! forwarding, and the `Set-Cookie` after. The decisions are
//! [`Affinity`](crate::snapshot::affinity::Affinity)'s (pure); this module feeds them the
//! request, the endpoints, random keys and the clock.

use std::{
    net::SocketAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use hyper::header::{self, HeaderMap, HeaderValue};

use super::balance::Balancer;
use crate::snapshot::{affinity::Affinity, canary::request_cookie};

/// How many fresh keys a balanced session tries to find one naming the endpoint a retry
/// landed on; with n endpoints each key has a 1/n chance, so 64 fail only for very many.
const KEY_TRIES: usize = 64;

/// What the router keeps of a request to a backend with `affinity: cookie`.
#[derive(Debug)]
pub struct Session {
    /// The value of the session cookie the client sent, if any.
    cookie: Option<String>,
    /// The matched rule's path (the cookie's default `Path`).
    path: String,
    /// Whether the client came over TLS (`Secure`).
    https: bool,
    /// Its `User-Agent` (for `session-cookie-conditional-samesite-none`).
    user_agent: Option<String>,
}

impl Session {
    /// The session of a request with `headers`, matched by the rule for `path`.
    pub fn new(aff: &Affinity, headers: &HeaderMap, path: &str, https: bool) -> Self {
        Self {
            cookie: request_cookie(headers, &aff.name).map(str::to_owned),
            path: path.to_owned(),
            https,
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

/// Where a request goes before forwarding, and the cookie a new session gets.
#[derive(Debug, Default)]
pub struct Plan {
    /// The endpoint to try first (`None`: the balancer's pick).
    pub target: Option<SocketAddr>,
    /// A new balanced session's cookie value (naming `target`).
    new_value: Option<String>,
}

/// The endpoint the session's cookie names among `endpoints`, or a new session.
pub fn plan(aff: &Affinity, s: &Session, endpoints: &[SocketAddr], balancer: &Balancer) -> Plan {
    if let Some(addr) = s.cookie.as_deref().and_then(|v| aff.lookup(v, endpoints)) {
        return Plan {
            target: Some(addr),
            new_value: None,
        };
    }
    // Persistent: the balancer picks, the cookie names what answered (see `set_cookie`).
    match aff.new_session(endpoints, balancer.key(), None) {
        Some((addr, value)) => Plan {
            target: Some(addr),
            new_value: Some(value),
        },
        None => Plan::default(),
    }
}

/// The `Set-Cookie` after the request was answered by `tried`: a new session's cookie, or,
/// with `session-cookie-change-on-failure`, one naming the endpoint a retry landed on.
/// `None` when the client's cookie still holds.
pub fn set_cookie(
    aff: &Affinity,
    s: &Session,
    plan: &Plan,
    tried: SocketAddr,
    endpoints: &[SocketAddr],
    balancer: &Balancer,
) -> Option<HeaderValue> {
    let value = match (plan.target, &plan.new_value) {
        (Some(t), None) if t == tried || !aff.change_on_failure => return None,
        (Some(t), Some(v)) if t == tried => v.clone(),
        _ => aff.value_for(
            tried,
            endpoints,
            std::iter::repeat_with(|| balancer.key()).take(KEY_TRIES),
        )?,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let line = aff.set_cookie(&value, &s.path, s.https, s.user_agent.as_deref(), now);
    HeaderValue::try_from(line).ok()
}
