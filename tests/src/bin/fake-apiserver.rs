//! Run the fake Kubernetes API server until killed, for demos and manual `kubectl` use:
//! `cargo run -p ingress-tests --bin fake-apiserver [PORT]`, then
//! `kubectl --kubeconfig <printed path> get ingress -A`.

use std::{net::SocketAddr, time::Duration};

use ingress_tests::fake_api::FakeApi;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p
            .parse()
            .map_err(|e| anyhow::anyhow!("bad port {p:?}: {e}"))?,
        None => 0,
    };
    let api = FakeApi::start_on(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    )
    .await;
    println!("{}", api.kubeconfig_path.display());
    eprintln!(
        "fake API server on http://{}; export KUBECONFIG={}",
        api.addr,
        api.kubeconfig_path.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
