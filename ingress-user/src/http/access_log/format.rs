//! The access log's line formats, pure: a finished request's [`Line`] → `text` or `json`
//! bytes appended to a buffer. No IO, no clock: the caller passes the time.

use std::{
    fmt::Write as _,
    io::Write as _,
    net::SocketAddr,
    time::{Duration, SystemTime},
};

/// One finished request, as the log shows it. Borrowed, so formatting copies each value
/// once, straight into the output buffer.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    /// When the response ended.
    pub time: SystemTime,
    /// The client (TCP peer).
    pub client: SocketAddr,
    /// Request method.
    pub method: &'a str,
    /// Request target as the client sent it (path and query; before any rewrite).
    pub target: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub version: &'a str,
    /// The host the request was routed on (`Host` or `:authority`), if any.
    pub host: Option<&'a str>,
    /// Status sent to the client.
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// From the request head being read to the response's end.
    pub duration: Duration,
    /// The endpoint forwarded to, if any (the last one tried).
    pub upstream_addr: Option<SocketAddr>,
    /// The upstream's status, if it answered.
    pub upstream_status: Option<u16>,
    /// From forwarding to the upstream's response head (or failure), if forwarded.
    pub upstream_time: Option<Duration>,
    /// The `X-Request-ID` sent upstream (the client's, or generated).
    pub request_id: Option<&'a str>,
    /// Kind of the object whose rule routed the request (`Ingress`, later `HTTPRoute`).
    pub route_kind: Option<&'a str>,
    /// `namespace/name` of that object.
    pub route: Option<&'a str>,
    /// `namespace/name:port` of the Service.
    pub service: Option<&'a str>,
}

/// Access log line format (`--access-log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (for log shippers).
    #[default]
    Json,
    /// `key=value` pairs after the client and the quoted request line (for people).
    Text,
}

impl Line<'_> {
    /// Appends the line, with its newline, to `out`.
    pub fn write(&self, format: Format, out: &mut Vec<u8>) {
        match format {
            Format::Json => self.json(out),
            Format::Text => self.text(out),
        }
    }

    /// `2026-12-07T01:02:03.456Z 10.0.0.1:5000 "GET /a?b HTTP/1.1" status=200 ...`; values
    /// that are absent are `-`, and the quoted parts escape `"`, `\` and control bytes.
    fn text(&self, out: &mut Vec<u8>) {
        rfc3339(self.time, out);
        let _ = write!(out, " {} \"", self.client);
        quoted_body(self.method, out);
        out.push(b' ');
        quoted_body(self.target, out);
        out.push(b' ');
        quoted_body(self.version, out);
        out.extend_from_slice(b"\" host=");
        word(self.host, out);
        let _ = write!(
            out,
            " status={} bytes={} duration={:.6} upstream=",
            self.status,
            self.bytes_sent,
            self.duration.as_secs_f64()
        );
        match self.upstream_addr {
            Some(a) => {
                let _ = write!(out, "{a}");
            }
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" upstream_status=");
        match self.upstream_status {
            Some(s) => {
                let _ = write!(out, "{s}");
            }
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" upstream_time=");
        match self.upstream_time {
            Some(t) => {
                let _ = write!(out, "{:.6}", t.as_secs_f64());
            }
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" request_id=");
        word(self.request_id, out);
        out.extend_from_slice(b" route=");
        match (self.route_kind, self.route) {
            (Some(kind), Some(name)) => {
                word(Some(kind), out);
                out.push(b'/');
                word(Some(name), out);
            }
            _ => out.push(b'-'),
        }
        out.extend_from_slice(b" service=");
        word(self.service, out);
        out.push(b'\n');
    }

    /// One JSON object; absent values are `null`.
    fn json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        rfc3339(self.time, out);
        let _ = write!(out, "\",\"client\":\"{}\",\"method\":", self.client);
        json_str(Some(self.method), out);
        out.extend_from_slice(b",\"target\":");
        json_str(Some(self.target), out);
        out.extend_from_slice(b",\"version\":");
        json_str(Some(self.version), out);
        out.extend_from_slice(b",\"host\":");
        json_str(self.host, out);
        let _ = write!(
            out,
            ",\"status\":{},\"bytes_sent\":{},\"duration\":{:.6},\"upstream_addr\":",
            self.status,
            self.bytes_sent,
            self.duration.as_secs_f64()
        );
        match self.upstream_addr {
            Some(a) => {
                let _ = write!(out, "\"{a}\"");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"upstream_status\":");
        match self.upstream_status {
            Some(s) => {
                let _ = write!(out, "{s}");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"upstream_time\":");
        match self.upstream_time {
            Some(t) => {
                let _ = write!(out, "{:.6}", t.as_secs_f64());
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"request_id\":");
        json_str(self.request_id, out);
        out.extend_from_slice(b",\"route_kind\":");
        json_str(self.route_kind, out);
        out.extend_from_slice(b",\"route\":");
        json_str(self.route, out);
        out.extend_from_slice(b",\"service\":");
        json_str(self.service, out);
        out.extend_from_slice(b"}\n");
    }
}

/// A bare `key=value` value: `-` when absent or empty; spaces, quotes, `\` and control bytes
/// escaped as `\xNN`, so a line always splits on spaces.
fn word(v: Option<&str>, out: &mut Vec<u8>) {
    match v {
        Some(v) if !v.is_empty() => {
            for &b in v.as_bytes() {
                if b <= b' ' || b == b'"' || b == b'\\' || b == 0x7f {
                    let _ = write!(out, "\\x{b:02x}");
                } else {
                    out.push(b);
                }
            }
        }
        _ => out.push(b'-'),
    }
}

/// The inside of a quoted text field: `"` and `\` backslashed, control bytes `\xNN`.
fn quoted_body(v: &str, out: &mut Vec<u8>) {
    for &b in v.as_bytes() {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b if b < b' ' || b == 0x7f => {
                let _ = write!(out, "\\x{b:02x}");
            }
            b => out.push(b),
        }
    }
}

