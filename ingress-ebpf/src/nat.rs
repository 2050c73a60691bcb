//! Full NAT for L4 services: conntrack lookup, new-flow setup (Maglev + SNAT port), rewrite
//! and the forwarding decision. Written once over [`NatCtx`]; XDP and TC differ only in the
//! primitives and in what they do when the neighbour is unknown.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{
        BPF_ANY, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_NOEXIST,
        bpf_fib_lookup as FibParams,
    },
    helpers::{bpf_csum_diff, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_loop},
};
use ingress_common::{
    csum,
    l4::{
        CtEntry, FAMILY_V4, FAMILY_V6, FlowKey, FragEntry, FragKey, PROTO_TCP, PROTO_UDP,
        ServiceKey, ct, flow_hash, snat,
    },
    stats::Counter,
};
use network_types::ip::IpProto;

use crate::{
    ctx::{L4Csum, NatCtx},
    maps::{
        XI_BACKENDS_V1, XI_CT_FWD_V1, XI_CT_REV_V1, XI_FRAG_V1, XI_MAGLEV_V1, XI_NAT_CONFIG_V1,
        XI_SCRATCH, XI_SERVICES_V1,
    },
    parse::{Family, Fragment, Headers, Icmp},
    stats::{self, ServiceDrop},
};

/// Which hook runs the core.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// XDP: cannot resolve neighbours, so it leaves such packets to TC.
    Xdp,
    /// TC: resolves neighbours with `bpf_redirect_neigh`.
    Tc,
}

/// What to do with the packet.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Action {
    /// Not ours (or left to the stack / TC): let it continue untouched.
    Pass = 0,
    /// Drop it.
    Drop = 1,
    /// Rewritten; send out of the receiving interface.
    Tx = 2,
    /// Rewritten; send out of `ifindex`, L2 already set.
    Redirect = 3,
    /// Rewritten; send out of `ifindex`, letting the kernel resolve the neighbour (TC).
    RedirectNeigh = 4,
}

/// An [`Action`] and, for redirects, the interface.
///
/// A struct rather than an enum with payloads: with a payload-carrying enum, LLVM may copy
/// the (undefined) payload of a variant without one out of a register a helper call
/// clobbered, which the verifier rejects (`R2 !read_ok`). Every field here is always set.
#[derive(Clone, Copy)]
pub struct Verdict {
    /// What to do.
    pub action: Action,
    /// Output interface of a redirect; 0 otherwise.
    pub ifindex: u32,
}

impl Verdict {
    /// Let the packet continue untouched.
    pub const PASS: Self = Self::new(Action::Pass, 0);
    /// Drop it.
    pub const DROP: Self = Self::new(Action::Drop, 0);
    /// Send it back out of the receiving interface.
    pub const TX: Self = Self::new(Action::Tx, 0);

    const fn new(action: Action, ifindex: u32) -> Self {
        Self { action, ifindex }
    }

    /// Send it out of `ifindex`, L2 already set.
    pub const fn redirect(ifindex: u32) -> Self {
        Self::new(Action::Redirect, ifindex)
    }

    /// Send it out of `ifindex`, the kernel resolving the neighbour.
    pub const fn redirect_neigh(ifindex: u32) -> Self {
        Self::new(Action::RedirectNeigh, ifindex)
    }

    /// As one integer, what the packet-path subprograms return: a struct would come back
    /// through a pointer, and the verifier refuses a subprogram that leaves a stack pointer
    /// in R0.
    #[inline(always)]
    pub const fn to_bits(self) -> u64 {
        (self.action as u64) | ((self.ifindex as u64) << 32)
    }

    /// The inverse of [`Verdict::to_bits`].
    #[inline(always)]
    pub const fn from_bits(bits: u64) -> Self {
        let action = match bits as u8 {
            0 => Action::Pass,
            1 => Action::Drop,
            2 => Action::Tx,
            3 => Action::Redirect,
            4 => Action::RedirectNeigh,
            _ => Action::Drop,
        };
        Self::new(action, (bits >> 32) as u32)
    }
}

const AF_INET: u8 = 2;
const EEXIST: i32 = -17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const IP_TTL_OFF: usize = 8;
const IP_CSUM_OFF: usize = 10;
const IP_SRC_OFF: usize = 12;
const IP_DST_OFF: usize = 16;
const IP6_HOP_OFF: usize = 7;
const IP6_SRC_OFF: usize = 8;
const IP6_DST_OFF: usize = 24;
const AF_INET6: u8 = 10;

#[inline(always)]
fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0] = a[0];
    out[1] = a[1];
    out[2] = a[2];
    out[3] = a[3];
    out
}

#[inline(always)]
fn first4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

/// An address as the four network-order words `bpf_fib_lookup` takes.
#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

/// What the conntrack state machine reads from a TCP header (all zero for UDP).
#[derive(Clone, Copy)]
struct Tcp {
    flags: u8,
    /// Sequence number, host order.
    seq: u32,
    /// Acknowledgment number, host order.
    ack: u32,
}

/// Runs the NAT core on a parsed TCP/UDP packet (IPv4 or IPv6); see [`Verdict::to_bits`].
///
/// This and [`process_icmp`] and [`process_fragment`] are BPF subprograms of their own
/// (`inline(never)`): each packet path gets its own stack frame, where inlined together
/// they would exceed the 512-byte BPF stack.
#[inline(never)]
pub fn process<C: NatCtx>(ctx: &mut C, h: &Headers, hook: Hook, bytes: u64) -> u64 {
    process_l4(ctx, h, hook, bytes).to_bits()
}

/// An ICMP or ICMPv6 error (see [`icmp`]); see [`Verdict::to_bits`].
#[inline(never)]
pub fn process_icmp<C: NatCtx>(ctx: &mut C, i: &Icmp, hook: Hook, bytes: u64) -> u64 {
    icmp(ctx, i, hook, bytes).to_bits()
}

