//! A minimal view of a packet that both XDP and TC contexts provide, so the packet logic is
//! written once (the way Cilium's `ctx_*` helpers work).

use aya_ebpf::programs::{TcContext, XdpContext};

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
