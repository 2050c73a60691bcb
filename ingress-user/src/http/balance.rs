//! Endpoint choice: round-robin (default) or power-of-two-choices on in-flight requests.
//!
//! Cursors are keyed by the identity of a backend's endpoint list, so a new Snapshot starts
//! fresh cursors without any bookkeeping in the (pure) route table.

use std::{
    net::SocketAddr,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use super::FastMap;
use crate::snapshot::routes::Backend;

/// How an endpoint is chosen among a backend's endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Balance {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// Power of two choices: two random endpoints, the one with fewer requests in flight.
    LeastLoaded,
}

/// Chooses endpoints and tracks in-flight requests per endpoint.
#[derive(Debug, Default)]
pub struct Balancer {
    mode: Balance,
    cursors: RwLock<FastMap<usize, Arc<AtomicUsize>>>,
    loads: RwLock<FastMap<SocketAddr, Arc<AtomicUsize>>>,
    rng: AtomicU64,
}

/// A chosen endpoint. With `least-loaded`, while it lives it counts as one request in
/// flight to `addr`.
#[derive(Debug)]
pub struct Pick {
    /// The endpoint address.
    pub addr: SocketAddr,
    load: Option<Arc<AtomicUsize>>,
}

impl Drop for Pick {
    fn drop(&mut self) {
        if let Some(load) = &self.load {
            load.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Balancer {
    /// A balancer using `mode`.
    pub fn new(mode: Balance) -> Self {
        Self {
            mode,
            rng: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
            ..Self::default()
        }
    }

    /// Picks an endpoint of `backend`, avoiding `avoid` when there is another choice.
    /// `None` when the backend has no endpoints (or only `avoid`).
    pub fn pick(&self, backend: &Backend, avoid: Option<SocketAddr>) -> Option<Pick> {
        let eps = backend.endpoints.load();
        let eps: &[SocketAddr] = &eps;
        let candidates = eps.len() - usize::from(avoid.is_some_and(|a| eps.contains(&a)));
        if candidates == 0 {
            return None;
        }
        let addr = match self.mode {
            Balance::RoundRobin => {
                let cursor = self.cursor(backend);
                loop {
                    let i = cursor.fetch_add(1, Ordering::Relaxed) % eps.len();
                    if Some(eps[i]) != avoid {
                        break eps[i];
                    }
                }
            }
            Balance::LeastLoaded => {
                let usable = |a: &SocketAddr| Some(*a) != avoid;
                let n = eps.iter().filter(|a| usable(a)).count();
                let r = self.random();
                let nth = |k: usize| eps.iter().copied().filter(usable).nth(k % n);
                let a = nth(usize::try_from(r & 0xffff_ffff).unwrap_or(0))?;
                if n == 1 {
                    a
                } else {
                    // A second, distinct choice.
                    let step = 1 + usize::try_from(r >> 32).unwrap_or(0) % (n - 1);
                    let first = eps
                        .iter()
                        .copied()
                        .filter(usable)
                        .position(|x| x == a)
                        .unwrap_or(0);
                    let b = nth(first + step)?;
                    if self.load(b).load(Ordering::Relaxed) < self.load(a).load(Ordering::Relaxed) {
                        b
                    } else {
                        a
                    }
                }
            }
        };
        // Round-robin does not need in-flight counts; skip the bookkeeping.
        let load = (self.mode == Balance::LeastLoaded).then(|| {
            let load = self.load(addr);
            load.fetch_add(1, Ordering::Relaxed);
            load
        });
        Some(Pick { addr, load })
    }

    /// `addr` (a sticky session's endpoint) as a pick, counted like one.
    pub fn pick_addr(&self, addr: SocketAddr) -> Pick {
        let load = (self.mode == Balance::LeastLoaded).then(|| {
            let load = self.load(addr);
            load.fetch_add(1, Ordering::Relaxed);
            load
        });
        Pick { addr, load }
    }

    /// A uniform draw in `0..n` (`0` when `n` is 0), e.g. for a canary's weight.
    pub fn draw(&self, n: u32) -> u32 {
        u32::try_from(self.random() % u64::from(n.max(1))).unwrap_or(0)
    }

    /// A random 64-bit value, e.g. a new session key.
    pub fn key(&self) -> u64 {
        self.random()
    }

    /// The next turn of a counter keyed by `key` (the address of something a Snapshot
    /// holds, e.g. a Gateway rule's action): 0, 1, 2, ... Shared by the workers and
    /// restarted with each Snapshot, like the round-robin cursors.
    pub fn turn(&self, key: usize) -> u64 {
        let cursor = self.cursor_at(key);
        u64::try_from(cursor.fetch_add(1, Ordering::Relaxed)).unwrap_or(u64::MAX)
    }

    /// Whether a request is in the `percent` share (0 to 100) of requests, e.g. for
    /// mirroring. Random, so separate shares are independent.
    pub fn chance(&self, percent: f64) -> bool {
        if percent >= 100.0 {
            return true;
        }
        if percent.is_nan() || percent <= 0.0 {
            return false;
        }
        // A 53-bit fraction in [0, 1).
        let unit = (self.random() >> 11) as f64 / (1u64 << 53) as f64;
        unit * 100.0 < percent
    }

    /// Forgets cursors and idle endpoints' counters; called when a new Snapshot arrives.
    pub fn reset(&self) {
        self.cursors
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.loads
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, load| Arc::strong_count(load) > 1);
    }

    /// Requests in flight to `addr` (counted with `least-loaded` only).
    pub fn in_flight(&self, addr: SocketAddr) -> usize {
        self.loads
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&addr)
            .map_or(0, |l| l.load(Ordering::Relaxed))
    }

    fn cursor(&self, backend: &Backend) -> Arc<AtomicUsize> {
        self.cursor_at(backend.endpoints.id())
    }

    fn cursor_at(&self, key: usize) -> Arc<AtomicUsize> {
        if let Some(c) = self
            .cursors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(c);
        }
        Arc::clone(
            self.cursors
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_default(),
        )
    }

