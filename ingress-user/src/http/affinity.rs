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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{http::balance::Balance, snapshot::affinity::Mode};

    fn eps() -> Vec<SocketAddr> {
        (1..=3)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 8080)))
            .collect()
    }

    fn session() -> Session {
        Session {
            cookie: None,
            path: "/".into(),
            https: false,
            user_agent: None,
        }
    }

    /// The cookie value of a `Set-Cookie` line.
    fn value(line: &HeaderValue) -> String {
        let line = line.to_str().unwrap();
        line.split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned()
    }

    #[test]
    fn a_cookie_is_set_for_new_sessions_and_moved_only_on_failure_when_asked() {
        let (a, b) = (eps()[0], eps()[1]);
        let balancer = Balancer::new(Balance::RoundRobin);
        let balanced = Affinity {
            enabled: true,
            ..Affinity::default()
        };
        let key_for_a = (0..)
            .map(|k: u64| format!("{k:016x}00000000"))
            .find(|v| balanced.lookup(v, &eps()) == Some(a))
            .unwrap();
        // (case, mode, change-on-failure, plan, endpoint that answered, cookie names it?)
        for (case, mode, change, plan, tried, want) in [
            (
                "sticky held",
                Mode::Balanced,
                false,
                (Some(a), None),
                a,
                false,
            ),
            (
                "sticky failed over",
                Mode::Balanced,
                false,
                (Some(a), None),
                b,
                false,
            ),
            (
                "sticky failed over, change",
                Mode::Balanced,
                true,
                (Some(a), None),
                b,
                true,
            ),
            (
                "persistent failed over, change",
                Mode::Persistent,
                true,
                (Some(a), None),
                b,
                true,
            ),
            (
                "new balanced session",
                Mode::Balanced,
                false,
                (Some(a), Some(key_for_a.clone())),
                a,
                true,
            ),
            (
                "new balanced session, retried",
                Mode::Balanced,
                false,
                (Some(a), Some(key_for_a.clone())),
                b,
                true,
            ),
            (
                "new persistent session",
                Mode::Persistent,
                false,
                (None, None),
                b,
                true,
            ),
        ] {
            let aff = Affinity {
                mode,
                change_on_failure: change,
                ..balanced.clone()
            };
            let plan = Plan {
                target: plan.0,
                new_value: plan.1,
            };
            let got = set_cookie(&aff, &session(), &plan, tried, &eps(), &balancer);
            assert_eq!(got.is_some(), want, "{case}");
            if let Some(line) = got {
                assert_eq!(aff.lookup(&value(&line), &eps()), Some(tried), "{case}");
            }
        }
    }

    #[test]
    fn a_valid_cookie_holds_and_an_unknown_one_starts_a_session() {
        let balancer = Balancer::new(Balance::RoundRobin);
        let aff = Affinity {
            enabled: true,
            mode: Mode::Persistent,
            ..Affinity::default()
        };
        let mut s = session();
        let fresh = plan(&aff, &s, &eps(), &balancer);
        assert_eq!(fresh.target, None, "persistent: the balancer picks");
        let line = set_cookie(&aff, &s, &fresh, eps()[2], &eps(), &balancer).unwrap();
        s.cookie = Some(value(&line));
        assert_eq!(plan(&aff, &s, &eps(), &balancer).target, Some(eps()[2]));
        assert_eq!(
            plan(&aff, &s, &eps()[..2], &balancer).target,
            None,
            "its endpoint left"
        );
        let balanced = Affinity {
            mode: Mode::Balanced,
            ..aff
        };
        let fresh = plan(&balanced, &session(), &eps(), &balancer);
        assert!(fresh.target.is_some() && fresh.new_value.is_some());
    }
}
