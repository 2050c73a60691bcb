//! `xdp-ingress inspect services|flows|counters`: what the kernel path holds, read from the
//! maps pinned under `--bpf-pin-path`. It opens the pins itself, so it works beside a running
//! controller, after it exited (the programs stay attached), or with none ever started in
//! this pod: the `cilium bpf lb list` / `cilium bpf ct list` of xdp-ingress.
//!
//! [`read`] turns maps into plain rows; [`render`] (pure) filters and prints them.

pub mod render;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray};
use ingress_common::{
    l4::{
        Backend, CtEntry, FAMILY_V6, FlowKey, NatConfig, PROTO_TCP, SVC_F_DNAT_ONLY, ServiceKey,
        ServiceStats, ServiceValue, ct,
    },
    maps,
    stats::Counter,
};
use serde::Serialize;

use crate::l4::{conntrack::monotonic_ns, stats as l4stats};

/// Reading the pinned maps failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A map is not pinned there (no controller ever attached with this `--bpf-pin-path`).
    #[error(
        "{map} is not pinned in {dir} (has a controller attached with --bpf-pin-path {dir}?): {source}"
    )]
    NotPinned {
        /// The map.
        map: &'static str,
        /// The pin directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: MapError,
    },
    /// A map could not be read.
    #[error("reading {map}: {source}")]
    Read {
        /// The map.
        map: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// The global counters could not be read.
    #[error("reading packet counters: {0}")]
    Totals(#[from] crate::l4::L4Error),
}

/// One endpoint of a service and its share of the Maglev table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointShare {
    /// Endpoint address and port.
    pub endpoint: SocketAddr,
    /// Maglev slots pointing at it.
    pub slots: u32,
    /// `slots` over the table size: the share of new flows it gets.
    pub share: f64,
}

/// The per-service counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Packets (both directions).
    pub packets: u64,
    /// Bytes (both directions).
    pub bytes: u64,
    /// Flows created.
    pub new_flows: u64,
    /// New flows dropped: no free SNAT port.
    pub drop_snat_exhausted: u64,
    /// New flows dropped: conntrack full.
    pub drop_ct_full: u64,
}

impl From<ServiceStats> for Counters {
    fn from(s: ServiceStats) -> Self {
        Self {
            packets: s.packets,
            bytes: s.bytes,
            new_flows: s.new_flows,
            drop_snat_exhausted: s.drop_snat_exhausted,
            drop_ct_full: s.drop_ct_full,
        }
    }
}

/// One L4 service in one address family.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Service {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// The addresses it answers on; `None` stands for any local address.
    pub addresses: Vec<Option<IpAddr>>,
    /// The external port.
    pub port: u16,
    /// Its id (Maglev table and stats slot).
    pub id: u32,
    /// Translates the destination only (keeps the client address).
    pub dnat_only: bool,
    /// Endpoints, by address.
    pub endpoints: Vec<EndpointShare>,
    /// Counters.
    pub counters: Counters,
}

/// One conntrack flow (its forward entry, with the state of both).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// The client, as it sent.
    pub client: SocketAddr,
    /// The node address and service port it sent to.
    pub service: SocketAddr,
    /// The endpoint it is translated to.
    pub endpoint: SocketAddr,
    /// The source the endpoint sees (node address and SNAT port); `None` with DNAT only.
    pub snat: Option<SocketAddr>,
    /// `embryonic`, `established`, `closing` (one FIN), `closed` (FINs or RST), or
    /// `active` (UDP).
    pub state: &'static str,
    /// Time since the flow's last packet (either direction). Conntrack keeps no creation
    /// time, so this is the age of its last activity.
    #[serde(rename = "idle_seconds", serialize_with = "seconds")]
    pub idle: Duration,
    /// The service id.
    pub service_id: u32,
}

/// Global counters and drops by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Non-drop counters by name: packets.
    pub counters: BTreeMap<&'static str, u64>,
    /// Drop counters by reason (`ct_full`, `snat_exhausted`, `no_route`, ...): packets.
    pub drops: BTreeMap<&'static str, u64>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