/// A JSON string (RFC 8259 escapes), or `null`.
fn json_str(v: Option<&str>, out: &mut Vec<u8>) {
    let Some(v) = v else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'"');
    // Runs of bytes that need no escape (nearly all of them) are copied whole.
    let bytes = v.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            b if b < b' ' => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// `time` as RFC 3339 UTC with milliseconds (`2026-12-07T01:02:03.456Z`), written without
/// a date library: the civil date from days since the epoch (Howard Hinnant's algorithm).
pub fn rfc3339(time: SystemTime, out: &mut Vec<u8>) {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(24);
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    );
    out.extend_from_slice(s.as_bytes());
}

/// (year, month, day) of the day `z` days after 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        for (secs, millis, want) in [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.005Z"),
            (1_709_164_799, 999, "2024-02-28T23:59:59.999Z"),
            (1_709_251_200, 0, "2024-03-01T00:00:00.000Z"),
            (1_796_605_323, 456, "2026-12-07T01:02:03.456Z"),
            (4_102_444_800, 0, "2100-01-01T00:00:00.000Z"),
        ] {
            let mut out = Vec::new();
            rfc3339(at(secs, millis), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{secs}");
        }
    }

    #[test]
    fn json_strings_escape_only_what_rfc_8259_requires() {
        for (input, want) in [
            ("", r#""""#),
            ("plain/path?q=1", r#""plain/path?q=1""#),
            ("\"start", r#""\"start""#),
            ("end\\", r#""end\\""#),
            ("a\nb\rc\td", r#""a\nb\rc\td""#),
            ("\u{1}\u{1f}x\u{7f}", "\"\\u0001\\u001fx\u{7f}\""),
            ("héllo ✓", r#""héllo ✓""#),
        ] {
            let mut out = Vec::new();
            json_str(Some(input), &mut out);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?}");
            assert_eq!(back, input);
        }
        let mut out = Vec::new();
        json_str(None, &mut out);
        assert_eq!(out, b"null");
    }

    fn forwarded() -> Line<'static> {
        Line {
            time: at(1_796_605_323, 456),
            client: "10.0.0.1:50000".parse().unwrap(),
            method: "GET",
            target: "/a?b=1",
            version: "HTTP/1.1",
            host: Some("k8sui.test.com"),
            status: 200,
            bytes_sent: 12,
            duration: Duration::from_micros(3_250),
            upstream_addr: Some("10.1.0.2:8080".parse().unwrap()),
            upstream_status: Some(200),
            upstream_time: Some(Duration::from_micros(2_000)),
            request_id: Some("00ff"),
            route_kind: Some("Ingress"),
            route: Some("kube-system/dashboard-ingress"),
            service: Some("kube-system/kubernetes-dashboard:80"),
        }
    }

    fn local() -> Line<'static> {
        Line {
            host: None,
            status: 404,
            bytes_sent: 10,
            upstream_addr: None,
            upstream_status: None,
            upstream_time: None,
            request_id: None,
            route_kind: None,
            route: None,
            service: None,
            ..forwarded()
        }
    }

    fn hostile() -> Line<'static> {
        Line {
            target: "/\"x\\y\u{1}",
            host: Some("a b\"c"),
            ..local()
        }
    }

    #[test]
    fn text_lines() {
        for (name, line, want) in [
            (
                "forwarded",
                forwarded(),
                "2026-12-07T01:02:03.456Z 10.0.0.1:50000 \"GET /a?b=1 HTTP/1.1\" host=k8sui.test.com \
                 status=200 bytes=12 duration=0.003250 upstream=10.1.0.2:8080 upstream_status=200 \
                 upstream_time=0.002000 request_id=00ff route=Ingress/kube-system/dashboard-ingress \
                 service=kube-system/kubernetes-dashboard:80\n",
            ),
            (
                "answered locally: absent values are dashes",
                local(),
                "2026-12-07T01:02:03.456Z 10.0.0.1:50000 \"GET /a?b=1 HTTP/1.1\" host=- status=404 \
                 bytes=10 duration=0.003250 upstream=- upstream_status=- upstream_time=- \
                 request_id=- route=- service=-\n",
            ),
            (
                "quotes, spaces and control bytes cannot forge fields",
                hostile(),
                "2026-12-07T01:02:03.456Z 10.0.0.1:50000 \"GET /\\\"x\\\\y\\x01 HTTP/1.1\" \
                 host=a\\x20b\\x22c status=404 bytes=10 duration=0.003250 upstream=- \
                 upstream_status=- upstream_time=- request_id=- route=- service=-\n",
            ),
        ] {
            let mut out = Vec::new();
            line.write(Format::Text, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn json_lines() {
        for (name, line, want) in [
            (
                "forwarded",
                forwarded(),
                serde_json::json!({
                    "time": "2026-12-07T01:02:03.456Z", "client": "10.0.0.1:50000",
                    "method": "GET", "target": "/a?b=1", "version": "HTTP/1.1",
                    "host": "k8sui.test.com", "status": 200, "bytes_sent": 12,
                    "duration": 0.00325, "upstream_addr": "10.1.0.2:8080",
                    "upstream_status": 200, "upstream_time": 0.002, "request_id": "00ff",
                    "route_kind": "Ingress", "route": "kube-system/dashboard-ingress",
                    "service": "kube-system/kubernetes-dashboard:80",
                }),
            ),
            (
                "answered locally: absent values are null",
                local(),
                serde_json::json!({
                    "time": "2026-12-07T01:02:03.456Z", "client": "10.0.0.1:50000",
                    "method": "GET", "target": "/a?b=1", "version": "HTTP/1.1", "host": null,
                    "status": 404, "bytes_sent": 10, "duration": 0.00325, "upstream_addr": null,
                    "upstream_status": null, "upstream_time": null, "request_id": null,
                    "route_kind": null, "route": null, "service": null,
                }),
            ),
            (
                "escapes keep it one valid object",
                hostile(),
                serde_json::json!({
                    "time": "2026-12-07T01:02:03.456Z", "client": "10.0.0.1:50000",
                    "method": "GET", "target": "/\"x\\y\u{1}", "version": "HTTP/1.1",
                    "host": "a b\"c", "status": 404, "bytes_sent": 10, "duration": 0.00325,
                    "upstream_addr": null, "upstream_status": null, "upstream_time": null,
                    "request_id": null, "route_kind": null, "route": null, "service": null,
                }),
            ),
        ] {
            let mut out = Vec::new();
            line.write(Format::Json, &mut out);
            assert_eq!(out.last(), Some(&b'\n'), "{name}");
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "{name}");
            let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(got, want, "{name}");
        }
    }
}
