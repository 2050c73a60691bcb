//! Pure Ingress route matching: host and path rules per the Ingress spec. No tokio, no hyper.
