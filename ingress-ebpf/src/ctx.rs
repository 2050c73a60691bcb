//! A minimal view of a packet that both XDP and TC contexts provide, so the packet logic is
//! written once (the way Cilium's `ctx_*` helpers work). The NAT writes differ: XDP edits
//! bytes and folds checksums by hand (RFC 1624; frames off a wire carry full checksums),
//! while TC uses the kernel's csum helpers, which also handle CHECKSUM_PARTIAL skbs.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, bpf_fib_lookup as FibParams},
    helpers::bpf_fib_lookup,
    programs::{TcContext, XdpContext},
};
use ingress_common::csum;

/// The part of a program context the packet core needs.
pub trait PacketCtx {
    /// Address of the first byte of the frame.
    fn data(&self) -> usize;
    /// Address one past the last byte of the linear frame data.
    fn data_end(&self) -> usize;

    /// Frame length in bytes, as far as the program can read it.
    #[inline(always)]
    fn frame_len(&self) -> u64 {
        (self.data_end() - self.data()) as u64
    }

    /// A bounds-checked pointer to a `T` at `offset` from the start of the frame.
    ///
    /// The check is written `start + off + size > end`, the form the verifier tracks.
    #[inline(always)]
    fn ptr_at<T>(&self, offset: usize) -> Option<*const T> {
        let start = self.data();
        let end = self.data_end();
        if start + offset + core::mem::size_of::<T>() > end {
            return None;
        }
        Some((start + offset) as *const T)
    }

    /// Like [`PacketCtx::ptr_at`], for writing.
    #[inline(always)]
    fn ptr_at_mut<T>(&self, offset: usize) -> Option<*mut T> {
        self.ptr_at::<T>(offset).map(|p| p as *mut T)
    }
}

/// Where the L4 checksum of the packet lives and how to treat it.
#[derive(Clone, Copy)]
pub struct L4Csum {
    /// Offset of the checksum field in the frame.
    pub off: usize,
    /// UDP: a zero checksum means "none" and must stay zero.
    pub udp: bool,
}

/// Packet rewriting and forwarding primitives, implemented per hook.
pub trait NatCtx: PacketCtx + EbpfContext {
    /// Replaces the 4 bytes at `off` (an IPv4 address) and fixes the IPv4 header checksum at
    /// `ip_csum_off` and the L4 checksum (which covers the address via the pseudo-header).
    fn rewrite_addr_v4(
        &mut self,
        off: usize,
        old: [u8; 4],
        new: [u8; 4],
        ip_csum_off: usize,
        l4: L4Csum,
    ) -> Option<()>;
    /// Replaces the 16 bytes at `off` (an IPv6 address) and fixes the L4 checksum (IPv6 has
    /// no header checksum).
    fn rewrite_addr_v6(
        &mut self,
        off: usize,
        old: &[u8; 16],
        new: &[u8; 16],
        l4: L4Csum,
    ) -> Option<()>;
    /// Writes one byte (the IPv6 hop limit, which no checksum covers).
    fn write_u8(&mut self, off: usize, v: u8) -> Option<()>;
    /// Replaces the port at `off` and fixes the L4 checksum.
    fn rewrite_port(&mut self, off: usize, old: [u8; 2], new: [u8; 2], l4: L4Csum) -> Option<()>;
    /// Replaces the 16-bit word at `off` inside the IPv4 header (TTL + protocol) and fixes the
    /// header checksum.
    fn rewrite_ip_word(
        &mut self,
        off: usize,
        old: [u8; 2],
        new: [u8; 2],
        ip_csum_off: usize,
    ) -> Option<()>;
    /// Writes destination and source MAC addresses.
    fn set_macs(&mut self, dst: &[u8; 6], src: &[u8; 6]) -> Option<()>;
    /// `bpf_fib_lookup` on this context (the helper takes either context type).
    #[inline(always)]
    fn fib_lookup(&mut self, params: &mut FibParams) -> i64 {
        // SAFETY: `params` is a valid, fully initialised struct of the size passed.
        unsafe {
            bpf_fib_lookup(
                self.as_ptr(),
                params,
                core::mem::size_of::<FibParams>() as i32,
                0,
            )
        }
    }
    /// The interface the packet arrived on.
    fn ifindex(&self) -> u32;
}

