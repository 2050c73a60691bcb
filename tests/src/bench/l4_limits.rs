//! L4 limits: where SNAT runs out and what the XDP program costs per packet.
//!
//! - **SNAT until the first drop.** One endpoint, the default SNAT range: new connections as
//!   fast as a client opens them, end to end through the real binary in xdp mode, and SYNs
//!   with fresh tuples through BPF_PROG_TEST_RUN. Each records the range's occupancy when the
//!   first flow is refused (`drop_snat_exhausted`), and the rate that got there.
//! - **Per-packet cost** of the XDP program under BPF_PROG_TEST_RUN (the kernel's own timing),
//!   for a new flow, an established flow and a packet for no service, against an `XDP_PASS`
//!   program as the floor.

use std::{
    net::SocketAddr,
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
    process::Stdio,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{
    maps::{HashMap as BpfHashMap, Map, MapData},
    programs::Xdp,
};
use ingress_common::{
    l4::{CtEntry, FlowKey},
    maps,
    stats::Counter,
};
use xdp_ingress::l4::{DatapathOptions, stats::read_pinned};

use crate::{
    bench::{
        Results,
        rig::{L4_REDIS, LOAD_CPU, Rig, pinned},
        test_run,
    },
    nat_fixture::{
        BACKEND, BACKEND_MAC, CLIENT, CLIENT_MAC, Fixture, IN_MAC, NODE, OUT_MAC, Setup,
        redis_service, with_setup,
    },
    packet::{ACK, Packet, SYN},
    topology::NODE as RIG_NODE,
};

/// Sizes of one run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Samples per row (≥ 5 for the report).
    pub samples: usize,
    /// BPF_PROG_TEST_RUN calls per per-packet sample (one packet each).
    pub runs: u32,
    /// `repeat` of the repeated runs.
    pub repeat: u32,
    /// End-to-end SNAT samples (each waits for conntrack to drain first).
    pub e2e_samples: usize,
}

const SNAT: &str = "SNAT: new connections to one endpoint until the first drop";
const COST: &str = "XDP program cost per packet, one packet per run";
const REPEAT: &str = "XDP program cost per packet, repeat";
const FLOOR: &str = "XDP_PASS floor (r0 = XDP_PASS; exit)";
const OTHER: &str = "packet for no service (passed)";
const EST: &str = "established flow (client ACK with data)";
const NEW: &str = "new flow (client SYN: Maglev, SNAT probe, two inserts)";
const E2E: &str = "end to end: redis-benchmark -k 0 -c 50, xdp-ingress xdp";
const PTR: &str = "BPF_PROG_TEST_RUN: SYNs with fresh tuples";

/// The default SNAT range (`DatapathOptions::default`), as the binary runs without
/// `--snat-port-range`.
fn default_range() -> (u16, u16) {
    DatapathOptions::default().snat_ports
}

