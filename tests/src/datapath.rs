//! The real eBPF datapath as the kernel suites use it: small maps, loaded and attached to a
//! node namespace's interfaces. Call it from a thread inside that namespace
//! (`Netns::run`).

use std::path::Path;

use xdp_ingress::{
    EBPF_OBJECT,
    l4::{Datapath, DatapathOptions, L4Mode},
};

/// Loads the datapath with pins under `pin`, maps sized for a test (`maglev_size` slots, 16
/// services, 4,096 conntrack entries), removes stale links and attaches it to `ifaces` in
/// `mode`.
pub fn attached(pin: &Path, ifaces: &[String], mode: L4Mode, maglev_size: u32) -> Datapath {
    let opts = DatapathOptions {
        maglev_size,
        max_services: 16,
        ct_entries: 4096,
        ..DatapathOptions::default()
    };
    let mut dp = Datapath::load(EBPF_OBJECT, pin, opts).expect("load eBPF");
    dp.clean_stale_links(ifaces, mode)
        .expect("clean stale links");
    for i in ifaces {
        dp.attach(i, mode).expect("attach");
    }
    dp
}
