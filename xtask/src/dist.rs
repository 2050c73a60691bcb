//! `cargo xtask dist`: the shipped binary, built as `deploy/Dockerfile` and `cargo xtask
//! bench` use it. `--profile dist` (fat LTO, one codegen unit), then profile-guided
//! optimisation (PGO):
//!
//! 1. an instrumented build (`-Cprofile-generate`, in `target/pgo/gen/`);
//! 2. training: that binary serves a mixed load on loopback for about a minute (HTTP/1.1
//!    and HTTP/2, plain and TLS, keep-alive and a handshake per request, RSA and ECDSA
//!    certificates, Ingress routes with annotations, an HTTPRoute, a tcp-services port, the
//!    access log on and off), proxying to its own health endpoint, so no other backend is
//!    needed; every request must be answered 2xx, or the build stops. Code the training
//!    does not reach is laid out as cold, so each kind of traffic the binary serves is in
//!    it, not just what the benchmarks measure;
//! 3. `llvm-profdata merge` of what it wrote;
//! 4. the final build with `-Cprofile-use` (in `target/pgo/use/`), copied to
//!    `target/pgo/xdp-ingress`.
//!
//! On this machine PGO takes about 7% off the router's CPU per proxied HTTP/2 request on top
//! of fat LTO (a fifth against a plain release build); the code is the same, only its
//! layout and inlining follow the profile.
//! `--no-pgo` builds `--profile dist` alone (`target/dist/xdp-ingress`).

use std::{
    hash::{DefaultHasher, Hasher as _},
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::build;

/// Seconds of each training phase.
const PHASE_SECONDS: u32 = 3;

/// Builds the shipped binary and returns its path.
pub fn run(pgo: bool) -> Result<PathBuf> {
    if !pgo {
        build::exec(&mut cargo_dist(None))?;
        return Ok(build::target_dir().join("dist/xdp-ingress"));
    }
    let dir = build::target_dir().join("pgo");
    let profdata_tool = llvm_profdata()?;
    for tool in ["h2load", "openssl"] {
        ensure!(
            on_path(tool),
            "{tool} is needed to train the PGO build (Debian: nghttp2-client, openssl; \
             `cargo xtask setup` installs them), or build with --no-pgo"
        );
    }

    println!("dist: 1/4 instrumented build");
    // The build scripts are instrumented too; their profiles go aside, unused.
    let flags = format!("-Cprofile-generate={}", dir.join("build-raw").display());
    build::exec(&mut cargo_dist(Some((&flags, &dir.join("gen")))))?;

    let trainee = dir.join("gen/dist/xdp-ingress");
    let out = dir.join("xdp-ingress");
    if newer_than(&out, &[&trainee, &std::env::current_exe()?]) {
        // Neither the code nor the training changed since the last optimised build.
        println!("dist: {} is up to date", out.display());
        return Ok(out);
    }

    println!("dist: 2/4 training");
    let raw = dir.join("raw");
    let _ = std::fs::remove_dir_all(&raw);
    std::fs::create_dir_all(&raw)?;
    let work = dir.join("train");
    train(&trainee, &work, &raw).context("training the instrumented build")?;

    println!("dist: 3/4 merging the profile");
    let mut profiles = Vec::new();
    for entry in std::fs::read_dir(&raw)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "profraw") {
            profiles.push(path);
        }
    }
    ensure!(
        !profiles.is_empty(),
        "the instrumented binary wrote no profile to {}",
        raw.display()
    );
    let merged = dir.join("merged.profdata");
    build::exec(
        Command::new(&profdata_tool)
            .args(["merge", "-o"])
            .arg(&merged)
            .args(&profiles),
    )?;
    // Named by content: a new profile changes the flags, so cargo rebuilds everything with it.
    let bytes = std::fs::read(&merged)?;
    let mut hash = DefaultHasher::new();
    hash.write(&bytes);
    let profile = dir.join(format!("xdp-ingress-{:016x}.profdata", hash.finish()));
    for entry in std::fs::read_dir(&dir)? {
        let old = entry?.path();
        if old.extension().is_some_and(|e| e == "profdata") && old != merged {
            std::fs::remove_file(old)?;
        }
    }
    std::fs::rename(&merged, &profile)?;

    println!("dist: 4/4 optimised build");
    let flags = format!("-Cprofile-use={}", profile.display());
    build::exec(&mut cargo_dist(Some((&flags, &dir.join("use")))))?;
    std::fs::copy(dir.join("use/dist/xdp-ingress"), &out)
        .with_context(|| format!("copying the binary to {}", out.display()))?;
    println!("dist: {}", out.display());
    Ok(out)
}

