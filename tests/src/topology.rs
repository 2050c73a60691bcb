//! The end-to-end topology: client ⇄ node ⇄ backends, each in its own network namespace.
//!
//! ```text
//!  client (eth0 10.77.1.1) ── (nc 10.77.1.2) node (nb<i> 10.77.<10+i>.1) ── (eth0 10.77.<10+i>.2) backend i
//! ```
//!
//! Interfaces are created directly inside their namespaces, so the fixed names never clash
//! between tests running at the same time. The node forwards (`ip_forward=1`, as every
//! Kubernetes node does); backends route everything via the node, so full-NAT replies and
//! DNAT-only replies both come back through it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::netns::{Netns, sh, veth};

/// The client's address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
/// The node's client-facing address: what clients connect to.
pub const NODE: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
/// The node's client-facing interface.
pub const NODE_CLIENT_IF: &str = "nc";

/// Address of backend `i`.
pub fn backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 10 + u8::try_from(i).expect("few backends"), 2)
}

/// The node's interface facing backend `i`.
pub fn node_backend_if(i: usize) -> String {
    format!("nb{i}")
}

/// How the sending sides are set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offloads {
    /// Veth defaults (TX checksum offload on: packets are CHECKSUM_PARTIAL). Right for TC
    /// and for the userspace proxy.
    Default,
    /// TX checksum offload off on the client and backends, so frames carry full checksums
    /// as off a real wire (what native XDP sees on a NIC), and GRO on at the receiving ends
    /// so XDP_REDIRECT between veths has a NAPI to land in.
    LikeANic,
}

/// The namespaces and their links; everything is removed on drop.
pub struct Topology {
    /// The client.
    pub client: Netns,
    /// The node running xdp-ingress.
    pub node: Netns,
    /// The backends.
    pub backends: Vec<Netns>,
}

impl Topology {
    /// Builds the topology with `n` backends. Neighbour tables start empty.
    pub fn new(n: usize, offloads: Offloads) -> Self {
        let client = Netns::new("cli");
        let node = Netns::new("node");
        veth(
            &client,
            "eth0",
            &format!("{CLIENT}/24"),
            &node,
            NODE_CLIENT_IF,
            &format!("{NODE}/24"),
        );
        let mut backends = Vec::with_capacity(n);
        for i in 0..n {
            let b = Netns::new(&format!("b{i}"));
            let node_side = Ipv4Addr::new(10, 77, 10 + u8::try_from(i).expect("few"), 1);
            veth(
                &node,
                &node_backend_if(i),
                &format!("{node_side}/24"),
                &b,
                "eth0",
                &format!("{}/24", backend_addr(i)),
            );
            b.ip(&["route", "add", "default", "via", &node_side.to_string()]);
            backends.push(b);
        }
        client.ip(&["route", "add", "10.77.0.0/16", "via", &NODE.to_string()]);
        node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        if offloads == Offloads::LikeANic {
            for ns in std::iter::once(&client).chain(&backends) {
                ns.exec(&["ethtool", "-K", "eth0", "tx", "off"]);
                ns.exec(&["ethtool", "-K", "eth0", "gro", "on"]);
            }
            for i in 0..n {
                node.exec(&["ethtool", "-K", &node_backend_if(i), "gro", "on"]);
            }
            node.exec(&["ethtool", "-K", NODE_CLIENT_IF, "gro", "on"]);
        }
        Self {
            client,
            node,
            backends,
        }
    }

    /// Every node interface (client-facing first), for `--interface`.
    pub fn node_interfaces(&self) -> Vec<String> {
        std::iter::once(NODE_CLIENT_IF.to_owned())
            .chain((0..self.backends.len()).map(node_backend_if))
            .collect()
    }

    /// `addr:port` on backend `i`.
    pub fn backend(&self, i: usize, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(backend_addr(i)), port)
    }

    /// The node's service address for `port`.
    pub fn service(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(NODE), port)
    }
}

/// Whether the neighbour table of `ns` is empty for IPv4 (fresh topology check).
pub fn neighbours(ns: &Netns) -> String {
    sh(&["ip", "-n", ns.name(), "-4", "neigh", "show"])
}
