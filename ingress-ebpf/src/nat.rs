//! Full NAT for L4 services: conntrack lookup, new-flow setup (Maglev + SNAT port), rewrite
//! and the forwarding decision. Written once over [`NatCtx`]; XDP and TC differ only in the
//! primitives and in what they do when the neighbour is unknown.

use aya_ebpf::{
    bindings::{
        BPF_ANY, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_NOEXIST,
        bpf_fib_lookup as FibParams,
    },
    helpers::bpf_ktime_get_ns,
};
use ingress_common::{
    l4::{CtEntry, FAMILY_V4, FAMILY_V6, FlowKey, PROTO_UDP, ServiceKey, ct, flow_hash},
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
    stats,
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
#[derive(Clone, Copy)]
pub enum Verdict {
    /// Not ours (or left to the stack / TC): let it continue untouched.
    Pass,
    /// Drop it.
    Drop,
    /// Rewritten; send out of the receiving interface.
    Tx,
    /// Rewritten; send out of this interface, L2 already set.
    Redirect(u32),
    /// Rewritten; send out of this interface, letting the kernel resolve the neighbour (TC).
    RedirectNeigh(u32),
}

const AF_INET: u8 = 2;
const EEXIST: i32 = -17;
const SNAT_PROBES: u32 = 16;
const TCP_FLAGS_OFF: usize = 13;
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;
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

/// Runs the NAT core on a parsed TCP/UDP packet (IPv4 or IPv6).
#[inline(always)]
pub fn process<C: NatCtx>(ctx: &mut C, h: &Headers, hook: Hook, bytes: u64) -> Verdict {
    let proto = if h.proto == IpProto::Tcp {
        6
    } else {
        PROTO_UDP
    };
    let Some(ports) = ctx.ptr_at::<[u8; 4]>(h.l4_off) else {
        return Verdict::Pass;
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
                return Verdict::Pass;
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
                return Verdict::Pass;
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
    let tcp_flags = if proto == 6 {
        match ctx.ptr_at::<u8>(h.l4_off + TCP_FLAGS_OFF) {
            // SAFETY: bounds-checked by `ptr_at`.
            Some(f) => unsafe { *f },
            None => 0,
        }
    } else {
        0
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };

    let entry: *const CtEntry = if let Some(e) = XI_CT_FWD_V1.get_ptr_mut(&key) {
        // SAFETY: map values stay valid for the duration of the program.
        unsafe { touch(e, now, tcp_flags, ct::FIN_FWD) };
        stats::count(Counter::CtForward, bytes);
        e
    } else if let Some(e) = XI_CT_REV_V1.get_ptr_mut(&key) {
        // SAFETY: as above.
        unsafe { touch(e, now, tcp_flags, ct::FIN_REV) };
        stats::count(Counter::CtReply, bytes);
        e
    } else {
        match new_flow(&key, now, tcp_flags, bytes) {
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

/// Updates a conntrack entry's timestamp and TCP close state for a packet.
///
/// # Safety
/// `e` must point at a live map value.
#[inline(always)]
unsafe fn touch(e: *mut CtEntry, now: u64, tcp_flags: u8, fin_bit: u8) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        (*e).last_seen_ns = now;
        if tcp_flags & TCP_RST != 0 {
            (*e).state |= ct::RST;
        }
        if tcp_flags & TCP_FIN != 0 {
            (*e).state |= fin_bit;
        }
    }
}

/// Sets up a new flow to a service: picks the endpoint by Maglev, claims a SNAT port by
/// inserting the reply entry with `BPF_NOEXIST`, then inserts the forward entry. Returns the
/// forward entry (in this CPU's scratch slot).
#[inline(always)]
fn new_flow(key: &FlowKey, now: u64, tcp_flags: u8, bytes: u64) -> Result<*const CtEntry, Verdict> {
    let skey = ServiceKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    // SAFETY: the value is copied out immediately.
    let Some(svc) = (unsafe { XI_SERVICES_V1.get(&skey) }).copied() else {
        return Err(Verdict::Pass);
    };
    if svc.endpoints == 0 {
        stats::count(Counter::NoEndpoints, bytes);
        return Err(Verdict::Pass);
    }
    let Some(cfg) = XI_NAT_CONFIG_V1.get(0) else {
        return Err(Verdict::Pass);
    };
    if cfg.ready == 0 || cfg.maglev_size == 0 || cfg.snat_port_hi < cfg.snat_port_lo {
        stats::count(Counter::DropNotReady, bytes);
        return Err(Verdict::Drop);
    }
    let hash = flow_hash(key);
    let slot = svc.id.wrapping_mul(cfg.maglev_size) + hash % cfg.maglev_size;
    let Some(backend_id) = XI_MAGLEV_V1.get(slot).copied() else {
        stats::count(Counter::NoEndpoints, bytes);
        return Err(Verdict::Pass);
    };
    let Some(backend) = XI_BACKENDS_V1.get(backend_id) else {
        stats::count(Counter::NoEndpoints, bytes);
        return Err(Verdict::Pass);
    };
    if backend.family != key.family {
        stats::count(Counter::NoEndpoints, bytes);
        return Err(Verdict::Pass);
    }
    let Some(scratch) = XI_SCRATCH.get_ptr_mut(0) else {
        return Err(Verdict::Drop);
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
    let range = u32::from(cfg.snat_port_hi - cfg.snat_port_lo) + 1;
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
        state: ct::REPLY,
        _pad: [0; 3],
        src: key.dst,
        dst: key.src,
        sport: key.dport,
        dport: key.sport,
        peer: *key,
        _pad_tail: [0; 4],
    };
    let mut claimed = false;
    for i in 0..SNAT_PROBES {
        if !dnat_only {
            let port = u32::from(cfg.snat_port_lo) + (hash.wrapping_add(i) % range);
            s.rev_key.dport = (port as u16).to_be();
        }
        match XI_CT_REV_V1.insert(&s.rev_key, &s.rev, u64::from(BPF_NOEXIST)) {
            Ok(()) => {
                claimed = true;
                break;
            }
            Err(EEXIST) if !dnat_only => {}
            Err(EEXIST) => break,
            Err(_) => {
                stats::count(Counter::DropCtFull, bytes);
                return Err(Verdict::Drop);
            }
        }
    }
    if !claimed {
        stats::count(Counter::DropSnatExhausted, bytes);
        return Err(Verdict::Drop);
    }
    s.fwd = CtEntry {
        last_seen_ns: now,
        service_id: svc.id,
        state: if tcp_flags & TCP_RST != 0 { ct::RST } else { 0 },
        _pad: [0; 3],
        src: snat_addr,
        dst: backend.addr,
        sport: s.rev_key.dport,
        dport: backend.port,
        peer: s.rev_key,
        _pad_tail: [0; 4],
    };
    if XI_CT_FWD_V1
        .insert(key, &s.fwd, u64::from(BPF_ANY))
        .is_err()
    {
        let _ = XI_CT_REV_V1.remove(&s.rev_key);
        stats::count(Counter::DropCtFull, bytes);
        return Err(Verdict::Drop);
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
        return Verdict::Drop;
    }
    if !neigh_known && hook == Hook::Xdp {
        stats::count(Counter::DeferredToTc, 0);
        return Verdict::Pass;
    }
    if ttl <= 1 {
        // Let the stack answer with ICMP time exceeded.
        return Verdict::Pass;
    }
    if rewrite(ctx, h, key, e, ttl, ip_proto).is_none() {
        return Verdict::Drop;
    }
    if !neigh_known {
        return Verdict::RedirectNeigh(fib.ifindex);
    }
    if ctx.set_macs(&fib.dmac, &fib.smac).is_none() {
        return Verdict::Drop;
    }
    if fib.ifindex == ctx.ifindex() {
        Verdict::Tx
    } else {
        Verdict::Redirect(fib.ifindex)
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
