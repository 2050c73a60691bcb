//! Problems: what is wrong with one object, precise enough to fix it from the message alone.
//! A Problem never stops the build; the offending object (or entry) is skipped.

use std::fmt;

/// The object a Problem is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// Kind, e.g. `Ingress`, `ConfigMap`, or `File` for an unparsable manifest.
    pub kind: String,
    /// Namespace, if namespaced.
    pub namespace: Option<String>,
    /// Name (for `File`, the path).
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// How bad a Problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Served, but the user should know (e.g. a legacy API version was converted).
    Warning,
    /// The object or entry is skipped.
    Error,
}

/// One problem with one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The offending object.
    pub object: ObjectRef,
    /// The field or key, e.g. `spec.rules[0].http.paths[1].path` or `data["9000"]`.
    pub field: Option<String>,
    /// A stable snake_case label for metrics, e.g. `unknown_service`.
    pub kind: &'static str,
    /// Human-readable: what is wrong and, where possible, how to fix it.
    pub message: String,
    /// Warning or error.
    pub severity: Severity,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.object)?;
        if let Some(field) = &self.field {
            write!(f, " {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}
