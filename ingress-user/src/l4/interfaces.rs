//! `--interface auto`: which interfaces the eBPF programs attach to when none is named, so
//! one DaemonSet fits nodes whose NIC is `eth0`, `ens5`, `enp1s0` or `bond0`.
//!
//! The choice is pure (tested with tables); [`resolve`] feeds it the node's addresses and
//! `/proc/net/route`.

use std::net::IpAddr;

/// The `--interface` value that asks for detection.
pub const AUTO: &str = "auto";

/// Why no interface could be chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// No interface holds any of the `--node-address`es.
    #[error("--interface auto: no interface holds a --node-address ({0})")]
    NoInterfaceForAddresses(String),
    /// No `--node-address` and no IPv4 default route.
    #[error(
        "--interface auto: no --node-address given and no IPv4 default route in /proc/net/route; \
         name the interfaces with --interface"
    )]
    NoDefaultRoute,
    /// Reading the interfaces or the routing table failed.
    #[error("--interface auto: reading {what}: {reason}")]
    Read {
        /// What was being read.
        what: &'static str,
        /// The OS error, as text.
        reason: String,
    },
}

/// The interfaces to attach to.
///
/// - Named interfaces are used as they are (`auto` among them adds the detected ones).
/// - `auto`: the interfaces holding a `node_addresses` entry (in their order), else the
///   interface of the default route.
pub fn choose(
    requested: &[String],
    node_addresses: &[IpAddr],
    addrs: &[(String, IpAddr)],
    default_route: Option<&str>,
) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |name: &str| {
        if !out.iter().any(|o| o == name) {
            out.push(name.to_owned());
        }
    };
    for name in requested.iter().filter(|r| *r != AUTO) {
        push(name);
    }
    if !requested.iter().any(|r| r == AUTO) {
        return Ok(out);
    }
    if node_addresses.is_empty() {
        push(default_route.ok_or(Error::NoDefaultRoute)?);
    } else {
        let mut found = false;
        for want in node_addresses {
            for (name, _) in addrs.iter().filter(|(_, a)| a == want) {
                push(name);
                found = true;
            }
        }
        if !found {
            let list: Vec<String> = node_addresses.iter().map(ToString::to_string).collect();
            return Err(Error::NoInterfaceForAddresses(list.join(", ")));
        }
    }
    Ok(out)
}

/// The interface of the IPv4 default route in `/proc/net/route` text: destination and mask
/// 0, route up; the lowest metric wins. `None` if there is none.
pub fn default_route(route_table: &str) -> Option<&str> {
    const RTF_UP: u32 = 0x1;
    route_table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, flags, metric, mask) =
                (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let metric: u32 = metric.parse().ok()?;
            (*dest == "00000000" && *mask == "00000000" && flags & RTF_UP != 0)
                .then_some((metric, *iface))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, iface)| iface)
}

/// [`choose`] with this node's addresses and routing table.
pub fn resolve(requested: &[String], node_addresses: &[IpAddr]) -> Result<Vec<String>, Error> {
    if !requested.iter().any(|r| r == AUTO) {
        return Ok(requested.to_vec());
    }
    let addrs = super::addrs::all().map_err(|e| Error::Read {
        what: "interface addresses",
        reason: e.to_string(),
    })?;
    let routes = std::fs::read_to_string("/proc/net/route").map_err(|e| Error::Read {
        what: "/proc/net/route",
        reason: e.to_string(),
    })?;
    choose(requested, node_addresses, &addrs, default_route(&routes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
ens5\t0000000A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
bond0\t00000000\t0100000A\t0003\t0\t0\t200\t00000000\t0\t0\t0
enp1s0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth9\t00000000\t0101A8C0\t0002\t0\t0\t1\t00000000\t0\t0\t0
";

    #[test]
    fn the_default_route_is_the_up_one_with_the_lowest_metric() {
        for (name, table, want) in [
            ("lowest metric of the up ones", ROUTES, Some("enp1s0")),
            ("header only", "Iface\tDestination\n", None),
            (
                "no default route",
                "h\nens5\t0000000A\t0\t0001\t0\t0\t0\t0000FFFF\n",
                None,
            ),
            (
                "garbage lines are skipped",
                "h\nx\n\nlo 00000000 0 zz 0 0 0 00000000\n",
                None,
            ),
        ] {
            assert_eq!(default_route(table), want, "{name}");
        }
    }

    #[test]
    fn auto_picks_the_interfaces_of_the_node_addresses_else_the_default_route() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let addrs = vec![
            ("lo".to_owned(), ip("127.0.0.1")),
            ("ens5".to_owned(), ip("10.0.0.5")),
            ("ens6".to_owned(), ip("10.1.0.5")),
            ("ens6".to_owned(), ip("fd00::5")),
        ];
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        for (name, requested, node, route, want) in [
            (
                "named interfaces are kept",
                s(&["eth0", "eth1"]),
                vec![],
                None,
                Ok(s(&["eth0", "eth1"])),
            ),
            (
                "auto: default route",
                s(&["auto"]),
                vec![],
                Some("ens5"),
                Ok(s(&["ens5"])),
            ),
            (
                "auto: no route",
                s(&["auto"]),
                vec![],
                None,
                Err(Error::NoDefaultRoute),
            ),
            (
                "auto: the node addresses' interfaces, in order, once",
                s(&["auto"]),
                vec![ip("fd00::5"), ip("10.0.0.5"), ip("10.1.0.5")],
                Some("ens5"),
                Ok(s(&["ens6", "ens5"])),
            ),
            (
                "auto beside a named one",
                s(&["veth-pods", "auto"]),
                vec![ip("10.0.0.5")],
                None,
                Ok(s(&["veth-pods", "ens5"])),
            ),
            (
                "auto: a node address no interface holds",
                s(&["auto"]),
                vec![ip("192.0.2.1")],
                Some("ens5"),
                Err(Error::NoInterfaceForAddresses("192.0.2.1".into())),
            ),
        ] {
            assert_eq!(choose(&requested, &node, &addrs, route), want, "{name}");
        }
    }
}
