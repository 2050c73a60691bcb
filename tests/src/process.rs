//! The real `xdp-ingress` binary on 127.0.0.1, in file mode (`--manifests DIR`) or kube mode
//! (a kubeconfig), with the userspace L4 path, so suites need neither root nor a network
//! namespace: its HTTP, HTTPS and health listeners on free ports, ready once `/readyz`
//! answers 200, killed on drop. Also a reader for its `/metrics` exposition.

use std::{
    collections::BTreeMap,
    fmt, fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::{
    netns::KillOnDrop,
    scripted::{GUARD, Wire, within},
    servers::free_tcp_port,
    xdp_ingress_bin,
};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// How long the binary may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The running binary; the process is killed and its directory removed on drop.
pub struct IngressProcess {
    /// The plain-HTTP listener.
    pub http: SocketAddr,
    /// The HTTPS listener.
    pub https: SocketAddr,
    /// The health and metrics listener.
    pub health: SocketAddr,
    dir: PathBuf,
    child: Option<KillOnDrop>,
}

/// Where the binary reads its configuration from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// `--manifests DIR`, a directory the caller owns.
    Manifests(&'a Path),
    /// The Kubernetes API named by this kubeconfig (`KUBECONFIG`).
    Kube(&'a Path),
}

impl IngressProcess {
    /// Writes `manifests` (multi-document YAML) into a fresh directory and starts the binary
    /// on it with `--l4-mode userspace --bind-address 127.0.0.1 --http-workers 1` (one
    /// worker: one upstream pool, so connection reuse is deterministic; unless `args` sets
    /// `--http-workers`), free ports, and `args` after those. Waits until `/readyz` answers 200; fails the test with the log if
    /// the binary exits first (after retrying with other ports if one was taken meanwhile).
    pub async fn start(manifests: &str, args: &[&str]) -> Self {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = std::env::temp_dir().join(format!(
                "xit-ingress-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("manifests")).expect("create manifest dir");
            fs::write(dir.join("manifests").join("objects.yaml"), manifests)
                .expect("write manifests");
            let manifests = dir.join("manifests");
            let mut proc = Self::spawn(dir, Source::Manifests(&manifests), args);
            match proc.wait_ready(READY_WITHIN).await {
                Ok(()) => return proc,
                // A port picked as free was taken meanwhile: again, with other ports.
                Err(log) if attempt < 3 && log.contains("Address already in use") => {}
                Err(log) => panic!(
                    "xdp-ingress {args:?} did not become ready within {READY_WITHIN:?}:\n{log}"
                ),
            }
        }
    }

    /// As [`start`](Self::start), reading from `source` instead of a directory of its own,
    /// and waiting up to `ready_within` (a large cluster takes a while to sync).
    /// `Err(log)` if it does not become ready.
    pub async fn start_with(
        source: Source<'_>,
        args: &[&str],
        ready_within: Duration,
    ) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "xit-ingress-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut proc = Self::spawn(dir, source, args);
        proc.wait_ready(ready_within).await?;
        Ok(proc)
    }

    /// The process id (for `/proc/PID/...`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }

    fn spawn(dir: PathBuf, source: Source<'_>, args: &[&str]) -> Self {
        let addr = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let (http, https, health) = (
            addr(free_tcp_port()),
            addr(free_tcp_port()),
            addr(free_tcp_port()),
        );
        let log = fs::File::create(dir.join("xdp-ingress.log")).expect("log file");
        let mut command = Command::new(xdp_ingress_bin());
        match source {
            Source::Manifests(manifests) => {
                command.arg("--manifests").arg(manifests);
            }
            Source::Kube(kubeconfig) => {
                command.env("KUBECONFIG", kubeconfig);
            }
        }
        let child = command
            .args(["--l4-mode", "userspace", "--bind-address", "127.0.0.1"])
            .args(if args.contains(&"--http-workers") {
                &[][..]
            } else {
                &["--http-workers", "1"][..]
            })
            .args(["--http-port", &http.port().to_string()])
            .args(["--https-port", &https.port().to_string()])
            .args(["--health-port", &health.port().to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn xdp-ingress (cargo build -p ingress-user)");
        Self {
            http,
            https,
            health,
            dir,
            child: Some(KillOnDrop(child)),
        }
    }

    /// Polls `/readyz` until 200; `Err(exit status and log)` if the process exits or the
    /// wait times out.
    async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.0.try_wait()
            {
                return Err(format!("exited with {status}; log:\n{}", self.log()));
            }
            if self.readyz().await == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("still not ready; log:\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn readyz(&self) -> Option<u16> {
        let probe = async {
            let stream = tokio::net::TcpStream::connect(self.health).await.ok()?;
            let mut wire = Wire::new(stream);
            wire.write(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            wire.try_response("GET").await.ok().map(|r| r.status())
        };
        tokio::time::timeout(Duration::from_secs(2), probe)
            .await
            .ok()
            .flatten()
    }

    /// The process's log (stderr) so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("xdp-ingress.log")).unwrap_or_default()
    }

    /// Scrapes `/metrics` on the health port.
    pub async fn metrics(&self) -> Metrics {
        let mut wire = Wire::connect(self.health).await;
        let resp = within(
            "scrape /metrics",
            GUARD,
            wire.exchange(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(resp.status(), 200, "/metrics: {}", resp.text());
        Metrics(resp.text())
    }
}

impl Drop for IngressProcess {
    fn drop(&mut self) {
        self.child.take();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A Prometheus text exposition.
#[derive(Clone, Debug)]
pub struct Metrics(pub String);

/// One sample of an exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name (with `_total` and the like).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Metrics {
    /// Every sample (comments skipped).
    pub fn samples(&self) -> Vec<Sample> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(parse_sample)
            .collect()
    }

    /// The sum of the samples named `name` whose labels include all of `labels` (any
    /// order, other labels allowed); 0 when there are none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples()
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The samples named `name`, one per line, for failure messages.
    pub fn family(&self, name: &str) -> String {
        self.0
            .lines()
            .filter(|l| l.starts_with(name))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `name{k="v",...} value` or `name value`.
fn parse_sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches([',', ' ']);
            if let Some(after) = inner.strip_prefix('}') {
                break after;
            }
            let (key, after) = inner.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => {
                        let (_, escaped) = chars.next()?;
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.insert(key.trim().to_owned(), value);
            inner = &after[end + 1..];
        }
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_matched_by_a_subset_of_their_labels_in_any_order() {
        let m = Metrics(
            "# HELP x y\n# TYPE a counter\na_total{kind=\"bad_host\",fault=\"client\"} 3\na_total{fault=\"upstream\",kind=\"bad_host\"} 1\nb_total 7\nc{v=\"q\\\"x\"} 2.5\n"
                .to_owned(),
        );
        assert_eq!(
            m.sum("a_total", &[("fault", "client"), ("kind", "bad_host")]),
            3.0
        );
        assert_eq!(m.sum("a_total", &[("kind", "bad_host")]), 4.0);
        assert_eq!(m.sum("a_total", &[("kind", "other")]), 0.0);
        assert_eq!(m.sum("b_total", &[]), 7.0);
        assert_eq!(m.sum("c", &[("v", "q\"x")]), 2.5);
    }
}
