//! `manifests`: the body and its properties are `xdp_ingress::fuzz::manifests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdp_ingress::fuzz::manifests(data));