/// Runs the group.
pub fn run(p: Params) -> anyhow::Result<Results> {
    let mut r = Results::new("l4-limits");
    let (lo, hi) = default_range();
    let ports = f64::from(hi - lo) + 1.0;
    r.table(
        SNAT,
        &format!(
            "The default SNAT range {lo}-{hi} ({ports} ports per node address and endpoint); new flows to one endpoint until `drop_snat_exhausted` first counts. Occupancy = reply entries of that endpoint ÷ ports at that moment."
        ),
        &[
            ("occupancy at first drop %", true),
            ("flows before first drop", true),
            ("new flows/s until then", true),
        ],
        &[],
    );
    r.table(
        COST,
        &format!(
            "BPF_PROG_TEST_RUN of the XDP entry point on one frame per call, {} calls per sample; each cell is the mean of the kernel-measured duration (which includes one clock read, as the floor's does). Paths that rewrite the frame cannot use `repeat`: from the second round on they would see their own output.",
            p.runs
        ),
        &[("ns/packet", false), ("ns above the floor", false)],
        &[FLOOR],
    );
    r.table(
        REPEAT,
        &format!(
            "BPF_PROG_TEST_RUN with repeat = {} on a frame the program leaves untouched, so every round is the same packet.",
            p.repeat
        ),
        &[("ns/packet", false), ("ns above the floor", false)],
        &[FLOOR],
    );

    let (cost, repeat, drops) = in_fixture(p)?;
    for (row, samples) in [FLOOR, OTHER, EST, NEW].iter().zip(&cost) {
        r.add(COST, row, "ns/packet", samples.clone());
        let above = samples.iter().zip(&cost[0]).map(|(x, f)| x - f).collect();
        r.add(COST, row, "ns above the floor", above);
    }
    for (row, samples) in [FLOOR, OTHER].iter().zip(&repeat) {
        r.add(REPEAT, row, "ns/packet", samples.clone());
        let above = samples.iter().zip(&repeat[0]).map(|(x, f)| x - f).collect();
        r.add(REPEAT, row, "ns above the floor", above);
    }
    r.add(
        SNAT,
        PTR,
        "occupancy at first drop %",
        drops.iter().map(|d| 100.0 * d / ports).collect(),
    );
    r.add(SNAT, PTR, "flows before first drop", drops.clone());

    let mut rig = Rig::new()?;
    let e2e = end_to_end(&mut rig, p.e2e_samples)?;
    r.add(
        SNAT,
        E2E,
        "occupancy at first drop %",
        e2e.iter().map(|s| 100.0 * s.occupancy / ports).collect(),
    );
    r.add(
        SNAT,
        E2E,
        "flows before first drop",
        e2e.iter().map(|s| s.flows).collect(),
    );
    r.add(
        SNAT,
        E2E,
        "new flows/s until then",
        e2e.iter().map(|s| s.flows / s.secs).collect(),
    );
    r.note(format!("SNAT: a closed TCP flow keeps its port for `--tcp-close-timeout` (10 s) plus up to one conntrack pass (5 s), an unanswered SYN for `--tcp-syn-timeout` (10 s) plus a pass. So one endpoint sustains about {ports} ÷ 12.5 s ≈ {:.0} new connections per second per node address with the default range; a faster client fills the range and meets the first drop at the occupancy shown. Each endpoint has its own range, so the rate scales with endpoints.", ports / 12.5));
    r.note(format!("SNAT probing draws {} independent random ports per new flow (`snat::PROBES`), so a drop needs all of them taken: at occupancy p that happens with probability p^{}.", ingress_common::l4::snat::PROBES, ingress_common::l4::snat::PROBES));
    r.note("Per-packet cost: the programs run in a namespace with the test suites' static neighbours (`nat_fixture`), with forwarding on, so the NAT paths do their FIB lookup and rewrite and return XDP_REDIRECT; in a real receive path the redirect itself and the driver come on top, for every configuration alike.");
    r.note(format!("The new-flow samples start from an empty conntrack; a sample's {} flows take at most {:.0} % of the SNAT range, where the first probe almost always finds a free port.", p.runs, 100.0 * f64::from(p.runs) / ports));
    Ok(r)
}

/// Per-packet costs (floor, other, established, new: samples of ns) with one packet per run,
/// the same with `repeat` (floor, other), and flows before the first SNAT drop through
/// BPF_PROG_TEST_RUN.
type FixtureResults = (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>);

fn in_fixture(p: Params) -> anyhow::Result<FixtureResults> {
    let (tx, rx) = mpsc::channel();
    with_setup(
        Setup {
            ct_entries: 65_536,
            snat_ports: default_range(),
            services: vec![redis_service()],
        },
        move |f| {
            let _ = tx.send(measure(f, p));
        },
    );
    rx.recv()
        .context("the fixture thread ended without a result")?
}

fn client(sport: u16, flags: u8) -> Packet {
    Packet {
        src_mac: CLIENT_MAC,
        dst_mac: IN_MAC,
        ..Packet::tcp(CLIENT, sport, NODE, 9000, flags)
    }
}

/// The XDP program's file descriptor.
fn xdp_fd(f: &mut Fixture) -> anyhow::Result<i32> {
    let prog: &Xdp = f
        .kernel
        .datapath
        .ebpf_mut()
        .program(ingress_common::programs::XDP)
        .context("xdp program")?
        .try_into()?;
    Ok(prog.fd()?.as_fd().as_raw_fd())
}

