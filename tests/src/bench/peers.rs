//! The peers, configured as a user would for the same job: nginx (stream, `proxy_pass` with
//! and without TLS, and the static backends) and HAProxy (tcp, http and TLS-terminating http
//! mode), each with one worker pinned to the
//! server CPU, run in the foreground from a config in a scratch directory; and kernel NAT
//! (nftables DNAT + masquerade, kube-proxy's mechanism) for the L4 path.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::Context as _;

use crate::{
    bench::rig::{Daemon, SERVER_CPU, pinned},
    netns::Netns,
};

fn nginx_common(dir: &Path) -> String {
    format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n",
        d = dir.display()
    )
}

fn http_common(dir: &Path) -> String {
    format!(
        "access_log off;\nclient_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\nkeepalive_requests 1000000;\n",
        d = dir.display()
    )
}

fn write_conf(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(name);
    fs::write(&path, text)?;
    Ok(path)
}

/// nginx answering `body` to every request on `addr:port` (the fast HTTP backend).
pub fn nginx_static(dir: &Path, addr: Ipv4Addr, port: u16, body: &str) -> anyhow::Result<PathBuf> {
    let text = format!(
        "{}http {{\n{}server {{ listen {addr}:{port}; location / {{ return 200 \"{body}\\n\"; }} }}\n}}\n",
        nginx_common(dir),
        http_common(dir)
    );
    write_conf(dir, "nginx.conf", &text)
}

/// nginx `stream`: each `(listen port, upstream)` proxied as plain TCP.
pub fn nginx_stream(
    dir: &Path,
    listen: Ipv4Addr,
    map: &[(u16, String)],
) -> anyhow::Result<PathBuf> {
    let mut text = format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n{}stream {{\n",
        nginx_common(dir)
    );
    for (port, upstream) in map {
        text.push_str(&format!(
            "  server {{ listen {listen}:{port}; proxy_pass {upstream}; }}\n"
        ));
    }
    text.push_str("}\n");
    write_conf(dir, "nginx.conf", &text)
}

/// nginx `proxy_pass` with upstream keep-alive, as ingress-nginx configures it: 320 idle
/// upstream connections, and the request headers its template sets that xdp-ingress also
/// sets (`X-Request-ID` kept or generated, `X-Real-IP`, `X-Forwarded-For/Host/Port/Proto`),
/// so both peers send the backend the same request.
pub fn nginx_proxy(
    dir: &Path,
    listen: Ipv4Addr,
    port: u16,
    upstream: &str,
) -> anyhow::Result<PathBuf> {
    let server = format!(
        "server {{\n listen {listen}:{port};\n{}}}\n",
        nginx_location()
    );
    nginx_proxy_servers(dir, upstream, "", &server)
}

/// [`nginx_proxy`] terminating TLS: one server per `(port, cert.pem, key.pem)`, HTTP/2 by
/// ALPN, and resumption as ingress-nginx sets it up (a 10 MB shared session cache, session
/// tickets on, TLS 1.2 and 1.3).
pub fn nginx_tls_proxy(
    dir: &Path,
    listen: Ipv4Addr,
    certs: &[(u16, PathBuf, PathBuf)],
    upstream: &str,
) -> anyhow::Result<PathBuf> {
    let http = "ssl_protocols TLSv1.2 TLSv1.3;\nssl_session_cache shared:SSL:10m;\nssl_session_timeout 10m;\nssl_session_tickets on;\n";
    let mut servers = String::new();
    for (port, cert, key) in certs {
        servers.push_str(&format!(
            "server {{\n listen {listen}:{port} ssl http2;\n ssl_certificate {};\n ssl_certificate_key {};\n{}}}\n",
            cert.display(),
            key.display(),
            nginx_location()
        ));
    }
    nginx_proxy_servers(dir, upstream, http, &servers)
}

fn nginx_location() -> &'static str {
    r#" location / {
  proxy_pass http://backend;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_set_header X-Request-ID $req_id;
  proxy_set_header X-Real-IP $remote_addr;
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Host $host;
  proxy_set_header X-Forwarded-Port $server_port;
  proxy_set_header X-Forwarded-Proto $scheme;
 }
"#
}

fn nginx_proxy_servers(
    dir: &Path,
    upstream: &str,
    http: &str,
    servers: &str,
) -> anyhow::Result<PathBuf> {
    let text = format!(
        r#"{}http {{
{}{http}map $http_x_request_id $req_id {{ default $http_x_request_id; "" $request_id; }}
upstream backend {{ server {upstream}; keepalive 320; }}
{servers}}}
"#,
        nginx_common(dir),
        http_common(dir)
    );
    write_conf(dir, "nginx.conf", &text)
}