    fn load(&self, addr: SocketAddr) -> Arc<AtomicUsize> {
        if let Some(l) = self
            .loads
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&addr)
        {
            return Arc::clone(l);
        }
        Arc::clone(
            self.loads
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(addr)
                .or_default(),
        )
    }

    /// splitmix64 over an atomic counter: cheap, lock-free, good enough to spread choices.
    fn random(&self) -> u64 {
        let mut z = self.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceRef;

    fn backend(n: u16) -> Backend {
        Backend::new(
            ServiceRef {
                namespace: "default".into(),
                name: "web".into(),
                port: 80,
            },
            (1..=n)
                .map(|i| SocketAddr::from(([10, 0, 0, 1], 8000 + i)))
                .collect(),
            None,
        )
    }

    fn ports(picks: impl Iterator<Item = Option<Pick>>) -> Vec<u16> {
        picks.map(|p| p.map_or(0, |p| p.addr.port())).collect()
    }

    #[test]
    fn round_robin_visits_each_endpoint_in_turn() {
        let (lb, b) = (Balancer::new(Balance::RoundRobin), backend(3));
        assert_eq!(
            ports((0..6).map(|_| lb.pick(&b, None))),
            [8001, 8002, 8003, 8001, 8002, 8003]
        );
    }

    #[test]
    fn retry_avoids_the_endpoint_that_failed() {
        for mode in [Balance::RoundRobin, Balance::LeastLoaded] {
            let (lb, b) = (Balancer::new(mode), backend(2));
            let failed = SocketAddr::from(([10, 0, 0, 1], 8001));
            for _ in 0..10 {
                assert_eq!(
                    lb.pick(&b, Some(failed)).unwrap().addr.port(),
                    8002,
                    "{mode:?}"
                );
            }
        }
    }

    #[test]
    fn no_endpoints_or_only_the_failed_one_yields_none() {
        let lb = Balancer::new(Balance::RoundRobin);
        assert!(lb.pick(&backend(0), None).is_none());
        assert!(
            lb.pick(&backend(1), Some(SocketAddr::from(([10, 0, 0, 1], 8001))))
                .is_none()
        );
    }

    #[test]
    fn least_loaded_prefers_the_endpoint_with_fewer_in_flight() {
        let (lb, b) = (Balancer::new(Balance::LeastLoaded), backend(2));
        let busy = SocketAddr::from(([10, 0, 0, 1], 8001));
        let held: Vec<_> = (0..5)
            .map(|_| lb.pick(&b, Some(SocketAddr::from(([10, 0, 0, 1], 8002)))))
            .collect();
        assert_eq!(lb.in_flight(busy), 5);
        for _ in 0..20 {
            assert_eq!(lb.pick(&b, None).unwrap().addr.port(), 8002);
        }
        drop(held);
        assert_eq!(lb.in_flight(busy), 0);
    }

    #[test]
    fn turns_count_per_key_and_restart_with_a_snapshot() {
        let lb = Balancer::new(Balance::RoundRobin);
        assert_eq!(
            [lb.turn(1), lb.turn(1), lb.turn(2), lb.turn(1)],
            [0, 1, 0, 2]
        );
        lb.reset();
        assert_eq!(lb.turn(1), 0);
    }

    #[test]
    fn chance_honours_the_bounds_and_roughly_the_share() {
        let lb = Balancer::new(Balance::RoundRobin);
        assert!((0..100).all(|_| lb.chance(100.0)));
        assert!((0..100).all(|_| !lb.chance(0.0)));
        assert!((0..100).all(|_| !lb.chance(f64::NAN)));
        // splitmix64 from a fixed seed: deterministic, so this bound cannot flake.
        let hits = (0..10_000).filter(|_| lb.chance(25.0)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
    }

    #[test]
    fn a_sticky_pick_counts_in_flight_and_draws_stay_in_range() {
        let lb = Balancer::new(Balance::LeastLoaded);
        let addr = SocketAddr::from(([10, 0, 0, 1], 8001));
        let p = lb.pick_addr(addr);
        assert_eq!((p.addr, lb.in_flight(addr)), (addr, 1));
        drop(p);
        assert_eq!(lb.in_flight(addr), 0);
        assert!((0..1000).all(|_| lb.draw(7) < 7));
        assert_eq!(lb.draw(0), 0);
    }

    #[test]
    fn in_flight_count_follows_the_pick_guard() {
        let (lb, b) = (Balancer::new(Balance::LeastLoaded), backend(1));
        let p = lb.pick(&b, None).unwrap();
        assert_eq!(lb.in_flight(p.addr), 1);
        lb.reset();
        assert_eq!(
            lb.in_flight(p.addr),
            1,
            "reset keeps counters of busy endpoints"
        );
        let addr = p.addr;
        drop(p);
        assert_eq!(lb.in_flight(addr), 0);
    }
}
