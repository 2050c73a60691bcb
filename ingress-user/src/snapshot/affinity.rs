//! Cookie session affinity (`affinity: cookie`): which endpoint a session cookie names,
//! the value a new session gets, and the `Set-Cookie` line. Pure: the router supplies the
//! endpoints, the clock and random keys.
//!
//! The cookie value never holds an address, only a hash, and is looked up among the
//! current endpoints, so a forged cookie reaches an endpoint or nothing (then the request
//! is balanced as if it had none):
//! - `persistent`: the hash of the endpoint address. A client keeps its endpoint as long
//!   as it exists; when it leaves, the client is balanced again and gets a new cookie.
//! - `balanced` (the default): a random session key, mapped to an endpoint by rendezvous
//!   hashing. Adding endpoints moves about 1/n of the sessions to the new ones (as
//!   ingress-nginx's consistent hash does); removing one moves only its sessions, which
//!   keep their cookie.
//!
//! The attributes follow ingress-nginx's `rootfs/etc/nginx/lua/balancer/sticky.lua`
//! (`set_cookie`) and lua-resty-cookie's order; the cases are those of
//! `test/e2e/annotations/affinity.go`.

use std::{fmt::Write as _, net::SocketAddr};

/// ingress-nginx's default `session-cookie-name`.
pub const DEFAULT_COOKIE_NAME: &str = "INGRESSCOOKIE";

/// `affinity-mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Sessions are redistributed a little when endpoints are added.
    #[default]
    Balanced,
    /// A session stays on its endpoint while it exists.
    Persistent,
}

