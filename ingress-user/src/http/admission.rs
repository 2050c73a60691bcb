//! Whether a routed request may go on, in nginx's phase order: the Ingress's request
//! limits (`limit-*`: `limit_req` and `limit_conn`, the preaccess phase) and basic
//! authentication (`auth-type: basic`: `auth_basic`, the access phase).
//!
//! Checking a bcrypt hash costs milliseconds of CPU, so it runs on the blocking pool, at
//! most one per core at a time (a flood of wrong passwords queues there rather than
//! stalling the async workers), and a success is remembered ([`Verified`]) so a client
//! sending the same credentials on every request pays once. The cheap schemes (`{SHA}`,
//! MD5-crypt, `{PLAIN}`) are checked inline.

use std::sync::{LazyLock, Mutex};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::{
    HeaderMap, Response,
    body::{Body as HttpBody, Frame, SizeHint},
    header,
};

use super::{
    body::{Body, BoxError},
    rescue::Error,
};
use crate::snapshot::{
    htpasswd::{Check, PasswordHash},
    policy::BasicAuth,
    rate_limit::{Admit, ConnSlot, RateLimit},
};

/// What a request still owes after routing: a bcrypt check, and the `limit-connections`
/// slot held until its response is sent. Boxed in the routed request, only when needed.
#[derive(Debug, Default)]
pub struct Pending {
    slot: Option<ConnSlot>,
    verify: Option<Verify>,
}

impl Pending {
    /// `None` when nothing is owed.
    pub fn new(slot: Option<ConnSlot>, verify: Option<Verify>) -> Option<Box<Self>> {
        (slot.is_some() || verify.is_some()).then(|| Box::new(Self { slot, verify }))
    }

    /// Finishes the checks; the slot to hold while the response is sent.
    pub async fn settle(self) -> Result<Option<ConnSlot>, Error> {
        if let Some(v) = self.verify {
            v.run().await?;
        }
        Ok(self.slot)
    }
}

/// `limit-rps`, `limit-rpm`, `limit-connections` for the client at `ip`; over them, the
/// status of `--limit-req-status-code` or `--limit-conn-status-code` (503 by default, as
/// ingress-nginx).
pub fn limit(
    zone: &std::sync::Arc<RateLimit>,
    ip: std::net::IpAddr,
    limits: &super::limits::Limits,
) -> Result<Option<ConnSlot>, Error> {
    match zone.admit(ip) {
        Admit::Pass(slot) => Ok(slot),
        Admit::OverRate => Err(Error::RateLimited(limits.limit_req_status)),
        Admit::OverConnections => Err(Error::RateLimited(limits.limit_conn_status)),
    }
}

/// What [`authenticate`] decides without waiting.
#[derive(Debug)]
pub enum Auth {
    /// Valid credentials.
    Pass,
    /// A bcrypt hash to check on the blocking pool.
    Verify(Verify),
}

/// Checks the request's `Authorization: Basic` credentials against `auth`'s users, as
/// nginx's `auth_basic`: missing, malformed, unknown user or wrong password is 401 with
/// the realm; a user whose hash cannot be checked is 500. The header is still forwarded
/// upstream, as nginx does.
pub fn authenticate(auth: &BasicAuth, headers: &HeaderMap) -> Result<Auth, Error> {
    let unauthorized = || Error::Unauthorized {
        realm: auth.realm.clone(),
    };
    let (user, password) = credentials(headers).ok_or_else(unauthorized)?;
    let hash = auth.users.lookup(&user).ok_or_else(unauthorized)?;
    if let PasswordHash::Bcrypt(stored) = hash {
        let key = cache_key(&user, &password, stored);
        if VERIFIED.contains(&key) {
            return Ok(Auth::Pass);
        }
        return Ok(Auth::Verify(Verify {
            hash: hash.clone(),
            password,
            key,
            realm: auth.realm.clone(),
        }));
    }
    match hash.check(&password) {
        Check::Valid => Ok(Auth::Pass),
        Check::Invalid => Err(unauthorized()),
        Check::Unusable => Err(Error::AuthUnusable),
    }
}

/// `user` and password of an `Authorization: Basic base64(user:password)` header.
fn credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let encoded = rest.trim_ascii();
    let decoded = STANDARD.decode(encoded).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_owned();
    Some((user, decoded[colon + 1..].to_vec()))
}

/// A bcrypt check still to run.
pub struct Verify {
    hash: PasswordHash,
    password: Vec<u8>,
    key: [u8; 32],
    realm: String,
}

/// Never shows the password.
impl std::fmt::Debug for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verify").finish_non_exhaustive()
    }
}

/// Blocking-pool checks at a time: one per core.
static CHECKS: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from))
});

