//! Label and field selectors, as far as controllers use them: equality, inequality, existence.

use serde_json::Value;

/// A selector could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("unable to parse selector {0:?}")]
pub struct SelectorError(pub String);

#[derive(Clone, Debug, PartialEq)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

/// A parsed `labelSelector` or `fieldSelector`: every term must hold.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    terms: Vec<Term>,
}

impl Selector {
    /// Parse `a=b,c!=d,e,!f` (`==` is accepted for `=`). Set-based forms are refused.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let term = if let Some((k, v)) = part.split_once("!=") {
                Term::Ne(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==") {
                Term::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                Term::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some(k) = part.strip_prefix('!') {
                Term::Absent(k.trim().to_owned())
            } else if part.contains(' ') || part.contains('(') {
                return Err(SelectorError(s.to_owned()));
            } else {
                Term::Exists(part.to_owned())
            };
            terms.push(term);
        }
        Ok(Self { terms })
    }

    /// Whether the labels of `obj` satisfy this selector.
    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.matches_with(|k| {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    }

    /// Whether the fields of `obj` satisfy this selector (`metadata.name`, `metadata.namespace`,
    /// and any other dotted path to a string, e.g. `type` of a Secret).
    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.matches_with(|k| {
            let pointer = format!("/{}", k.replace('.', "/"));
            match obj.pointer(&pointer) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None if k == "metadata.namespace" => Some(String::new()),
                Some(Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            }
        })
    }

    fn matches_with(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| match t {
            Term::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
            Term::Ne(k, v) => get(k).as_deref() != Some(v.as_str()),
            Term::Exists(k) => get(k).is_some(),
            Term::Absent(k) => get(k).is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn equality_inequality_and_existence_select_labels() {
        let obj =
            json!({"metadata": {"labels": {"app": "web", "kubernetes.io/service-name": "svc"}}});
        let table = [
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("kubernetes.io/service-name=svc,app=web", true),
            ("app", true),
            ("!app", false),
            ("tier", false),
            ("", true),
        ];
        for (sel, want) in table {
            assert_eq!(
                Selector::parse(sel).unwrap().matches_labels(&obj),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn fields_select_name_namespace_and_type() {
        let obj =
            json!({"metadata": {"name": "a", "namespace": "ns"}, "type": "kubernetes.io/tls"});
        let table = [
            ("metadata.name=a", true),
            ("metadata.name=b", false),
            ("metadata.namespace=ns,metadata.name=a", true),
            ("type=kubernetes.io/tls", true),
            ("type!=kubernetes.io/tls", false),
        ];
        for (sel, want) in table {
            assert_eq!(
                Selector::parse(sel).unwrap().matches_fields(&obj),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn set_based_forms_are_refused() {
        assert!(Selector::parse("app in (a,b)").is_err());
    }
}