/// `session-cookie-samesite`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=None`.
    None,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=Strict`.
    Strict,
}

impl SameSite {
    /// Parses a value case-insensitively.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::None, Self::Lax, Self::Strict]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(value))
    }

    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Lax => "Lax",
            Self::Strict => "Strict",
        }
    }
}

/// What the `affinity` and `session-cookie-*` annotations of an Ingress ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affinity {
    /// `affinity: cookie`; the other fields mean nothing without it.
    pub enabled: bool,
    /// `affinity-mode`.
    pub mode: Mode,
    /// `session-cookie-name`.
    pub name: String,
    /// `session-cookie-path`; default: the matched rule's path.
    pub path: Option<String>,
    /// `session-cookie-domain`.
    pub domain: Option<String>,
    /// `session-cookie-max-age`, seconds.
    pub max_age: Option<u64>,
    /// `session-cookie-expires`, seconds from now.
    pub expires: Option<u64>,
    /// `session-cookie-samesite`.
    pub samesite: Option<SameSite>,
    /// `session-cookie-conditional-samesite-none`: omit `SameSite=None` for browsers that
    /// reject it.
    pub conditional_samesite_none: bool,
    /// `session-cookie-secure`: `Secure` even on plain HTTP (HTTPS always sets it).
    pub secure: bool,
    /// `session-cookie-change-on-failure`: when the sticky endpoint failed and another
    /// answered, the cookie moves to that one.
    pub change_on_failure: bool,
    /// `affinity-canary-behavior: legacy` on a canary Ingress: its sessions are not kept on
    /// the canary (the default, `sticky`, keeps them).
    pub legacy_canary: bool,
    /// Which Ingress's sessions these are (a hash of its namespace/name, set when it is
    /// translated): part of every cookie value, so a main route and its canary tell their
    /// sessions apart (ingress-nginx's `backend_key`).
    pub tag: u32,
}

impl Default for Affinity {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: Mode::Balanced,
            name: DEFAULT_COOKIE_NAME.to_owned(),
            path: None,
            domain: None,
            max_age: None,
            expires: None,
            samesite: None,
            conditional_samesite_none: false,
            secure: false,
            change_on_failure: false,
            legacy_canary: false,
            tag: 0,
        }
    }
}

/// The [`Affinity::tag`] of an Ingress `namespace/name`.
pub fn tag_of(ingress: &str) -> u32 {
    let h = fnv1a(ingress.as_bytes());
    (h ^ (h >> 32)) as u32
}

/// FNV-1a, 64 bits: stable across processes and replicas (every controller replica must
/// map a cookie to the same endpoint), cheap, and enough to tell a Service's endpoints
/// apart. Not secret: knowing it only lets a client choose among real endpoints.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The hash of an endpoint address.
fn address_hash(addr: SocketAddr) -> u64 {
    fnv1a(addr.to_string().as_bytes())
}

/// A 64-bit mix (splitmix64's finalizer), for rendezvous weights.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The endpoint a balanced session key maps to: the highest rendezvous weight.
fn rendezvous(key: u64, endpoints: &[SocketAddr]) -> Option<SocketAddr> {
    endpoints
        .iter()
        .copied()
        .max_by_key(|a| (mix(key ^ address_hash(*a)), *a))
}

/// A cookie value: the session (16 hex digits) and the tag (8).
fn parse_value(value: &str) -> Option<(u64, u32)> {
    if value.len() != 24 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v = u64::from_str_radix(&value[..16], 16).ok()?;
    let tag = u32::from_str_radix(&value[16..], 16).ok()?;
    Some((v, tag))
}

impl Affinity {
    fn format_value(&self, v: u64) -> String {
        format!("{v:016x}{:08x}", self.tag)
    }

    /// Whether the session cookie `value` is one of these sessions (ingress-nginx's
    /// `is_affinitized`), whatever endpoint it names.
    pub fn holds(&self, value: &str) -> bool {
        parse_value(value).is_some_and(|(_, tag)| tag == self.tag)
    }

    /// The endpoint the session cookie `value` names among `endpoints`, if any.
    pub fn lookup(&self, value: &str, endpoints: &[SocketAddr]) -> Option<SocketAddr> {
        let (v, tag) = parse_value(value)?;
        if tag != self.tag {
            return None;
        }
        match self.mode {
            Mode::Persistent => endpoints.iter().copied().find(|a| address_hash(*a) == v),
            Mode::Balanced => rendezvous(v, endpoints),
        }
    }

    /// A new session: the endpoint to use and the cookie value naming it. Persistent
    /// sessions take `balanced` (the balancer's pick); balanced ones a fresh `key`.
    pub fn new_session(
        &self,
        endpoints: &[SocketAddr],
        key: u64,
        balanced: Option<SocketAddr>,
    ) -> Option<(SocketAddr, String)> {
        match self.mode {
            Mode::Persistent => balanced.map(|a| (a, self.format_value(address_hash(a)))),
            Mode::Balanced => rendezvous(key, endpoints).map(|a| (a, self.format_value(key))),
        }
    }

    /// A cookie value naming `addr` among `endpoints` (after a retry landed there):
    /// persistent, its hash; balanced, the first of `keys` that maps to it (`None` if
    /// none does).
    pub fn value_for(
        &self,
        addr: SocketAddr,
        endpoints: &[SocketAddr],
        keys: impl IntoIterator<Item = u64>,
    ) -> Option<String> {
        match self.mode {
            Mode::Persistent => Some(self.format_value(address_hash(addr))),
            Mode::Balanced => keys
                .into_iter()
                .find(|k| rendezvous(*k, endpoints) == Some(addr))
                .map(|k| self.format_value(k)),
        }
    }

    /// The `Set-Cookie` value for `value`: `route_path` is the matched rule's path (the
    /// default `Path`), `https` whether the client came over TLS, `user_agent` its
    /// `User-Agent`, `now` seconds since the Unix epoch (for `Expires`).
    pub fn set_cookie(
        &self,
        value: &str,
        route_path: &str,
        https: bool,
        user_agent: Option<&str>,
        now: u64,
    ) -> String {
        let mut out = format!("{}={value}", self.name);
        if let Some(expires) = self.expires {
            let _ = write!(
                out,
                "; Expires={}",
                cookie_time(now.saturating_add(expires))
            );
        }
        if let Some(max_age) = self.max_age {
            let _ = write!(out, "; Max-Age={max_age}");
        }
        if let Some(domain) = &self.domain {
            let _ = write!(out, "; Domain={domain}");
        }
        let _ = write!(out, "; Path={}", self.path.as_deref().unwrap_or(route_path));
        if self.secure || https {
            out.push_str("; Secure");
        }
        out.push_str("; HttpOnly");
        let samesite = self.samesite.filter(|s| {
            !(self.conditional_samesite_none
                && *s == SameSite::None
                && !same_site_none_compatible(user_agent.unwrap_or("")))
        });
        if let Some(s) = samesite {
            let _ = write!(out, "; SameSite={}", s.as_str());
        }
        out
    }
}

/// Whether a browser accepts `SameSite=None` (ingress-nginx's
/// `rootfs/etc/nginx/lua/util/same_site.lua`, after Chromium's list of incompatible
/// clients).
pub fn same_site_none_compatible(ua: &str) -> bool {
    !(ua.contains("Chrome/4")
        || ua.contains("Chrome/5")
        || ua.contains("Chrome/6")
        || ua.contains("CPU iPhone OS 12")
        || ua.contains("iPad; CPU OS 12")
        || (ua.contains("Macintosh")
            && ua.contains("Intel Mac OS X 10_14")
            && ua.contains("Safari")
            && !ua.contains("Chrome")))
}

/// nginx's `ngx.cookie_time`: `Thu, 18-Nov-10 11:27:35 GMT` (two-digit year).
pub fn cookie_time(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02}-{}-{:02} {:02}:{:02}:{:02} GMT",
        DAYS[usize::try_from(days % 7).unwrap_or(0)],
        MONTHS[usize::try_from(month - 1).unwrap_or(0)],
        year % 100,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 8080)))
            .collect()
    }

    #[test]
    fn cookie_time_is_nginx_format() {
        for (unix, want) in [
            (0, "Thu, 01-Jan-70 00:00:00 GMT"),
            (1_290_079_655, "Thu, 18-Nov-10 11:27:35 GMT"),
            (951_782_400, "Tue, 29-Feb-00 00:00:00 GMT"),
            (1_798_675_200, "Thu, 31-Dec-26 00:00:00 GMT"),
        ] {
            assert_eq!(cookie_time(unix), want, "{unix}");
        }
    }

    #[test]
    fn set_cookie_has_ingress_nginx_attributes_in_order() {
        let base = Affinity {
            enabled: true,
            name: "SERVERID".into(),
            ..Affinity::default()
        };
        let chrome_old = "Mozilla/5.0 Chrome/51.0.2704.103 Safari/537.36";
        let chrome_new = "Mozilla/5.0 Chrome/120.0.0.0 Safari/537.36";
        // (settings, route path, https, user agent, Set-Cookie)
        for (aff, path, https, ua, want) in [
            (
                base.clone(),
                "/",
                false,
                None,
                "SERVERID=v; Path=/; HttpOnly",
            ),
            (
                base.clone(),
                "/something",
                false,
                None,
                "SERVERID=v; Path=/something; HttpOnly",
            ),
            (
                base.clone(),
                "/",
                true,
                None,
                "SERVERID=v; Path=/; Secure; HttpOnly",
            ),
            (
                Affinity {
                    secure: true,
                    path: Some("/foo/bar".into()),
                    ..base.clone()
                },
                "/foo/.*",
                false,
                None,
                "SERVERID=v; Path=/foo/bar; Secure; HttpOnly",
            ),
            (
                Affinity {
                    expires: Some(172_800),
                    max_age: Some(259_200),
                    domain: Some("foo.com".into()),
                    ..base.clone()
                },
                "/",
                false,
                None,
                "SERVERID=v; Expires=Sat, 03-Jan-70 00:00:00 GMT; Max-Age=259200; Domain=foo.com; Path=/; HttpOnly",
            ),
            (
                Affinity {
                    samesite: Some(SameSite::Strict),
                    ..base.clone()
                },
                "/",
                false,
                None,
                "SERVERID=v; Path=/; HttpOnly; SameSite=Strict",
            ),
            (
                Affinity {
                    samesite: Some(SameSite::None),
                    conditional_samesite_none: true,
                    ..base.clone()
                },
                "/",
                true,
                Some(chrome_old),
                "SERVERID=v; Path=/; Secure; HttpOnly",
            ),
            (
                Affinity {
                    samesite: Some(SameSite::None),
                    conditional_samesite_none: true,
                    ..base.clone()
                },
                "/",
                true,
                Some(chrome_new),
                "SERVERID=v; Path=/; Secure; HttpOnly; SameSite=None",
            ),
            (
                Affinity {
                    samesite: Some(SameSite::None),
                    ..base.clone()
                },
                "/",
                false,
                Some(chrome_old),
                "SERVERID=v; Path=/; HttpOnly; SameSite=None",
            ),
        ] {
            assert_eq!(aff.set_cookie("v", path, https, ua, 0), want);
        }
    }

    #[test]
    fn same_site_none_incompatible_clients() {
        for (ua, ok) in [
            (
                "Mozilla/5.0 (Windows NT 10.0) Chrome/66.0 Safari/537.36",
                false,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0) Chrome/67.0 Safari/537.36",
                false,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0) Chrome/80.0 Safari/537.36",
                true,
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 12_0 like Mac OS X)",
                false,
            ),
            ("Mozilla/5.0 (iPad; CPU OS 12_1 like Mac OS X)", false),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 Version/13.0 Safari/605.1.15",
                false,
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15) Safari/605",
                true,
            ),
            ("curl/8.0", true),
        ] {
            assert_eq!(same_site_none_compatible(ua), ok, "{ua}");
        }
    }

    #[test]
    fn persistent_cookies_name_an_endpoint_while_it_exists() {
        let aff = Affinity {
            enabled: true,
            mode: Mode::Persistent,
            ..Affinity::default()
        };
        let all = eps(3);
        let (addr, value) = aff.new_session(&all, 0, Some(all[1])).unwrap();
        assert_eq!(addr, all[1]);
        assert_eq!(aff.lookup(&value, &all), Some(all[1]));
        // More endpoints: still the same one.
        assert_eq!(aff.lookup(&value, &eps(9)), Some(all[1]));
        // Its endpoint gone: no endpoint (the router balances and sets a new cookie).
        assert_eq!(aff.lookup(&value, &[all[0], all[2]]), None);
        // Forged or malformed values name nothing, nor another Ingress's sessions.
        for bad in ["", "zz", "0123456789abcdef", "10.0.0.2:8080", &value[..23]] {
            assert_eq!(aff.lookup(bad, &all), None, "{bad:?}");
            assert!(!aff.holds(bad), "{bad:?}");
        }
        assert!(aff.holds(&value));
        let other = Affinity {
            tag: tag_of("ns/other"),
            ..aff.clone()
        };
        assert!(!other.holds(&value));
        assert_eq!(other.lookup(&value, &all), None);
        assert_eq!(
            aff.value_for(all[2], &all, []),
            Some(aff.format_value(address_hash(all[2])))
        );
    }

    #[test]
    fn balanced_keys_stay_unless_their_endpoint_leaves_or_a_new_one_wins() {
        let aff = Affinity {
            enabled: true,
            ..Affinity::default()
        };
        let three = eps(3);
        let keys: Vec<u64> = (0..3000).map(|i| mix(i + 1)).collect();
        let mut per_endpoint = [0usize; 3];
        let mut moved_on_growth = 0;
        for k in &keys {
            let (addr, value) = aff.new_session(&three, *k, None).unwrap();
            assert_eq!(aff.lookup(&value, &three), Some(addr));
            per_endpoint[three.iter().position(|a| *a == addr).unwrap()] += 1;
            // One endpoint leaves: only its sessions move.
            let rest: Vec<_> = three.iter().copied().filter(|a| *a != three[0]).collect();
            let after = aff.lookup(&value, &rest).unwrap();
            if addr != three[0] {
                assert_eq!(after, addr);
            }
            // A fourth endpoint: a session either stays or moves to it.
            let four = aff.lookup(&value, &eps(4)).unwrap();
            if four != addr {
                assert_eq!(four, eps(4)[3]);
                moved_on_growth += 1;
            }
        }
        // Tolerance: an even spread is 1000 per endpoint and 750 moves; bounds far wider
        // than the spread of 3000 fixed keys, so this cannot flake.
        assert!(
            per_endpoint.iter().all(|n| (700..1300).contains(n)),
            "{per_endpoint:?}"
        );
        assert!((450..1050).contains(&moved_on_growth), "{moved_on_growth}");
        // A retry target gets a key that maps to it.
        let v = aff
            .value_for(three[2], &three, keys.iter().copied())
            .unwrap();
        assert_eq!(aff.lookup(&v, &three), Some(three[2]));
        assert_eq!(aff.value_for(three[2], &three, []), None);
    }
}
