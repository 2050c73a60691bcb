//! `source::kube::connect` makes its client from `KUBECONFIG`. This suite is its own process
//! (and runs on a single-threaded runtime) because it changes the environment.

use ingress_tests::fake_api::FakeApi;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, api::ListParams};
use xdp_ingress::source::kube::{KubeSourceError, connect};

#[test]
fn connect_uses_kubeconfig_from_the_environment() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let api = FakeApi::start().await;
        api.put(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "tcp-services", "namespace": "ingress-nginx"}}));

        // SAFETY: this process runs one test on one thread; nothing reads the environment
        // concurrently.
        unsafe { std::env::set_var("KUBECONFIG", &api.kubeconfig_path) };
        let client = connect().await.expect("client from KUBECONFIG");
        let cms: Api<ConfigMap> = Api::all(client);
        let names: Vec<_> = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect();
        assert_eq!(
            names,
            ["tcp-services"],
            "the client talks to the server named in KUBECONFIG"
        );

        let missing = api.kubeconfig_path.with_file_name("does-not-exist");
        // SAFETY: as above.
        unsafe {
            std::env::set_var("KUBECONFIG", &missing);
            std::env::remove_var("KUBERNETES_SERVICE_HOST");
        }
        let Err(err) = connect().await else {
            panic!("no kubeconfig and not in a cluster must fail")
        };
        assert!(matches!(err, KubeSourceError::Config(_)), "{err}");
        assert!(
            err.to_string().contains("kubeconfig or in-cluster"),
            "{err}"
        );
    });
}
