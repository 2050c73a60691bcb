//! Real servers for the suites to put behind xdp-ingress: `redis-server`, and small tokio
//! TCP/UDP echo and recording servers on 127.0.0.1. Every server stops when dropped.

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    task::JoinHandle,
};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released), for
/// servers that cannot bind port 0 themselves (redis) or listeners keyed by port.
pub fn free_tcp_port() -> u16 {
    StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago (see [`free_tcp_port`]).
pub fn free_udp_port() -> u16 {
    StdUdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .expect("binding 127.0.0.1:0/udp")
        .port()
}

/// A real `redis-server`, without persistence, killed on drop.
pub struct RedisServer {
    addr: SocketAddr,
    child: Child,
}

impl RedisServer {
    /// Starts `redis-server` on 127.0.0.1 on a free port and waits until it accepts.
    pub fn start() -> Self {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_tcp_port());
        Self::start_with(Command::new("redis-server"), addr)
    }

    /// Starts redis with `command` (`redis-server`, or e.g. a netns `ip netns exec NS
    /// redis-server`) listening on `addr`, and waits for its "Ready to accept connections"
    /// log line (which works across network namespaces, unlike probing the port).
    pub fn start_with(mut command: Command, addr: SocketAddr) -> Self {
        command
            .args([
                "--bind",
                &addr.ip().to_string(),
                "--port",
                &addr.port().to_string(),
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command
            .spawn()
            .expect("spawning redis-server (apt-get install redis-server)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut log = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = ready_tx.send(Ok(()));
                }
                log.push(line);
            }
            // EOF: redis exited (also after it was ready; then nobody listens any more).
            let _ = ready_tx.send(Err(log.join("\n")));
        });
        let server = Self { addr, child };
        match ready_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => server,
            Ok(Err(log)) => panic!("redis-server on {addr} exited before it was ready:\n{log}"),
            Err(_) => panic!("redis-server on {addr} not ready within 20 s"),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `redis-cli -h <ip> -p <port> <args>` and returns its output. Async, so the proxy
/// under test keeps running on the same runtime.
pub async fn redis_cli(addr: SocketAddr, args: &[&str]) -> Output {
    let run = tokio::process::Command::new("redis-cli")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap_or_else(|_| panic!("redis-cli {args:?} against {addr} hung for 20 s"))
        .expect("running redis-cli (apt-get install redis-tools)")
}

/// A TCP server on 127.0.0.1 that echoes every byte back and, when the client half-closes,
/// finishes echoing and half-closes too. Counts the connections it accepted.
pub struct TcpEchoServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TcpEchoServer {
    /// Binds 127.0.0.1:0 and serves in a task.
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                        let _ = w.shutdown().await;
                    }
                });
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpEchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A UDP server on 127.0.0.1 that sends every datagram back to its sender. Counts the
/// datagrams it received.
pub struct UdpEchoServer {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl UdpEchoServer {
    /// Binds 127.0.0.1:0 and serves in a task.
    pub async fn start() -> Self {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind udp echo");
        let addr = socket.local_addr().expect("udp echo addr");
        let received = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&received);
        let task = tokio::spawn(async move {
            let mut buf = vec![0; 65_535];
            loop {
                if let Ok((n, from)) = socket.recv_from(&mut buf).await {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = socket.send_to(&buf[..n], from).await;
                }
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    /// Datagrams received so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for UdpEchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP server on 127.0.0.1 that records every byte each connection sends until the
/// client half-closes, then answers `ok <byte count>\n` and closes. Once a client has read
/// that answer, its recording is in [`connections`](Self::connections).
pub struct RecordingServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl RecordingServer {
    /// Binds 127.0.0.1:0 and serves in a task.
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("recorder addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut bytes = Vec::new();
                    if stream.read_to_end(&mut bytes).await.is_err() {
                        return;
                    }
                    let answer = format!("ok {}\n", bytes.len());
                    store.lock().expect("recordings lock").push(bytes);
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What each finished connection sent, in the order they finished.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.received.lock().expect("recordings lock").clone()
    }
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Echoes UDP datagrams on `addr` inside `ns`, each prefixed with `name:` so a test sees
/// which backend answered. Runs on a thread for the life of the test process.
pub fn udp_echo_in(ns: &crate::netns::Netns, addr: SocketAddr, name: &'static str) {
    let sock = ns.run(move || StdUdpSocket::bind(addr).expect("bind udp echo"));
    std::thread::spawn(move || {
        // Room for the largest datagram, so fragmented ones come back whole.
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let mut reply = name.as_bytes().to_vec();
            reply.push(b':');
            reply.extend_from_slice(&buf[..n]);
            let _ = sock.send_to(&reply, peer);
        }
    });
}