/// Whether `path` exists and was modified after every one of `inputs`.
fn newer_than(path: &Path, inputs: &[&Path]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(path) else {
        return false;
    };
    inputs
        .iter()
        .all(|input| modified(input).is_some_and(|t| t < built))
}

/// `cargo build --profile dist` of the binary; with `flags`, those RUSTFLAGS in their own
/// target directory (different flags would otherwise rebuild the everyday one each time).
fn cargo_dist(flags: Option<(&str, &Path)>) -> Command {
    let mut c = build::cargo();
    c.args([
        "build",
        "--profile",
        "dist",
        "-p",
        "ingress-user",
        "--bin",
        "xdp-ingress",
    ]);
    if let Some((rustflags, target)) = flags {
        c.env("RUSTFLAGS", rustflags)
            .env("CARGO_TARGET_DIR", target);
    }
    c
}

/// rustup's `llvm-profdata` (the `llvm-tools` component, added if missing): it must match
/// the LLVM of the rustc that wrote the profile.
fn llvm_profdata() -> Result<PathBuf> {
    let rustc = |args: &[&str]| -> Result<String> {
        let out = Command::new("rustc").args(args).output().context("rustc")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let sysroot = rustc(&["--print", "sysroot"])?;
    let host = rustc(&["-vV"])?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV names no host")?;
    let tool = Path::new(sysroot.trim()).join(format!("lib/rustlib/{host}/bin/llvm-profdata"));
    if !tool.exists() {
        println!("dist: adding the llvm-tools component (llvm-profdata)");
        build::exec(Command::new("rustup").args(["component", "add", "llvm-tools"]))?;
    }
    ensure!(tool.exists(), "{} is missing", tool.display());
    Ok(tool)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Ports the training listens on.
#[derive(Clone, Copy)]
struct Ports {
    http: u16,
    https: u16,
    health: u16,
    /// A Gateway's HTTP listener.
    gateway: u16,
    /// A tcp-services port (the userspace L4 proxy in `--l4-mode userspace`).
    tcp: u16,
}

/// Runs the trainee twice (access log on, then off) under the training load, each time
/// stopping it with SIGTERM so it writes its profile into `raw`.
fn train(trainee: &Path, work: &Path, raw: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(work);
    let manifests = work.join("manifests");
    std::fs::create_dir_all(&manifests)?;
    let [http, https, health, gateway, tcp] = free_ports()?;
    let ports = Ports {
        http,
        https,
        health,
        gateway,
        tcp,
    };
    let rsa = certificate(work, "rsa", &["-newkey", "rsa:2048"])?;
    let ecdsa = certificate(
        work,
        "ecdsa",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )?;
    std::fs::write(
        manifests.join("train.yaml"),
        manifests_yaml(ports, &rsa, &ecdsa),
    )?;
    let log = work.join("access.log");
    for access_log in [log.to_str().context("non-UTF-8 path")?, "off"] {
        let mut child = Command::new(trainee)
            .args(["--l4-mode", "userspace", "--manifests"])
            .arg(&manifests)
            .args([
                "--watch-ingress-without-class",
                "--bind-address",
                "127.0.0.1",
            ])
            .args(["--http-workers", "1", "--access-log", access_log])
            .args(["--http-port", &ports.http.to_string()])
            .args(["--https-port", &ports.https.to_string()])
            .args(["--health-port", &ports.health.to_string()])
            .args(["--tcp-services-configmap", "default/tcp-services"])
            .env("LLVM_PROFILE_FILE", raw.join("xdp-ingress-%p-%m.profraw"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", trainee.display()))?;
        let loaded = load(ports).and_then(|()| stop(&mut child));
        if loaded.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        loaded?;
    }
    Ok(())
}

/// Waits until the trainee serves, then runs each phase of the load with h2load (SNI and
/// `Host` from the URL, connecting to 127.0.0.1 by `--connect-to`).
fn load(ports: Ports) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(ports.http, "plain.train.test", "/api/v1/healthz") != Some(200) {
        ensure!(
            Instant::now() < deadline,
            "the trainee did not serve plain.train.test/api/v1/healthz within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let h2load = |url: String, port: u16, extra: &[&str]| {
        let mut c = Command::new("h2load");
        c.args(["-t1", "-c16", "-m10", "-D", &PHASE_SECONDS.to_string()])
            .args(extra)
            .arg(format!("--connect-to=127.0.0.1:{port}"))
            .arg(url);
        c
    };
    let https = |host: &str, path: &str, extra: &[&str]| {
        h2load(format!("https://{host}{path}"), ports.https, extra)
    };
    let plain =
        |host: &str, path: &str| h2load(format!("http://{host}{path}"), ports.http, &["--h1"]);
    let gateway = h2load(
        "http://gw.train.test/v2/healthz".to_owned(),
        ports.gateway,
        &["--h1", "-H", "x-canary: yes"],
    );
    let tcp = h2load(
        "http://l4.train.test/healthz".to_owned(),
        ports.tcp,
        &["--h1"],
    );
    // One request per connection: a full handshake each (h2load makes no resumption).
    let handshakes = |host: &str| {
        let mut c = Command::new("h2load");
        c.args(["-t1", "-n", "500", "-c", "500", "--h1"])
            .arg(format!("--connect-to=127.0.0.1:{}", ports.https))
            .arg(format!("https://{host}/healthz"));
        c
    };
    let phases: [(&str, u32, Command); 10] = [
        (
            "HTTP/2 over TLS, RSA",
            1,
            https("rsa.train.test", "/healthz", &[]),
        ),
        (
            "HTTP/2 over TLS, ECDSA",
            1,
            https("ecdsa.train.test", "/metrics", &[]),
        ),
        (
            "HTTPS/1.1 keep-alive",
            1,
            https("rsa.train.test", "/healthz", &["--h1"]),
        ),
        (
            "plain HTTP/1.1, a regex route",
            1,
            plain("plain.train.test", "/api/v1/healthz"),
        ),
        (
            "plain HTTP/1.1, a wildcard host",
            1,
            plain("a.routes.train.test", "/b"),
        ),
        (
            "plain HTTP/1.1, the default backend",
            1,
            plain("nowhere.train.test", "/healthz"),
        ),
        ("an HTTPRoute of a Gateway", 1, gateway),
        ("tcp-services (userspace L4)", 1, tcp),
        ("full RSA handshakes", 4, handshakes("rsa.train.test")),
        ("full ECDSA handshakes", 4, handshakes("ecdsa.train.test")),
    ];
    for (name, times, mut cmd) in phases {
        for _ in 0..times {
            let out = cmd
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("{name}: running {cmd:?}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            ensure!(out.status.success(), "{name}: {cmd:?} failed:\n{text}");
            let done = served(&text).with_context(|| format!("{name}: {cmd:?}:\n{text}"))?;
            println!("dist: trained on {name}: {done} requests");
        }
    }
    Ok(())
}

/// How many requests an h2load report says were done; an error if any failed or was
/// not answered 2xx, or none was done.
fn served(report: &str) -> Result<u64> {
    // "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
    // and "status codes: N 2xx, N 3xx, N 4xx, N 5xx".
    let count = |line: &str, name: &str| -> Option<u64> {
        line.split(", ")
            .find(|f| f.ends_with(name))?
            .split_whitespace()
            .rev()
            .nth(1)?
            .parse()
            .ok()
    };
    let line = |prefix: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .with_context(|| format!("no {prefix:?} line"))
    };
    let (requests, codes) = (line("requests: ")?, line("status codes: ")?);
    let done = count(requests, " done").context("no done count")?;
    ensure!(
        count(requests, " failed") == Some(0) && count(requests, " errored") == Some(0),
        "requests failed"
    );
    ensure!(done > 0, "no request was done");
    // Every status counted is 2xx. (With -D, streams that finish after the window are
    // counted in the status codes but not as done, so 2xx may exceed done.)
    ensure!(
        [" 3xx", " 4xx", " 5xx"]
            .iter()
            .all(|class| count(codes, class) == Some(0))
            && count(codes, " 2xx").is_some_and(|n| n >= done),
        "not every response was 2xx"
    );
    Ok(done)
}

/// SIGTERM, then the exit status: the profile is written as the process exits cleanly.
fn stop(child: &mut Child) -> Result<()> {
    let pid = libc::pid_t::try_from(child.id()).context("pid")?;
    // SAFETY: signalling our own child, which has not been waited for yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            ensure!(status.success(), "the trainee exited with {status}");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the trainee did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `N` different ports free on 127.0.0.1 a moment ago (all held until all are picked, so
/// the kernel cannot hand out one twice).
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let held = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&held) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// The status of `GET path` with `Host: host` on 127.0.0.1:`port`, if it answers.
fn http_status(port: u16, host: &str, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A self-signed certificate and key (PEM) for `<name>.train.test`.
struct Pem {
    host: String,
    cert: String,
    key: String,
}

fn certificate(work: &Path, name: &str, key_args: &[&str]) -> Result<Pem> {
    let host = format!("{name}.train.test");
    let (cert, key) = (
        work.join(format!("{name}.crt")),
        work.join(format!("{name}.key")),
    );
    let status = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={host}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{host}"))
        .args(key_args)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .context("running openssl")?;
    ensure!(status.success(), "openssl req for {host} failed: {status}");
    Ok(Pem {
        host,
        cert: std::fs::read_to_string(cert)?,
        key: std::fs::read_to_string(key)?,
    })
}

/// The Service (the trainee's own health port as its endpoint), the TLS Secrets and the
/// Ingresses of the training.
fn manifests_yaml(ports: Ports, rsa: &Pem, ecdsa: &Pem) -> String {
    let block = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: health, namespace: default}}\n\
         spec: {{ports: [{{name: http, port: 80, targetPort: {p}}}]}}\n---\n\
         apiVersion: v1\nkind: Endpoints\nmetadata: {{name: health, namespace: default}}\n\
         subsets: [{{addresses: [{{ip: 127.0.0.1}}], ports: [{{name: http, port: {p}}}]}}]\n",
        p = ports.health
    );
    let backend = "{service: {name: health, port: {number: 80}}}";
    for pem in [rsa, ecdsa] {
        let name = pem.host.split('.').next().unwrap_or("tls");
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\n\
             type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            block(&pem.cert),
            block(&pem.key)
        ));
        y.push_str(&format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\n\
             metadata: {{name: {name}, namespace: default}}\nspec:\n  \
             tls: [{{hosts: [{h}], secretName: {name}}}]\n  \
             rules: [{{host: {h}, http: {{paths: [\
             {{path: /healthz, pathType: Exact, backend: {backend}}}, \
             {{path: /metrics, pathType: Prefix, backend: {backend}}}]}}}}]\n",
            h = pem.host
        ));
    }
    // A plain host whose prefix is stripped (`rewrite-target`), and a wildcard host among
    // several prefixes.
    y.push_str(&format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: plain\n  \
         namespace: default\n  annotations:\n    \
         nginx.ingress.kubernetes.io/rewrite-target: /$2\n    \
         nginx.ingress.kubernetes.io/use-regex: \"true\"\nspec:\n  \
         rules: [{{host: plain.train.test, http: {{paths: [\
         {{path: /api/v1(/|$)(.*), pathType: ImplementationSpecific, backend: {backend}}}]}}}}]\n"
    ));
    // The same upstream by a Gateway API HTTPRoute (a header match, a prefix rewrite and an
    // added header), and by the tcp-services ConfigMap.
    y.push_str(&format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n\
         metadata: {{name: train}}\nspec: {{controllerName: xdp-ingress.dev/controller}}\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: {{name: train, namespace: default}}\nspec:\n  gatewayClassName: train\n  \
         listeners: [{{name: http, port: {}, protocol: HTTP}}]\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: train, namespace: default}}\nspec:\n  \
         parentRefs: [{{name: train}}]\n  hostnames: [gw.train.test]\n  rules:\n  \
         - matches: [{{path: {{type: PathPrefix, value: /v2}}, \
         headers: [{{name: x-canary, value: \"yes\"}}]}}]\n    filters:\n    \
         - {{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}}}\n    \
         - {{type: RequestHeaderModifier, requestHeaderModifier: {{add: [{{name: x-trained, value: \"1\"}}]}}}}\n    \
         backendRefs: [{{name: health, port: 80}}]\n\
         ---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: tcp-services, namespace: default}}\n\
         data: {{\"{}\": default/health:80}}\n",
        ports.gateway, ports.tcp
    ));
    let paths: Vec<String> = ["/a", "/b", "/c", "/d", "/e"]
        .iter()
        .map(|p| format!("{{path: {p}, pathType: Prefix, backend: {backend}}}"))
        .collect();
    y.push_str(&format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: routes\n  \
         namespace: default\n  annotations:\n    \
         nginx.ingress.kubernetes.io/rewrite-target: /healthz\nspec:\n  \
         rules: [{{host: \"*.routes.train.test\", http: {{paths: [{}]}}}}]\n",
        paths.join(", ")
    ));
    y
}

#[cfg(test)]
mod tests {
    use super::served;

    const OK: &str = "finished in 3.00s, 41333.33 req/s, 1.2MB/s\n\
        requests: 124000 total, 124160 started, 124000 done, 124000 succeeded, 0 failed, 0 errored, 0 timeout\n\
        status codes: 124000 2xx, 0 3xx, 0 4xx, 0 5xx\n";

    /// Training counts only a phase where every request was answered 2xx.
    #[test]
    fn a_phase_counts_only_when_every_request_got_a_2xx() {
        let cases: [(&str, String, Option<u64>); 8] = [
            ("all 2xx", OK.to_owned(), Some(124_000)),
            (
                "streams that ended after the -D window",
                OK.replace("124000 2xx", "124005 2xx"),
                Some(124_000),
            ),
            ("a 5xx beside them", OK.replace("0 5xx", "1 5xx"), None),
            ("one failed", OK.replace("0 failed", "1 failed"), None),
            ("one errored", OK.replace("0 errored", "1 errored"), None),
            (
                "a 3xx among them",
                OK.replace("124000 2xx, 0 3xx", "123999 2xx, 1 3xx"),
                None,
            ),
            (
                "nothing done",
                OK.replace("124000 done", "0 done")
                    .replace("124000 2xx", "0 2xx"),
                None,
            ),
            (
                "no report",
                "connect: Connection refused\n".to_owned(),
                None,
            ),
        ];
        for (name, report, want) in cases {
            assert_eq!(served(&report).ok(), want, "{name}");
        }
    }
}
