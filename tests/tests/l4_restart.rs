//! Established L4 flows survive the controller: SIGKILL xdp-ingress in the middle of a long
//! transfer through the XDP path, start it again, and the transfer completes byte-exact
//! (maps and links are pinned; the new process swaps its programs in atomically).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    sync::mpsc,
    time::Duration,
};

use ingress_tests::{
    seed::{Seed, Source},
    topology::{Offloads, Topology},
};

const VALUE_LEN: usize = 24 << 20;

fn value() -> Vec<u8> {
    (0..VALUE_LEN)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Stores the value straight on the backend (not through the node).
fn store_value(seed: &Seed) {
    let addr = seed.topo.backend(0, 6379);
    seed.topo.node.run(move || {
        let mut s = TcpStream::connect(addr).expect("connect to redis directly");
        let v = value();
        write!(s, "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", v.len()).expect("send");
        s.write_all(&v).expect("send value");
        s.write_all(b"\r\n").expect("send");
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).expect("reply");
        assert_eq!(line.trim(), "+OK", "SET big");
    });
}

fn transfer_survives_sigkill(mode: &'static str, offloads: Offloads) {
    let mut seed = Seed::new(offloads, Source::Files);
    seed.start_controller(mode);
    store_value(&seed);

    let (progress_tx, progress_rx) = mpsc::channel::<usize>();
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let reader = {
        let file = std::fs::File::open(seed.topo.client.path()).expect("netns handle");
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a valid namespace fd, for this thread only.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let mut s = TcpStream::connect(Topology::service(9000)).expect("connect via node");
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            s.write_all(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
                .expect("GET");
            let mut header = Vec::new();
            let mut byte = [0u8; 1];
            while !header.ends_with(b"\r\n") {
                s.read_exact(&mut byte).expect("bulk header");
                header.push(byte[0]);
            }
            assert_eq!(
                header,
                format!("${VALUE_LEN}\r\n").into_bytes(),
                "bulk length"
            );
            let mut got = Vec::with_capacity(VALUE_LEN);
            let mut buf = vec![0u8; 64 << 10];
            let mut paused = false;
            while got.len() < VALUE_LEN {
                let want = buf.len().min(VALUE_LEN - got.len());
                let n = s.read(&mut buf[..want]).expect("read through the restart");
                assert!(n > 0, "connection closed after {} bytes", got.len());
                got.extend_from_slice(&buf[..n]);
                if !paused && got.len() > VALUE_LEN / 4 {
                    // Stop reading while the controller is killed and restarted.
                    paused = true;
                    progress_tx.send(got.len()).expect("progress");
                    resume_rx.recv().expect("resume");
                }
            }
            got
        })
    };

    let at = progress_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("transfer started");
    seed.kill_controller();
    std::thread::sleep(Duration::from_millis(500));
    seed.start_controller(mode);
    assert!(
        seed.log().contains("reused=true"),
        "{mode}: the restarted controller reused the pinned links:\n{}",
        seed.log()
    );
    resume_tx.send(()).expect("resume reader");
    let got = reader.join().expect("reader thread");
    assert_eq!(got.len(), VALUE_LEN, "{mode}: all bytes (paused at {at})");
    assert!(
        got == value(),
        "{mode}: byte-exact transfer across SIGKILL + restart"
    );
}

#[test]
fn xdp_transfer_survives_sigkill_and_restart() {
    transfer_survives_sigkill("xdp", Offloads::LikeANic);
}

#[test]
fn tc_transfer_survives_sigkill_and_restart() {
    transfer_survives_sigkill("tc", Offloads::Default);
}

/// Pins left by another `--l4-mode` are removed, not trusted: after running in XDP mode and
/// being killed, a controller started in TC mode drops the XDP links (and so detaches XDP).
#[test]
fn pins_of_another_mode_are_cleaned_up() {
    let mut seed = Seed::new(Offloads::LikeANic, Source::Files);
    seed.start_controller("xdp");
    let shown = seed.topo.node.exec(&["ip", "-d", "link", "show", "nc"]);
    assert!(shown.contains("prog/xdp"), "XDP attached to nc:\n{shown}");
    seed.kill_controller();
    let links = |seed: &Seed| {
        let mut names: Vec<String> = std::fs::read_dir(seed.pin.path().join("links"))
            .expect("links dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert!(
        links(&seed).iter().any(|l| l.starts_with("xdp-driver@")),
        "XDP links pinned: {:?}",
        links(&seed)
    );
    seed.start_controller("tc");
    let now = links(&seed);
    assert!(
        now.iter().all(|l| l.starts_with("tc-ingress@")),
        "only TC links remain: {now:?}"
    );
    let shown = seed.topo.node.exec(&["ip", "-d", "link", "show", "nc"]);
    assert!(
        !shown.contains("prog/xdp"),
        "XDP is detached from nc:\n{shown}"
    );
    assert!(
        seed.log().contains("removing stale pinned link"),
        "{}",
        seed.log()
    );
}
