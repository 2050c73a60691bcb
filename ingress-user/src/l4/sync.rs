//! Programs the L4 maps from the Snapshot: diffs the desired services against what was
//! written before and touches only what changed. Order matters for packets in flight: new
//! backends are written before the Maglev slots that point at them, slots before the service
//! entry that makes them reachable, and backends are released only after no slot uses them.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, Map, MapData},
};
use ingress_common::{
    l4::{Backend, FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP, ServiceKey, ServiceValue},
    maps,
};
use tracing::{debug, warn};

use super::{L4Error, bpf_batch, conntrack, maglev};
use crate::{
    config::{L4Protocol, L4Service},
    snapshot::Share,
};

/// A service's Maglev table: `(protocol, external port, family, address)`, where the
/// address is a Gateway's own (`spec.addresses`) or all zero for every node address. One
/// table per family, so a flow only ever meets endpoints of its own family.
type TableKey = (u8, u16, u8, [u8; 16]);

/// Who owns slots of a table, by weight; the all-zero backend (family 0) is the rejected
/// share, written as backend id 0, which the kernel hands to the stack (TCP RST, ICMP port
/// unreachable) like a service without endpoints.
type Weighted = Vec<(Backend, f64)>;

/// The rejected share's entry in a [`Weighted`] list.
const REJECT: Backend = Backend {
    addr: [0; 16],
    port: 0,
    family: 0,
    _pad: 0,
};

/// The real endpoints of a weighted list.
fn real(eps: &Weighted) -> impl Iterator<Item = &Backend> {
    eps.iter().map(|(b, _)| b).filter(|b| b.family != 0)
}

/// Sizes the maps were created with.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Maglev table size (prime).
    pub maglev_size: u32,
    /// Service ids available.
    pub max_services: u32,
    /// Backend ids available (id 0 is never used).
    pub max_backends: u32,
}

/// What one apply changed, for logs, metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Service entries inserted or updated.
    pub services_written: usize,
    /// Service entries removed.
    pub services_removed: usize,
    /// Maglev slots written.
    pub slots_written: usize,
    /// Backend slots written.
    pub backends_written: usize,
    /// Services skipped (PROXY protocol entries, which the userspace proxy serves).
    pub skipped: Vec<String>,
    /// UDP flows deleted because their endpoint left the service.
    pub udp_flows_purged: usize,
}

/// The diffing map writer. Holds what it last wrote; rebuilt from the maps after a restart.
pub struct MapSync {
    limits: Limits,
    /// Table key → service id.
    service_ids: BTreeMap<TableKey, u32>,
    services: BTreeMap<ServiceKey, ServiceValue>,
    backend_ids: HashMap<Backend, u32>,
    backend_refs: HashMap<u32, usize>,
    /// Per service id: the weighted endpoints and the table (of backend ids) last written;
    /// `None` after a restart, meaning "rewrite the whole table".
    tables: HashMap<u32, (Weighted, Vec<u32>)>,
    /// Set by [`MapSync::recover`]: the endpoints a previous controller served are unknown,
    /// so the first apply checks every UDP flow against the current endpoints.
    recovered: bool,
}

