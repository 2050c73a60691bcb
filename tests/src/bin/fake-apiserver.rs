//! Run the fake Kubernetes API server until killed, for demos, manual `kubectl` use and
//! benchmarks that need it in a process of its own:
//! `cargo run -p ingress-tests --bin fake-apiserver [PORT] [--load DIR]`, then
//! `kubectl --kubeconfig <printed path> get ingress -A`. `--load DIR` stores every object of
//! the manifests in DIR before serving. Prints the kubeconfig path on stdout once it serves;
//! ends on SIGINT or SIGTERM.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use ingress_tests::fake_api::FakeApi;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut port = 0;
    let mut load: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--load" {
            load = Some(args.next().context("--load DIR")?.into());
        } else {
            port = a
                .parse()
                .map_err(|e| anyhow::anyhow!("bad port {a:?}: {e}"))?;
        }
    }
    let mut term = signal(SignalKind::terminate())?;
    let api = FakeApi::start_on(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    )
    .await;
    if let Some(dir) = &load {
        let n = api
            .load_dir(dir)
            .with_context(|| format!("load {}", dir.display()))?;
        eprintln!("loaded {n} objects from {}", dir.display());
    }
    println!("{}", api.kubeconfig_path.display());
    eprintln!(
        "fake API server on http://{}; export KUBECONFIG={}",
        api.addr,
        api.kubeconfig_path.display()
    );
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
