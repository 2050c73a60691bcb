//! The seed scenario end to end with the real binary: redis through the L4 fast path on
//! port 9000, the dashboard through the L7 router by Host, the built-in default backend for
//! everything else, and a ConfigMap change (a new port) taking effect without a restart.
//! In file mode and in kube mode (fake API server + kubectl), in XDP and TC modes.

use std::fs;

use ingress_tests::{
    seed::{DASHBOARD_HOST, DASHBOARD_PAGE, Seed, Source},
    topology::Offloads,
};

fn seed_scenario(mode: &str, offloads: Offloads, source: Source) {
    let mut seed = Seed::new(offloads, source);
    seed.start_controller(mode);

    let info = seed.redis(9000, &["info", "server"]);
    assert!(
        info.contains("redis_version:"),
        "{mode}/{source:?}: redis-cli info: {info}"
    );

    let (status, body) = seed.curl(Some(DASHBOARD_HOST), "/");
    assert_eq!(status, 200, "{mode}/{source:?}: dashboard by Host");
    assert_eq!(
        body, DASHBOARD_PAGE,
        "{mode}/{source:?}: the dashboard's page"
    );

    let (status, _) = seed.curl(Some("other.test.com"), "/");
    assert_eq!(
        status, 404,
        "{mode}/{source:?}: other hosts get the default backend's 404"
    );
    let (status, _) = seed.curl(None, "/healthz");
    assert_eq!(
        status, 200,
        "{mode}/{source:?}: the default backend's /healthz"
    );

    // Add a port to the ConfigMap, as the seed does with `kubectl replace -f`.
    let path = seed.manifest("tcp-services.yaml");
    let text = fs::read_to_string(&path).expect("read ConfigMap");
    fs::write(
        &path,
        text.replace(
            r#""9000": "default/redis:6379""#,
            "\"9000\": \"default/redis:6379\"\n  \"9001\": \"default/redis:redis\"",
        ),
    )
    .expect("write ConfigMap");
    if source == Source::Kube {
        let out = seed.kubectl(&["replace", "-f", &path.to_string_lossy()]);
        assert!(
            out.status.success(),
            "kubectl replace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    seed.wait_for(
        |s| s.redis(9001, &["ping"]).trim() == "PONG",
        "the new port 9001",
    );
    assert_eq!(
        seed.redis(9000, &["ping"]).trim(),
        "PONG",
        "{mode}/{source:?}: port 9000 unaffected"
    );
}

#[test]
fn seed_in_file_mode_through_xdp() {
    seed_scenario("xdp", Offloads::LikeANic, Source::Files);
}

#[test]
fn seed_in_file_mode_through_tc() {
    seed_scenario("tc", Offloads::Default, Source::Files);
}

#[test]
fn seed_in_kube_mode_through_xdp() {
    seed_scenario("xdp", Offloads::LikeANic, Source::Kube);
}

#[test]
fn seed_in_kube_mode_through_tc() {
    seed_scenario("tc", Offloads::Default, Source::Kube);
}

#[test]
fn seed_in_userspace_mode() {
    seed_scenario("userspace", Offloads::Default, Source::Files);
}