/// A non-first fragment (see [`fragment`]); see [`Verdict::to_bits`].
#[inline(never)]
pub fn process_fragment<C: NatCtx>(ctx: &mut C, f: &Fragment, hook: Hook, bytes: u64) -> u64 {
    fragment(ctx, f, hook, bytes).to_bits()
}

/// The TCP/UDP path of [`process`].
#[inline(always)]
fn process_l4<C: NatCtx>(ctx: &mut C, h: &Headers, hook: Hook, bytes: u64) -> Verdict {
    let proto = if h.proto == IpProto::Tcp {
        PROTO_TCP
    } else {
        PROTO_UDP
    };
    let Some(ports) = ctx.ptr_at::<[u8; 4]>(h.l4_off) else {
        return Verdict::PASS;
    };
    // SAFETY: bounds-checked by `ptr_at`.
    let p = unsafe { *ports };
    let mut key = FlowKey {
        src: [0; 16],
        dst: [0; 16],
        sport: u16::from_ne_bytes([p[0], p[1]]),
        dport: u16::from_ne_bytes([p[2], p[3]]),
        proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    };
    // (TTL or hop limit, the byte after it: the IPv4 protocol, for the header checksum word)
    let (ttl, ip_proto) = match h.family {
        Family::V4 => {
            let Some(hdr) = ctx.ptr_at::<[u8; 20]>(h.l3_off) else {
                return Verdict::PASS;
            };
            // SAFETY: bounds-checked by `ptr_at`.
            let ip = unsafe { &*hdr };
            key.src = v4([ip[IP_SRC_OFF], ip[13], ip[14], ip[15]]);
            key.dst = v4([ip[IP_DST_OFF], ip[17], ip[18], ip[19]]);
            (ip[IP_TTL_OFF], ip[9])
        }
        Family::V6 => {
            let (Some(src), Some(dst), Some(hop)) = (
                ctx.ptr_at::<[u8; 16]>(h.l3_off + IP6_SRC_OFF),
                ctx.ptr_at::<[u8; 16]>(h.l3_off + IP6_DST_OFF),
                ctx.ptr_at::<u8>(h.l3_off + IP6_HOP_OFF),
            ) else {
                return Verdict::PASS;
            };
            // SAFETY: bounds-checked by `ptr_at`.
            unsafe {
                key.src = *src;
                key.dst = *dst;
                key.family = FAMILY_V6;
                (*hop, 0)
            }
        }
    };
    // A packet that may not be forwarded goes to the stack before any state is created or
    // touched: the stack owns what happens to it (its TTL would expire on the way).
    if ttl <= 1 {
        return Verdict::PASS;
    }
    let tcp = if proto == PROTO_TCP {
        // The parser checked that the whole TCP header is in the linear data.
        match ctx.ptr_at::<[u8; 14]>(h.l4_off) {
            // SAFETY: bounds-checked by `ptr_at`.
            Some(t) => unsafe {
                let t = &*t;
                Tcp {
                    flags: t[13],
                    seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
                    ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
                }
            },
            None => return Verdict::PASS,
        }
    } else {
        Tcp {
            flags: 0,
            seq: 0,
            ack: 0,
        }
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };

    let entry: *const CtEntry = if let Some(e) = XI_CT_FWD_V1.get_ptr_mut(&key) {
        // SAFETY: map values stay valid for the duration of the program.
        unsafe { touch_forward(e, now, &tcp, proto) };
        stats::count(Counter::CtForward, bytes);
        e
    } else if let Some(e) = XI_CT_REV_V1.get_ptr_mut(&key) {
        // SAFETY: as above.
        unsafe { touch_reply(e, now, &tcp) };
        stats::count(Counter::CtReply, bytes);
        e
    } else {
        // A RST never opens a flow (no conntrack does): the stack ignores it.
        if tcp.flags & TCP_RST != 0 {
            return Verdict::PASS;
        }
        // Only XDP can judge a TCP checksum: there the frame carries the sender's full
        // checksum, where TC may see a local sender's partial one (CHECKSUM_PARTIAL).
        let check_syn =
            hook == Hook::Xdp && proto == PROTO_TCP && tcp.flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
        match new_flow(&key, now, bytes, || {
            !check_syn || syn_checksum_ok(ctx, h, &key)
        }) {
            Ok(e) => e,
            Err(v) => return v,
        }
    };
    // SAFETY: `entry` points at a map value (conntrack or this CPU's scratch slot), valid
    // until the program returns.
    let entry = unsafe { &*entry };
    stats::count_service(entry.service_id, bytes, false);
    if h.first_frag != 0 {
        record_first_fragment(h, &key, entry);
    }
    forward(ctx, h, &key, entry, hook, ttl, ip_proto)
}

/// Whether a SYN's TCP checksum is right: the pseudo-header plus the segment, summed by
/// `bpf_csum_diff` over the TCP header (a constant size per data offset, which the verifier
/// can bound). A SYN that carries data (TCP Fast Open) or does not end where its header does
/// is not judged (true): summing a variable-length payload would cost a bounded loop.
#[inline(always)]
fn syn_checksum_ok<C: NatCtx>(ctx: &C, h: &Headers, key: &FlowKey) -> bool {
    let Some(doff) = ctx.ptr_at::<u8>(h.l4_off + 12) else {
        return true;
    };
    // SAFETY: bounds-checked by `ptr_at`.
    let hdr_len = usize::from(unsafe { *doff } >> 4) * 4;
    if h.end < h.l4_off || h.end - h.l4_off != hdr_len {
        return true;
    }
    let sum = match hdr_len {
        20 => segment_sum::<C, 20>(ctx, h.l4_off),
        24 => segment_sum::<C, 24>(ctx, h.l4_off),
        28 => segment_sum::<C, 28>(ctx, h.l4_off),
        32 => segment_sum::<C, 32>(ctx, h.l4_off),
        36 => segment_sum::<C, 36>(ctx, h.l4_off),
        40 => segment_sum::<C, 40>(ctx, h.l4_off),
        44 => segment_sum::<C, 44>(ctx, h.l4_off),
        48 => segment_sum::<C, 48>(ctx, h.l4_off),
        52 => segment_sum::<C, 52>(ctx, h.l4_off),
        56 => segment_sum::<C, 56>(ctx, h.l4_off),
        60 => segment_sum::<C, 60>(ctx, h.l4_off),
        _ => None,
    };
    let Some(sum) = sum else {
        return true;
    };
    let pseudo = csum::pseudo_header(
        &key.src,
        &key.dst,
        key.family == FAMILY_V6,
        PROTO_TCP,
        hdr_len as u32,
    );
    csum::segment_ok(sum, pseudo)
}

