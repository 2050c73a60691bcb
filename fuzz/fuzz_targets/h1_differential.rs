//! `h1_differential`: the body and its properties are `xdp_ingress::fuzz::h1_differential`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdp_ingress::fuzz::h1_differential(data));
