//! `cargo xtask demo`: the seed scenario on a fresh network-namespace topology with real
//! backends and the real xdp-ingress, in file mode from `deploy/examples/`. Shows the
//! requests working, prints commands to try more, and runs until Ctrl-C, then tears
//! everything down. `--once` stops after the checks (for CI and scripts). `--gateway` runs
//! the Gateway API form of the seed (`deploy/examples/gateway/`: an HTTPRoute for the
//! dashboard, a TCPRoute for redis) with the same checks.

use ingress_tests::{
    netns::Netns,
    seed::{DASHBOARD_HOST, Examples, Seed, Source},
    topology::{NODE, Offloads},
};

fn step(what: &str, ok: bool, detail: &str) -> bool {
    println!("  {} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
    ok
}

fn exec(ns: &Netns) -> String {
    format!("ip netns exec {}", ns.name())
}

fn main() {
    let once = std::env::args().any(|a| a == "--once");
    let examples = if std::env::args().any(|a| a == "--gateway") {
        Examples::Gateway
    } else {
        Examples::Ingress
    };
    let mode = std::env::args()
        .skip_while(|a| a != "--l4-mode")
        .nth(1)
        .unwrap_or_else(|| "auto".to_owned());
    println!("xdp-ingress demo: building the topology (client ⇄ node ⇄ 2 backends)...");
    let mut seed = Seed::with_examples(Offloads::LikeANic, Source::Files, examples);
    let (dir, redis_by, dash_by) = match examples {
        Examples::Ingress => ("deploy/examples/", "tcp-services ConfigMap", "Ingress"),
        Examples::Gateway => ("deploy/examples/gateway/", "TCPRoute", "HTTPRoute"),
    };
    println!("starting xdp-ingress --l4-mode {mode} with the manifests of {dir}...");
    seed.start_controller(&mode);

    let ping = seed.redis(9000, &["ping"]);
    let info = seed.redis(9000, &["info", "server"]);
    let version = info
        .lines()
        .find(|l| l.starts_with("redis_version:"))
        .unwrap_or("")
        .trim()
        .to_owned();
    let (dash, body) = seed.curl(Some(DASHBOARD_HOST), "/");
    let (other, _) = seed.curl(Some("other.test.com"), "/");
    let (health, _) = seed.curl(None, "/healthz");
    println!("\nThe seed scenario:");
    let mut ok = true;
    ok &= step(
        &format!("redis-cli -p 9000 ping (L4 by the {redis_by}, in the kernel)"),
        ping.trim() == "PONG",
        ping.trim(),
    );
    ok &= step("redis-cli -p 9000 info", !version.is_empty(), &version);
    ok &= step(
        &format!("curl -H 'Host: k8sui.test.com' / (L7 router, by the {dash_by})"),
        dash == 200,
        &format!("{dash} {}", body.trim()),
    );
    ok &= step(
        "curl -H 'Host: other.test.com' / (default backend)",
        other == 404,
        &other.to_string(),
    );
    ok &= step(
        "curl /healthz (default backend)",
        health == 200,
        &health.to_string(),
    );

    let client = exec(&seed.topo.client);
    println!("\nTry more (as root, in another terminal):");
    println!("  {client} redis-cli -h {NODE} -p 9000 info");
    println!("  {client} redis-benchmark -h {NODE} -p 9000 -t ping -q -n 20000");
    println!("  {client} curl -H 'Host: {DASHBOARD_HOST}' http://{NODE}/");
    println!("  {client} curl -v http://{NODE}/nothing-here");
    match examples {
        Examples::Ingress => println!(
            "  edit {} (e.g. add \"9001\": \"default/redis:6379\") and {client} redis-cli -h {NODE} -p 9001 ping",
            seed.manifest("tcp-services.yaml").display()
        ),
        Examples::Gateway => println!(
            "  xdp-ingress check --manifests {} (Problems and the Gateway API status)",
            seed.dir.join("manifests").display()
        ),
    }
    println!("  {} bpftool net show", exec(&seed.topo.node));
    println!("  controller log: {}", seed.log_path().display());
    if once {
        println!("\n--once: tearing down");
        drop(seed);
        std::process::exit(if ok { 0 } else { 1 });
    }
    println!("\nRunning until Ctrl-C...");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    println!("tearing down the topology");
}
