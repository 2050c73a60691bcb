//! Response headers set by an Ingress's annotations: `custom-headers`, and CORS on the
//! responses of Ingress paths with `enable-cors` (see
//! [`Cors`](crate::snapshot::policy::cors::Cors)): an admitted preflight is answered here
//! (204, as ingress-nginx's `return 204`), and every response of the route to an admitted
//! origin gets the `Access-Control-*` headers, set over the upstream's own (nginx's
//! `more_set_headers`, which applies whatever the status).

use std::sync::Arc;

use hyper::{
    HeaderMap, Method, Response, StatusCode,
    header::{self, HeaderValue},
};

use super::body::{Body, empty};
use crate::snapshot::policy::{RoutePolicy, cors::Cors};

/// The CORS headers one response gets.
#[derive(Debug)]
pub struct CorsReply<'a> {
    cors: &'a Cors,
    allow_origin: HeaderValue,
}

impl<'a> CorsReply<'a> {
    /// What a request with this `Origin` gets on a route with `policy`; `None` when CORS is
    /// off or the origin is not admitted.
    pub fn of(policy: &'a RoutePolicy, origin: Option<&HeaderValue>) -> Option<Self> {
        let cors = policy.cors.as_deref()?;
        let allow_origin = cors.allow_origin(origin)?;
        Some(Self { cors, allow_origin })
    }

    /// Sets the headers on a response.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let c = self.cors;
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin.clone(),
        );
        if c.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, c.methods.clone());
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, c.headers.clone());
        if let Some(expose) = &c.expose {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(c.max_age));
    }

    /// The answer to a preflight (`OPTIONS`): 204 with the CORS headers, nothing forwarded.
    /// `None` for other methods.
    pub fn preflight(&self, method: &Method) -> Option<Response<Body>> {
        if method != Method::OPTIONS {
            return None;
        }
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        self.apply(resp.headers_mut());
        // As ingress-nginx's template (sic: no `;` before charset).
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain charset=UTF-8"),
        );
        Some(resp)
    }
}

/// What an Ingress's annotations set on every response of its routes (`custom-headers`,
/// then CORS), whether forwarded or answered here.
#[derive(Debug)]
pub struct ResponseEdits {
    policy: Arc<RoutePolicy>,
    /// `Access-Control-Allow-Origin` when the request's origin is admitted.
    allow_origin: Option<HeaderValue>,
}

impl ResponseEdits {
    /// The edits of a response to a request with this `Origin` on a route with `policy`;
    /// `None` when there are none. Boxed: it rides in every forwarding future.
    pub fn of(
        policy: Option<&Arc<RoutePolicy>>,
        origin: Option<&HeaderValue>,
    ) -> Option<Box<Self>> {
        let policy = policy?;
        let allow_origin = CorsReply::of(policy, origin).map(|c| c.allow_origin);
        if allow_origin.is_none() && policy.response_headers.is_empty() {
            return None;
        }
        Some(Box::new(Self {
            policy: Arc::clone(policy),
            allow_origin,
        }))
    }

    /// Sets the headers on a response, over the upstream's own.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.policy.response_headers {
            headers.insert(name.clone(), value.clone());
        }
        if let (Some(cors), Some(allow_origin)) = (&self.policy.cors, &self.allow_origin) {
            CorsReply {
                cors,
                allow_origin: allow_origin.clone(),
            }
            .apply(headers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::policy::cors::Origins;

    fn policy(cors: Cors) -> RoutePolicy {
        RoutePolicy {
            cors: Some(Arc::new(cors)),
            ..RoutePolicy::default()
        }
    }

    fn names(h: &HeaderMap) -> Vec<(String, String)> {
        let mut v: Vec<_> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn default_cors_sets_ingress_nginx_headers_over_the_upstreams() {
        let p = policy(Cors {
            enabled: true,
            ..Cors::default()
        });
        let reply = CorsReply::of(&p, None).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://upstream.example"),
        );
        reply.apply(&mut h);
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            names(&h),
            vec![
                s("access-control-allow-credentials", "true"),
                s(
                    "access-control-allow-headers",
                    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
                ),
                s(
                    "access-control-allow-methods",
                    "GET, PUT, POST, DELETE, PATCH, OPTIONS"
                ),
                s("access-control-allow-origin", "*"),
                s("access-control-max-age", "1728000"),
            ]
        );
    }

    #[test]
    fn preflight_is_204_only_for_options_from_admitted_origins() {
        let p = policy(Cors {
            enabled: true,
            origins: Origins::List(vec!["https://a.com".parse().unwrap()]),
            credentials: false,
            expose: Some(HeaderValue::from_static("X-A")),
            ..Cors::default()
        });
        let a = HeaderValue::from_static("https://a.com");
        let b = HeaderValue::from_static("https://b.com");
        assert!(CorsReply::of(&p, Some(&b)).is_none());
        assert!(CorsReply::of(&p, None).is_none());
        assert!(CorsReply::of(&RoutePolicy::default(), Some(&a)).is_none());
        let reply = CorsReply::of(&p, Some(&a)).unwrap();
        assert!(reply.preflight(&Method::GET).is_none());
        let resp = reply.preflight(&Method::OPTIONS).unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let h = resp.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.com");
        assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], "X-A");
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert_eq!(h[header::CONTENT_TYPE], "text/plain charset=UTF-8");
    }
}