impl PacketCtx for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

impl NatCtx for XdpContext {
    #[inline(always)]
    fn rewrite_addr_v4(
        &mut self,
        off: usize,
        old: [u8; 4],
        new: [u8; 4],
        ip_csum_off: usize,
        l4: L4Csum,
    ) -> Option<()> {
        let (o, n) = (u32::from_be_bytes(old), u32::from_be_bytes(new));
        let ipc = self.ptr_at_mut::<[u8; 2]>(ip_csum_off)?;
        let l4c = self.ptr_at_mut::<[u8; 2]>(l4.off)?;
        let addr = self.ptr_at_mut::<[u8; 4]>(off)?;
        // SAFETY: all three pointers were bounds-checked above.
        unsafe {
            *ipc = csum::update32(be16(*ipc), o, n).to_be_bytes();
            let c = be16(*l4c);
            if !(l4.udp && c == 0) {
                let nc = csum::update32(c, o, n);
                *l4c = (if l4.udp && nc == 0 { 0xffff } else { nc }).to_be_bytes();
            }
            *addr = new;
        }
        Some(())
    }

    #[inline(always)]
    fn rewrite_addr_v6(
        &mut self,
        off: usize,
        old: &[u8; 16],
        new: &[u8; 16],
        l4: L4Csum,
    ) -> Option<()> {
        let l4c = self.ptr_at_mut::<[u8; 2]>(l4.off)?;
        let addr = self.ptr_at_mut::<[u8; 16]>(off)?;
        // SAFETY: bounds-checked above.
        unsafe {
            let nc = csum::update128(be16(*l4c), old, new);
            *l4c = (if l4.udp && nc == 0 { 0xffff } else { nc }).to_be_bytes();
            *addr = *new;
        }
        Some(())
    }

    #[inline(always)]
    fn write_u8(&mut self, off: usize, v: u8) -> Option<()> {
        let p = self.ptr_at_mut::<u8>(off)?;
        // SAFETY: bounds-checked above.
        unsafe { *p = v };
        Some(())
    }

    #[inline(always)]
    fn rewrite_port(&mut self, off: usize, old: [u8; 2], new: [u8; 2], l4: L4Csum) -> Option<()> {
        let l4c = self.ptr_at_mut::<[u8; 2]>(l4.off)?;
        let port = self.ptr_at_mut::<[u8; 2]>(off)?;
        // SAFETY: bounds-checked above.
        unsafe {
            let c = be16(*l4c);
            if !(l4.udp && c == 0) {
                let nc = csum::update16(c, be16(old), be16(new));
                *l4c = (if l4.udp && nc == 0 { 0xffff } else { nc }).to_be_bytes();
            }
            *port = new;
        }
        Some(())
    }

    #[inline(always)]
    fn rewrite_ip_word(
        &mut self,
        off: usize,
        old: [u8; 2],
        new: [u8; 2],
        ip_csum_off: usize,
    ) -> Option<()> {
        let ipc = self.ptr_at_mut::<[u8; 2]>(ip_csum_off)?;
        let word = self.ptr_at_mut::<[u8; 2]>(off)?;
        // SAFETY: bounds-checked above.
        unsafe {
            *ipc = csum::update16(be16(*ipc), be16(old), be16(new)).to_be_bytes();
            *word = new;
        }
        Some(())
    }

