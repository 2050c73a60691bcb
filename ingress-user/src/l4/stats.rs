//! Reading the per-CPU packet counters.

use std::path::Path;

use aya::maps::{Map, MapData, PerCpuArray};
use ingress_common::stats::{Counter, PacketCount};

use super::L4Error;

/// Summed counters, indexed like [`Counter::ALL`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals(pub [PacketCount; Counter::COUNT as usize]);

impl Totals {
    /// The total for one counter.
    pub fn get(&self, c: Counter) -> PacketCount {
        self.0[c as usize]
    }
}

/// Sums every CPU's slot of every counter.
pub fn read(map: &PerCpuArray<&MapData, PacketCount>) -> Result<Totals, L4Error> {
    let mut totals = Totals::default();
    for c in Counter::ALL {
        let per_cpu = map
            .get(&(c as u32), 0)
            .map_err(L4Error::map("read counters"))?;
        let t = &mut totals.0[c as usize];
        for v in per_cpu.iter() {
            t.packets += v.packets;
            t.bytes += v.bytes;
        }
    }
    Ok(totals)
}

/// Reads the counters from the pinned map under `pin_dir` (for tools and tests that did not
/// load the programs themselves).
pub fn read_pinned(pin_dir: &Path) -> Result<Totals, L4Error> {
    let path = pin_dir.join(ingress_common::maps::STATS);
    let data = MapData::from_pin(&path).map_err(L4Error::map("open pinned counters"))?;
    let map = Map::PerCpuArray(data);
    let array: PerCpuArray<&MapData, PacketCount> =
        PerCpuArray::try_from(&map).map_err(L4Error::map("open pinned counters"))?;
    read(&array)
}