fn open(dir: &Path, map: &'static str) -> Result<MapData, Error> {
    MapData::from_pin(dir.join(map)).map_err(|source| Error::NotPinned {
        map,
        dir: dir.to_owned(),
        source,
    })
}

fn read_err(map: &'static str) -> impl Fn(MapError) -> Error {
    move |source| Error::Read { map, source }
}

/// An address from a map's 16-byte field.
fn ip(family: u8, addr: [u8; 16]) -> IpAddr {
    if family == FAMILY_V6 {
        IpAddr::V6(Ipv6Addr::from(addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    }
}

fn protocol(p: u8) -> &'static str {
    if p == PROTO_TCP { "tcp" } else { "udp" }
}

fn family(f: u8) -> &'static str {
    if f == FAMILY_V6 { "ipv6" } else { "ipv4" }
}

/// Every service in the maps under `dir`, sorted by protocol, port and family.
pub fn services(dir: &Path) -> Result<Vec<Service>, Error> {
    let keys = Map::HashMap(open(dir, maps::SERVICES)?);
    let keys: BpfHashMap<&MapData, ServiceKey, ServiceValue> =
        BpfHashMap::try_from(&keys).map_err(read_err(maps::SERVICES))?;
    let mut grouped: BTreeMap<(&'static str, u16, &'static str), Service> = BTreeMap::new();
    for item in keys.iter() {
        let (k, v) = item.map_err(read_err(maps::SERVICES))?;
        let address = (k.addr != [0; 16]).then(|| ip(k.family, k.addr));
        let entry = grouped
            .entry((protocol(k.proto), u16::from_be(k.port), family(k.family)))
            .or_insert_with(|| Service {
                protocol: protocol(k.proto),
                family: family(k.family),
                addresses: Vec::new(),
                port: u16::from_be(k.port),
                id: v.id,
                dnat_only: v.flags & SVC_F_DNAT_ONLY != 0,
                endpoints: Vec::new(),
                counters: Counters::default(),
            });
        entry.addresses.push(address);
    }
    let config = Map::Array(open(dir, maps::NAT_CONFIG)?);
    let config: Array<&MapData, NatConfig> =
        Array::try_from(&config).map_err(read_err(maps::NAT_CONFIG))?;
    let size = config
        .get(&0, 0)
        .map_err(read_err(maps::NAT_CONFIG))?
        .maglev_size;
    let maglev = Map::Array(open(dir, maps::MAGLEV)?);
    let maglev: Array<&MapData, u32> = Array::try_from(&maglev).map_err(read_err(maps::MAGLEV))?;
    let backends = Map::Array(open(dir, maps::BACKENDS)?);
    let backends: Array<&MapData, Backend> =
        Array::try_from(&backends).map_err(read_err(maps::BACKENDS))?;
    let stats = Map::PerCpuArray(open(dir, maps::SERVICE_STATS)?);
    let stats: PerCpuArray<&MapData, ServiceStats> =
        PerCpuArray::try_from(&stats).map_err(read_err(maps::SERVICE_STATS))?;
    let mut out = Vec::with_capacity(grouped.len());
    for (_, mut s) in grouped {
        s.addresses.sort();
        let mut slots: BTreeMap<u32, u32> = BTreeMap::new();
        if size > 0 {
            for slot in 0..size {
                let id = maglev
                    .get(&(s.id * size + slot), 0)
                    .map_err(read_err(maps::MAGLEV))?;
                if id != 0 {
                    *slots.entry(id).or_default() += 1;
                }
            }
        }
        let mut endpoints = Vec::with_capacity(slots.len());
        for (id, n) in slots {
            let b = backends.get(&id, 0).map_err(read_err(maps::BACKENDS))?;
            endpoints.push((
                SocketAddr::new(ip(b.family, b.addr), u16::from_be(b.port)),
                n,
            ));
        }
        s.endpoints = render::shares(endpoints, size);
        let mut sum = ServiceStats::default();
        for v in stats
            .get(&s.id, 0)
            .map_err(read_err(maps::SERVICE_STATS))?
            .iter()
        {
            sum.packets += v.packets;
            sum.bytes += v.bytes;
            sum.new_flows += v.new_flows;
            sum.drop_snat_exhausted += v.drop_snat_exhausted;
            sum.drop_ct_full += v.drop_ct_full;
        }
        s.counters = sum.into();
        out.push(s);
    }
    Ok(out)
}

