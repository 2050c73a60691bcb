//! `server-alias`: a comma-separated list of host names that answer with the paths of the
//! Ingress's host (ingress-nginx adds them to the `server_name` of its server). Which
//! aliases take effect is decided when all Ingresses are merged (`config::alias`).

use crate::snapshot::policy::RoutePolicy;

/// Parses the list: exact DNS names (lowercased; a trailing `.` dropped); invalid entries
/// are skipped with the message, the others kept.
pub(super) fn parse(value: &str, p: &mut RoutePolicy) -> Result<(), String> {
    let mut bad = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let host = entry
            .strip_suffix('.')
            .unwrap_or(entry)
            .to_ascii_lowercase();
        let valid = host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if valid {
            if !p.server_alias.contains(&host) {
                p.server_alias.push(host);
            }
        } else {
            bad.push(format!(
                "{entry:?} is not a host name (wildcards are not aliases)"
            ));
        }
    }
    match (bad.is_empty(), p.server_alias.is_empty()) {
        (true, false) => Ok(()),
        (true, true) => Err("no host name given; ignored".to_owned()),
        (false, _) => Err(format!("{}; skipped", bad.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_host_names() {
        for (value, want, ok) in [
            ("bar", &["bar"][..], true),
            ("bar, Baz.Example.com.", &["bar", "baz.example.com"], true),
            ("bar,bar", &["bar"], true),
            ("*.bar.com, ok.com", &["ok.com"], false),
            ("a b", &[], false),
            ("-a.com", &[], false),
            (" , ", &[], false),
            ("$host", &[], false),
        ] {
            let mut p = RoutePolicy::default();
            let got = parse(value, &mut p);
            assert_eq!(p.server_alias, want, "{value:?}");
            assert_eq!(got.is_ok(), ok, "{value:?}: {got:?}");
        }
    }
}
