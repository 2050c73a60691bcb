//! `server-alias` across Ingresses: which alias names answer with which host's paths.
//!
//! As ingress-nginx: an alias never takes over a host that an Ingress rule defines (its
//! controller removes such aliases, "to avoid conflicts"), whichever Ingress is older; an
//! alias already given to another host by an older Ingress stays there. An alias answers
//! with every path of its host, from all Ingresses (it joins the host's nginx server).

use super::{Problem, ingress::Translated, problem::Severity};
use crate::snapshot::{
    FastMap,
    routes::{HostMatch, RouteTable},
};

/// The aliases of `ingresses` (served, oldest first) over the merged `table`, and the
/// Problems of those that do not take effect.
pub fn merge<'a>(
    ingresses: impl IntoIterator<Item = &'a Translated>,
    table: &RouteTable,
    prefix: &str,
) -> (FastMap<String, HostMatch>, Vec<Problem>) {
    let mut aliases: FastMap<String, HostMatch> = FastMap::default();
    let mut problems = Vec::new();
    for t in ingresses {
        if t.aliases.is_empty() {
            continue;
        }
        let mut problem = |message: String| {
            problems.push(Problem {
                object: t.object.clone(),
                field: Some(format!("metadata.annotations[\"{prefix}/server-alias\"]")),
                kind: "alias_conflict",
                message,
                severity: Severity::Warning,
            });
        };
        let Some(target) = &t.alias_target else {
            problem(
                "the Ingress has no rule with a host and paths, so its aliases answer nothing"
                    .to_owned(),
            );
            continue;
        };
        for alias in &t.aliases {
            if table.host(&HostMatch::Exact(alias.clone())).is_some() {
                problem(format!(
                    "{alias} is a host an Ingress rule defines; an alias never takes it over, so this alias is ignored"
                ));
                continue;
            }
            match aliases.get(alias) {
                Some(existing) if existing != target => problem(format!(
                    "{alias} is already an alias of {existing} (an older Ingress); ignored here"
                )),
                Some(_) => {}
                None => {
                    aliases.insert(alias.clone(), target.clone());
                }
            }
        }
    }
    (aliases, problems)
}