impl Verify {
    async fn run(self) -> Result<(), Error> {
        let Self {
            hash,
            password,
            key,
            realm,
        } = self;
        let check = {
            let _permit = CHECKS.acquire().await.map_err(|_| Error::AuthUnusable)?;
            tokio::task::spawn_blocking(move || hash.check(&password))
                .await
                .unwrap_or(Check::Unusable)
        };
        match check {
            Check::Valid => {
                VERIFIED.insert(key);
                Ok(())
            }
            Check::Invalid => Err(Error::Unauthorized { realm }),
            Check::Unusable => Err(Error::AuthUnusable),
        }
    }
}

/// SHA-256 of the user, the password and the stored hash (length-prefixed): a changed
/// Secret never matches an old success.
fn cache_key(user: &str, password: &[u8], stored: &str) -> [u8; 32] {
    let mut ctx = aws_lc::digest::Context::new(&aws_lc::digest::SHA256);
    for part in [user.as_bytes(), password, stored.as_bytes()] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Successful costly checks, by [`cache_key`]: 16 shards of at most 256 (8 KiB each); a
/// full shard is emptied (its clients pay one more check).
struct Verified {
    shards: [Mutex<std::collections::HashSet<[u8; 32]>>; 16],
}

const VERIFIED_PER_SHARD: usize = 256;

static VERIFIED: LazyLock<Verified> = LazyLock::new(|| Verified {
    shards: std::array::from_fn(|_| Mutex::default()),
});

impl Verified {
    fn shard(
        &self,
        key: &[u8; 32],
    ) -> std::sync::MutexGuard<'_, std::collections::HashSet<[u8; 32]>> {
        self.shards[usize::from(key[0]) % 16]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.shard(key).contains(key)
    }

    fn insert(&self, key: [u8; 32]) {
        let mut shard = self.shard(&key);
        if shard.len() >= VERIFIED_PER_SHARD {
            shard.clear();
        }
        shard.insert(key);
    }
}

/// `resp` with `slot` held until its body is sent (nginx counts a request in
/// `limit_conn` until it is finalized).
pub fn hold(resp: Response<Body>, slot: Option<ConnSlot>) -> Response<Body> {
    match slot {
        None => resp,
        Some(slot) => resp.map(|inner| Held { inner, _slot: slot }.boxed()),
    }
}

/// A body holding a `limit-connections` slot.
struct Held {
    inner: Body,
    _slot: ConnSlot,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::htpasswd::Htpasswd;

    fn auth() -> BasicAuth {
        // htpasswd -nbs foo bar; htpasswd -nbB -C 4 alice 'open sesame'
        let (users, _) = Htpasswd::parse(
            "foo:{SHA}Ys23Ag/5IOWqZCw9QGaVDdHwH00=\n\
             alice:$2y$04$819XnYcL9A1aDak.40Hun.Zgf4bDReZis2dEjQuDVSPdYLI9jsD3u\n\
             broken:\n",
        );
        BasicAuth {
            realm: "test auth".to_owned(),
            users,
        }
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(user_pass: &str) -> HeaderMap {
        headers(&format!("Basic {}", STANDARD.encode(user_pass)))
    }

    #[test]
    fn credentials_are_checked_as_auth_basic() {
        let a = auth();
        let status = |h: &HeaderMap| match authenticate(&a, h) {
            Ok(Auth::Pass) => 200,
            Ok(Auth::Verify(_)) => 0,
            Err(e) => e.status().as_u16(),
        };
        for (h, want) in [
            (HeaderMap::new(), 401),
            (basic("foo:bar"), 200),
            (
                headers(&format!("bAsIc   {}", STANDARD.encode("foo:bar"))),
                200,
            ),
            (basic("foo:baz"), 401),
            (basic("foo"), 401),
            (basic("nobody:bar"), 401),
            (headers("Basic !!!"), 401),
            (
                headers(&format!("Bearer {}", STANDARD.encode("foo:bar"))),
                401,
            ),
            (basic("broken:x"), 500),
            // bcrypt: checked later (a password no other test caches).
            (basic("alice:never cached"), 0),
        ] {
            assert_eq!(status(&h), want, "{h:?}");
        }
        let Err(e) = authenticate(&a, &HeaderMap::new()) else {
            panic!("no credentials must be refused");
        };
        let resp = e.to_response();
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"test auth\""
        );
    }

    #[tokio::test]
    async fn bcrypt_checks_run_on_the_blocking_pool_and_are_remembered() {
        let a = auth();
        let Ok(Auth::Verify(v)) = authenticate(&a, &basic("alice:open sesame")) else {
            panic!("bcrypt is checked later");
        };
        v.run().await.unwrap();
        assert!(matches!(
            authenticate(&a, &basic("alice:open sesame")),
            Ok(Auth::Pass)
        ));
        let Ok(Auth::Verify(v)) = authenticate(&a, &basic("alice:open sesame!")) else {
            panic!("another password is checked again");
        };
        assert!(matches!(v.run().await, Err(Error::Unauthorized { .. })));
    }
}