fn data<'a>(map: &'a Map, name: &'static str) -> Result<&'a MapData, L4Error> {
    match map {
        Map::Array(d) | Map::HashMap(d) | Map::PerCpuArray(d) => Ok(d),
        _ => Err(L4Error::MissingMap(name)),
    }
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Map, L4Error> {
    ebpf.map_mut(name).ok_or(L4Error::MissingMap(name))
}

/// Converts an endpoint to the kernel's backend layout.
pub fn backend(addr: SocketAddr) -> Backend {
    let mut a = [0u8; 16];
    let family = match addr.ip() {
        IpAddr::V4(v4) => {
            a[..4].copy_from_slice(&v4.octets());
            FAMILY_V4
        }
        IpAddr::V6(v6) => {
            a.copy_from_slice(&v6.octets());
            FAMILY_V6
        }
    };
    Backend {
        addr: a,
        port: addr.port().to_be(),
        family,
        _pad: 0,
    }
}

/// The service key for a node address.
pub fn service_key(node: IpAddr, port: u16, proto: u8) -> ServiceKey {
    let b = backend(SocketAddr::new(node, port));
    ServiceKey {
        addr: b.addr,
        port: b.port,
        proto,
        family: b.family,
    }
}

fn proto(p: L4Protocol) -> u8 {
    match p {
        L4Protocol::Tcp => PROTO_TCP,
        L4Protocol::Udp => PROTO_UDP,
    }
}

fn maglev_key(b: &Backend) -> Vec<u8> {
    let mut k = b.addr.to_vec();
    k.extend_from_slice(&b.port.to_ne_bytes());
    k
}

impl MapSync {
    /// Reads back what a previous controller left in the pinned maps, so ids stay stable
    /// across restarts (flows in conntrack do not depend on ids, but new flows do).
    pub fn recover(ebpf: &mut Ebpf, limits: Limits) -> Result<Self, L4Error> {
        let mut sync = Self {
            limits,
            service_ids: BTreeMap::new(),
            services: BTreeMap::new(),
            backend_ids: HashMap::new(),
            backend_refs: HashMap::new(),
            tables: HashMap::new(),
            recovered: true,
        };
        {
            let services: BpfHashMap<&MapData, ServiceKey, ServiceValue> =
                BpfHashMap::try_from(&*map(ebpf, maps::SERVICES)?)
                    .map_err(L4Error::map("open services"))?;
            for item in services.iter() {
                let (k, v) = item.map_err(L4Error::map("read services"))?;
                // Node addresses are told apart from Gateway addresses at the first apply.
                sync.service_ids
                    .insert((k.proto, u16::from_be(k.port), k.family, k.addr), v.id);
                sync.services.insert(k, v);
            }
        }
        let backends: Array<&MapData, Backend> =
            Array::try_from(&*map(ebpf, maps::BACKENDS)?).map_err(L4Error::map("open backends"))?;
        for id in 1..limits.max_backends.min(backends.len()) {
            let b = backends
                .get(&id, 0)
                .map_err(L4Error::map("read backends"))?;
            if b.family != 0 {
                sync.backend_ids.insert(b, id);
                sync.backend_refs.insert(id, 0);
            }
        }
        debug!(
            services = sync.services.len(),
            backends = sync.backend_ids.len(),
            "recovered L4 map state"
        );
        Ok(sync)
    }

    /// Makes the maps serve `services` on `node_addrs`.
    pub fn apply(
        &mut self,
        ebpf: &mut Ebpf,
        services: &[L4Service],
        node_addrs: &[IpAddr],
    ) -> Result<ApplyReport, L4Error> {
        let mut report = ApplyReport::default();
        if self.recovered {
            // Recovered keys carry the exact address; those of node addresses are the
            // node-wide tables (scope zero).
            let nodes: HashSet<[u8; 16]> = node_addrs
                .iter()
                .map(|a| backend(SocketAddr::new(*a, 0)).addr)
                .collect();
            self.service_ids = std::mem::take(&mut self.service_ids)
                .into_iter()
                .map(|((p, port, f, addr), id)| {
                    let scope = if nodes.contains(&addr) { [0; 16] } else { addr };
                    ((p, port, f, scope), id)
                })
                .collect();
        }
        let mut desired: BTreeMap<TableKey, Weighted> = BTreeMap::new();
        for s in services {
            if s.proxy_protocol_in || s.proxy_protocol_out {
                report
                    .skipped
                    .push(format!("{}/{:?} (PROXY protocol)", s.port, s.protocol));
                continue;
            }
            let shares = s.shares();
            for family in [FAMILY_V4, FAMILY_V6] {
                let scopes: Vec<[u8; 16]> = if s.addrs.is_empty() {
                    vec![[0; 16]]
                } else {
                    s.addrs
                        .iter()
                        .map(|a| backend(SocketAddr::new(*a, 0)))
                        .filter(|b| b.family == family)
                        .map(|b| b.addr)
                        .collect()
                };
                let mut eps: Weighted = shares
                    .iter()
                    .filter_map(|(share, w)| match share {
                        Share::To(a) => Some((backend(*a), *w)).filter(|(b, _)| b.family == family),
                        Share::Reject => Some((REJECT, *w)),
                    })
                    .collect();
                // Endpoints of weight 0 own no slots but stay in the list: they take no
                // new flows, and their UDP flows are not purged (only leaving does that).
                for e in s
                    .split
                    .iter()
                    .filter(|x| x.weight == 0)
                    .flat_map(|x| &x.endpoints)
                {
                    let b = backend(*e);
                    if b.family == family && !eps.iter().any(|(x, _)| *x == b) {
                        eps.push((b, 0.0));
                    }
                }
                // A family without endpoints is left out (nothing answers there), unless
                // the service has none at all: then both families reject, and count it.
                if real(&eps).next().is_none() && !s.endpoints.is_empty() {
                    continue;
                }
                eps.sort_by_key(|(b, _)| maglev_key(b));
                eps.dedup_by_key(|(b, _)| *b);
                for scope in scopes {
                    desired.insert((proto(s.protocol), s.port, family, scope), eps.clone());
                }
            }
        }

        // UDP flows to drop: service id → the endpoints that stay. Removed UDP services keep
        // none; the others are added below where their endpoints shrink.
        let mut udp_live: HashMap<u32, HashSet<Backend>> = self
            .service_ids
            .iter()
            .filter(|(k, _)| k.0 == PROTO_UDP && !desired.contains_key(k))
            .map(|(_, id)| (*id, HashSet::new()))
            .collect();

        // Service ids: keep existing ones, allocate the lowest free id for new services.
        let used: BTreeSet<u32> = self
            .service_ids
            .iter()
            .filter(|(k, _)| desired.contains_key(k))
            .map(|(_, id)| *id)
            .collect();
        self.service_ids.retain(|k, _| desired.contains_key(k));
        let mut free = (0..self.limits.max_services).filter(|id| !used.contains(id));
        for key in desired.keys() {
            if !self.service_ids.contains_key(key) {
                let id = free.next().ok_or(L4Error::Full("L4 services"))?;
                self.service_ids.insert(*key, id);
            }
        }

        // Tables first (with their backends), then service entries.
        let mut released = Vec::new();
        for (key, eps) in &desired {
            let id = self.service_ids[key];
            if key.0 == PROTO_UDP {
                let live: HashSet<Backend> = real(eps).copied().collect();
                let left = match self.tables.get(&id) {
                    Some((old, _)) => real(old).any(|b| !live.contains(b)),
                    None => self.recovered,
                };
                if left {
                    udp_live.insert(id, live);
                } else {
                    // An id reused by a new service this apply: its flows are its own.
                    udp_live.remove(&id);
                }
            }
            if self.tables.get(&id).is_some_and(|(old, _)| old == eps) {
                continue;
            }
            let mut ids = Vec::with_capacity(eps.len());
            for (b, _) in eps {
                if b.family == 0 {
                    ids.push(0); // the rejected share
                    continue;
                }
                let (bid, new) = self.acquire_backend(*b)?;
                if new {
                    let mut arr: Array<&mut MapData, Backend> =
                        Array::try_from(map(ebpf, maps::BACKENDS)?)
                            .map_err(L4Error::map("open backends"))?;
                    arr.set(bid, b, 0).map_err(L4Error::map("write backend"))?;
                    report.backends_written += 1;
                }
                ids.push(bid);
            }
            let keys: Vec<Vec<u8>> = eps.iter().map(|(b, _)| maglev_key(b)).collect();
            let weights: Vec<f64> = eps.iter().map(|(_, w)| *w).collect();
            let table: Vec<u32> = maglev::weighted(&keys, &weights, self.limits.maglev_size)?
                .into_iter()
                .map(|i| ids.get(i as usize).copied().unwrap_or(0))
                .collect();
            let old = self.tables.remove(&id);
            let (slots, values): (Vec<u32>, Vec<u32>) = table
                .iter()
                .enumerate()
                .filter(|(i, v)| old.as_ref().is_none_or(|(_, t)| t.get(*i) != Some(v)))
                .map(|(i, v)| (id * self.limits.maglev_size + i as u32, *v))
                .unzip();
            if real(eps).next().is_some() {
                let m = map(ebpf, maps::MAGLEV)?;
                let fd = data(m, maps::MAGLEV)?.fd().as_fd().as_raw_fd();
                bpf_batch::update_u32_array(fd, &slots, &values)
                    .map_err(|e| L4Error::Io("writing Maglev table", e))?;
                report.slots_written += slots.len();
            }
            if let Some((old_eps, _)) = old {
                released.extend(real(&old_eps).copied());
            }
            self.tables.insert(id, (eps.clone(), table));
        }

        // Service entries: the Gateway's address, or every node address of the family.
        let mut want: BTreeMap<ServiceKey, ServiceValue> = BTreeMap::new();
        for (key @ (p, port, family, scope), eps) in &desired {
            let value = ServiceValue {
                id: self.service_ids[key],
                flags: 0,
                endpoints: u32::try_from(real(eps).count()).unwrap_or(u32::MAX),
                _pad: 0,
            };
            if *scope != [0; 16] {
                let k = ServiceKey {
                    addr: *scope,
                    port: port.to_be(),
                    proto: *p,
                    family: *family,
                };
                want.insert(k, value);
                continue;
            }
            let same_family = |a: &&IpAddr| a.is_ipv4() == (*family == FAMILY_V4);
            for addr in node_addrs.iter().filter(same_family) {
                // Node-wide tables come first (scope zero sorts first), so a Gateway's own
                // address that is also a node address gets the Gateway's table.
                want.entry(service_key(*addr, *port, *p)).or_insert(value);
            }
        }
        {
            let mut svc: BpfHashMap<&mut MapData, ServiceKey, ServiceValue> =
                BpfHashMap::try_from(map(ebpf, maps::SERVICES)?)
                    .map_err(L4Error::map("open services"))?;
            for (k, v) in &want {
                if self.services.get(k) != Some(v) {
                    svc.insert(k, v, 0).map_err(L4Error::map("write service"))?;
                    report.services_written += 1;
                }
            }
            let gone: Vec<ServiceKey> = self
                .services
                .keys()
                .filter(|k| !want.contains_key(k))
                .copied()
                .collect();
            for k in gone {
                match svc.remove(&k) {
                    Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                    Err(e) => {
                        return Err(L4Error::Map {
                            what: "remove service",
                            source: e,
                        });
                    }
                }
                report.services_removed += 1;
            }
        }
        self.services = want;

        // Tables of removed services release their backends too.
        let live: BTreeSet<u32> = self.service_ids.values().copied().collect();
        let dead: Vec<u32> = self
            .tables
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        for id in dead {
            if let Some((eps, _)) = self.tables.remove(&id) {
                released.extend(real(&eps).copied());
            }
        }
        for b in released {
            self.release_backend(&b);
        }
        // Backends recovered after a restart that nothing uses any more.
        let unused: Vec<Backend> = self
            .backend_ids
            .iter()
            .filter(|(_, id)| self.backend_refs.get(id).copied().unwrap_or(0) == 0)
            .map(|(b, _)| *b)
            .collect();
        for b in unused {
            if let Some(id) = self.backend_ids.remove(&b) {
                self.backend_refs.remove(&id);
            }
        }
        if !report.skipped.is_empty() {
            warn!(skipped = ?report.skipped, "L4 services left to the userspace proxy or unsupported");
        }
        // Last, with the new tables in place: the next datagram of a purged flow must find
        // only live endpoints. The maps are programmed by now, so a failure here is not a
        // failed apply; the flows then expire on --udp-timeout as before.
        match conntrack::purge_udp(ebpf, &udp_live) {
            Ok(n) => report.udp_flows_purged = n,
            Err(e) => warn!(error = %e, "deleting UDP flows whose endpoint left their service"),
        }
        self.recovered = false;
        Ok(report)
    }

    fn acquire_backend(&mut self, b: Backend) -> Result<(u32, bool), L4Error> {
        if let Some(id) = self.backend_ids.get(&b) {
            *self.backend_refs.entry(*id).or_default() += 1;
            return Ok((*id, false));
        }
        let id = (1..self.limits.max_backends)
            .find(|id| !self.backend_refs.contains_key(id))
            .ok_or(L4Error::Full("L4 backends"))?;
        self.backend_ids.insert(b, id);
        self.backend_refs.insert(id, 1);
        Ok((id, true))
    }

    fn release_backend(&mut self, b: &Backend) {
        let Some(id) = self.backend_ids.get(b).copied() else {
            return;
        };
        let refs = self.backend_refs.entry(id).or_default();
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            // The slot keeps its bytes: a packet that read the old table a moment ago still
            // finds a valid address. It is overwritten only when the id is reused.
            self.backend_refs.remove(&id);
            self.backend_ids.remove(b);
        }
    }

    /// Service ids of an external port (one per address family and Gateway address
    /// served), for stats.
    pub fn service_ids(&self, protocol: L4Protocol, port: u16) -> Vec<u32> {
        self.service_ids
            .iter()
            .filter(|((p, q, _, _), _)| *p == proto(protocol) && *q == port)
            .map(|(_, id)| *id)
            .collect()
    }
}
