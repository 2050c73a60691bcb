//! `canary` and `canary-*`, parsed into [`CanaryRules`] (the merge of a host makes a canary
//! Ingress's paths alternatives of the main Ingress's; see `config::ingress::merge_host`).
//! Names and meanings: ingress-nginx's annotations.md, "Canary".

use std::sync::Arc;

use hyper::header::HeaderName;

use super::boolean;
use crate::snapshot::{
    canary::{CanaryRules, Pattern},
    policy::RoutePolicy,
};

/// Annotations other than these are ignored on a canary Ingress: the main Ingress's apply
/// to both (annotations.md: "all the other non-canary annotations will be ignored ...
/// except load-balance, upstream-hash-by, and annotations related to session affinity").
pub(super) fn applies_to_canary(name: &str) -> bool {
    name.starts_with("canary")
        || name.starts_with("affinity")
        || name.starts_with("session-cookie-")
        || matches!(name, "load-balance" | "upstream-hash-by")
}

/// Why another annotation of a canary Ingress is ignored.
pub(super) const IGNORED_ON_CANARY: &str = "ignored on a canary Ingress: the main Ingress's annotations apply to its canary, as in ingress-nginx";

fn rules(p: &mut RoutePolicy) -> &mut CanaryRules {
    Arc::make_mut(p.canary.get_or_insert_with(Arc::default))
}

pub(super) fn canary(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    rules(p).enabled = boolean(value)?;
    Ok(())
}

pub(super) fn by_header(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let name = HeaderName::from_bytes(value.as_bytes()).map_err(|_| {
        format!("{value:?} is not a header name; requests are not routed by header")
    })?;
    rules(p).header = Some(name);
    Ok(())
}

pub(super) fn by_header_value(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(format!(
            "{value:?} contains {c:?}, which no header value holds; ignored"
        ));
    }
    rules(p).header_value = (!value.is_empty()).then(|| value.to_owned());
    Ok(())
}

/// `canary-by-header-pattern`: a regex (Rust `regex` syntax, the common subset of PCRE
/// without look-around or backreferences), compiled once here with a size limit.
pub(super) fn by_header_pattern(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let pattern = Pattern::new(value).map_err(|e| {
        let why = e.to_string();
        format!(
            "{value:?} is not a usable regex ({}); requests are not matched by pattern",
            why.lines().last().unwrap_or(&why).trim()
        )
    })?;
    rules(p).header_pattern = Some(pattern);
    Ok(())
}

pub(super) fn by_cookie(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let separator = |c: char| "()<>@,;:\\\"/[]?={}".contains(c);
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_graphic() && !separator(c)) {
        return Err(format!(
            "{value:?} is not a cookie name; requests are not routed by cookie"
        ));
    }
    rules(p).cookie = Some(value.to_owned());
    Ok(())
}

fn whole(value: &str) -> Option<u32> {
    (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse().ok())
        .flatten()
}

pub(super) fn weight(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let w = whole(value).ok_or_else(|| {
        format!("{value:?} is not a whole number (0 to the total weight); weight 0 is used")
    })?;
    rules(p).weight = w;
    Ok(())
}

pub(super) fn weight_total(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    match whole(value) {
        Some(t) if t >= 100 => {
            rules(p).weight_total = t;
            Ok(())
        }
        Some(_) => Err(format!(
            "{value:?} is below 100, which ingress-nginx's balancer treats as 100; 100 is used"
        )),
        None => Err(format!(
            "{value:?} is not a whole number; the total weight 100 is used"
        )),
    }
}

/// Drops the rules unless `canary: "true"` enabled them.
pub(super) fn finish(p: &mut RoutePolicy) {
    if p.canary.as_ref().is_some_and(|c| !c.enabled) {
        p.canary = None;
    }
}
