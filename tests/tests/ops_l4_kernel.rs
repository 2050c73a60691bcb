//! `/metrics` for the eBPF L4 path after real traffic: client ⇄ node ⇄ backend in network
//! namespaces, the programs attached in TC mode, a UDP service programmed from a Snapshot,
//! real datagrams through it, then the exporter reads the pinned maps (as a restarted
//! controller would) and the exposition names the service.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::Arc,
    time::Duration,
};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use ingress_tests::{
    netns::{Netns, PinDir},
    packet::{Packet, SYN},
    topology::{NODE, Offloads, Topology},
};
use tokio::sync::watch;
use xdp_ingress::{
    EBPF_OBJECT,
    config::{L4Protocol, L4Service, ServiceRef, Snapshot},
    controller::{ControllerHandle, ControllerStats},
    http::Metrics,
    l4::{Datapath, DatapathOptions, L4Mode, conntrack::Timeouts, plane::Kernel},
    ops::{Ops, metrics::Sources},
};

const PORT: u16 = 5300;
const CT_ENTRIES: u32 = 4096;

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Renders `/metrics` as the controller would, reading the maps pinned under `pin`.
fn render(pin: &PinDir, snapshot: Snapshot, apply_seconds: Option<f64>) -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let (_snap_tx, snapshots) = watch::channel(Arc::new(snapshot));
            let (_ready_tx, ready) = watch::channel(true);
            let handle = ControllerHandle {
                snapshots,
                ready,
                ingresses: watch::channel(Arc::default()).1,
                gateways: watch::channel(Arc::default()).1,
                stats: Arc::new(ControllerStats::default()),
            };
            let ops = Ops::new(
                &handle,
                Sources {
                    http: Arc::new(Metrics::default()),
                    l4_proxy: None,
                    kernel_maps: Some(pin.path().to_owned()),
                    ..Sources::default()
                },
            );
            // What the L4 plane does after each apply.
            if let Some(seconds) = apply_seconds {
                ops.metrics.l4_map_update().observe(seconds);
            }
            let started = std::time::Instant::now();
            let text = ops.metrics.render().await;
            eprintln!("scrape with kernel maps took {:?}", started.elapsed());
            text
        })
}

/// Echoes UDP datagrams on a thread inside `ns`.
fn udp_echo(ns: &Netns, addr: SocketAddr) {
    let sock = ns.run(move || UdpSocket::bind(addr).expect("bind udp echo"));
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], peer);
        }
    });
}

