//! Conntrack and SNAT at the edges, end to end with the real binary in file mode (the seed
//! topology: client ⇄ node ⇄ redis on backend 0, an HTTP server on backend 1), in XDP and
//! TC modes:
//! - SNAT at 90% occupancy: with `--snat-port-range` of 100 ports, 90 connections held open
//!   to the one endpoint, and new connections still open;
//! - a flood of SYNs that are never answered (spoofed sources) fills the SNAT range, and
//!   `--tcp-syn-timeout 2` plus a conntrack pass releases it; in XDP mode, SYNs with a wrong
//!   TCP checksum are dropped first and open nothing;
//! - UDP rebalancing: a UDP flow whose endpoint leaves the service (the EndpointSlice file
//!   changes) moves to the other endpoint on its next datagram.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use ingress_common::{
    l4::{CtEntry, FlowKey},
    maps,
    stats::Counter,
};
use ingress_tests::{
    netns::Netns,
    packet::{Packet, SYN, send_raw_ipv4},
    seed::{Seed, Source},
    servers::udp_echo_in,
    topology::{CLIENT, NODE, Offloads, Topology, backend_addr},
};
use xdp_ingress::l4::stats::read_pinned;

/// Forward conntrack entries (flows) in the maps pinned under `pin`.
fn flows(pin: &Path) -> usize {
    let data = MapData::from_pin(pin.join(maps::CT_FWD)).expect("pinned conntrack");
    let map = Map::HashMap(data);
    let ct: BpfHashMap<&MapData, FlowKey, CtEntry> = BpfHashMap::try_from(&map).expect("type");
    ct.keys().filter(Result::is_ok).count()
}