/// `bpf_csum_diff` over the `N` bytes at `off` (`N` a multiple of 4), or `None` if they are
/// not all in the frame.
#[inline(always)]
fn segment_sum<C: NatCtx, const N: usize>(ctx: &C, off: usize) -> Option<u32> {
    let p = ctx.ptr_at::<[u8; N]>(off)?;
    // SAFETY: `p` points at N bytes inside the frame (checked by `ptr_at`); the helper only
    // reads them.
    let r = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, p as *mut u32, N as u32, 0) };
    u32::try_from(r).ok()
}

/// Records the translation of a first fragment for the later fragments of its datagram,
/// which carry no ports and follow its addresses.
#[inline(always)]
fn record_first_fragment(h: &Headers, key: &FlowKey, entry: &CtEntry) {
    let Some(scratch) = XI_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot; `entry` may point at its `fwd` field, which is not
    // written here.
    unsafe {
        (*scratch).frag = FragKey {
            src: key.src,
            dst: key.dst,
            id: h.frag_id,
            proto: h.frag_proto,
            family: key.family,
            _pad: [0; 2],
        };
        (*scratch).frag_entry = FragEntry {
            src: entry.src,
            dst: entry.dst,
            service_id: entry.service_id,
            _pad: 0,
        };
        let _ = XI_FRAG_V1.insert(&(*scratch).frag, &(*scratch).frag_entry, u64::from(BPF_ANY));
    }
}

/// A client packet of a known flow: refreshes the entry, records FIN/RST (a RST judged by
/// its sequence number, see [`record_rst`]) and the client's acknowledgment number, completes
/// the handshake (the ACK of the backend's SYN-ACK, checked by number), and reopens a closed
/// entry whose tuple a new SYN reuses.
///
/// # Safety
/// `e` must point at a live map value.
#[inline(always)]
unsafe fn touch_forward(e: *mut CtEntry, now: u64, tcp: &Tcp, proto: u8) {
    // SAFETY: guaranteed by the caller; the peer pointer comes from a map lookup.
    unsafe {
        (*e).last_seen_ns = now;
        let state = (*e).state;
        if tcp.flags & TCP_FIN != 0 {
            (*e).state |= ct::FIN_FWD;
        }
        if proto != PROTO_TCP {
            return;
        }
        if tcp.flags & TCP_RST != 0 {
            record_rst(e, XI_CT_REV_V1.get_ptr_mut(&(*e).peer), tcp.seq);
            return;
        }
        if state & ct::RST_UNVERIFIED != 0 {
            clear_unverified_rst(e, XI_CT_REV_V1.get_ptr_mut(&(*e).peer));
        }
        let flags = tcp.flags & (TCP_SYN | TCP_ACK);
        if flags == TCP_SYN {
            // A SYN on a closed entry (RST, or FIN both ways): a new connection reusing the
            // tuple. It starts over as embryonic, on the same endpoint and SNAT port.
            let Some(r) = XI_CT_REV_V1.get_ptr_mut(&(*e).peer) else {
                return;
            };
            if ct::closed(state | (*r).state) {
                (*e).state = ct::EMBRYONIC;
                (*e).ack = 0;
                (*r).state = ct::REPLY | ct::EMBRYONIC;
                (*r).ack = 0;
                (*r).last_seen_ns = now;
            }
        } else if flags == TCP_ACK && state & ct::EMBRYONIC != 0 {
            // The handshake completes when the client acknowledges the backend's SYN-ACK.
            let Some(r) = XI_CT_REV_V1.get_ptr_mut(&(*e).peer) else {
                return;
            };
            if (*r).state & ct::SYNACK_SEEN != 0 && (*r).ack == tcp.ack {
                (*r).state &= !(ct::EMBRYONIC | ct::SYNACK_SEEN);
                (*r).ack = 0;
                (*e).state &= !ct::EMBRYONIC;
                (*e).ack = tcp.ack;
            }
        } else if flags & TCP_ACK != 0 && state & ct::EMBRYONIC == 0 {
            (*e).ack = tcp.ack;
        }
    }
}

/// Records a RST seen on entry `e`, whose other direction's entry is `peer`. While the flow
/// is embryonic, or when nothing was acknowledged the other way yet, the RST is believed
/// (the flow is released at the next conntrack pass). On an established flow it is believed
/// only within [`ct::RST_WINDOW`] of the other side's last acknowledgment; otherwise both
/// entries are marked [`ct::RST_UNVERIFIED`] and the flow is held as closing, so a blind RST
/// cannot free a live flow's state and SNAT port. The RST is forwarded either way: the
/// endpoint judges it exactly (RFC 5961).
///
/// # Safety
/// `e` and `peer` (if any) must point at live map values.
#[inline(always)]
unsafe fn record_rst(e: *mut CtEntry, peer: Option<*mut CtEntry>, seq: u32) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        match peer {
            Some(p) if (*e).state & ct::EMBRYONIC == 0 && !ct::rst_in_window(seq, (*p).ack) => {
                (*e).state |= ct::RST_UNVERIFIED;
                (*p).state |= ct::RST_UNVERIFIED;
            }
            _ => (*e).state |= ct::RST,
        }
    }
}

/// A packet other than a RST on a flow marked [`ct::RST_UNVERIFIED`]: the connection lives
/// on (the RST was blind, or answered by a challenge ACK), so both entries lose the mark.
///
/// # Safety
/// `e` and `peer` (if any) must point at live map values.
#[inline(always)]
unsafe fn clear_unverified_rst(e: *mut CtEntry, peer: Option<*mut CtEntry>) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        (*e).state &= !ct::RST_UNVERIFIED;
        if let Some(p) = peer {
            (*p).state &= !ct::RST_UNVERIFIED;
        }
    }
}

