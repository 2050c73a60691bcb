//! Per-client request limits of an Ingress (`limit-rps`, `limit-rpm`, `limit-connections`),
//! as ingress-nginx configures nginx's `limit_req` (leaky bucket, `burst` = rate ×
//! `limit-burst-multiplier`, `nodelay`) and `limit_conn` (requests in progress), keyed by
//! the client address, with `limit-whitelist` exempt.
//!
//! State lives in the Snapshot as endpoint cells do: one [`RateLimit`] per Ingress (a zone
//! in nginx's terms), kept across Snapshots by [`zone`] while its settings stay the same.
//! nginx shares a zone across workers in shared memory; here one process holds it, in 16
//! shards each behind its own mutex (held for a hash-map lookup), so there is no global
//! lock on the hot path.
//!
//! Memory is bounded: each table holds at most [`MAX_CLIENTS`] addresses (about 64 bytes
//! each, 4 MiB at most, as nginx's 5 MiB default zone). A full shard first forgets clients
//! whose bucket has drained (they are indistinguishable from new ones), then the one idle
//! longest. A full `limit_conn` shard refuses the request (503), as nginx does when its
//! zone is out of memory.

use std::{
    collections::HashMap,
    hash::BuildHasher as _,
    net::IpAddr,
    sync::{Arc, LazyLock, Mutex, MutexGuard, Weak},
    time::Instant,
};

use super::{ObjectRef, policy::Cidr};

/// ingress-nginx's default `limit-burst-multiplier`.
pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;

/// Addresses one table (rps, rpm or connections of one Ingress) tracks at most.
pub const MAX_CLIENTS: usize = SHARDS * PER_SHARD;
const SHARDS: usize = 16;
const PER_SHARD: usize = 4096;

/// What the annotations ask, before any state exists. Zero means "no limit".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LimitSettings {
    /// `limit-rps`.
    pub rps: u32,
    /// `limit-rpm`.
    pub rpm: u32,
    /// `limit-connections`: requests in progress per client.
    pub connections: u32,
    /// `limit-burst-multiplier` (default 5).
    pub burst_multiplier: Option<u32>,
    /// `limit-whitelist`: clients never limited.
    pub whitelist: Vec<Cidr>,
}

impl LimitSettings {
    /// No limit (the default, usable in a `static`).
    pub const NONE: Self = Self {
        rps: 0,
        rpm: 0,
        connections: 0,
        burst_multiplier: None,
        whitelist: Vec::new(),
    };

    /// Whether any limit is asked for.
    pub fn limits(&self) -> bool {
        self.rps > 0 || self.rpm > 0 || self.connections > 0
    }

    fn multiplier(&self) -> u64 {
        u64::from(self.burst_multiplier.unwrap_or(DEFAULT_BURST_MULTIPLIER))
    }
}

/// One Ingress's limits and their per-client state. Compared and shown by settings only.
pub struct RateLimit {
    owner: ObjectRef,
    settings: LimitSettings,
    rps: Option<Bucket>,
    rpm: Option<Bucket>,
    conns: Option<Table<u32>>,
}

impl PartialEq for RateLimit {
    fn eq(&self, other: &Self) -> bool {
        self.owner == other.owner && self.settings == other.settings
    }
}

impl Eq for RateLimit {}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("owner", &self.owner)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The live zones, so a new Snapshot of an unchanged Ingress keeps its clients' state.
type Zones = Mutex<HashMap<(ObjectRef, LimitSettings), Weak<RateLimit>>>;
static ZONES: LazyLock<Zones> = LazyLock::new(Zones::default);

/// The zone of `owner` with `settings`: the live one if a Snapshot still holds it, else a
/// new one. Called when an Ingress is translated (the control plane), never per request.
pub fn zone(owner: &ObjectRef, settings: LimitSettings) -> Arc<RateLimit> {
    let mut zones = ZONES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = (owner.clone(), settings);
    if let Some(z) = zones.get(&key).and_then(Weak::upgrade) {
        return z;
    }
    zones.retain(|_, z| z.strong_count() > 0);
    let s = &key.1;
    let bucket = |per_second_milli: u64, limit: u32| {
        (limit > 0).then(|| Bucket {
            rate: per_second_milli,
            burst: u64::from(limit) * s.multiplier() * 1000,
            table: Table::default(),
        })
    };
    let z = Arc::new(RateLimit {
        owner: owner.clone(),
        rps: bucket(u64::from(s.rps) * 1000, s.rps),
        rpm: bucket(u64::from(s.rpm) * 1000 / 60, s.rpm),
        conns: (s.connections > 0).then(Table::default),
        settings: s.clone(),
    });
    zones.insert(key, Arc::downgrade(&z));
    z
}

/// What [`RateLimit::admit`] decides.
#[derive(Debug)]
pub enum Admit {
    /// Served; hold the slot (if any) until the response is sent.
    Pass(Option<ConnSlot>),
    /// Over `limit-rps` or `limit-rpm` (nothing was counted).
    OverRate,
    /// Over `limit-connections`.
    OverConnections,
}

