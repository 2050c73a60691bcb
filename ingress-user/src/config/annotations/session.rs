//! `affinity` and `session-cookie-*`: cookie session affinity, parsed into
//! [`Affinity`]. ingress-nginx's
//! `internal/ingress/annotations/sessionaffinity` reads the same names; a bad value keeps
//! the default, with a Problem.

use super::boolean;
use crate::snapshot::{
    affinity::{Affinity, Mode, SameSite},
    policy::RoutePolicy,
};

/// The settings, created on first use (kept only if `affinity: cookie`).
fn settings(p: &mut RoutePolicy) -> &mut Affinity {
    p.affinity.get_or_insert_with(Box::default)
}

/// `affinity`: only `cookie` exists.
pub(super) fn affinity(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    if value != "cookie" {
        return Err(format!(
            "{value:?} is not an affinity type (only \"cookie\" exists); no session affinity"
        ));
    }
    settings(p).enabled = true;
    Ok(())
}

pub(super) fn affinity_mode(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    settings(p).mode = match value {
        "balanced" => Mode::Balanced,
        "persistent" => Mode::Persistent,
        _ => {
            return Err(format!(
                "{value:?} is not an affinity mode (balanced or persistent); balanced is used"
            ));
        }
    };
    Ok(())
}

/// A cookie attribute value: visible ASCII without `;` or `,` (which would end or split
/// the attribute).
fn attribute(value: &str, what: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err(format!("an empty {what} is not usable; ignored"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, ';' | ','))
    {
        return Err(format!(
            "{value:?} contains {c:?}, which a cookie {what} cannot hold; ignored"
        ));
    }
    Ok(value.to_owned())
}

/// `session-cookie-name`: an RFC 6265 token.
pub(super) fn name(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let separator = |c: char| "()<>@,;:\\\"/[]?={}".contains(c);
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_graphic() && !separator(c)) {
        return Err(format!(
            "{value:?} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~); INGRESSCOOKIE is used"
        ));
    }
    settings(p).name = value.to_owned();
    Ok(())
}

pub(super) fn path(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err(format!(
            "{value:?} is not a path starting with /; the rule's path is used"
        ));
    }
    settings(p).path = Some(attribute(value, "path")?);
    Ok(())
}

pub(super) fn domain(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    settings(p).domain = Some(attribute(value, "domain")?);
    Ok(())
}

/// Whole seconds, as ingress-nginx's `^\d+$` check.
fn seconds(value: &str) -> Result<u64, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{value:?} is not a whole number of seconds; the cookie lasts for the browser session"
        ));
    }
    value
        .parse()
        .map_err(|_| format!("{value:?} is too large; ignored"))
}

pub(super) fn max_age(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    settings(p).max_age = Some(seconds(value)?);
    Ok(())
}

pub(super) fn expires(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    settings(p).expires = Some(seconds(value)?);
    Ok(())
}

pub(super) fn samesite(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let s = SameSite::parse(value).ok_or_else(|| {
        format!("{value:?} is not a SameSite value (None, Lax or Strict); no SameSite attribute")
    })?;
    settings(p).samesite = Some(s);
    Ok(())
}

pub(super) fn conditional_samesite_none(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    settings(p).conditional_samesite_none = boolean(value)?;
    Ok(())
}

pub(super) fn secure(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    settings(p).secure = boolean(value)?;
    Ok(())
}

/// `affinity-canary-behavior` (on a canary Ingress): `sticky` (default) or `legacy`.
pub(super) fn canary_behavior(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    settings(p).legacy_canary = match value {
        "sticky" => false,
        "legacy" => true,
        _ => {
            return Err(format!(
                "{value:?} is not a canary behaviour (sticky or legacy); sticky is used"
            ));
        }
    };
    Ok(())
}

pub(super) fn change_on_failure(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    settings(p).change_on_failure = boolean(value)?;
    Ok(())
}

/// With `use-regex` and no `session-cookie-path`, the cookie's `Path` would be a regex
/// (ingress-nginx logs "session-cookie-path should be set when use-regex is true").
pub(super) fn regex_without_path(p: &RoutePolicy) -> Option<String> {
    let a = p.affinity()?;
    (p.use_regex && a.path.is_none()).then(|| {
        "use-regex is set but session-cookie-path is not: the cookie's Path is the rule's path as written, regex and all; set session-cookie-path".to_owned()
    })
}

/// Drops the settings unless `affinity: cookie` enabled them.
pub(super) fn finish(p: &mut RoutePolicy) {
    if p.affinity.as_ref().is_some_and(|a| !a.enabled) {
        p.affinity = None;
    }
}
