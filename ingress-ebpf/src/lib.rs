//! The packet core shared by the XDP and TC entry points in `main.rs`.
//!
//! Everything is `#[inline(always)]` except the three packet paths (`nat::process`,
//! `nat::process_icmp`, `nat::process_fragment`): each is a BPF subprogram with its own
//! stack frame, so together they fit the 512-byte stack.
#![no_std]

pub mod ctx;
pub mod maps;
pub mod nat;
pub mod parse;
pub mod sock;
pub mod stats;
