//! Reads the pinned eBPF maps for a scrape: global counters, per-service counters and how
//! full conntrack is. Opening the pins (instead of borrowing the loaded object) keeps the
//! exporter independent of the L4 plane's task, and works for a controller that reuses maps
//! pinned by its predecessor.

use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray};
use ingress_common::{
    l4::{CtEntry, FlowKey, ServiceKey, ServiceStats, ServiceValue},
    maps,
};

use crate::l4::stats::{self as l4stats, Totals};

/// Reading a pinned map failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A map could not be opened or read.
    #[error("{what} {map}: {source}")]
    Map {
        /// What was being done.
        what: &'static str,
        /// The map's name.
        map: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// The global counters could not be read.
    #[error("reading packet counters: {0}")]
    Totals(#[from] crate::l4::L4Error),
}

/// Summed per-CPU counters of one L4 service in one address family (each family has its
/// own service id, Maglev table and counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceCounters {
    /// IP protocol (`PROTO_TCP` or `PROTO_UDP`).
    pub proto: u8,
    /// Address family (`FAMILY_V4` or `FAMILY_V6`).
    pub family: u8,
    /// External port, host byte order.
    pub port: u16,
    /// The service id (its stats slot).
    pub id: u32,
    /// Counters summed over CPUs.
    pub stats: ServiceStats,
}

/// What one scrape reads from the kernel.
#[derive(Clone, Debug, Default)]
pub struct KernelStats {
    /// Global counters.
    pub totals: Totals,
    /// Per-service counters, one per (protocol, port, family), sorted.
    pub services: Vec<ServiceCounters>,
}

/// Conntrack occupancy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conntrack {
    /// Forward entries (flows).
    pub flows: usize,
    /// Capacity of the forward table.
    pub capacity: u32,
}

impl Conntrack {
    /// Share of the table in use.
    pub fn fullness(&self) -> f64 {
        if self.capacity == 0 {
            return 0.0;
        }
        #[expect(clippy::cast_precision_loss, reason = "table sizes are far below 2^52")]
        let flows = self.flows as f64;
        flows / f64::from(self.capacity)
    }
}

fn open(dir: &Path, name: &'static str) -> Result<MapData, KernelError> {
    MapData::from_pin(dir.join(name)).map_err(|source| KernelError::Map {
        what: "opening pinned",
        map: name,
        source,
    })
}

fn err(what: &'static str, map: &'static str) -> impl Fn(MapError) -> KernelError {
    move |source| KernelError::Map { what, map, source }
}

/// Reads the global and per-service counters from the maps pinned under `dir`.
pub fn read(dir: &Path) -> Result<KernelStats, KernelError> {
    let totals = l4stats::read_pinned(dir)?;
    let services = Map::HashMap(open(dir, maps::SERVICES)?);
    let services: BpfHashMap<&MapData, ServiceKey, ServiceValue> =
        BpfHashMap::try_from(&services).map_err(err("opening", maps::SERVICES))?;
    let mut ids = std::collections::BTreeMap::new();
    for item in services.iter() {
        let (k, v) = item.map_err(err("reading", maps::SERVICES))?;
        // Every node address of a family shares that family's id; the families differ.
        ids.insert((k.proto, u16::from_be(k.port), k.family), v.id);
    }
    let stats = Map::PerCpuArray(open(dir, maps::SERVICE_STATS)?);
    let stats: PerCpuArray<&MapData, ServiceStats> =
        PerCpuArray::try_from(&stats).map_err(err("opening", maps::SERVICE_STATS))?;
    let mut out = Vec::with_capacity(ids.len());
    for ((proto, port, family), id) in ids {
        let per_cpu = stats
            .get(&id, 0)
            .map_err(err("reading", maps::SERVICE_STATS))?;
        let mut sum = ServiceStats::default();
        for v in per_cpu.iter() {
            sum.packets += v.packets;
            sum.bytes += v.bytes;
            sum.new_flows += v.new_flows;
            sum.drop_snat_exhausted += v.drop_snat_exhausted;
            sum.drop_ct_full += v.drop_ct_full;
        }
        out.push(ServiceCounters {
            proto,
            family,
            port,
            id,
            stats: sum,
        });
    }
    Ok(KernelStats {
        totals,
        services: out,
    })
}

/// Counts the forward conntrack entries (a walk over the table: cache the result).
pub fn conntrack(dir: &Path) -> Result<Conntrack, KernelError> {
    let data = open(dir, maps::CT_FWD)?;
    let capacity = data
        .info()
        .map_err(err("inspecting", maps::CT_FWD))?
        .max_entries();
    let map = Map::HashMap(data);
    let fwd: BpfHashMap<&MapData, FlowKey, CtEntry> =
        BpfHashMap::try_from(&map).map_err(err("opening", maps::CT_FWD))?;
    let flows = fwd.keys().filter(Result::is_ok).count();
    Ok(Conntrack { flows, capacity })
}
