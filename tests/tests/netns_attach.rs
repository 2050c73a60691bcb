//! The real binary attaches its programs to a veth inside throw-away namespaces, real traffic
//! crosses it, and the pinned counters move. Runs in both attach modes.

use std::{
    net::UdpSocket,
    process::Stdio,
    time::{Duration, Instant},
};

use ingress_common::stats::Counter;
use ingress_tests::netns::{KillOnDrop, Netns, PinDir, veth};
use xdp_ingress::l4::stats::read_pinned;

const DATAGRAMS: u64 = 50;

fn counters_move_in_mode(mode: &str) {
    let client = Netns::new("cli");
    let node = Netns::new("node");
    let (cif, nif) = (
        format!("xc{}", std::process::id() % 100_000),
        format!("xn{}", std::process::id() % 100_000),
    );
    let cif = format!("{cif}{mode}");
    let nif = format!("{nif}{mode}");
    veth(&client, &cif, "10.201.0.1/24", &node, &nif, "10.201.0.2/24");
    let pin = PinDir::new();

    let child = node
        .command(ingress_tests::xdp_ingress_bin())
        .args(["--interface", &nif, "--l4-mode", mode, "--bpf-pin-path"])
        .arg(pin.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn xdp-ingress");
    let _child = KillOnDrop(child);

    // Wait for the attachment: its link is pinned once the program is attached.
    let deadline = Instant::now() + Duration::from_secs(30);
    let attached =
        || std::fs::read_dir(pin.path().join("links")).is_ok_and(|mut d| d.next().is_some());
    let before = loop {
        if attached()
            && let Ok(t) = read_pinned(pin.path())
        {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "counters never appeared in {}",
            pin.path().display()
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    // Real traffic: UDP datagrams from the client namespace to the node.
    client.run(|| {
        let s = UdpSocket::bind("10.201.0.1:0").expect("bind");
        for i in 0..DATAGRAMS {
            s.send_to(&i.to_be_bytes(), "10.201.0.2:9").expect("send");
        }
    });

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = read_pinned(pin.path()).expect("read counters");
        let udp = after.get(Counter::Udp).packets - before.get(Counter::Udp).packets;
        let v4 = after.get(Counter::Ipv4).packets - before.get(Counter::Ipv4).packets;
        if udp >= DATAGRAMS {
            assert!(v4 >= DATAGRAMS, "{mode}: ipv4 counter {v4} below udp {udp}");
            assert!(
                after.get(Counter::Seen).bytes > before.get(Counter::Seen).bytes,
                "{mode}: byte counter did not move"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: only {udp} of {DATAGRAMS} datagrams counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn xdp_mode_counts_real_traffic() {
    counters_move_in_mode("xdp");
}

#[test]
fn tc_mode_counts_real_traffic() {
    counters_move_in_mode("tc");
}
