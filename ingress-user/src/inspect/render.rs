//! Pure half of `inspect`: Maglev shares, flow filters, and the aligned text or JSON output.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use super::{EndpointShare, Flow, Service, Totals};

/// Endpoints with their slot counts → shares of a table of `size` slots, by address.
pub fn shares(mut endpoints: Vec<(SocketAddr, u32)>, size: u32) -> Vec<EndpointShare> {
    endpoints.sort();
    endpoints
        .into_iter()
        .map(|(endpoint, slots)| EndpointShare {
            endpoint,
            slots,
            share: if size == 0 {
                0.0
            } else {
                f64::from(slots) / f64::from(size)
            },
        })
        .collect()
}

/// An address to match: a whole IP, or one IP and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrMatch {
    /// Any port of this IP.
    Ip(IpAddr),
    /// This IP and port.
    Socket(SocketAddr),
}

impl AddrMatch {
    fn keeps(self, a: SocketAddr) -> bool {
        match self {
            Self::Ip(ip) => a.ip() == ip,
            Self::Socket(s) => a == s,
        }
    }
}

impl FromStr for AddrMatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse() {
            return Ok(Self::Ip(ip));
        }
        s.parse()
            .map(Self::Socket)
            .map_err(|_| format!("expected IP or IP:PORT ([IPv6]:PORT), got {s:?}"))
    }
}

/// A service to match: its port, and optionally its protocol (`9000`, `tcp/9000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceMatch {
    /// `tcp` or `udp`; `None` for both.
    pub protocol: Option<&'static str>,
    /// The external port.
    pub port: u16,
}

impl FromStr for ServiceMatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (protocol, port) = match s.split_once('/') {
            Some(("tcp", p)) => (Some("tcp"), p),
            Some(("udp", p)) => (Some("udp"), p),
            Some((other, _)) => return Err(format!("protocol must be tcp or udp, got {other:?}")),
            None => (None, s),
        };
        let port = port
            .parse()
            .map_err(|_| format!("expected PORT or tcp/PORT or udp/PORT, got {s:?}"))?;
        Ok(Self { protocol, port })
    }
}

/// Which flows `inspect flows` prints: all conditions given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// The service (external port, optionally protocol).
    pub service: Option<ServiceMatch>,
    /// The client.
    pub client: Option<AddrMatch>,
    /// The endpoint.
    pub endpoint: Option<AddrMatch>,
}

impl FlowFilter {
    /// Whether `flow` passes.
    pub fn keeps(&self, flow: &Flow) -> bool {
        self.service.is_none_or(|s| {
            s.port == flow.service.port() && s.protocol.is_none_or(|p| p == flow.protocol)
        }) && self.client.is_none_or(|c| c.keeps(flow.client))
            && self.endpoint.is_none_or(|e| e.keeps(flow.endpoint))
    }
}

/// Rows as columns padded to their widest cell (two spaces apart), first row the header.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    let mut s =
        serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

fn addresses(s: &Service) -> String {
    let list: Vec<String> = s
        .addresses
        .iter()
        .map(|a| a.map_or_else(|| "*".to_owned(), |ip| ip.to_string()))
        .collect();
    list.join(",")
}