    #[inline(always)]
    fn set_macs(&mut self, dst: &[u8; 6], src: &[u8; 6]) -> Option<()> {
        let d = self.ptr_at_mut::<[u8; 6]>(0)?;
        let s = self.ptr_at_mut::<[u8; 6]>(6)?;
        // SAFETY: bounds-checked above.
        unsafe {
            *d = *dst;
            *s = *src;
        }
        Some(())
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.ingress_ifindex() as u32
    }
}

impl PacketCtx for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }

    #[inline(always)]
    fn frame_len(&self) -> u64 {
        // skb->len also covers paged (non-linear) data the program cannot read directly.
        u64::from(self.len())
    }
}

#[inline(always)]
fn l4_flags(l4: L4Csum, size: u64) -> u64 {
    size | if l4.udp {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    }
}

impl NatCtx for TcContext {
    #[inline(always)]
    fn rewrite_addr_v4(
        &mut self,
        off: usize,
        old: [u8; 4],
        new: [u8; 4],
        ip_csum_off: usize,
        l4: L4Csum,
    ) -> Option<()> {
        let (o, n) = (
            u64::from(u32::from_ne_bytes(old)),
            u64::from(u32::from_ne_bytes(new)),
        );
        self.l4_csum_replace(l4.off, o, n, l4_flags(l4, 4) | u64::from(BPF_F_PSEUDO_HDR))
            .ok()?;
        self.l3_csum_replace(ip_csum_off, o, n, 4).ok()?;
        self.store(off, &new, 0).ok()
    }

    #[inline(always)]
    fn rewrite_addr_v6(
        &mut self,
        off: usize,
        old: &[u8; 16],
        new: &[u8; 16],
        l4: L4Csum,
    ) -> Option<()> {
        // Four 32-bit pseudo-header updates: the helper folds each into the checksum and,
        // for CHECKSUM_PARTIAL skbs, into the pseudo-header seed.
        let flags = l4_flags(l4, 4) | u64::from(BPF_F_PSEUDO_HDR);
        for i in [0usize, 4, 8, 12] {
            let o = u32::from_ne_bytes([old[i], old[i + 1], old[i + 2], old[i + 3]]);
            let n = u32::from_ne_bytes([new[i], new[i + 1], new[i + 2], new[i + 3]]);
            if o != n {
                self.l4_csum_replace(l4.off, u64::from(o), u64::from(n), flags)
                    .ok()?;
            }
        }
        self.store(off, new, 0).ok()
    }

    #[inline(always)]
    fn write_u8(&mut self, off: usize, v: u8) -> Option<()> {
        self.store(off, &v, 0).ok()
    }

    #[inline(always)]
    fn rewrite_port(&mut self, off: usize, old: [u8; 2], new: [u8; 2], l4: L4Csum) -> Option<()> {
        let (o, n) = (
            u64::from(u16::from_ne_bytes(old)),
            u64::from(u16::from_ne_bytes(new)),
        );
        self.l4_csum_replace(l4.off, o, n, l4_flags(l4, 2)).ok()?;
        self.store(off, &new, 0).ok()
    }

    #[inline(always)]
    fn rewrite_ip_word(
        &mut self,
        off: usize,
        old: [u8; 2],
        new: [u8; 2],
        ip_csum_off: usize,
    ) -> Option<()> {
        let (o, n) = (
            u64::from(u16::from_ne_bytes(old)),
            u64::from(u16::from_ne_bytes(new)),
        );
        self.l3_csum_replace(ip_csum_off, o, n, 2).ok()?;
        self.store(off, &new, 0).ok()
    }

    #[inline(always)]
    fn set_macs(&mut self, dst: &[u8; 6], src: &[u8; 6]) -> Option<()> {
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(dst);
        macs[6..].copy_from_slice(src);
        self.store(0, &macs, 0).ok()
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // On TC ingress the skb's device is the receiving interface (and, unlike
        // `ingress_ifindex`, BPF_PROG_TEST_RUN can set it).
        // SAFETY: the context pointer is valid for the program's lifetime.
        unsafe { (*self.skb.skb).ifindex }
    }
}
