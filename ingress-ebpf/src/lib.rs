//! The packet core shared by the XDP and TC entry points in `main.rs`.
//!
//! Everything is `#[inline(always)]`: the verifier sees one flat function per entry point.
#![no_std]

pub mod ctx;
pub mod maps;
pub mod nat;
pub mod parse;
pub mod stats;
