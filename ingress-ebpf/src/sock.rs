//! Node-local access: socket-level load balancing in cgroup `sock_addr` hooks, the way
//! Cilium's `bpf_sock.c` does it.
//!
//! A process on the node that connects (TCP, connected UDP) or sends (unconnected UDP) to a
//! node address and service port never crosses the interfaces XDP/TC sit on: its packets go
//! through the local stack. Instead of translating those packets, the `connect`/`sendmsg`
//! hooks rewrite the socket's destination to an endpoint before the stack routes anything,
//! so the socket talks to the endpoint directly: no conntrack entry, no SNAT port, no
//! per-packet work. The endpoint is picked from the same service, Maglev and backend maps the
//! packet path uses, hashed on the socket cookie (one socket, one endpoint per service).
//!
//! Only sockets of the node's network namespace are translated (`XI_SOCK_NETNS_V1`): the
//! hooks see every namespace of the cgroup's processes, and pods in namespaces of their own
//! reach node ports over the packet path, like any client off the node.
//!
//! UDP replies then come from the endpoint; the `recvmsg`/`getpeername` hooks report them
//! as coming from the service address, from a reverse map keyed by socket cookie and
//! endpoint (`XI_SOCK_REV_V1`). TCP needs none of that: the handshake is with the endpoint.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::{
    EbpfContext as _,
    bindings::bpf_sock_addr,
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
};
use ingress_common::{
    l4::{
        FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP, ServiceKey, SockRevKey, SockRevValue, sock_hash,
    },
    stats::Counter,
};

use crate::{
    maps::{
        XI_BACKENDS_V1, XI_MAGLEV_V1, XI_NAT_CONFIG_V1, XI_SERVICES_V1, XI_SOCK_NETNS_V1,
        XI_SOCK_REV_V1,
    },
    stats,
};

/// What a `sock_addr` program returns to let the call go on (0 would fail it with EPERM).
pub const ALLOW: i32 = 1;

/// The bytes 10 and 11 of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), as the third
/// address word sits in memory.
const MAPPED_WORD: [u8; 4] = [0, 0, 0xff, 0xff];

/// The socket's destination (`user_ip4`/`user_ip6`, `user_port`) as a 16-byte address and
/// family. An IPv4-mapped address on an IPv6 socket reads as IPv4 (and is written back
/// IPv4-mapped by [`write_dest`]).
struct Dest {
    addr: [u8; 16],
    port: u16,
    family: u8,
}

#[inline(always)]
fn read_dest(sa: *mut bpf_sock_addr, v6: bool) -> Dest {
    let mut addr = [0u8; 16];
    // SAFETY (all reads): `sa` is the program's context; the verifier allows 4-byte reads of
    // these fields, and the volatile reads keep them 4 bytes wide.
    let port = unsafe { read_volatile(addr_of!((*sa).user_port)) } as u16;
    if !v6 {
        let w = unsafe { read_volatile(addr_of!((*sa).user_ip4)) }.to_ne_bytes();
        addr[..4].copy_from_slice(&w);
        return Dest {
            addr,
            port,
            family: FAMILY_V4,
        };
    }
    let w0 = unsafe { read_volatile(addr_of!((*sa).user_ip6[0])) };
    let w1 = unsafe { read_volatile(addr_of!((*sa).user_ip6[1])) };
    let w2 = unsafe { read_volatile(addr_of!((*sa).user_ip6[2])) };
    let w3 = unsafe { read_volatile(addr_of!((*sa).user_ip6[3])) };
    if w0 == 0 && w1 == 0 && w2 == u32::from_ne_bytes(MAPPED_WORD) {
        addr[..4].copy_from_slice(&w3.to_ne_bytes());
        return Dest {
            addr,
            port,
            family: FAMILY_V4,
        };
    }
    addr[..4].copy_from_slice(&w0.to_ne_bytes());
    addr[4..8].copy_from_slice(&w1.to_ne_bytes());
    addr[8..12].copy_from_slice(&w2.to_ne_bytes());
    addr[12..].copy_from_slice(&w3.to_ne_bytes());
    Dest {
        addr,
        port,
        family: FAMILY_V6,
    }
}

#[inline(always)]
fn word(a: &[u8; 16], i: usize) -> u32 {
    u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]])
}

