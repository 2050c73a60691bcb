//! The load generators, pinned to the load CPU in the client namespace, and their output
//! parsers: redis-benchmark (`--csv`), iperf3 (`-J`), wrk (`--latency`) and h2load.

use std::{net::SocketAddr, process::Output};

use anyhow::{Context as _, bail};

use crate::{
    bench::rig::{LOAD_CPU, pinned},
    netns::Netns,
};

fn run(mut c: std::process::Command, what: &str) -> anyhow::Result<Output> {
    let out = c.output().with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// redis-benchmark PING_MBULK requests/s with 50 clients, pipeline 1; `keepalive` false
/// opens one connection per request (`-k 0`).
pub fn redis_ping(
    ns: &Netns,
    to: SocketAddr,
    requests: u32,
    keepalive: bool,
) -> anyhow::Result<f64> {
    let mut c = pinned(ns, LOAD_CPU, "timeout");
    c.args([
        "120",
        "redis-benchmark",
        "-h",
        &to.ip().to_string(),
        "-p",
        &to.port().to_string(),
    ])
    .args([
        "-t",
        "ping_mbulk",
        "-P",
        "1",
        "-c",
        "50",
        "-n",
        &requests.to_string(),
    ])
    .args(["-k", if keepalive { "1" } else { "0" }, "--csv"]);
    let out = run(c, "redis-benchmark")?;
    parse_redis_csv(&String::from_utf8_lossy(&out.stdout))
}

/// The rps field of the PING_MBULK row of `redis-benchmark --csv`.
pub fn parse_redis_csv(text: &str) -> anyhow::Result<f64> {
    text.lines()
        .find(|l| l.starts_with("\"PING_MBULK\""))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|f| f.trim_matches('"').parse().ok())
        .with_context(|| format!("no PING_MBULK rate in redis-benchmark output:\n{text}"))
}

/// iperf3 receive throughput in Gbit/s over `secs` with `streams` parallel streams.
///
/// `iperf3 -s` serves one test at a time and refuses a client with "the server is busy
/// running a test" while it is still winding down the previous one (or a bare connect from
/// a readiness probe): that answer is retried for up to 10 s, it is no measurement.
pub fn iperf(ns: &Netns, to: SocketAddr, secs: u32, streams: u32) -> anyhow::Result<f64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut c = pinned(ns, LOAD_CPU, "timeout");
        c.args([
            &(secs + 30).to_string(),
            "iperf3",
            "-c",
            &to.ip().to_string(),
            "-p",
            &to.port().to_string(),
        ])
        .args(["-t", &secs.to_string(), "-P", &streams.to_string(), "-J"]);
        let out = c.output().context("run iperf3 -c")?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
        if v["error"].as_str().is_some_and(|e| e.contains("busy"))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        }
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .with_context(|| {
                format!(
                    "iperf3 -c ({}): no end.sum_received in its output: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout)
                )
            })?;
        return Ok(bps / 1e9);
    }
}

/// One wrk run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wrk {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Requests completed.
    pub requests: u64,
    /// Socket errors (connect, read, write, timeout) plus non-2xx/3xx responses.
    pub errors: u64,
}