fn counter(pin: &Path, c: Counter) -> u64 {
    read_pinned(pin).expect("pinned counters").get(c).packets
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Opens a connection to the redis service from the client namespace, and checks it works.
fn open(client: &Netns) -> Option<TcpStream> {
    client.run(|| {
        let s =
            TcpStream::connect_timeout(&Topology::service(9000), Duration::from_secs(5)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        Some(s)
    })
}

fn ping(s: &mut TcpStream) -> bool {
    use std::io::{Read as _, Write as _};
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// With a 100-port SNAT range and one endpoint, 90 connections stay open and new ones still
/// succeed without a drop. Then it keeps opening connections to find where the first drop
/// happens (printed; the kernel's random probing finds the last free ports too).
fn snat_at_90_percent(mode: &str, offloads: Offloads) {
    const RANGE: usize = 100;
    let mut seed = Seed::new(offloads, Source::Files);
    seed.start_controller_with(mode, &["--snat-port-range", "30000-30099"]);
    let pin = seed.pin.path().to_owned();
    let mut held = Vec::new();
    while flows(&pin) < RANGE * 9 / 10 {
        let mut s = open(&seed.topo.client).expect("a connection below 90% occupancy");
        assert!(ping(&mut s), "{mode}: PING through a held connection");
        held.push(s);
    }
    assert_eq!(
        counter(&pin, Counter::DropSnatExhausted),
        0,
        "{mode}: no SNAT drop up to 90% ({} held)",
        held.len()
    );
    for i in 0..5 {
        let started = Instant::now();
        let mut s = open(&seed.topo.client).expect("a new connection at 90%+");
        assert!(ping(&mut s), "{mode}: PING on new connection {i}");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{mode}: connection {i} needed a SYN retransmit: {:?}",
            started.elapsed()
        );
        held.push(s);
    }
    assert_eq!(
        counter(&pin, Counter::DropSnatExhausted),
        0,
        "{mode}: no SNAT drop at {} of {RANGE} ports",
        flows(&pin)
    );
    // Where does the first drop come? (Each connection here is one more port.)
    let mut first_drop = None;
    while flows(&pin) < RANGE {
        let before = flows(&pin);
        let s = open(&seed.topo.client);
        if counter(&pin, Counter::DropSnatExhausted) > 0 {
            first_drop = Some(before);
            break;
        }
        held.extend(s);
    }
    eprintln!(
        "{mode}: {} ports of {RANGE} in use; first SNAT drop at {first_drop:?} ports in use",
        flows(&pin)
    );
}

#[test]
fn snat_at_90_percent_through_xdp() {
    snat_at_90_percent("xdp", Offloads::LikeANic);
}

#[test]
fn snat_at_90_percent_through_tc() {
    snat_at_90_percent("tc", Offloads::Default);
}

/// SYNs that are never answered: spoofed client addresses that do not exist (the backend's
/// SYN-ACKs go nowhere) and a bad TCP checksum. They fill the 200-port SNAT range
/// (`drop_snat_exhausted` counts the rest, also against the service); after
/// `--tcp-syn-timeout 2` and a conntrack pass (1 s with that timeout) they are gone and real
/// connections open at once.
fn syn_flood_is_released(mode: &str, offloads: Offloads) {
    const RANGE: usize = 200;
    const SYNS: u16 = 400;
    let mut seed = Seed::new(offloads, Source::Files);
    seed.start_controller_with(
        mode,
        &["--snat-port-range", "30000-30199", "--tcp-syn-timeout", "2"],
    );
    let pin = seed.pin.path().to_owned();
    let syns = |bad_checksum: bool| -> Vec<Vec<u8>> {
        (0..SYNS)
            .map(|i| {
                let src = Ipv4Addr::new(10, 77, 1, 100 + u8::try_from(i % 100).expect("small"));
                // A SYN as a client sends it: no data.
                let mut p = Packet {
                    payload: Vec::new(),
                    ..Packet::tcp(&src.to_string(), 10_000 + i, &NODE.to_string(), 9000, SYN)
                }
                .build_ip();
                if bad_checksum {
                    // The TCP checksum (IPv4 header of 20 bytes, checksum at offset 16).
                    p[20 + 16] ^= 0x5a;
                }
                p
            })
            .collect()
    };
    if mode == "xdp" {
        // XDP sees full checksums: SYNs with a wrong one open nothing, and are counted.
        let before = flows(&pin);
        let bad = syns(true);
        seed.topo
            .client
            .run(move || send_raw_ipv4(&bad))
            .expect("send raw SYNs");
        let deadline = Instant::now() + Duration::from_secs(5);
        while counter(&pin, Counter::DropBadChecksum) < u64::from(SYNS) {
            assert!(
                Instant::now() < deadline,
                "{mode}: {} of {SYNS} bad-checksum SYNs counted ({} flows; counters {:?})",
                counter(&pin, Counter::DropBadChecksum),
                flows(&pin),
                Counter::ALL
                    .iter()
                    .map(|c| (c.name(), counter(&pin, *c)))
                    .filter(|(_, n)| *n > 0)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            flows(&pin) <= before,
            "{mode}: bad-checksum SYNs opened flows ({before} before, {} after)",
            flows(&pin)
        );
        let metrics = seed.metrics();
        let series = "xdp_ingress_l4_drops_total{reason=\"bad_checksum\"}";
        assert_eq!(
            sample(&metrics, series),
            Some(f64::from(SYNS)),
            "{mode}: {series}\n{metrics}"
        );
    }
    // Spoofed sources that never answer the backend's SYN-ACK (in TC mode, also with wrong
    // checksums: TC cannot judge them, see README).
    let flood = syns(mode != "xdp");
    seed.topo
        .client
        .run(move || send_raw_ipv4(&flood))
        .expect("send raw SYNs");
    let flooded = Instant::now();
    // Wait for the flood to land (the last SYNs may still be in flight).
    let deadline = flooded + Duration::from_secs(1);
    while counter(&pin, Counter::DropSnatExhausted) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let held = flows(&pin);
    assert!(
        held >= RANGE * 9 / 10,
        "{mode}: the flood holds the SNAT range ({held} flows)"
    );
    assert!(
        counter(&pin, Counter::DropSnatExhausted) > 0,
        "{mode}: SYNs beyond the range are dropped and counted"
    );
    let metrics = seed.metrics();
    let series = "xdp_ingress_l4_service_drops_total{protocol=\"tcp\",family=\"ipv4\",port=\"9000\",service=\"default/redis:6379\",reason=\"snat_exhausted\"}";
    assert!(
        sample(&metrics, series).is_some_and(|v| v > 0.0),
        "{mode}: drops counted against the service: {series}\n{metrics}"
    );

    // Released within the embryonic timeout plus a pass or two (and the time to see it).
    while flows(&pin) > 10 {
        assert!(
            flooded.elapsed() < Duration::from_secs(6),
            "{mode}: {} flows still held {:?} after the flood",
            flows(&pin),
            flooded.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{mode}: {held} flows held by the flood, released after {:?}",
        flooded.elapsed()
    );
    let drops = counter(&pin, Counter::DropSnatExhausted);
    for i in 0..20 {
        let started = Instant::now();
        let mut s = open(&seed.topo.client).expect("a real connection after the flood");
        assert!(ping(&mut s), "{mode}: PING on connection {i}");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{mode}: connection {i} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        counter(&pin, Counter::DropSnatExhausted),
        drops,
        "{mode}: no drop after the release"
    );
}

#[test]
fn syn_flood_is_released_through_xdp() {
    syn_flood_is_released("xdp", Offloads::LikeANic);
}

#[test]
fn syn_flood_is_released_through_tc() {
    syn_flood_is_released("tc", Offloads::Default);
}

const UDP_PORT: u16 = 5300;
const ECHO_PORT: u16 = 5353;

/// The UDP echo Service with an EndpointSlice naming `backends`, and the udp-services
/// ConfigMap exposing it on the node's port 5300.
fn echo_manifests(backends: &[usize]) -> String {
    let addresses = backends
        .iter()
        .map(|i| format!("\"{}\"", backend_addr(*i)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: default}}
spec:
  ports:
    - {{name: echo, port: 53, targetPort: {ECHO_PORT}, protocol: UDP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-topology
  namespace: default
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
endpoints:
  - addresses: [{addresses}]
    conditions: {{ready: true}}
ports:
  - {{name: echo, port: {ECHO_PORT}, protocol: UDP}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: udp-services, namespace: xdp-ingress}}
data:
  "{UDP_PORT}": "default/echo:53"
"#
    )
}

/// Sends one datagram and returns which backend answered ("b0" or "b1").
fn who(sock: &UdpSocket) -> Option<String> {
    sock.send_to(b"who", Topology::service(UDP_PORT)).ok()?;
    let mut buf = [0u8; 64];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    Some(text.split(':').next()?.to_owned())
}

/// A UDP flow (one client socket) to a 2-endpoint service; its endpoint leaves the
/// EndpointSlice; the next datagrams of the same flow reach the other endpoint.
fn udp_flow_leaves_a_removed_endpoint(mode: &str, offloads: Offloads) {
    let mut seed = Seed::new(offloads, Source::Files);
    udp_echo_in(
        &seed.topo.backends[0],
        seed.topo.backend(0, ECHO_PORT),
        "b0",
    );
    udp_echo_in(
        &seed.topo.backends[1],
        seed.topo.backend(1, ECHO_PORT),
        "b1",
    );
    let manifest = seed.manifest("echo.yaml");
    fs::write(&manifest, echo_manifests(&[0, 1])).expect("write echo manifests");
    seed.start_controller_with(
        mode,
        &["--udp-services-configmap", "xdp-ingress/udp-services"],
    );
    let client = seed
        .topo
        .client
        .run(|| UdpSocket::bind(SocketAddr::from((CLIENT, 0))).expect("bind"));
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    // The first datagrams may be spent resolving neighbours, or come before the maps are
    // programmed; retry like a UDP client.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(w) = who(&client) {
            break w;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: no UDP echo through the node; log:\n{}",
            seed.log()
        );
    };
    for _ in 0..3 {
        assert_eq!(
            who(&client).as_deref(),
            Some(first.as_str()),
            "{mode}: one flow, one endpoint"
        );
    }
    let (gone, stays) = if first == "b0" { (0, 1) } else { (1, 0) };
    fs::write(&manifest, echo_manifests(&[stays])).expect("rewrite echo manifests");
    let stays_name = format!("b{stays}");
    let changed = Instant::now();
    loop {
        if who(&client).as_deref() == Some(stays_name.as_str()) {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(10),
            "{mode}: the flow still reaches b{gone} after its endpoint left; log:\n{}",
            seed.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{mode}: the flow moved to {stays_name} {:?} after the EndpointSlice changed",
        changed.elapsed()
    );
    for _ in 0..5 {
        assert_eq!(
            who(&client).as_deref(),
            Some(stays_name.as_str()),
            "{mode}: the flow stays on the live endpoint"
        );
    }
}

#[test]
fn udp_flow_leaves_a_removed_endpoint_through_xdp() {
    udp_flow_leaves_a_removed_endpoint("xdp", Offloads::LikeANic);
}

#[test]
fn udp_flow_leaves_a_removed_endpoint_through_tc() {
    udp_flow_leaves_a_removed_endpoint("tc", Offloads::Default);
}