impl RateLimit {
    /// The settings.
    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// Counts a request of the client at `ip` against the limits.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admit {
        if self.settings.whitelist.iter().any(|c| c.contains(ip)) {
            return Admit::Pass(None);
        }
        let ip = ip.to_canonical();
        if !self.buckets_admit(ip, now_ms()) {
            return Admit::OverRate;
        }
        let Some(conns) = &self.conns else {
            return Admit::Pass(None);
        };
        let mut shard = conns.shard(ip);
        let full = shard.len() >= PER_SHARD;
        match shard.get_mut(&ip) {
            Some(n) if *n >= self.settings.connections => Admit::OverConnections,
            Some(n) => {
                *n += 1;
                Admit::Pass(Some(ConnSlot {
                    zone: Arc::clone(self),
                    ip,
                }))
            }
            None if full => Admit::OverConnections,
            None => {
                shard.insert(ip, 1);
                Admit::Pass(Some(ConnSlot {
                    zone: Arc::clone(self),
                    ip,
                }))
            }
        }
    }

    /// nginx's `limit_req` with every bucket of the zone: the request passes only if each
    /// passes, and only then is it accounted in each.
    fn buckets_admit(&self, ip: IpAddr, now: u64) -> bool {
        let mut held: [Option<Counted<'_>>; 2] = [None, None];
        for (i, b) in [&self.rps, &self.rpm].into_iter().enumerate() {
            let Some(b) = b else { continue };
            let shard = b.table.shard(ip);
            let excess = match shard.get(&ip) {
                Some(s) => match leak(s.excess, s.last, now, b.rate, b.burst) {
                    Some(e) => e,
                    None => return false,
                },
                None => 0,
            };
            held[i] = Some((shard, b, excess));
        }
        for (mut shard, b, excess) in held.into_iter().flatten() {
            if !shard.contains_key(&ip) && shard.len() >= PER_SHARD {
                evict(&mut shard, now, b.rate);
            }
            shard.insert(ip, Slot { excess, last: now });
        }
        true
    }
}

/// A bucket's shard, locked, with the client's excess after this request.
type Counted<'a> = (MutexGuard<'a, HashMap<IpAddr, Slot>>, &'a Bucket, u64);

/// One `limit_req` zone: `rate` in thousandths of a request per second, `burst` in
/// thousandths of a request, as nginx keeps them.
struct Bucket {
    rate: u64,
    burst: u64,
    table: Table<Slot>,
}

/// A client's bucket: its excess (thousandths of a request) when last counted.
#[derive(Clone, Copy, Debug)]
struct Slot {
    excess: u64,
    last: u64,
}

/// nginx's `ngx_http_limit_req_lookup` for a known client: the excess after one more
/// request `now` (ms), or `None` if that is over `burst` (rejected, nothing accounted).
/// A new client starts at 0, so `burst / 1000 + 1` requests pass at once.
fn leak(excess: u64, last: u64, now: u64, rate: u64, burst: u64) -> Option<u64> {
    // nginx: `excess = lr->excess - ctx->rate * ms / 1000 + 1000; if (excess < 0) excess = 0;`
    let ms = i128::from(now.saturating_sub(last));
    let e = (i128::from(excess) - i128::from(rate) * ms / 1000 + 1000).max(0);
    let e = u64::try_from(e).unwrap_or(u64::MAX);
    (e <= burst).then_some(e)
}

/// Makes room in a full shard: drops drained clients, else the one counted longest ago.
fn evict(shard: &mut HashMap<IpAddr, Slot>, now: u64, rate: u64) {
    shard.retain(|_, s| s.excess > rate.saturating_mul(now.saturating_sub(s.last)) / 1000);
    if shard.len() >= PER_SHARD
        && let Some(oldest) = shard.iter().min_by_key(|(_, s)| s.last).map(|(ip, _)| *ip)
    {
        shard.remove(&oldest);
    }
}

/// A table of clients in [`SHARDS`] shards.
struct Table<V> {
    hasher: foldhash::fast::RandomState,
    shards: [Mutex<HashMap<IpAddr, V>>; SHARDS],
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Self {
            hasher: foldhash::fast::RandomState::default(),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }
}

impl<V> Table<V> {
    fn shard(&self, ip: IpAddr) -> MutexGuard<'_, HashMap<IpAddr, V>> {
        let i = (self.hasher.hash_one(ip) as usize) % SHARDS;
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A request in progress under `limit-connections`; released when dropped.
#[derive(Debug)]
pub struct ConnSlot {
    zone: Arc<RateLimit>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let Some(conns) = &self.zone.conns else {
            return;
        };
        let mut shard = conns.shard(self.ip);
        if let Some(n) = shard.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                shard.remove(&self.ip);
            }
        }
    }
}

