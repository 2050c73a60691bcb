//! `xdp-ingress inspect` against a real datapath: the seed scenario in network namespaces
//! (the real binary on the node in TC mode, real redis behind `:9000`), a client connection
//! held open through the kernel path, then `inspect services|flows|counters` read the pinned
//! maps, in text and JSON, with the flow filters; and again after the controller is killed
//! (the programs and maps stay pinned, and so does the flow).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    time::Duration,
};

use ingress_tests::{
    seed::{Seed, Source},
    topology::{NODE, Offloads, backend_addr},
    xdp_ingress_bin,
};
use serde_json::Value;

/// Runs `xdp-ingress inspect ARGS` (from the host namespace: bpffs is shared) and returns
/// its stdout; panics with stderr if it fails.
fn inspect(pin: &Path, args: &[&str]) -> String {
    let out = Command::new(xdp_ingress_bin())
        .arg("inspect")
        .arg("--bpf-pin-path")
        .arg(pin)
        .args(args)
        .output()
        .expect("run xdp-ingress inspect");
    assert!(
        out.status.success(),
        "inspect {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json(pin: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = inspect(pin, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A redis connection through `NODE:9000`, opened from the client namespace and kept open.
fn redis_connection(seed: &Seed) -> (TcpStream, SocketAddr) {
    let stream = seed.topo.client.run(|| {
        let s = TcpStream::connect((NODE, 9000)).expect("connect through :9000");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    });
    let mut s = stream;
    s.write_all(b"PING\r\n").expect("send PING");
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).expect("read PONG");
    assert_eq!(&buf, b"+PONG\r\n");
    let local = s.local_addr().expect("local addr");
    (s, local)
}

#[test]
fn inspect_reads_services_flows_and_counters_with_and_without_the_controller() {
    let mut seed = Seed::new(Offloads::Default, Source::Files);
    seed.start_controller("tc");
    let (_conn, client) = redis_connection(&seed);
    let pin = seed.pin.path().to_owned();
    let redis = SocketAddr::from((backend_addr(0), 6379));

    // services: the redis service, its one endpoint holding the whole Maglev table.
    let text = inspect(&pin, &["services"]);
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("SERVICE") && header.contains("SHARE"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("tcp/9000 "))
        .unwrap_or_else(|| panic!("no tcp/9000 row:\n{text}"));
    assert!(
        row.contains(&redis.to_string()) && row.contains("100.0%"),
        "{row}"
    );
    let services = json(&pin, &["services"]);
    let svc = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["port"] == 9000 && s["family"] == "ipv4")
        .unwrap_or_else(|| panic!("{services:#}"));
    assert_eq!(svc["protocol"], "tcp");
    assert_eq!(svc["endpoints"][0]["endpoint"], redis.to_string());
    assert_eq!(svc["endpoints"][0]["share"], 1.0);
    assert!(svc["counters"]["packets"].as_u64().unwrap() >= 4, "{svc:#}");
    assert!(
        svc["counters"]["new_flows"].as_u64().unwrap() >= 1,
        "{svc:#}"
    );

    // flows: our connection, established, translated to redis from a SNAT port.
    let check_flow = |when: &str| {
        let flows = json(
            &pin,
            &[
                "flows",
                "--service",
                "tcp/9000",
                "--client",
                &client.to_string(),
            ],
        );
        let flows = flows.as_array().unwrap();
        assert_eq!(flows.len(), 1, "{when}: {flows:#?}");
        let f = &flows[0];
        assert_eq!(f["client"], client.to_string(), "{when}");
        assert_eq!(f["service"], format!("{NODE}:9000"), "{when}");
        assert_eq!(f["endpoint"], redis.to_string(), "{when}");
        assert_eq!(f["state"], "established", "{when}");
        let snat: SocketAddr = f["snat"].as_str().unwrap().parse().unwrap();
        assert!(
            (20000..=32767).contains(&snat.port()),
            "{when}: SNAT port from the default range: {f}"
        );
    };
    check_flow("controller running");
    let text = inspect(&pin, &["flows", "--endpoint", &redis.ip().to_string()]);
    assert!(
        text.lines()
            .any(|l| l.contains(&client.to_string()) && l.contains("established")),
        "{text}"
    );
    let none = inspect(&pin, &["flows", "--endpoint", "10.77.99.9"]);
    assert!(none.ends_with("0 flows\n"), "{none}");
    let none = json(&pin, &["flows", "--service", "udp/9000"]);
    assert_eq!(none, Value::Array(vec![]));

    // counters: flows were created, drops are listed by reason, per service too.
    let counters = json(&pin, &["counters"]);
    assert!(
        counters["counters"]["new_flow"].as_u64().unwrap() >= 1,
        "{counters:#}"
    );
    assert!(counters["drops"]["ct_full"].is_u64(), "{counters:#}");
    assert!(
        counters["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["port"] == 9000 && s["new_flows"].as_u64().unwrap() >= 1),
        "{counters:#}"
    );
    let text = inspect(&pin, &["counters"]);
    assert!(
        text.contains("DROP REASON") && text.contains("snat_exhausted"),
        "{text}"
    );

    // Without the controller: the programs stay attached, the maps pinned, the flow alive.
    seed.kill_controller();
    check_flow("controller gone");
    assert!(inspect(&pin, &["services"]).contains(&redis.to_string()));
}

#[test]
fn inspect_without_pinned_maps_says_where_it_looked() {
    let dir = std::env::temp_dir().join(format!("xit-no-pins-{}", std::process::id()));
    let out = Command::new(xdp_ingress_bin())
        .args(["inspect", "services", "--bpf-pin-path"])
        .arg(&dir)
        .output()
        .expect("run xdp-ingress inspect");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not pinned in") && err.contains(&dir.display().to_string()),
        "{err}"
    );
}
