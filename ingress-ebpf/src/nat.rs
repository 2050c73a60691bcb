//! Full NAT for L4 services: conntrack lookup, new-flow setup (Maglev + SNAT port), rewrite
//! and the forwarding decision. Written once over [`NatCtx`]; XDP and TC differ only in the
//! primitives and in what they do when the neighbour is unknown.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{
        BPF_ANY, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_NOEXIST,
        bpf_fib_lookup as FibParams,
    },
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_loop},
};
use ingress_common::{
    l4::{
        CtEntry, FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, PROTO_UDP, ServiceKey, ct, flow_hash,
        snat,
    },
    stats::Counter,
};
use network_types::ip::IpProto;

use crate::{
    ctx::{L4Csum, NatCtx},
    maps::{
        XI_BACKENDS_V1, XI_CT_FWD_V1, XI_CT_REV_V1, XI_MAGLEV_V1, XI_NAT_CONFIG_V1, XI_SCRATCH,
        XI_SERVICES_V1,
    },
    parse::{Family, Headers},
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
pub enum Action {
    /// Not ours (or left to the stack / TC): let it continue untouched.
    Pass,
    /// Drop it.
    Drop,
    /// Rewritten; send out of the receiving interface.
    Tx,
    /// Rewritten; send out of `ifindex`, L2 already set.
    Redirect,
    /// Rewritten; send out of `ifindex`, letting the kernel resolve the neighbour (TC).
    RedirectNeigh,
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

/// Runs the NAT core on a parsed TCP/UDP packet (IPv4 or IPv6).
#[inline(always)]
pub fn process<C: NatCtx>(ctx: &mut C, h: &Headers, hook: Hook, bytes: u64) -> Verdict {
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
        match new_flow(&key, now, bytes) {
            Ok(e) => e,
            Err(v) => return v,
        }
    };
    // SAFETY: `entry` points at a map value (conntrack or this CPU's scratch slot), valid
    // until the program returns.
    let entry = unsafe { &*entry };
    stats::count_service(entry.service_id, bytes, false);
    forward(ctx, h, &key, entry, hook, ttl, ip_proto)
}

/// A client packet of a known flow: refreshes the entry, records FIN/RST, completes the
/// handshake (the ACK of the backend's SYN-ACK, checked by number), and reopens a closed
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
        if tcp.flags & TCP_RST != 0 {
            (*e).state |= ct::RST;
        }
        if tcp.flags & TCP_FIN != 0 {
            (*e).state |= ct::FIN_FWD;
        }
        if proto != PROTO_TCP {
            return;
        }
        let flags = tcp.flags & (TCP_SYN | TCP_ACK | TCP_RST);
        if flags == TCP_SYN {
            // A SYN on a closed entry (RST, or FIN both ways): a new connection reusing the
            // tuple. It starts over as embryonic, on the same endpoint and SNAT port.
            let Some(r) = XI_CT_REV_V1.get_ptr_mut(&(*e).peer) else {
                return;
            };
            if ct::closed(state | (*r).state) {
                (*e).state = ct::EMBRYONIC;
                (*r).state = ct::REPLY | ct::EMBRYONIC;
                (*r).handshake_ack = 0;
                (*r).last_seen_ns = now;
            }
        } else if flags == TCP_ACK && state & ct::EMBRYONIC != 0 {
            // The handshake completes when the client acknowledges the backend's SYN-ACK.
            let Some(r) = XI_CT_REV_V1.get_ptr_mut(&(*e).peer) else {
                return;
            };
            if (*r).state & ct::SYNACK_SEEN != 0 && (*r).handshake_ack == tcp.ack {
                (*r).state &= !(ct::EMBRYONIC | ct::SYNACK_SEEN);
                (*r).handshake_ack = 0;
                (*e).state &= !ct::EMBRYONIC;
            }
        }
    }
}

/// A backend packet of a known flow. While the flow is embryonic the backend does not keep
/// it alive (a backend retransmitting SYN-ACKs to a client that never answers must not hold
/// the SNAT port); its SYN-ACK is recorded for the client's ACK to match, and a plain ACK
/// (the backend considers the connection open: a flow picked up mid-stream) establishes it.
///
/// # Safety
/// `e` must point at a live map value.
#[inline(always)]
unsafe fn touch_reply(e: *mut CtEntry, now: u64, tcp: &Tcp) {
    // SAFETY: guaranteed by the caller; the peer pointer comes from a map lookup.
    unsafe {
        let state = (*e).state;
        if tcp.flags & TCP_RST != 0 {
            (*e).state |= ct::RST;
        }
        if tcp.flags & TCP_FIN != 0 {
            (*e).state |= ct::FIN_REV;
        }
        if state & ct::EMBRYONIC == 0 {
            (*e).last_seen_ns = now;
            return;
        }
        match tcp.flags & (TCP_SYN | TCP_ACK | TCP_RST) {
            f if f == TCP_SYN | TCP_ACK => {
                (*e).state |= ct::SYNACK_SEEN;
                (*e).handshake_ack = tcp.seq.wrapping_add(1);
            }
            TCP_ACK => {
                (*e).state &= !(ct::EMBRYONIC | ct::SYNACK_SEEN);
                (*e).handshake_ack = 0;
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
#[inline(always)]
fn new_flow(key: &FlowKey, now: u64, bytes: u64) -> Result<*const CtEntry, Verdict> {
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
        handshake_ack: 0,
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
        handshake_ack: 0,
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
    // SAFETY: plain-old-data C struct; zero is a valid value for every field.
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.l4_protocol = key.proto;
    fib.sport = e.sport;
    fib.dport = e.dport;
    fib.ifindex = ctx.ifindex();
    if key.family == FAMILY_V6 {
        fib.family = AF_INET6;
        fib.__bindgen_anon_3.ipv6_src = words(&e.src);
        fib.__bindgen_anon_4.ipv6_dst = words(&e.dst);
    } else {
        fib.family = AF_INET;
        fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(first4(&e.src));
        fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(first4(&e.dst));
    }
    let rc = ctx.fib_lookup(&mut fib);
    let neigh_known = rc == i64::from(BPF_FIB_LKUP_RET_SUCCESS);
    if !neigh_known && rc != i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) {
        stats::count(Counter::DropNoRoute, 0);
        return Verdict::DROP;
    }
    if !neigh_known && hook == Hook::Xdp {
        stats::count(Counter::DeferredToTc, 0);
        return Verdict::PASS;
    }
    if rewrite(ctx, h, key, e, ttl, ip_proto).is_none() {
        return Verdict::DROP;
    }
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