/// Writes `addr:port` (of `family`) as the socket's destination; on an IPv6 socket an IPv4
/// address is written IPv4-mapped.
#[inline(always)]
fn write_dest(sa: *mut bpf_sock_addr, v6: bool, addr: &[u8; 16], port: u16, family: u8) {
    // SAFETY (all writes): the context fields the verifier lets these hooks write, 4 bytes
    // wide each.
    unsafe {
        if !v6 {
            write_volatile(addr_of_mut!((*sa).user_ip4), word(addr, 0));
        } else if family == FAMILY_V4 {
            write_volatile(addr_of_mut!((*sa).user_ip6[0]), 0);
            write_volatile(addr_of_mut!((*sa).user_ip6[1]), 0);
            write_volatile(
                addr_of_mut!((*sa).user_ip6[2]),
                u32::from_ne_bytes(MAPPED_WORD),
            );
            write_volatile(addr_of_mut!((*sa).user_ip6[3]), word(addr, 0));
        } else {
            write_volatile(addr_of_mut!((*sa).user_ip6[0]), word(addr, 0));
            write_volatile(addr_of_mut!((*sa).user_ip6[1]), word(addr, 4));
            write_volatile(addr_of_mut!((*sa).user_ip6[2]), word(addr, 8));
            write_volatile(addr_of_mut!((*sa).user_ip6[3]), word(addr, 12));
        }
        write_volatile(addr_of_mut!((*sa).user_port), u32::from(port));
    }
}

/// `connect4/6` and `sendmsg4/6`: a destination that is a service (node address, port,
/// protocol) with endpoints becomes one of its endpoints. Anything else is left alone,
/// including a service without endpoints (the connection is then refused, as on the wire).
#[inline(always)]
pub fn translate(ctx: &SockAddrContext, v6: bool) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: a readable context field.
    let proto = unsafe { read_volatile(addr_of!((*sa).protocol)) };
    let proto = match proto {
        6 => PROTO_TCP,
        17 => PROTO_UDP,
        _ => return ALLOW,
    };
    // Only the node's own namespace (where the controller runs, and hostNetwork pods): a
    // process in another namespace with the node's addresses (a test topology, another
    // node simulated on the same host) is none of this controller's business.
    if let Some(&want) = XI_SOCK_NETNS_V1.get(0)
        && want != 0
        // SAFETY: the helper takes the program's context.
        && unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } != want
    {
        return ALLOW;
    }
    let dest = read_dest(sa, v6);
    let skey = ServiceKey {
        addr: dest.addr,
        port: dest.port,
        proto,
        family: dest.family,
    };
    // SAFETY: the value is copied out at once.
    let Some(svc) = (unsafe { XI_SERVICES_V1.get(&skey) }).copied() else {
        return ALLOW;
    };
    if svc.endpoints == 0 {
        return ALLOW;
    }
    let Some(cfg) = XI_NAT_CONFIG_V1.get(0) else {
        return ALLOW;
    };
    if cfg.ready == 0 || cfg.maglev_size == 0 {
        return ALLOW;
    }
    // SAFETY: the helper takes the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let hash = sock_hash(cookie, dest.port, proto);
    let slot = svc.id.wrapping_mul(cfg.maglev_size) + hash % cfg.maglev_size;
    let Some(backend_id) = XI_MAGLEV_V1.get(slot).copied() else {
        return ALLOW;
    };
    let Some(backend) = XI_BACKENDS_V1.get(backend_id).copied() else {
        return ALLOW;
    };
    if backend.family != dest.family {
        return ALLOW;
    }
    if proto == PROTO_UDP {
        let key = SockRevKey {
            cookie,
            addr: backend.addr,
            port: backend.port,
            family: backend.family,
            _pad: [0; 5],
        };
        let value = SockRevValue {
            addr: dest.addr,
            port: dest.port,
            family: dest.family,
            _pad: 0,
        };
        // Without the entry the replies would seem to come from the endpoint, which a
        // client checking its peer drops; better not to translate at all then.
        if XI_SOCK_REV_V1.insert(&key, &value, 0).is_err() {
            return ALLOW;
        }
    }
    write_dest(sa, v6, &backend.addr, backend.port, backend.family);
    stats::count(Counter::SockTranslated, 0);
    ALLOW
}

/// `recvmsg4/6` and `getpeername4/6`: an address that is the endpoint a UDP socket was
/// translated to reads as the service address.
#[inline(always)]
pub fn reverse(ctx: &SockAddrContext, v6: bool) -> i32 {
    let sa = ctx.sock_addr;
    let dest = read_dest(sa, v6);
    // SAFETY: the helper takes the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let key = SockRevKey {
        cookie,
        addr: dest.addr,
        port: dest.port,
        family: dest.family,
        _pad: [0; 5],
    };
    // SAFETY: the value is copied out at once.
    let Some(orig) = (unsafe { XI_SOCK_REV_V1.get(&key) }).copied() else {
        return ALLOW;
    };
    write_dest(sa, v6, &orig.addr, orig.port, orig.family);
    stats::count(Counter::SockReverse, 0);
    ALLOW
}
