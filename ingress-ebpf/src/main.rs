//! eBPF entry points. Each program is `fn name(ctx) -> action` calling `try_name`, and both
//! run the same packet core from the library half of this crate.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use ingress_ebpf::{ctx::PacketCtx, parse, stats};

/// TCX verdict "continue with the next program / the stack" (`TCX_NEXT`, i.e. `TC_ACT_UNSPEC`).
const TCX_NEXT: i32 = -1;

/// NIC ingress.
#[xdp]
pub fn xdp_ingress(ctx: XdpContext) -> u32 {
    match try_xdp_ingress(&ctx) {
        Ok(action) | Err(action) => action,
    }
}

#[inline(always)]
fn try_xdp_ingress(ctx: &XdpContext) -> Result<u32, u32> {
    let class = parse::classify(ctx);
    stats::count_class(&class, ctx.frame_len());
    Ok(xdp_action::XDP_PASS)
}

/// TCX ingress, for interfaces where XDP cannot serve (veth/pod-facing, CHECKSUM_PARTIAL).
#[classifier]
pub fn tc_ingress(ctx: TcContext) -> i32 {
    match try_tc_ingress(&ctx) {
        Ok(action) | Err(action) => action,
    }
}

#[inline(always)]
fn try_tc_ingress(ctx: &TcContext) -> Result<i32, i32> {
    let class = parse::classify(ctx);
    stats::count_class(&class, ctx.frame_len());
    Ok(TCX_NEXT)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
