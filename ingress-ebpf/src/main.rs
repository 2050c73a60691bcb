//! eBPF entry points. Each program is `fn name(ctx) -> action` calling `try_name`, and both
//! run the same packet core from the library half of this crate.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, xdp_action},
    helpers::{bpf_redirect, bpf_redirect_neigh},
    macros::{cgroup_sock_addr, classifier, xdp},
    programs::{SockAddrContext, TcContext, XdpContext},
};
use ingress_common::stats::Counter;
use ingress_ebpf::{
    ctx::PacketCtx,
    nat::{self, Action, Hook, Verdict},
    parse::{self, Kind},
    sock, stats,
};

/// TCX verdict "continue with the next program / the stack" (`TCX_NEXT`, i.e. `TC_ACT_UNSPEC`).
const TCX_NEXT: i32 = -1;

/// NIC ingress.
#[xdp]
pub fn xdp_ingress(ctx: XdpContext) -> u32 {
    match try_xdp_ingress(ctx) {
        Ok(action) | Err(action) => action,
    }
}

#[inline(always)]
fn try_xdp_ingress(mut ctx: XdpContext) -> Result<u32, u32> {
    let class = parse::classify(&ctx);
    let bytes = ctx.frame_len();
    stats::count_class(&class, bytes);
    let verdict = match class.kind {
        Kind::L4 => nat::process(&mut ctx, &class.h, Hook::Xdp, bytes),
        Kind::IcmpError => nat::process_icmp(&mut ctx, &class.h, Hook::Xdp, bytes),
        Kind::Fragment => nat::process_fragment(&mut ctx, &class.h, Hook::Xdp, bytes),
        Kind::NonIp | Kind::Malformed | Kind::OtherL4 => return Ok(xdp_action::XDP_PASS),
    };
    let verdict = Verdict::from_bits(verdict);
    Ok(match verdict.action {
        Action::Pass => xdp_action::XDP_PASS,
        Action::Drop => xdp_action::XDP_DROP,
        Action::Tx => {
            stats::count(Counter::Transmitted, bytes);
            xdp_action::XDP_TX
        }
        // XDP has no neighbour resolution; `process` never asks for it on this hook.
        Action::Redirect | Action::RedirectNeigh => {
            stats::count(Counter::Redirected, bytes);
            // SAFETY: plain helper call.
            unsafe { bpf_redirect(verdict.ifindex, 0) as u32 }
        }
    })
}

/// TCX ingress, for interfaces where XDP cannot serve (veth/pod-facing, CHECKSUM_PARTIAL),
/// and next to XDP to resolve neighbours XDP cannot.
#[classifier]
pub fn tc_ingress(ctx: TcContext) -> i32 {
    match try_tc_ingress(ctx) {
        Ok(action) | Err(action) => action,
    }
}

#[inline(always)]
fn try_tc_ingress(mut ctx: TcContext) -> Result<i32, i32> {
    let class = parse::classify(&ctx);
    let bytes = ctx.frame_len();
    stats::count_class(&class, bytes);
    let verdict = match class.kind {
        Kind::L4 => nat::process(&mut ctx, &class.h, Hook::Tc, bytes),
        Kind::IcmpError => nat::process_icmp(&mut ctx, &class.h, Hook::Tc, bytes),
        Kind::Fragment => nat::process_fragment(&mut ctx, &class.h, Hook::Tc, bytes),
        Kind::NonIp | Kind::Malformed | Kind::OtherL4 => return Ok(TCX_NEXT),
    };
    let verdict = Verdict::from_bits(verdict);
    Ok(match verdict.action {
        Action::Pass => TCX_NEXT,
        Action::Drop => TC_ACT_SHOT as i32,
        Action::Tx => {
            stats::count(Counter::Transmitted, bytes);
            let ifindex = ingress_ebpf::ctx::NatCtx::ifindex(&ctx);
            // SAFETY: plain helper call.
            unsafe { bpf_redirect(ifindex, 0) as i32 }
        }
        Action::Redirect => {
            stats::count(Counter::Redirected, bytes);
            // SAFETY: plain helper call.
            unsafe { bpf_redirect(verdict.ifindex, 0) as i32 }
        }
        Action::RedirectNeigh => {
            stats::count(Counter::Redirected, bytes);
            // SAFETY: NULL params ask the kernel to look the next hop up itself.
            unsafe { bpf_redirect_neigh(verdict.ifindex, core::ptr::null_mut(), 0, 0) as i32 }
        }
    })
}

// Node-local access (see `sock.rs`): the cgroup `sock_addr` hooks. Each returns
// `sock::ALLOW`: they rewrite addresses, never refuse a call.

/// `connect()` on IPv4 sockets (TCP and UDP).
#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    sock::translate(&ctx, false)
}

/// `connect()` on IPv6 sockets, including IPv4-mapped destinations.
#[cgroup_sock_addr(connect6)]
pub fn sock_connect6(ctx: SockAddrContext) -> i32 {
    sock::translate(&ctx, true)
}

/// `sendto()`/`sendmsg()` with an address on IPv4 UDP sockets.
#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock::translate(&ctx, false)
}

/// `sendto()`/`sendmsg()` with an address on IPv6 UDP sockets.
#[cgroup_sock_addr(sendmsg6)]
pub fn sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    sock::translate(&ctx, true)
}

/// `recvfrom()`/`recvmsg()` on IPv4 UDP sockets: the sender address.
#[cgroup_sock_addr(recvmsg4)]
pub fn sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    sock::reverse(&ctx, false)
}

/// `recvfrom()`/`recvmsg()` on IPv6 UDP sockets: the sender address.
#[cgroup_sock_addr(recvmsg6)]
pub fn sock_recvmsg6(ctx: SockAddrContext) -> i32 {
    sock::reverse(&ctx, true)
}

/// `getpeername()` on IPv4 sockets (connected UDP reads the service address).
#[cgroup_sock_addr(getpeername4)]
pub fn sock_getpeername4(ctx: SockAddrContext) -> i32 {
    sock::reverse(&ctx, false)
}

/// `getpeername()` on IPv6 sockets.
#[cgroup_sock_addr(getpeername6)]
pub fn sock_getpeername6(ctx: SockAddrContext) -> i32 {
    sock::reverse(&ctx, true)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