/// Deletes every conntrack entry.
fn clear(f: &mut Fixture) {
    for name in [maps::CT_FWD, maps::CT_REV] {
        let mut m = f.ct_map(name);
        let keys: Vec<FlowKey> = m.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = m.remove(&k);
        }
    }
}

/// Opens and establishes the flow CLIENT:50000 → NODE:9000; returns the client's data frame.
fn establish(f: &mut Fixture) -> anyhow::Result<Vec<u8>> {
    let fd = xdp_fd(f)?;
    let syn = client(50000, SYN).build();
    let (rc, _) = test_run::run(fd, &syn, &test_run::xdp_ctx(syn.len(), f.in_if), 1)?;
    if rc != XDP_REDIRECT {
        bail!("the SYN of the established flow was not redirected ({rc})");
    }
    let key = FlowKey {
        src: v4(CLIENT),
        dst: v4(NODE),
        sport: 50000u16.to_be(),
        dport: 9000u16.to_be(),
        proto: ingress_common::l4::PROTO_TCP,
        family: ingress_common::l4::FAMILY_V4,
        _pad: [0; 2],
    };
    let snat = u16::from_be(
        f.ct(maps::CT_FWD, &key)
            .context("conntrack entry of the established flow")?
            .sport,
    );
    let synack = Packet {
        src_mac: BACKEND_MAC,
        dst_mac: OUT_MAC,
        seq: 5000,
        ack: 1001,
        ..Packet::tcp(BACKEND, 6379, NODE, snat, SYN | ACK)
    }
    .build();
    test_run::run(fd, &synack, &test_run::xdp_ctx(synack.len(), f.out_if), 1)?;
    let data = Packet {
        seq: 1001,
        ack: 5001,
        ..client(50000, ACK)
    }
    .build();
    test_run::run(fd, &data, &test_run::xdp_ctx(data.len(), f.in_if), 1)?;
    Ok(data)
}

fn v4(a: &str) -> [u8; 16] {
    let ip: std::net::Ipv4Addr = a.parse().expect("IPv4 address");
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&ip.octets());
    out
}

const XDP_REDIRECT: u32 = 4;
const XDP_DROP: u32 = 1;

/// Mean kernel-measured ns of `runs` single-packet runs of `fd` on `frame`, checking the
/// verdict.
fn mean_single(fd: i32, frame: &[u8], ifindex: u32, runs: u32, want: u32) -> anyhow::Result<f64> {
    let ctx = test_run::xdp_ctx(frame.len(), ifindex);
    let mut total = 0u64;
    for _ in 0..runs {
        let (rc, ns) = test_run::run(fd, frame, &ctx, 1)?;
        if rc != want {
            bail!("verdict {rc}, expected {want}");
        }
        total += u64::from(ns);
    }
    Ok(total as f64 / f64::from(runs))
}

fn measure(f: &mut Fixture, p: Params) -> anyhow::Result<FixtureResults> {
    let floor = test_run::load_xdp_pass().context("load the XDP_PASS floor program")?;
    let floor_fd = floor.as_raw_fd();
    let fd = xdp_fd(f)?;
    let other = client(40000, SYN);
    let other = Packet {
        dport: 9999,
        ..other
    }
    .build();
    let mut cost = vec![Vec::new(); 4];
    let mut repeat = vec![Vec::new(); 2];
    let mut next_port = 1024u16;
    for _ in 0..p.samples {
        clear(f);
        let data = establish(f)?;
        cost[0].push(mean_single(
            floor_fd,
            &other,
            f.in_if,
            p.runs,
            test_run::XDP_PASS,
        )?);
        cost[1].push(mean_single(
            fd,
            &other,
            f.in_if,
            p.runs,
            test_run::XDP_PASS,
        )?);
        cost[2].push(mean_single(fd, &data, f.in_if, p.runs, XDP_REDIRECT)?);
        let mut total = 0u64;
        for _ in 0..p.runs {
            next_port = if next_port >= 60000 {
                1024
            } else {
                next_port + 1
            };
            let syn = client(next_port, SYN).build();
            let (rc, ns) = test_run::run(fd, &syn, &test_run::xdp_ctx(syn.len(), f.in_if), 1)?;
            if rc != XDP_REDIRECT {
                bail!("new flow from port {next_port}: verdict {rc}");
            }
            total += u64::from(ns);
        }
        cost[3].push(total as f64 / f64::from(p.runs));
        let ctx = test_run::xdp_ctx(other.len(), f.in_if);
        repeat[0].push(f64::from(
            test_run::run(floor_fd, &other, &ctx, p.repeat)?.1,
        ));
        repeat[1].push(f64::from(test_run::run(fd, &other, &ctx, p.repeat)?.1));
    }
    let mut drops = Vec::new();
    for _ in 0..p.samples {
        clear(f);
        let mut flows = 0u32;
        loop {
            if flows >= 60_000 {
                bail!("no SNAT drop after 60,000 flows");
            }
            let syn = client(1024 + flows as u16, SYN).build();
            let (rc, _) = test_run::run(fd, &syn, &test_run::xdp_ctx(syn.len(), f.in_if), 1)?;
            if rc == XDP_DROP {
                break;
            }
            flows += 1;
        }
        let occupied = f.ct_map(maps::CT_REV).keys().filter(Result::is_ok).count();
        if occupied != flows as usize {
            bail!("{occupied} reply entries for {flows} flows");
        }
        drops.push(f64::from(flows));
    }
    clear(f);
    Ok((cost, repeat, drops))
}