/// A backend packet of a known flow. While the flow is embryonic the backend does not keep
/// it alive (a backend retransmitting SYN-ACKs to a client that never answers must not hold
/// the SNAT port); its SYN-ACK is recorded for the client's ACK to match, and a plain ACK
/// (the backend considers the connection open: a flow picked up mid-stream) establishes it.
/// Once established, its acknowledgment number is recorded and a RST is judged as the
/// client's are ([`record_rst`]).
///
/// # Safety
/// `e` must point at a live map value.
#[inline(always)]
unsafe fn touch_reply(e: *mut CtEntry, now: u64, tcp: &Tcp) {
    // SAFETY: guaranteed by the caller; the peer pointer comes from a map lookup.
    unsafe {
        let state = (*e).state;
        if tcp.flags & TCP_FIN != 0 {
            (*e).state |= ct::FIN_REV;
        }
        if tcp.flags & TCP_RST != 0 {
            record_rst(e, XI_CT_FWD_V1.get_ptr_mut(&(*e).peer), tcp.seq);
            if state & ct::EMBRYONIC == 0 {
                (*e).last_seen_ns = now;
            }
            return;
        }
        if state & ct::EMBRYONIC == 0 {
            (*e).last_seen_ns = now;
            if state & ct::RST_UNVERIFIED != 0 {
                clear_unverified_rst(e, XI_CT_FWD_V1.get_ptr_mut(&(*e).peer));
            }
            if tcp.flags & TCP_ACK != 0 {
                (*e).ack = tcp.ack;
            }
            return;
        }
        match tcp.flags & (TCP_SYN | TCP_ACK) {
            f if f == TCP_SYN | TCP_ACK => {
                (*e).state |= ct::SYNACK_SEEN;
                (*e).ack = tcp.seq.wrapping_add(1);
            }
            TCP_ACK => {
                (*e).state &= !(ct::EMBRYONIC | ct::SYNACK_SEEN);
                (*e).ack = tcp.ack;
                (*e).last_seen_ns = now;
                if let Some(f) = XI_CT_FWD_V1.get_ptr_mut(&(*e).peer) {
                    (*f).state &= !ct::EMBRYONIC;
                }
            }
            _ => {}
        }
    }
}

/// State of the SNAT port search, on the caller's stack, shared with the `bpf_loop` callback.
#[repr(C)]
struct Probe {
    /// First port of the range (host order).
    lo: u16,
    /// Last port of the range (host order, inclusive).
    hi: u16,
    /// 0 while searching, [`PROBE_CLAIMED`] or [`PROBE_FULL`] when done.
    outcome: u32,
}

const PROBE_CLAIMED: u32 = 1;
const PROBE_FULL: u32 = 2;

/// One probe of the SNAT search (a `bpf_loop` callback, verified once however many times it
/// runs): a random port of the range; if the reply tuple with that port is free, claim it by
/// inserting the reply entry with `BPF_NOEXIST` (two CPUs can never claim the same port).
/// Returns 1 to stop the loop.
#[inline(never)]
extern "C" fn probe_snat_port(_index: u64, ctx: *mut c_void) -> i64 {
    let probe = ctx.cast::<Probe>();
    let Some(scratch) = XI_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: `ctx` is the caller's `Probe` (bpf_loop passes it through unchanged), and the
    // scratch slot belongs to this CPU while the program runs.
    unsafe {
        // SAFETY: a helper without arguments.
        let random = bpf_get_prandom_u32();
        (*scratch).rev_key.dport = snat::port((*probe).lo, (*probe).hi, random).to_be();
        if XI_CT_REV_V1.get_ptr(&(*scratch).rev_key).is_some() {
            return 0;
        }
        match XI_CT_REV_V1.insert(&(*scratch).rev_key, &(*scratch).rev, u64::from(BPF_NOEXIST)) {
            Ok(()) => {
                (*probe).outcome = PROBE_CLAIMED;
                1
            }
            // Another CPU claimed it between the lookup and the insert.
            Err(EEXIST) => 0,
            Err(_) => {
                (*probe).outcome = PROBE_FULL;
                1
            }
        }
    }
}