/// Every flow in conntrack under `dir` (forward entries, with their reply entry's state).
pub fn flows(dir: &Path) -> Result<Vec<Flow>, Error> {
    let fwd = Map::HashMap(open(dir, maps::CT_FWD)?);
    let fwd: BpfHashMap<&MapData, FlowKey, CtEntry> =
        BpfHashMap::try_from(&fwd).map_err(read_err(maps::CT_FWD))?;
    let rev = Map::HashMap(open(dir, maps::CT_REV)?);
    let rev: BpfHashMap<&MapData, FlowKey, CtEntry> =
        BpfHashMap::try_from(&rev).map_err(read_err(maps::CT_REV))?;
    let now = monotonic_ns();
    let mut out = Vec::new();
    for item in fwd.iter() {
        // An entry deleted while walking ends the walk's view of it, not the command.
        let Ok((k, e)) = item else { continue };
        let reply = rev.get(&e.peer, 0).ok();
        let state = e.state | reply.map_or(0, |r| r.state);
        let last = reply.map_or(e.last_seen_ns, |r| r.last_seen_ns.max(e.last_seen_ns));
        let client = SocketAddr::new(ip(k.family, k.src), u16::from_be(k.sport));
        let sent_as = SocketAddr::new(ip(k.family, e.src), u16::from_be(e.sport));
        out.push(Flow {
            protocol: protocol(k.proto),
            client,
            service: SocketAddr::new(ip(k.family, k.dst), u16::from_be(k.dport)),
            endpoint: SocketAddr::new(ip(k.family, e.dst), u16::from_be(e.dport)),
            snat: (sent_as != client).then_some(sent_as),
            state: state_name(k.proto, state),
            idle: Duration::from_nanos(now.saturating_sub(last)),
            service_id: e.service_id,
        });
    }
    out.sort_by_key(|f| (f.service, f.client));
    Ok(out)
}

/// The global counters under `dir`.
pub fn totals(dir: &Path) -> Result<Totals, Error> {
    let t = l4stats::read_pinned(dir)?;
    let mut out = Totals::default();
    for c in Counter::ALL {
        let v = t.get(c).packets;
        match c.name().strip_prefix("drop_") {
            Some(reason) => out.drops.insert(reason, v),
            None => out.counters.insert(c.name(), v),
        };
    }
    Ok(out)
}

/// What `inspect` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What<'a> {
    /// `inspect services`.
    Services,
    /// `inspect flows`, filtered.
    Flows(&'a render::FlowFilter),
    /// `inspect counters`.
    Counters,
}

/// Reads what `what` needs from `dir` and renders it (`json`: one JSON document).
pub fn run(dir: &Path, what: What<'_>, json: bool) -> Result<String, Error> {
    Ok(match what {
        What::Services => render::services(&services(dir)?, json),
        What::Flows(filter) => {
            let all = flows(dir)?;
            let kept: Vec<Flow> = all.into_iter().filter(|f| filter.keeps(f)).collect();
            render::flows(&kept, json)
        }
        What::Counters => render::counters(&totals(dir)?, &services(dir)?, json),
    })
}

/// The state bits as the name `inspect flows` prints.
pub(crate) fn state_name(proto: u8, state: u8) -> &'static str {
    if proto != PROTO_TCP {
        "active"
    } else if ct::closed(state) {
        "closed"
    } else if state & (ct::FIN_FWD | ct::FIN_REV) != 0 {
        "closing"
    } else if state & ct::EMBRYONIC != 0 {
        "embryonic"
    } else {
        "established"
    }
}
