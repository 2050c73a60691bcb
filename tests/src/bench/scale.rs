//! Scale: `config::build` time, the incremental engine's cost per change and route lookup
//! cost at 10,000 Ingresses × 5
//! paths and 50,000 endpoints (the `scale` example of ingress-user, one process per
//! sample), change → routed latency, RSS and churn cost of the real binary at that size
//! (see [`propagation`]), and the time to program the BPF maps for 1,000 L4 services × 2
//! endpoints.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};
use xdp_ingress::{
    EBPF_OBJECT,
    config::{L4Protocol, L4Service, ServiceRef, Snapshot},
    l4::{Datapath, DatapathOptions, conntrack::Timeouts, plane::Kernel},
};

use crate::{
    bench::{Results, propagation},
    netns::PinDir,
};

/// Sizes of one scale run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Samples (processes of the scale example; apply rounds of the BPF maps).
    pub samples: usize,
    /// The real binary's propagation measurements.
    pub propagation: propagation::Params,
}

/// The in-process memory row (the real binary's is in the propagation table).
pub const RSS_ROW: &str = "peak RSS of the process, objects + engine + Snapshot (MiB)";

/// Runs the group.
pub fn run(p: Params) -> anyhow::Result<Results> {
    let mut r = Results::new("scale");
    let t = "Control plane at 10,000 Ingresses × 5 paths, 50,000 endpoints";
    r.table(
        t,
        "ingress-user's `scale` example (release), one process per sample: the full reference build (config::build, median of 5), what one change costs the controller's incremental engine (apply + Snapshot, 200 changes of each kind, with the previous Snapshot still held as the data planes hold it), route lookup cost averaged over 1,000,000 lookups, and the process's peak RSS with the objects held by the engine (before the reference builds). The real binary's memory is in the next table",
        &[("value", false)],
        &[],
    );
    let exe = std::env::current_exe()?;
    let example = exe.parent().context("exe dir")?.join("examples/scale");
    if !example.exists() {
        bail!(
            "{} is missing: cargo build --release -p ingress-user --example scale",
            example.display()
        );
    }
    let (mut build, mut lookup, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    let (mut heap_objects, mut heap_total) = (Vec::new(), Vec::new());
    let (mut ing50, mut ing99, mut eps50, mut eps99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..p.samples {
        println!("scale: example run {}", i + 1);
        let out = Command::new(&example)
            .output()
            .context("run the scale example")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "scale example failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let num_after = |prefix: &str, skip: usize| -> anyhow::Result<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|rest| rest.split_whitespace().nth(skip))
                .and_then(|n| {
                    n.trim_end_matches(|c: char| !c.is_ascii_digit())
                        .parse()
                        .ok()
                })
                .with_context(|| format!("no `{prefix}` in the scale example output:\n{text}"))
        };
        build.push(num_after("config::build: median", 0)?);
        lookup.push(num_after("route lookup:", 0)?);
        rss.push(num_after("peak RSS (VmHWM):", 0)?);
        heap_objects.push(num_after("engine live heap:", 0)?);
        heap_total.push(num_after("engine live heap:", 4)?);
        let ingress = "engine: an Ingress change (new host) -> Snapshot: p50";
        let slice = "engine: an EndpointSlice change -> Snapshot: p50";
        ing50.push(num_after(ingress, 0)?);
        ing99.push(num_after(ingress, 3)?);
        eps50.push(num_after(slice, 0)?);
        eps99.push(num_after(slice, 3)?);
    }
    r.add(t, "full build, config::build (ms)", "value", build);
    for (row, v) in [
        ("engine: an Ingress change → Snapshot, p50 (ms)", ing50),
        ("engine: an Ingress change → Snapshot, p99 (ms)", ing99),
        (
            "engine: an EndpointSlice change → Snapshot, p50 (ms)",
            eps50,
        ),
        (
            "engine: an EndpointSlice change → Snapshot, p99 (ms)",
            eps99,
        ),
        (RSS_ROW, rss),
        ("engine live heap: the objects (MiB)", heap_objects),
        (
            "engine live heap: objects + translation + Snapshot (MiB)",
            heap_total,
        ),
    ] {
        r.add(t, row, "value", v);
    }
    r.add(
        t,
        "route lookup (ns, exact host, 4-segment path)",
        "value",
        lookup,
    );

    propagation::run(&mut r, p.propagation)?;

    let t = "BPF map programming, 1,000 L4 services × 2 endpoints";
    r.table(
        t,
        "Kernel::apply (the controller's map sync: service entries, backends, Maglev tables of the default size, batched) on a freshly loaded datapath, as the controller runs it",
        &[("ms", false)],
        &[],
    );
    let pin = PinDir::new();
    let dp = Datapath::load(EBPF_OBJECT, pin.path(), DatapathOptions::default())
        .context("load the eBPF object")?;
    let maglev = dp.options().maglev_size;
    let mut kernel = Kernel::new(
        dp,
        vec![IpAddr::V4(Ipv4Addr::new(10, 77, 1, 2))],
        Timeouts::default(),
    )?;
    let services = |shift: u8| -> Vec<L4Service> {
        (0..1000u16)
            .map(|i| L4Service {
                port: 10_000 + i,
                protocol: L4Protocol::Tcp,
                service: ServiceRef {
                    namespace: "bench".into(),
                    name: format!("svc{i}"),
                    port: 80,
                },
                endpoints: (0..2u8)
                    .map(|e| {
                        let [hi, lo] = i.to_be_bytes();
                        SocketAddr::new(
                            IpAddr::V4(Ipv4Addr::new(10, 100 + e + shift, hi, lo)),
                            8080,
                        )
                    })
                    .collect(),
                proxy_protocol_in: false,
                proxy_protocol_out: false,
                addrs: Vec::new(),
                split: Vec::new(),
            })
            .collect()
    };
    let full = Snapshot {
        l4: services(0),
        ..Snapshot::default()
    };
    let mut one_changed = services(0);
    one_changed[500].endpoints[1] = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1)), 8080);
    let one_changed = Snapshot {
        l4: one_changed,
        ..Snapshot::default()
    };
    let empty = Snapshot::default();
    let (mut add, mut change, mut remove) = (Vec::new(), Vec::new(), Vec::new());
    let timed = |k: &mut Kernel, s: &Snapshot| -> anyhow::Result<f64> {
        let t0 = Instant::now();
        k.apply(s)?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    for _ in 0..p.samples {
        add.push(timed(&mut kernel, &full)?);
        change.push(timed(&mut kernel, &one_changed)?);
        remove.push(timed(&mut kernel, &empty)?);
    }
    r.add(t, "program 1,000 services from empty maps", "ms", add);
    r.add(t, "then change one endpoint of one service", "ms", change);
    r.add(t, "then remove all 1,000 services", "ms", remove);
    r.note(format!("Route lookup is a timed loop in the scale example (1,000,000 lookups over 1,024 hosts, black_box), not a criterion bench: criterion's dependency tree was judged too heavy for this 2-core machine. Maglev table size for the BPF figures: {maglev} slots per service."));
    r.note("The scale example builds its objects in memory from k8s-openapi types and hands them to the engine, as a source does; its peak RSS is measured before the reference builds (which copy the objects once more). The real binary's RSS (the propagation table) adds the runtime, the router and the allocator's retention: in kube mode, objects are deserialized on the tokio workers among the JSON pages they came from.");
    Ok(r)
}