/// `inspect services`: one row per endpoint, the service's columns on its first row.
pub fn services(services: &[Service], as_json: bool) -> String {
    if as_json {
        return json(services);
    }
    let mut rows = vec![
        [
            "SERVICE",
            "FAMILY",
            "ADDRESSES",
            "ID",
            "NAT",
            "ENDPOINT",
            "SLOTS",
            "SHARE",
            "PACKETS",
            "BYTES",
            "FLOWS",
            "DROPS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in services {
        let drops = s.counters.drop_snat_exhausted + s.counters.drop_ct_full;
        let first = vec![
            format!("{}/{}", s.protocol, s.port),
            s.family.to_owned(),
            addresses(s),
            s.id.to_string(),
            if s.dnat_only { "dnat" } else { "full" }.to_owned(),
        ];
        let counters = vec![
            s.counters.packets.to_string(),
            s.counters.bytes.to_string(),
            s.counters.new_flows.to_string(),
            drops.to_string(),
        ];
        if s.endpoints.is_empty() {
            let mut row = first;
            row.extend(["(none: rejects)".into(), "-".into(), "-".into()]);
            row.extend(counters);
            rows.push(row);
            continue;
        }
        for (i, e) in s.endpoints.iter().enumerate() {
            let mut row = if i == 0 {
                first.clone()
            } else {
                vec![String::new(); 5]
            };
            row.extend([
                e.endpoint.to_string(),
                e.slots.to_string(),
                format!("{:.1}%", e.share * 100.0),
            ]);
            if i == 0 {
                row.extend(counters.clone());
            }
            rows.push(row);
        }
    }
    table(&rows)
}

/// `inspect flows`.
pub fn flows(flows: &[Flow], as_json: bool) -> String {
    if as_json {
        return json(flows);
    }
    let mut rows = vec![
        [
            "PROTO", "CLIENT", "SERVICE", "ENDPOINT", "SNAT", "STATE", "IDLE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for f in flows {
        rows.push(vec![
            f.protocol.to_owned(),
            f.client.to_string(),
            f.service.to_string(),
            f.endpoint.to_string(),
            f.snat.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            f.state.to_owned(),
            format!("{:.1}s", f.idle.as_secs_f64()),
        ]);
    }
    let mut out = table(&rows);
    out.push_str(&format!("{} flows\n", flows.len()));
    out
}

/// `inspect counters`: global counters, drops by reason, and per service.
pub fn counters(totals: &Totals, services: &[Service], as_json: bool) -> String {
    if as_json {
        #[derive(serde::Serialize)]
        struct PerService<'a> {
            protocol: &'a str,
            family: &'a str,
            port: u16,
            #[serde(flatten)]
            counters: super::Counters,
        }
        #[derive(serde::Serialize)]
        struct All<'a> {
            #[serde(flatten)]
            totals: &'a Totals,
            services: Vec<PerService<'a>>,
        }
        return json(&All {
            totals,
            services: services
                .iter()
                .map(|s| PerService {
                    protocol: s.protocol,
                    family: s.family,
                    port: s.port,
                    counters: s.counters,
                })
                .collect(),
        });
    }
    let mut rows = vec![vec!["COUNTER".to_owned(), "PACKETS".to_owned()]];
    rows.extend(
        totals
            .counters
            .iter()
            .map(|(k, v)| vec![(*k).to_owned(), v.to_string()]),
    );
    let mut out = table(&rows);
    let mut rows = vec![vec!["DROP REASON".to_owned(), "PACKETS".to_owned()]];
    rows.extend(
        totals
            .drops
            .iter()
            .map(|(k, v)| vec![(*k).to_owned(), v.to_string()]),
    );
    out.push('\n');
    out.push_str(&table(&rows));
    let mut rows = vec![
        [
            "SERVICE",
            "FAMILY",
            "PACKETS",
            "BYTES",
            "FLOWS",
            "DROP_SNAT_EXHAUSTED",
            "DROP_CT_FULL",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in services {
        let c = &s.counters;
        rows.push(vec![
            format!("{}/{}", s.protocol, s.port),
            s.family.to_owned(),
            c.packets.to_string(),
            c.bytes.to_string(),
            c.new_flows.to_string(),
            c.drop_snat_exhausted.to_string(),
            c.drop_ct_full.to_string(),
        ]);
    }
    out.push('\n');
    out.push_str(&table(&rows));
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{super::Counters, *};

    fn flow(protocol: &'static str, client: &str, service: &str, endpoint: &str) -> Flow {
        Flow {
            protocol,
            client: client.parse().unwrap(),
            service: service.parse().unwrap(),
            endpoint: endpoint.parse().unwrap(),
            snat: Some("10.0.0.1:20001".parse().unwrap()),
            state: "established",
            idle: Duration::from_millis(1500),
            service_id: 1,
        }
    }

    #[test]
    fn filters_keep_flows_matching_every_condition() {
        let f = flow("tcp", "10.9.0.2:40000", "10.0.0.1:9000", "10.1.0.2:6379");
        let filter =
            |service: Option<&str>, client: Option<&str>, endpoint: Option<&str>| FlowFilter {
                service: service.map(|s| s.parse().unwrap()),
                client: client.map(|s| s.parse().unwrap()),
                endpoint: endpoint.map(|s| s.parse().unwrap()),
            };
        for (name, filter, keeps) in [
            ("no filter", filter(None, None, None), true),
            ("service port", filter(Some("9000"), None, None), true),
            (
                "service protocol and port",
                filter(Some("tcp/9000"), None, None),
                true,
            ),
            (
                "other protocol",
                filter(Some("udp/9000"), None, None),
                false,
            ),
            ("other port", filter(Some("9001"), None, None), false),
            ("client ip", filter(None, Some("10.9.0.2"), None), true),
            (
                "client ip:port",
                filter(None, Some("10.9.0.2:40000"), None),
                true,
            ),
            (
                "other client port",
                filter(None, Some("10.9.0.2:40001"), None),
                false,
            ),
            ("endpoint ip", filter(None, None, Some("10.1.0.2")), true),
            (
                "other endpoint",
                filter(None, None, Some("10.1.0.3")),
                false,
            ),
            (
                "all three",
                filter(Some("9000"), Some("10.9.0.2"), Some("10.1.0.2:6379")),
                true,
            ),
            (
                "one of three fails",
                filter(Some("9000"), Some("10.9.0.3"), Some("10.1.0.2:6379")),
                false,
            ),
        ] {
            assert_eq!(filter.keeps(&f), keeps, "{name}");
        }
    }

    #[test]
    fn bad_filters_say_what_is_expected() {
        for (given, want) in [
            ("sctp/9", "protocol must be tcp or udp"),
            ("tcp/x", "expected PORT or tcp/PORT"),
            ("70000", "expected PORT"),
        ] {
            let err = given.parse::<ServiceMatch>().unwrap_err();
            assert!(err.contains(want), "{given}: {err}");
        }
        let err = "10.0.0".parse::<AddrMatch>().unwrap_err();
        assert!(err.contains("expected IP or IP:PORT"), "{err}");
    }

    #[test]
    fn shares_are_slots_over_the_table_size() {
        let a: SocketAddr = "10.1.0.3:80".parse().unwrap();
        let b: SocketAddr = "10.1.0.2:80".parse().unwrap();
        let got = shares(vec![(a, 3), (b, 7)], 10);
        assert_eq!(
            got.iter()
                .map(|e| (e.endpoint, e.slots))
                .collect::<Vec<_>>(),
            [(b, 7), (a, 3)]
        );
        assert!((got[0].share - 0.7).abs() < 1e-9);
        assert!(shares(vec![(a, 1)], 0)[0].share.abs() < f64::EPSILON);
    }

    fn service(endpoints: Vec<(&str, u32)>) -> Service {
        Service {
            protocol: "tcp",
            family: "ipv4",
            addresses: vec![Some("10.0.0.1".parse().unwrap()), None],
            port: 9000,
            id: 1,
            dnat_only: false,
            endpoints: shares(
                endpoints
                    .into_iter()
                    .map(|(a, n)| (a.parse().unwrap(), n))
                    .collect(),
                8,
            ),
            counters: Counters {
                packets: 12,
                bytes: 3400,
                new_flows: 2,
                drop_snat_exhausted: 1,
                drop_ct_full: 0,
            },
        }
    }

    #[test]
    fn text_output_is_aligned() {
        for (name, got, want) in [
            (
                "services",
                services(
                    &[service(vec![("10.1.0.2:6379", 4), ("10.1.0.3:6379", 4)])],
                    false,
                ),
                "\
SERVICE   FAMILY  ADDRESSES   ID  NAT   ENDPOINT       SLOTS  SHARE  PACKETS  BYTES  FLOWS  DROPS
tcp/9000  ipv4    10.0.0.1,*  1   full  10.1.0.2:6379  4      50.0%  12       3400   2      1
                                        10.1.0.3:6379  4      50.0%
",
            ),
            (
                "a service without endpoints",
                services(&[service(vec![])], false),
                "\
SERVICE   FAMILY  ADDRESSES   ID  NAT   ENDPOINT         SLOTS  SHARE  PACKETS  BYTES  FLOWS  DROPS
tcp/9000  ipv4    10.0.0.1,*  1   full  (none: rejects)  -      -      12       3400   2      1
",
            ),
            (
                "flows",
                flows(
                    &[flow(
                        "tcp",
                        "10.9.0.2:40000",
                        "10.0.0.1:9000",
                        "10.1.0.2:6379",
                    )],
                    false,
                ),
                "\
PROTO  CLIENT          SERVICE        ENDPOINT       SNAT            STATE        IDLE
tcp    10.9.0.2:40000  10.0.0.1:9000  10.1.0.2:6379  10.0.0.1:20001  established  1.5s
1 flows
",
            ),
        ] {
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn json_output_is_one_document() {
        let v: serde_json::Value = serde_json::from_str(&flows(
            &[flow(
                "udp",
                "[fd00::2]:5353",
                "[fd00::1]:53",
                "[fd01::2]:53",
            )],
            true,
        ))
        .unwrap();
        assert_eq!(v[0]["client"], "[fd00::2]:5353");
        assert_eq!(v[0]["idle_seconds"], 1.5);
        let mut totals = Totals::default();
        totals.drops.insert("ct_full", 3);
        let v: serde_json::Value =
            serde_json::from_str(&counters(&totals, &[service(vec![])], true)).unwrap();
        assert_eq!(v["drops"]["ct_full"], 3);
        assert_eq!(v["services"][0]["drop_snat_exhausted"], 1);
        assert_eq!(v["services"][0]["port"], 9000);
    }
}