/// wrk with one thread and `conns` connections for `secs`, `Host: host`.
pub fn wrk(ns: &Netns, url: &str, host: &str, conns: u32, secs: u32) -> anyhow::Result<Wrk> {
    let mut c = pinned(ns, LOAD_CPU, "timeout");
    c.args([
        &(secs + 30).to_string(),
        "wrk",
        "-t1",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
    ])
    .args(["--latency", "-H", &format!("Host: {host}"), url]);
    let out = run(c, "wrk")?;
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// A wrk latency like `1.23ms`, `456.00us` or `1.01s`, in ms.
pub fn parse_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("m") {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// Parses wrk's `--latency` report.
pub fn parse_wrk(text: &str) -> anyhow::Result<Wrk> {
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
    };
    let rps = field("Requests/sec:")
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut errors = field("Non-2xx or 3xx responses:")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    if let Some(sock) = field("Socket errors:") {
        // "connect 0, read 0, write 0, timeout 0"
        errors += sock
            .split(',')
            .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(Wrk {
        rps,
        p50_ms: field("50%")
            .and_then(|s| parse_duration_ms(&s))
            .unwrap_or(f64::NAN),
        p99_ms: field("99%")
            .and_then(|s| parse_duration_ms(&s))
            .unwrap_or(f64::NAN),
        requests,
        errors,
    })
}

/// One h2load run.
#[derive(Debug, Clone, Copy, Default)]
pub struct H2load {
    /// Requests per second.
    pub rps: f64,
    /// Failed, errored and timed-out requests plus non-2xx answers.
    pub errors: u64,
}

/// h2load over TLS (ALPN h2) with one thread, `conns` connections of `streams` concurrent
/// streams each, for `secs`, to `url` (its host is the SNI and `:authority`) at `to`.
pub fn h2load(
    ns: &Netns,
    url: &str,
    to: SocketAddr,
    conns: u32,
    streams: u32,
    secs: u32,
) -> anyhow::Result<H2load> {
    let mut c = pinned(ns, LOAD_CPU, "timeout");
    c.args([&(secs + 30).to_string(), "h2load", "-t1"])
        .args([
            format!("-c{conns}"),
            format!("-m{streams}"),
            format!("-D{secs}"),
        ])
        .arg(format!("--connect-to={to}"))
        .arg(url);
    let out = run(c, "h2load (apt-get install nghttp2-client)")?;
    parse_h2load(&String::from_utf8_lossy(&out.stdout))
}

/// Parses h2load's summary (`finished in 3.00s, 41333.33 req/s, ...`, `requests: ...`,
/// `status codes: ...`).
pub fn parse_h2load(text: &str) -> anyhow::Result<H2load> {
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|f| f.strip_suffix(" req/s"))
        .and_then(|f| f.trim().parse().ok())
        .with_context(|| format!("no req/s in h2load output:\n{text}"))?;
    // "N failed, N errored, N timeout" and "N 3xx, N 4xx, N 5xx"
    let count = |line: &str, words: &[&str]| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .map(|l| {
                l.split(',')
                    .filter_map(|p| {
                        let mut w = p.split_whitespace();
                        let n = w.next()?.parse::<u64>().ok()?;
                        words.contains(&w.next()?).then_some(n)
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    Ok(H2load {
        rps,
        errors: count("requests:", &["failed", "errored", "timeout"])
            + count("status codes:", &["3xx", "4xx", "5xx"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_report_with_socket_errors_and_non_2xx_is_parsed() {
        let text = "Running 3s test @ http://10.77.1.2/\n  1 threads and 16 connections\n  Latency Distribution\n     50%  250.00us\n     75%  300.00us\n     90%  1.20ms\n     99%    1.50ms\n  30000 requests in 3.00s, 4.00MB read\n  Socket errors: connect 1, read 2, write 0, timeout 3\n  Non-2xx or 3xx responses: 4\nRequests/sec:  10000.50\n";
        let w = parse_wrk(text).expect("parse");
        assert_eq!(w.rps, 10000.5);
        assert_eq!(w.p50_ms, 0.25);
        assert_eq!(w.p99_ms, 1.5);
        assert_eq!(w.requests, 30000);
        assert_eq!(w.errors, 10);
    }

    #[test]
    fn h2load_summary_with_failures_and_non_2xx_is_parsed() {
        let text = "starting benchmark...\nfinished in 3.00s, 41333.33 req/s, 1.42MB/s\nrequests: 124000 total, 124160 started, 124000 done, 123990 succeeded, 10 failed, 2 errored, 1 timeout\nstatus codes: 123990 2xx, 0 3xx, 4 4xx, 0 5xx\n";
        let h = parse_h2load(text).expect("parse");
        assert_eq!(h.rps, 41333.33);
        assert_eq!(h.errors, 17);
    }

    #[test]
    fn redis_csv_takes_the_ping_mbulk_rate() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\"\n\"PING_MBULK\",\"98039.22\",\"0.3\"\n";
        assert_eq!(parse_redis_csv(text).expect("parse"), 98039.22);
    }

    #[test]
    fn wrk_durations_in_every_unit_become_ms() {
        for (s, ms) in [
            ("10.00us", 0.01),
            ("2.50ms", 2.5),
            ("1.00s", 1000.0),
            ("1.00m", 60000.0),
        ] {
            assert_eq!(parse_duration_ms(s), Some(ms), "{s}");
        }
    }
}
