//! The L7 router: route matching (pure), and the hyper server/proxy that reads it.

pub mod route;
