//! `upstream_response`: the body and its properties are `xdp_ingress::fuzz::upstream_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xdp_ingress::fuzz::upstream_response(data));