/// Sets up a new flow to a service: picks the endpoint by Maglev, claims a SNAT port by
/// inserting the reply entry with `BPF_NOEXIST`, then inserts the forward entry. Returns the
/// forward entry (in this CPU's scratch slot).
///
/// SNAT ports: up to [`snat::PROBES`] independent random ports per attempt, so a
/// retransmitted SYN whose first attempt found no port tries other ones.
///
/// `syn_valid` runs once the packet is known to be for a service with endpoints: a SYN with
/// a wrong checksum is dropped there, before it holds a SNAT port (the kernel's TCP would
/// drop it too; a flood of them must not fill the range).
#[inline(always)]
fn new_flow(
    key: &FlowKey,
    now: u64,
    bytes: u64,
    syn_valid: impl FnOnce() -> bool,
) -> Result<*const CtEntry, Verdict> {
    let skey = ServiceKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    // SAFETY: the value is copied out immediately.
    let Some(svc) = (unsafe { XI_SERVICES_V1.get(&skey) }).copied() else {
        return Err(Verdict::PASS);
    };
    if svc.endpoints == 0 {
        stats::count(Counter::NoEndpoints, bytes);
        return Err(Verdict::PASS);
    }
    if !syn_valid() {
        stats::count(Counter::DropBadChecksum, bytes);
        return Err(Verdict::DROP);
    }
    let Some(cfg) = XI_NAT_CONFIG_V1.get(0) else {
        return Err(Verdict::PASS);
    };
    if cfg.ready == 0 || cfg.maglev_size == 0 || cfg.snat_port_hi < cfg.snat_port_lo {
        stats::count(Counter::DropNotReady, bytes);
        return Err(Verdict::DROP);
    }
    let hash = flow_hash(key);
    let slot = svc.id.wrapping_mul(cfg.maglev_size) + hash % cfg.maglev_size;
    let Some(backend_id) = XI_MAGLEV_V1.get(slot).copied() else {
        stats::count(Counter::NoEndpoints, bytes);
        return Err(Verdict::PASS);
    };
    let Some(backend) = XI_BACKENDS_V1.get(backend_id) else {
        stats::count(Counter::NoEndpoints, bytes);
        return Err(Verdict::PASS);
    };
    if backend.family != key.family {
        stats::count(Counter::NoEndpoints, bytes);
        return Err(Verdict::PASS);
    }
    let Some(scratch) = XI_SCRATCH.get_ptr_mut(0) else {
        return Err(Verdict::DROP);
    };
    // SAFETY: this CPU's scratch slot; nothing else uses it while the program runs.
    let s = unsafe { &mut *scratch };

    let dnat_only = svc.flags & ingress_common::l4::SVC_F_DNAT_ONLY != 0;
    let snat_addr = if dnat_only {
        key.src
    } else if key.family == FAMILY_V6 {
        if cfg.snat_v6 == [0; 16] {
            key.dst
        } else {
            cfg.snat_v6
        }
    } else if cfg.snat_v4 == [0; 4] {
        key.dst
    } else {
        v4(cfg.snat_v4)
    };
    let state = if key.proto == PROTO_TCP {
        ct::EMBRYONIC
    } else {
        0
    };
    s.rev_key = FlowKey {
        src: backend.addr,
        dst: snat_addr,
        sport: backend.port,
        dport: key.sport,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    };
    s.rev = CtEntry {
        last_seen_ns: now,
        service_id: svc.id,
        state: ct::REPLY | state,
        _pad: [0; 3],
        src: key.dst,
        dst: key.src,
        sport: key.dport,
        dport: key.sport,
        peer: *key,
        ack: 0,
    };
    // DNAT-only keeps the client's port: one insert, no choice. Otherwise random probes.
    let mut claimed = false;
    if dnat_only {
        match XI_CT_REV_V1.insert(&s.rev_key, &s.rev, u64::from(BPF_NOEXIST)) {
            Ok(()) => claimed = true,
            Err(EEXIST) => {}
            Err(_) => {
                stats::count(Counter::DropCtFull, bytes);
                stats::count_service_drop(svc.id, ServiceDrop::CtFull);
                return Err(Verdict::DROP);
            }
        }
    }
    if !claimed && !dnat_only {
        let mut probe = Probe {
            lo: cfg.snat_port_lo,
            hi: cfg.snat_port_hi,
            outcome: 0,
        };
        // SAFETY: the callback is a static function of this program; `probe` outlives the
        // call. The helper's result (iterations run) is not needed: `outcome` says it all.
        unsafe {
            bpf_loop(
                snat::PROBES,
                probe_snat_port as *mut c_void,
                (&raw mut probe).cast(),
                0,
            );
        }
        match probe.outcome {
            PROBE_CLAIMED => claimed = true,
            PROBE_FULL => {
                stats::count(Counter::DropCtFull, bytes);
                stats::count_service_drop(svc.id, ServiceDrop::CtFull);
                return Err(Verdict::DROP);
            }
            _ => {}
        }
    }
    if !claimed {
        stats::count(Counter::DropSnatExhausted, bytes);
        stats::count_service_drop(svc.id, ServiceDrop::SnatExhausted);
        return Err(Verdict::DROP);
    }
    s.fwd = CtEntry {
        last_seen_ns: now,
        service_id: svc.id,
        state,
        _pad: [0; 3],
        src: snat_addr,
        dst: backend.addr,
        sport: s.rev_key.dport,
        dport: backend.port,
        peer: s.rev_key,
        ack: 0,
    };
    if XI_CT_FWD_V1
        .insert(key, &s.fwd, u64::from(BPF_ANY))
        .is_err()
    {
        let _ = XI_CT_REV_V1.remove(&s.rev_key);
        stats::count(Counter::DropCtFull, bytes);
        stats::count_service_drop(svc.id, ServiceDrop::CtFull);
        return Err(Verdict::DROP);
    }
    stats::count(Counter::NewFlow, bytes);
    stats::count_service(svc.id, 0, true);
    Ok(&raw const s.fwd)
}

/// Looks up the route for the translated packet, then rewrites it (addresses, ports, TTL,
/// MACs) and picks the verdict. XDP leaves the packet untouched when the neighbour is not
/// resolved yet, so the TC program on the same interface can resolve it.
#[inline(always)]
fn forward<C: NatCtx>(
    ctx: &mut C,
    h: &Headers,
    key: &FlowKey,
    e: &CtEntry,
    hook: Hook,
    ttl: u8,
    ip_proto: u8,
) -> Verdict {
    let Some(scratch) = XI_SCRATCH.get_ptr_mut(0) else {
        return Verdict::DROP;
    };
    // SAFETY: this CPU's scratch slot; `e` may point at its `fwd` field, never at `fib`.
    let fib = unsafe { &mut (*scratch).fib };
    let target = Target {
        family: key.family,
        proto: key.proto,
        src: &e.src,
        dst: &e.dst,
        sport: e.sport,
        dport: e.dport,
    };
    let neigh_known = match lookup(ctx, fib, &target, hook) {
        Ok(n) => n,
        Err(v) => return v,
    };
    if rewrite(ctx, h, key, e, ttl, ip_proto).is_none() {
        return Verdict::DROP;
    }
    send(ctx, fib, neigh_known)
}

/// Where a translated packet goes, for the FIB lookup.
struct Target<'a> {
    family: u8,
    proto: u8,
    src: &'a [u8; 16],
    dst: &'a [u8; 16],
    sport: u16,
    dport: u16,
}