#[test]
fn kernel_l4_metrics_name_the_service_after_real_udp_traffic() {
    let topo = Topology::new(1, Offloads::Default);
    let pin = PinDir::new();
    let pin_path = pin.path().to_owned();
    let ifaces = topo.node_interfaces();
    let mut kernel = topo.node.run(move || {
        let opts = DatapathOptions {
            maglev_size: 251,
            max_services: 16,
            ct_entries: CT_ENTRIES,
            ..DatapathOptions::default()
        };
        let mut dp = Datapath::load(EBPF_OBJECT, &pin_path, opts).expect("load eBPF");
        dp.clean_stale_links(&ifaces, L4Mode::Tc)
            .expect("clean links");
        for i in &ifaces {
            dp.attach(i, L4Mode::Tc).expect("attach");
        }
        Kernel::new(dp, vec![IpAddr::V4(NODE)], Timeouts::default()).expect("kernel plane")
    });
    let backend = topo.backend(0, 5353);
    udp_echo(&topo.backends[0], backend);
    let snapshot = Snapshot {
        l4: vec![L4Service {
            port: PORT,
            protocol: L4Protocol::Udp,
            service: ServiceRef {
                namespace: "default".into(),
                name: "dns".into(),
                port: 53,
            },
            endpoints: vec![backend],
            proxy_protocol_in: false,
            proxy_protocol_out: false,
            addrs: Vec::new(),
            split: Vec::new(),
        }],
        ..Snapshot::default()
    };
    let started = std::time::Instant::now();
    kernel.apply(&snapshot).expect("program maps");
    let apply_seconds = started.elapsed().as_secs_f64();

    // Five datagrams on one socket: one flow.
    let replies = topo.client.run(|| {
        let s = UdpSocket::bind("10.77.1.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let mut got = 0;
        for i in 0..5u8 {
            // The first datagram may be spent resolving neighbours; retry like a UDP client.
            for _ in 0..3 {
                s.send_to(&[b'm', b'0' + i], Topology::service(PORT))
                    .expect("send");
                let mut buf = [0u8; 64];
                if s.recv_from(&mut buf).is_ok() {
                    got += 1;
                    break;
                }
            }
        }
        got
    });
    assert_eq!(replies, 5, "UDP echoes through the node");

    let text = render(&pin, snapshot, Some(apply_seconds));
    let labels =
        format!("protocol=\"udp\",family=\"ipv4\",port=\"{PORT}\",service=\"default/dns:53\"");
    let series = |name: &str| format!("xdp_ingress_{name}_total{{{labels}}}");
    assert_eq!(
        sample(&text, &series("l4_service_new_flows")),
        Some(1.0),
        "{text}"
    );
    let packets = sample(&text, &series("l4_service_packets")).expect("packets");
    assert!(
        packets >= 10.0,
        "5 requests + 5 replies at least: {packets}\n{text}"
    );
    let bytes = sample(&text, &series("l4_service_bytes")).expect("bytes");
    // Every frame carries at least Ethernet + IPv4 + UDP headers and 2 payload bytes.
    assert!(
        bytes >= packets * 44.0,
        "bytes {bytes} for {packets} packets"
    );
    for reason in ["snat_exhausted", "ct_full"] {
        let drops = format!(
            "xdp_ingress_l4_service_drops_total{{{}}}",
            labels.clone() + &format!(",reason=\"{reason}\"")
        );
        assert_eq!(sample(&text, &drops), Some(0.0), "{drops}\n{text}");
    }
    assert!(
        sample(&text, "xdp_ingress_l4_packets_total{counter=\"new_flow\"}")
            .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "xdp_ingress_l4_drops_total{reason=\"no_route\"}"),
        Some(0.0),
        "{text}"
    );
    for counter in [
        "icmp_translated",
        "icmp_untranslated",
        "fragment_translated",
        "fragment_untracked",
    ] {
        let series = format!("xdp_ingress_l4_packets_total{{counter=\"{counter}\"}}");
        assert!(sample(&text, &series).is_some(), "{series}\n{text}");
    }
    assert_eq!(
        sample(&text, "xdp_ingress_conntrack_flows"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "xdp_ingress_conntrack_fullness_ratio"),
        Some(1.0 / f64::from(CT_ENTRIES)),
        "{text}"
    );
    assert_eq!(
        sample(&text, "xdp_ingress_l4_map_read_errors_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "xdp_ingress_l4_map_update_duration_seconds_count"),
        Some(1.0),
        "{text}"
    );
    drop(kernel);
}

/// One TCP port served over IPv4 and IPv6: each family has its own service id and counters,
/// and the exposition keeps them apart (the family is part of every per-service key). One
/// SYN goes in over IPv4 and two over IPv6, through BPF_PROG_TEST_RUN in a bare namespace.
#[test]
fn per_service_metrics_keep_the_address_families_apart() {
    let ns = Netns::new("fam");
    let pin = PinDir::new();
    let pin_path = pin.path().to_owned();
    let snapshot = Snapshot {
        l4: vec![L4Service {
            port: 9000,
            protocol: L4Protocol::Tcp,
            service: ServiceRef {
                namespace: "default".into(),
                name: "redis".into(),
                port: 6379,
            },
            endpoints: vec![
                "10.60.0.10:6379".parse().expect("addr"),
                "[fd60::10]:6379".parse().expect("addr"),
            ],
            proxy_protocol_in: false,
            proxy_protocol_out: false,
            addrs: Vec::new(),
            split: Vec::new(),
        }],
        ..Snapshot::default()
    };
    let programmed = snapshot.clone();
    let kernel = ns.run(move || {
        let opts = DatapathOptions {
            maglev_size: 251,
            max_services: 8,
            ct_entries: 1024,
            ..DatapathOptions::default()
        };
        let dp = Datapath::load(EBPF_OBJECT, &pin_path, opts).expect("load eBPF");
        let node = vec![
            "10.50.0.2".parse::<IpAddr>().expect("ip"),
            "fd50::2".parse::<IpAddr>().expect("ip"),
        ];
        let mut kernel = Kernel::new(dp, node, Timeouts::default()).expect("kernel plane");
        kernel.apply(&programmed).expect("program maps");
        let prog: &Xdp = kernel
            .datapath
            .ebpf_mut()
            .program(ingress_common::programs::XDP)
            .expect("xdp")
            .try_into()
            .expect("xdp type");
        for (client, node, sport) in [
            ("10.50.0.1", "10.50.0.2", 40000),
            ("fd50::1", "fd50::2", 40000),
            ("fd50::1", "fd50::2", 40001),
        ] {
            let frame = Packet::tcp(client, sport, node, 9000, SYN).build();
            prog.test_run(TestRunOptions {
                data_in: Some(&frame),
                ..Default::default()
            })
            .expect("test_run");
        }
        kernel
    });
    let text = render(&pin, snapshot, None);
    let series = |family: &str| {
        format!(
            "xdp_ingress_l4_service_new_flows_total{{protocol=\"tcp\",family=\"{family}\",port=\"9000\",service=\"default/redis:6379\"}}"
        )
    };
    assert_eq!(sample(&text, &series("ipv4")), Some(1.0), "{text}");
    assert_eq!(sample(&text, &series("ipv6")), Some(2.0), "{text}");
    drop(kernel);
}
