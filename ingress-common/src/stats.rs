//! Per-CPU packet counters kept by the eBPF programs.

/// Index into the per-CPU counter array. Values are stable: they are array keys in a pinned map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Every packet the program saw.
    Seen = 0,
    /// IPv4 packets.
    Ipv4 = 1,
    /// IPv6 packets.
    Ipv6 = 2,
    /// TCP segments (either family).
    Tcp = 3,
    /// UDP datagrams (either family).
    Udp = 4,
    /// IP packets carrying another protocol (ICMP, SCTP, ...).
    OtherL4 = 5,
    /// Non-IP frames (ARP, LLDP, ...).
    NonIp = 6,
    /// Headers that are truncated or inconsistent.
    Malformed = 7,
    /// Non-first IP fragments (no L4 header to inspect).
    Fragment = 8,
}

impl Counter {
    /// Number of counters, i.e. the `max_entries` of the stats array.
    pub const COUNT: u32 = 9;

    /// All counters in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Seen,
        Counter::Ipv4,
        Counter::Ipv6,
        Counter::Tcp,
        Counter::Udp,
        Counter::OtherL4,
        Counter::NonIp,
        Counter::Malformed,
        Counter::Fragment,
    ];

    /// A stable snake_case name, used for log fields and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::Ipv4 => "ipv4",
            Counter::Ipv6 => "ipv6",
            Counter::Tcp => "tcp",
            Counter::Udp => "udp",
            Counter::OtherL4 => "other_l4",
            Counter::NonIp => "non_ip",
            Counter::Malformed => "malformed",
            Counter::Fragment => "fragment",
        }
    }
}

/// One per-CPU counter cell.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCount {
    /// Packets.
    pub packets: u64,
    /// Bytes, as seen by the program (L2 frame length).
    pub bytes: u64,
}

#[cfg(feature = "user")]
// SAFETY: `PacketCount` is `repr(C)`, made of two u64 and has no padding.
unsafe impl aya::Pod for PacketCount {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_indexes_are_dense_and_ordered() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{} out of place", c.name());
        }
    }
}