/// Routes a translated packet into `fib`; `Ok` says whether the neighbour is known. `Err` is
/// the verdict when it cannot be sent from this hook: no route (drop), or an unresolved
/// neighbour under XDP (pass, untouched, to the TC program beside it).
#[inline(always)]
fn lookup<C: NatCtx>(
    ctx: &mut C,
    fib: &mut FibParams,
    t: &Target<'_>,
    hook: Hook,
) -> Result<bool, Verdict> {
    // SAFETY: plain-old-data C struct; zero is a valid value for every field.
    *fib = unsafe { core::mem::zeroed() };
    fib.l4_protocol = t.proto;
    fib.sport = t.sport;
    fib.dport = t.dport;
    fib.ifindex = ctx.ifindex();
    if t.family == FAMILY_V6 {
        fib.family = AF_INET6;
        fib.__bindgen_anon_3.ipv6_src = words(t.src);
        fib.__bindgen_anon_4.ipv6_dst = words(t.dst);
    } else {
        fib.family = AF_INET;
        fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(first4(t.src));
        fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(first4(t.dst));
    }
    let rc = ctx.fib_lookup(fib);
    let neigh_known = rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS);
    if !neigh_known && rc != i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) {
        stats::count(Counter::DropNoRoute, 0);
        return Err(Verdict::DROP);
    }
    if !neigh_known && hook == Hook::Xdp {
        stats::count(Counter::DeferredToTc, 0);
        return Err(Verdict::PASS);
    }
    Ok(neigh_known)
}

/// Sets the MACs of a rewritten packet and picks its verdict.
#[inline(always)]
fn send<C: NatCtx>(ctx: &mut C, fib: &FibParams, neigh_known: bool) -> Verdict {
    if !neigh_known {
        return Verdict::redirect_neigh(fib.ifindex);
    }
    if ctx.set_macs(&fib.dmac, &fib.smac).is_none() {
        return Verdict::DROP;
    }
    if fib.ifindex == ctx.ifindex() {
        Verdict::TX
    } else {
        Verdict::redirect(fib.ifindex)
    }
}

#[inline(always)]
fn rewrite<C: NatCtx>(
    ctx: &mut C,
    h: &Headers,
    key: &FlowKey,
    e: &CtEntry,
    ttl: u8,
    ip_proto: u8,
) -> Option<()> {
    let l4 = L4Csum {
        off: h.l4_off + if key.proto == PROTO_UDP { 6 } else { 16 },
        udp: key.proto == PROTO_UDP,
    };
    if key.family == FAMILY_V6 {
        if key.src != e.src {
            ctx.rewrite_addr_v6(h.l3_off + IP6_SRC_OFF, &key.src, &e.src, l4)?;
        }
        if key.dst != e.dst {
            ctx.rewrite_addr_v6(h.l3_off + IP6_DST_OFF, &key.dst, &e.dst, l4)?;
        }
    } else {
        let ip_csum = h.l3_off + IP_CSUM_OFF;
        let (old_src, new_src) = (first4(&key.src), first4(&e.src));
        if old_src != new_src {
            ctx.rewrite_addr_v4(h.l3_off + IP_SRC_OFF, old_src, new_src, ip_csum, l4)?;
        }
        let (old_dst, new_dst) = (first4(&key.dst), first4(&e.dst));
        if old_dst != new_dst {
            ctx.rewrite_addr_v4(h.l3_off + IP_DST_OFF, old_dst, new_dst, ip_csum, l4)?;
        }
    }
    if key.sport != e.sport {
        ctx.rewrite_port(h.l4_off, key.sport.to_ne_bytes(), e.sport.to_ne_bytes(), l4)?;
    }
    if key.dport != e.dport {
        ctx.rewrite_port(
            h.l4_off + 2,
            key.dport.to_ne_bytes(),
            e.dport.to_ne_bytes(),
            l4,
        )?;
    }
    if key.family == FAMILY_V6 {
        ctx.write_u8(h.l3_off + IP6_HOP_OFF, ttl - 1)
    } else {
        ctx.rewrite_ip_word(
            h.l3_off + IP_TTL_OFF,
            [ttl, ip_proto],
            [ttl - 1, ip_proto],
            h.l3_off + IP_CSUM_OFF,
        )
    }
}

/// Reads `N` bytes at `off`.
#[inline(always)]
fn get<C: NatCtx, const N: usize>(ctx: &C, off: usize) -> Option<[u8; N]> {
    let p = ctx.ptr_at::<[u8; N]>(off)?;
    // SAFETY: bounds-checked by `ptr_at`.
    Some(unsafe { *p })
}

/// Writes `N` bytes at `off` (direct packet access, in both hooks: the checksums it touches
/// are fixed by hand, and none of them is left to the NIC: see [`process_icmp`]).
#[inline(always)]
fn put<C: NatCtx, const N: usize>(ctx: &C, off: usize, v: [u8; N]) -> Option<()> {
    let p = ctx.ptr_at_mut::<[u8; N]>(off)?;
    // SAFETY: bounds-checked by `ptr_at_mut`.
    unsafe { *p = v };
    Some(())
}