/// One end-to-end sample.
struct FirstDrop {
    /// Reply entries (SNAT ports in use) when the first drop was seen.
    occupancy: f64,
    /// New flows from the start of the load to the first drop.
    flows: f64,
    /// Seconds from the start of the load to the first drop.
    secs: f64,
}

/// Reply entries in the conntrack pinned under `pin`.
fn reply_entries(pin: &Path) -> anyhow::Result<usize> {
    let data = MapData::from_pin(pin.join(maps::CT_REV))?;
    let map = Map::HashMap(data);
    let ct: BpfHashMap<&MapData, FlowKey, CtEntry> = BpfHashMap::try_from(&map)?;
    Ok(ct.keys().filter(Result::is_ok).count())
}

fn end_to_end(rig: &mut Rig, samples: usize) -> anyhow::Result<Vec<FirstDrop>> {
    rig.start_controller_with("xdp", None, &[])?;
    let pin = rig.pin_path().to_owned();
    let to = SocketAddr::new(RIG_NODE.into(), L4_REDIS);
    let mut out = Vec::new();
    for i in 0..samples {
        println!("l4-limits: SNAT end to end, sample {}", i + 1);
        // Start from an empty range: the previous sample's flows expire.
        let deadline = Instant::now() + Duration::from_secs(60);
        while reply_entries(&pin)? > 0 {
            if Instant::now() > deadline {
                bail!("conntrack did not drain within 60 s");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let before = read_pinned(&pin)?;
        let mut load = pinned(&rig.topo.client, LOAD_CPU, "redis-benchmark")
            .args(["-h", &to.ip().to_string(), "-p", &to.port().to_string()])
            .args([
                "-t",
                "ping_mbulk",
                "-c",
                "50",
                "-k",
                "0",
                "-n",
                "200000",
                "-q",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start redis-benchmark")?;
        let started = Instant::now();
        let result = loop {
            let now = read_pinned(&pin)?;
            let dropped = now.get(Counter::DropSnatExhausted).packets
                - before.get(Counter::DropSnatExhausted).packets;
            if dropped > 0 {
                let secs = started.elapsed().as_secs_f64();
                let flows =
                    now.get(Counter::NewFlow).packets - before.get(Counter::NewFlow).packets;
                let occupancy = reply_entries(&pin)?;
                break Ok(FirstDrop {
                    occupancy: occupancy as f64,
                    flows: flows as f64,
                    secs,
                });
            }
            if started.elapsed() > Duration::from_secs(60) {
                break Err(anyhow::anyhow!("no SNAT drop within 60 s"));
            }
            if load.try_wait()?.is_some() {
                break Err(anyhow::anyhow!(
                    "redis-benchmark ended before the first SNAT drop"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let _ = load.kill();
        let _ = load.wait();
        out.push(result?);
    }
    rig.stop_controller()?;
    Ok(out)
}