/// Milliseconds since the process's first use of a limit.
fn now_ms() -> u64 {
    static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
    u64::try_from(ORIGIN.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(name: &str) -> ObjectRef {
        ObjectRef {
            kind: "Ingress".to_owned(),
            namespace: Some("default".to_owned()),
            name: name.to_owned(),
        }
    }

    #[test]
    fn leaky_bucket_follows_nginx_limit_req() {
        // (rate/s, burst, (ms since start, passes?) in order): a new client starts at
        // excess 0; each request adds 1000; rate×ms/1000 drains; over burst×1000 refused.
        // (rate/s, burst, steps)
        type Row = (u64, u64, &'static [(u64, bool)]);
        let rows: &[Row] = &[
            // rps 1, burst 0: one now, the next a second later.
            (1, 0, &[(0, true), (0, false), (999, false), (1000, true)]),
            // rps 2, burst 2 (multiplier 1): three at once, then one per 500 ms.
            (
                2,
                2,
                &[
                    (0, true),
                    (0, true),
                    (0, true),
                    (0, false),
                    (499, false),
                    (500, true),
                    (500, false),
                    (1000, true),
                ],
            ),
            // rps 1, burst 5: six at once; a long pause drains everything.
            (
                1,
                5,
                &[
                    (0, true),
                    (0, true),
                    (0, true),
                    (0, true),
                    (0, true),
                    (0, true),
                    (0, false),
                    (60_000, true),
                    (60_000, true),
                ],
            ),
        ];
        for (rate, burst, steps) in rows {
            let mut slot: Option<Slot> = None;
            for (i, (t, want)) in steps.iter().enumerate() {
                let got = match slot {
                    None => Some(0),
                    Some(s) => leak(s.excess, s.last, *t, rate * 1000, burst * 1000),
                };
                assert_eq!(
                    got.is_some(),
                    *want,
                    "rate {rate} burst {burst} step {i} at {t}"
                );
                if let Some(e) = got {
                    slot = Some(Slot {
                        excess: e,
                        last: *t,
                    });
                }
            }
        }
    }

    #[test]
    fn zones_count_per_client_and_exempt_the_whitelist() {
        let settings = LimitSettings {
            rps: 1,
            burst_multiplier: Some(2),
            whitelist: vec!["127.0.0.3".parse().unwrap()],
            ..LimitSettings::default()
        };
        let z = zone(&owner("zones"), settings.clone());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "::ffff:127.0.0.4".parse().unwrap();
        let free: IpAddr = "127.0.0.3".parse().unwrap();
        // burst = 1 × 2: three pass at once (unless a second went by: then more may).
        let passed = (0..10)
            .filter(|_| matches!(z.admit(a), Admit::Pass(_)))
            .count();
        assert!((3..10).contains(&passed), "{passed}");
        assert!(matches!(z.admit(b), Admit::Pass(_)));
        assert!((0..100).all(|_| matches!(z.admit(free), Admit::Pass(None))));
        // The same settings give the same zone while it lives.
        assert!(Arc::ptr_eq(&z, &zone(&owner("zones"), settings)));
    }

    #[test]
    fn connection_slots_are_released_when_dropped() {
        let z = zone(
            &owner("conns"),
            LimitSettings {
                connections: 2,
                ..LimitSettings::default()
            },
        );
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let one = z.admit(ip);
        let two = z.admit(ip);
        assert!(matches!(&one, Admit::Pass(Some(_))));
        assert!(matches!(&two, Admit::Pass(Some(_))));
        assert!(matches!(z.admit(ip), Admit::OverConnections));
        assert!(matches!(
            z.admit("10.0.0.2".parse().unwrap()),
            Admit::Pass(Some(_))
        ));
        drop(one);
        assert!(matches!(z.admit(ip), Admit::Pass(Some(_))));
    }

    #[test]
    fn full_shards_forget_drained_then_oldest_clients() {
        let mut shard = HashMap::new();
        for i in 0..PER_SHARD as u32 {
            let excess = if i % 2 == 0 { 1000 } else { 100_000 };
            shard.insert(
                IpAddr::from(i.to_be_bytes()),
                Slot {
                    excess,
                    last: u64::from(i),
                },
            );
        }
        // 1 request/s, 2 s later: the excess-1000 clients have drained.
        evict(&mut shard, 2000 + PER_SHARD as u64, 1000);
        assert_eq!(shard.len(), PER_SHARD / 2);
        let mut full: HashMap<IpAddr, Slot> = (0..PER_SHARD as u32)
            .map(|i| {
                (
                    IpAddr::from(i.to_be_bytes()),
                    Slot {
                        excess: 9000,
                        last: u64::from(i) + 10,
                    },
                )
            })
            .collect();
        evict(&mut full, 0, 1000);
        assert_eq!(full.len(), PER_SHARD - 1);
        assert!(!full.contains_key(&IpAddr::from(0u32.to_be_bytes())));
    }
}