#[inline(always)]
fn word(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
fn dword(b: [u8; 4]) -> u32 {
    u32::from_be_bytes(b)
}

/// The outer IP header of a forwarded packet: new addresses, TTL / hop limit minus one, and
/// for IPv4 the header checksum (by hand: nothing else in the packet changes with it).
/// Returns the checksum difference of the address change for a pseudo-header (IPv6).
#[inline(always)]
fn rewrite_l3<C: NatCtx>(
    ctx: &mut C,
    family: Family,
    l3_off: usize,
    (old_src, old_dst): (&[u8; 16], &[u8; 16]),
    (new_src, new_dst): (&[u8; 16], &[u8; 16]),
    ttl: u8,
) -> Option<u32> {
    match family {
        Family::V4 => {
            let proto: [u8; 1] = get(ctx, l3_off + 9)?;
            let check: [u8; 2] = get(ctx, l3_off + IP_CSUM_OFF)?;
            let d = csum::diff32(dword(first4(old_src)), dword(first4(new_src)))
                + csum::diff32(dword(first4(old_dst)), dword(first4(new_dst)))
                + csum::diff16(word([ttl, proto[0]]), word([ttl - 1, proto[0]]));
            put(ctx, l3_off + IP_SRC_OFF, first4(new_src))?;
            put(ctx, l3_off + IP_DST_OFF, first4(new_dst))?;
            put(ctx, l3_off + IP_TTL_OFF, [ttl - 1])?;
            put(
                ctx,
                l3_off + IP_CSUM_OFF,
                csum::apply(word(check), d).to_be_bytes(),
            )?;
            Some(0)
        }
        Family::V6 => {
            put(ctx, l3_off + IP6_SRC_OFF, *new_src)?;
            put(ctx, l3_off + IP6_DST_OFF, *new_dst)?;
            put(ctx, l3_off + IP6_HOP_OFF, [ttl - 1])?;
            Some(csum::diff128(old_src, new_src) + csum::diff128(old_dst, new_dst))
        }
    }
}

/// Reads the source and destination address of the IP header at `l3_off` into `src` and
/// `dst`; returns the TTL / hop limit.
#[inline(always)]
fn read_addrs<C: NatCtx>(
    ctx: &C,
    family: Family,
    l3_off: usize,
    src: &mut [u8; 16],
    dst: &mut [u8; 16],
) -> Option<u8> {
    match family {
        Family::V4 => {
            let ip: [u8; 20] = get(ctx, l3_off)?;
            *src = v4([ip[12], ip[13], ip[14], ip[15]]);
            *dst = v4([ip[16], ip[17], ip[18], ip[19]]);
            Some(ip[IP_TTL_OFF])
        }
        Family::V6 => {
            *src = get(ctx, l3_off + IP6_SRC_OFF)?;
            *dst = get(ctx, l3_off + IP6_DST_OFF)?;
            Some(get::<C, 1>(ctx, l3_off + IP6_HOP_OFF)?[0])
        }
    }
}

/// A non-first fragment: if its first fragment was NATed, it gets the same addresses (its
/// payload carries no ports, and the L4 checksum lives in the first fragment), else it goes
/// to the stack untouched and is counted, never forwarded untranslated.
#[inline(always)]
fn fragment<C: NatCtx>(ctx: &mut C, f: &Fragment, hook: Hook, bytes: u64) -> Verdict {
    let Some(scratch) = XI_SCRATCH.get_ptr_mut(0) else {
        return Verdict::PASS;
    };
    // SAFETY: this CPU's scratch slot; nothing else uses it while the program runs.
    let s = unsafe { &mut *scratch };
    let Some(ttl) = read_addrs(ctx, f.family, f.l3_off, &mut s.old_src, &mut s.old_dst) else {
        return Verdict::PASS;
    };
    s.frag = FragKey {
        src: s.old_src,
        dst: s.old_dst,
        id: f.frag_id,
        proto: f.frag_proto,
        family: if f.family == Family::V6 {
            FAMILY_V6
        } else {
            FAMILY_V4
        },
        _pad: [0; 2],
    };
    let Some(e) = XI_FRAG_V1.get_ptr(&s.frag) else {
        stats::count(Counter::FragmentUntracked, bytes);
        return Verdict::PASS;
    };
    if ttl <= 1 {
        return Verdict::PASS;
    }
    // SAFETY: a map value, valid until the program returns (an LRU may reuse it for another
    // datagram meanwhile: then this fragment gets that one's addresses, as with any race).
    let e = unsafe { &*e };
    let target = Target {
        family: s.frag.family,
        proto: f.frag_proto,
        src: &e.src,
        dst: &e.dst,
        sport: 0,
        dport: 0,
    };
    let neigh_known = match lookup(ctx, &mut s.fib, &target, hook) {
        Ok(n) => n,
        Err(v) => return v,
    };
    let old = (&s.old_src, &s.old_dst);
    if rewrite_l3(ctx, f.family, f.l3_off, old, (&e.src, &e.dst), ttl).is_none() {
        return Verdict::DROP;
    }
    stats::count(Counter::FragmentTranslated, bytes);
    stats::count_service(e.service_id, bytes, false);
    send(ctx, &s.fib, neigh_known)
}

/// An ICMP or ICMPv6 error quoting a packet of a NATed flow, in either direction: an error
/// from the backend side quotes a packet the node sent to the backend (node:snat →
/// backend), one from the client side (a router's fragmentation needed / packet too big)
/// quotes a packet the node sent to the client (node:port → client). The quoted tuple,
/// reversed, is a conntrack key of that flow (reply or forward direction); its entry says how
/// a packet with that key is rewritten, so the quoted packet (the reverse) and the error
/// itself are rewritten to match: the outer addresses go from the entry's source to its
/// destination, and the quote becomes the packet the other side sent or received.
///
/// Every checksum is fixed by hand, incrementally: the outer IPv4 header, the ICMP checksum
/// (for ICMPv6 with its pseudo-header), the quoted IPv4 header and the quoted TCP/UDP
/// checksum when the quote holds it (that one may have been a CHECKSUM_PARTIAL seed when
/// quoted: nobody checks it then, and the ICMP checksum covers whatever it holds). ICMP errors
/// themselves always carry a full checksum (the kernel computes it in software).
///
/// No conntrack state is created or refreshed. An error quoting no known flow is left to the
/// stack untouched.
#[inline(always)]
fn icmp<C: NatCtx>(ctx: &mut C, i: &Icmp, hook: Hook, bytes: u64) -> Verdict {
    let Some(scratch) = XI_SCRATCH.get_ptr_mut(0) else {
        return Verdict::PASS;
    };
    // SAFETY: this CPU's scratch slot; nothing else uses it while the program runs.
    let s = unsafe { &mut *scratch };
    let Some(ttl) = read_addrs(ctx, i.family, i.l3_off, &mut s.old_src, &mut s.old_dst) else {
        return Verdict::PASS;
    };
    if ttl <= 1 {
        return Verdict::PASS;
    }
    let Some(ql4) = quoted_key(ctx, i, &mut s.flow) else {
        stats::count(Counter::IcmpUntranslated, bytes);
        return Verdict::PASS;
    };
    let e: *const CtEntry = match XI_CT_FWD_V1.get_ptr(&s.flow) {
        Some(e) => e,
        None => match XI_CT_REV_V1.get_ptr(&s.flow) {
            Some(e) => e,
            None => {
                stats::count(Counter::IcmpUntranslated, bytes);
                return Verdict::PASS;
            }
        },
    };
    // SAFETY: a conntrack map value, valid until the program returns.
    let e = unsafe { &*e };
    let target = Target {
        family: s.flow.family,
        proto: if i.family == Family::V6 { 58 } else { 1 },
        src: &e.src,
        dst: &e.dst,
        sport: 0,
        dport: 0,
    };
    let neigh_known = match lookup(ctx, &mut s.fib, &target, hook) {
        Ok(n) => n,
        Err(v) => return v,
    };
    let outer = (&s.old_src, &s.old_dst, ttl);
    if rewrite_icmp(ctx, i, ql4, &s.flow, e, outer).is_none() {
        return Verdict::DROP;
    }
    stats::count(Counter::IcmpTranslated, bytes);
    stats::count_service(e.service_id, bytes, false);
    send(ctx, &s.fib, neigh_known)
}

/// Parses the packet an ICMP error quotes (TCP or UDP, not a non-first fragment, at least
/// the 8 bytes of L4 header every error quotes: RFC 792, RFC 4443) into `key`, its tuple
/// reversed. Returns the offset of the quoted L4 header.
#[inline(always)]
fn quoted_key<C: NatCtx>(ctx: &C, i: &Icmp, key: &mut FlowKey) -> Option<usize> {
    let q = i.l4_off + 8;
    let ql4 = match i.family {
        Family::V4 => {
            let ip: [u8; 20] = get(ctx, q)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let frag_off = word([ip[6], ip[7]]) & 0x1fff;
            if ip[0] >> 4 != 4 || ihl < 20 || frag_off != 0 {
                return None;
            }
            key.proto = ip[9];
            key.family = FAMILY_V4;
            key.src = v4([ip[16], ip[17], ip[18], ip[19]]);
            key.dst = v4([ip[12], ip[13], ip[14], ip[15]]);
            q + ihl
        }
        Family::V6 => {
            let ver: [u8; 1] = get(ctx, q)?;
            if ver[0] >> 4 != 6 {
                return None;
            }
            key.proto = get::<C, 1>(ctx, q + 6)?[0];
            key.family = FAMILY_V6;
            key.src = get(ctx, q + IP6_DST_OFF)?;
            key.dst = get(ctx, q + IP6_SRC_OFF)?;
            q + 40
        }
    };
    if key.proto != PROTO_TCP && key.proto != PROTO_UDP {
        return None;
    }
    if ql4 + 8 > i.end {
        return None;
    }
    let ports: [u8; 4] = get(ctx, ql4)?;
    key.sport = u16::from_ne_bytes([ports[2], ports[3]]);
    key.dport = u16::from_ne_bytes([ports[0], ports[1]]);
    key._pad = [0; 2];
    Some(ql4)
}

/// Rewrites an ICMP error (see [`icmp`]): the quote (L4 header at `ql4`) is the
/// reverse of a packet with `key`, which `e` rewrites.
#[inline(always)]
fn rewrite_icmp<C: NatCtx>(
    ctx: &mut C,
    i: &Icmp,
    ql4: usize,
    key: &FlowKey,
    e: &CtEntry,
    (osrc, odst, ttl): (&[u8; 16], &[u8; 16], u8),
) -> Option<()> {
    let q = i.l4_off + 8;
    // The quote: source `key.dst` → `e.dst`, destination `key.src` → `e.src`, source port
    // `key.dport` → `e.dport`, destination port `key.sport` → `e.sport`.
    let addr_d = match i.family {
        Family::V4 => {
            csum::diff32(dword(first4(&key.dst)), dword(first4(&e.dst)))
                + csum::diff32(dword(first4(&key.src)), dword(first4(&e.src)))
        }
        Family::V6 => csum::diff128(&key.dst, &e.dst) + csum::diff128(&key.src, &e.src),
    };
    let port_d = csum::diff16(u16::from_be(key.dport), u16::from_be(e.dport))
        + csum::diff16(u16::from_be(key.sport), u16::from_be(e.sport));
    let mut icmp_d = addr_d + port_d;
    if i.family == Family::V4 {
        put(ctx, q + IP_SRC_OFF, first4(&e.dst))?;
        put(ctx, q + IP_DST_OFF, first4(&e.src))?;
        let c = word(get(ctx, q + IP_CSUM_OFF)?);
        let nc = csum::apply(c, addr_d);
        put(ctx, q + IP_CSUM_OFF, nc.to_be_bytes())?;
        icmp_d += csum::diff16(c, nc);
    } else {
        put(ctx, q + IP6_SRC_OFF, e.dst)?;
        put(ctx, q + IP6_DST_OFF, e.src)?;
    }
    put(ctx, ql4, e.dport.to_ne_bytes())?;
    put(ctx, ql4 + 2, e.sport.to_ne_bytes())?;
    // The quoted L4 checksum, when the quote holds it: the pseudo-header and the ports.
    let udp = key.proto == PROTO_UDP;
    let l4c_off = ql4 + if udp { 6 } else { 16 };
    if l4c_off + 2 <= i.end {
        if let Some(c) = get::<C, 2>(ctx, l4c_off) {
            let c = word(c);
            if !(udp && c == 0) {
                let mut nc = csum::apply(c, addr_d + port_d);
                if udp && nc == 0 {
                    nc = 0xffff;
                }
                put(ctx, l4c_off, nc.to_be_bytes())?;
                icmp_d += csum::diff16(c, nc);
            }
        }
    }
    // The outer header, and (ICMPv6) its pseudo-header share of the ICMP checksum.
    icmp_d += rewrite_l3(ctx, i.family, i.l3_off, (osrc, odst), (&e.src, &e.dst), ttl)?;
    let ic = word(get(ctx, i.l4_off + 2)?);
    put(ctx, i.l4_off + 2, csum::apply(ic, icmp_d).to_be_bytes())
}