/// Starts nginx with `conf` (prefix = its directory) pinned to the server CPU inside `ns`.
pub fn start_nginx(ns: &Netns, conf: &Path) -> anyhow::Result<Daemon> {
    let dir = conf.parent().context("config directory")?;
    let child = pinned(ns, SERVER_CPU, "nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(log_file(conf)?)
        .spawn()
        .context("start nginx (apt-get install nginx libnginx-mod-stream)")?;
    Ok(Daemon(child))
}

/// `<rig dir>/<config dir name>.log`, where the rig's failure messages look.
fn log_file(conf: &Path) -> anyhow::Result<fs::File> {
    let dir = conf.parent().context("config directory")?;
    let name = dir
        .file_name()
        .context("config directory name")?
        .to_string_lossy()
        .into_owned();
    let parent = dir.parent().context("rig directory")?;
    Ok(fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(parent.join(format!("{name}.log")))?)
}

fn haproxy_common(mode: &str) -> String {
    format!(
        "global\n  maxconn 8000\n  nbthread 1\ndefaults\n  mode {mode}\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
    )
}

/// HAProxy `mode tcp`: each `(listen port, upstream)`.
pub fn haproxy_tcp(dir: &Path, listen: Ipv4Addr, map: &[(u16, String)]) -> anyhow::Result<PathBuf> {
    let mut text = haproxy_common("tcp");
    for (port, upstream) in map {
        text.push_str(&format!(
            "frontend f{port}\n  bind {listen}:{port}\n  default_backend b{port}\nbackend b{port}\n  server s {upstream}\n"
        ));
    }
    write_conf(dir, "haproxy.cfg", &text)
}

/// HAProxy `mode http` with connection reuse to the backend, setting the same request
/// headers as the other proxies.
pub fn haproxy_http(
    dir: &Path,
    listen: Ipv4Addr,
    port: u16,
    upstream: &str,
) -> anyhow::Result<PathBuf> {
    let text = format!(
        r#"{}  option http-keep-alive
  http-reuse always
frontend f
  bind {listen}:{port}
  option forwardfor
  unique-id-format %{{+X}}o%ci%cp%fi%fp%Ts%rt%pid
  unique-id-header X-Request-ID
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Proto http
  default_backend b
backend b
  server s {upstream}
"#,
        haproxy_common("http")
    );
    write_conf(dir, "haproxy.cfg", &text)
}

/// [`haproxy_http`] terminating TLS: one `bind ... ssl crt` per `(port, cert+key.pem)`,
/// ALPN h2 and http/1.1; session cache (20000 entries) and tickets at their defaults (on).
pub fn haproxy_tls(
    dir: &Path,
    listen: Ipv4Addr,
    certs: &[(u16, PathBuf)],
    upstream: &str,
) -> anyhow::Result<PathBuf> {
    let binds: String = certs
        .iter()
        .map(|(port, pem)| {
            format!(
                "  bind {listen}:{port} ssl crt {} alpn h2,http/1.1\n",
                pem.display()
            )
        })
        .collect();
    let text = format!(
        r#"{}  option http-keep-alive
  http-reuse always
frontend f
{binds}  option forwardfor
  unique-id-format %{{+X}}o%ci%cp%fi%fp%Ts%rt%pid
  unique-id-header X-Request-ID
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Proto https
  default_backend b
backend b
  server s {upstream}
"#,
        haproxy_common("http")
    );
    write_conf(dir, "haproxy.cfg", &text)
}

/// Starts HAProxy in the foreground with `conf`, pinned to the server CPU inside `ns`.
pub fn start_haproxy(ns: &Netns, conf: &Path) -> anyhow::Result<Daemon> {
    let child = pinned(ns, SERVER_CPU, "haproxy")
        .arg("-db")
        .arg("-f")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(log_file(conf)?)
        .spawn()
        .context("start haproxy (apt-get install haproxy)")?;
    Ok(Daemon(child))
}

/// The nftables table the kernel-NAT peer adds.
const NFT_TABLE: &str = "xdp_bench_nat";

/// kube-proxy's mechanism as a peer: nftables DNAT in prerouting and masquerade of the
/// DNATed flows in postrouting, in the node namespace (kernel conntrack does the rest).
/// The table is deleted on drop.
pub struct NftNat {
    /// The namespace handle, for `nsenter`.
    netns: PathBuf,
}

/// Adds the DNAT + masquerade table for `map` (listen port → `ip:port`) on `listen` in `ns`.
pub fn start_nft_nat(
    ns: &Netns,
    dir: &Path,
    listen: Ipv4Addr,
    map: &[(u16, String)],
) -> anyhow::Result<NftNat> {
    let dnat: String = map
        .iter()
        .map(|(port, to)| format!("    ip daddr {listen} tcp dport {port} dnat to {to}\n"))
        .collect();
    let text = format!(
        "table ip {NFT_TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{dnat}  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ct status dnat masquerade\n  }}\n}}\n"
    );
    let conf = write_conf(dir, "nat.nft", &text)?;
    let peer = NftNat { netns: ns.path() };
    let status = ns
        .command("nft")
        .arg("-f")
        .arg(&conf)
        .status()
        .context("run nft (apt-get install nftables)")?;
    anyhow::ensure!(status.success(), "nft -f {} failed", conf.display());
    Ok(peer)
}

impl Drop for NftNat {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .args(["--", "nft", "delete", "table", "ip", NFT_TABLE])
            .stderr(Stdio::null())
            .status();
    }
}
