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
    /// New flows to a service (conntrack entries created).
    NewFlow = 9,
    /// Packets of known flows, client → backend direction.
    CtForward = 10,
    /// Packets of known flows, backend → client direction (reverse NAT).
    CtReply = 11,
    /// NATed packets sent out of another interface (`XDP_REDIRECT` / `bpf_redirect*`).
    Redirected = 12,
    /// NATed packets sent back out of the receiving interface (`XDP_TX`).
    Transmitted = 13,
    /// NATed packets handed to the kernel stack (no FIB result usable from this hook).
    PassedNat = 14,
    /// Packets XDP left untouched for the TC program because the neighbour is unresolved.
    DeferredToTc = 15,
    /// Packets to a service without endpoints, left to the stack (which answers RST/ICMP).
    NoEndpoints = 16,
    /// New flows dropped because the conntrack table is full.
    DropCtFull = 17,
    /// New flows dropped because no free SNAT port was found.
    DropSnatExhausted = 18,
    /// Packets dropped because the FIB has no usable route.
    DropNoRoute = 19,
    /// Packets dropped because userspace has not written the NAT configuration yet.
    DropNotReady = 20,
    /// ICMP/ICMPv6 errors quoting a NATed flow, translated (outer and quoted headers).
    IcmpTranslated = 21,
    /// ICMP/ICMPv6 errors (destination unreachable, packet too big, time exceeded) that quote
    /// no known flow, or a quote too short to tell: left to the stack untouched.
    IcmpUntranslated = 22,
    /// Non-first fragments of a NATed datagram, translated like their first fragment.
    FragmentTranslated = 23,
    /// Non-first fragments whose first fragment was not NATed (not seen yet, or not of a
    /// service): left to the stack untouched, never forwarded.
    FragmentUntracked = 24,
    /// Sockets on the node whose connect (TCP, UDP) or sendmsg (unconnected UDP) to a node
    /// address and service port was rewritten to an endpoint by the cgroup hooks
    /// (node-local access). Bytes stay zero: no packet is involved.
    SockTranslated = 25,
    /// UDP replies whose source the cgroup recvmsg/getpeername hooks turned back from the
    /// endpoint into the service address.
    SockReverse = 26,
    /// A SYN for a service with a wrong TCP checksum, dropped before it opened a flow (XDP
    /// only: there frames carry the sender's full checksum).
    DropBadChecksum = 27,
}

impl Counter {
    /// Number of counters, i.e. the `max_entries` of the stats array.
    pub const COUNT: u32 = 28;

    /// `max_entries` of the pinned counter array: room for counters added later without a
    /// new map name (userspace reads only the first [`Counter::COUNT`]).
    pub const CAPACITY: u32 = 64;

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
        Counter::NewFlow,
        Counter::CtForward,
        Counter::CtReply,
        Counter::Redirected,
        Counter::Transmitted,
        Counter::PassedNat,
        Counter::DeferredToTc,
        Counter::NoEndpoints,
        Counter::DropCtFull,
        Counter::DropSnatExhausted,
        Counter::DropNoRoute,
        Counter::DropNotReady,
        Counter::IcmpTranslated,
        Counter::IcmpUntranslated,
        Counter::FragmentTranslated,
        Counter::FragmentUntracked,
        Counter::SockTranslated,
        Counter::SockReverse,
        Counter::DropBadChecksum,
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
            Counter::NewFlow => "new_flow",
            Counter::CtForward => "ct_forward",
            Counter::CtReply => "ct_reply",
            Counter::Redirected => "redirected",
            Counter::Transmitted => "transmitted",
            Counter::PassedNat => "passed_nat",
            Counter::DeferredToTc => "deferred_to_tc",
            Counter::NoEndpoints => "no_endpoints",
            Counter::DropCtFull => "drop_ct_full",
            Counter::DropSnatExhausted => "drop_snat_exhausted",
            Counter::DropNoRoute => "drop_no_route",
            Counter::DropNotReady => "drop_not_ready",
            Counter::IcmpTranslated => "icmp_translated",
            Counter::IcmpUntranslated => "icmp_untranslated",
            Counter::FragmentTranslated => "fragment_translated",
            Counter::FragmentUntracked => "fragment_untracked",
            Counter::SockTranslated => "sock_translated",
            Counter::SockReverse => "sock_reverse",
            Counter::DropBadChecksum => "drop_bad_checksum",
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
        const {
            assert!(
                Counter::COUNT <= Counter::CAPACITY,
                "room in the pinned array"
            );
        };
    }
}
