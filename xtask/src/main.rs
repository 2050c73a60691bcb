//! `cargo xtask`: the project's tasks. `setup` installs what the others need, idempotently.

mod bench;
mod build;
mod dist;
mod fuzz;
mod setup;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// xdp-ingress project tasks.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Benchmarks side by side with the peers on the netns topology (release build, as
    /// root): l4, http, tls, churn, scale or all. Writes bench/results/ and BENCHMARKS.md.
    Bench {
        /// Which group (`report` only regenerates BENCHMARKS.md from the stored samples).
        #[arg(default_value = "all", value_parser = ["l4", "l4-limits", "http", "tls", "churn", "scale", "all", "report"])]
        group: String,
        /// Fewer requests per sample (still 5 samples), for trying the harness.
        #[arg(long)]
        quick: bool,
    },
    /// Install the toolchain and packages the build, tests, demo and benchmarks need
    /// (Debian packages, nightly rust-src, bpf-linker against LLVM 22); skips what is present.
    Setup,
    /// Build the eBPF object and copy it to target/bpf/ingress.o (the same build path that
    /// `cargo build` uses through ingress-user/build.rs).
    BuildEbpf {
        /// Release profile for the userspace crate driving the build.
        #[arg(long)]
        release: bool,
    },
    /// Build the whole workspace (userspace binary with the eBPF object embedded).
    Build {
        /// Release profile.
        #[arg(long)]
        release: bool,
    },
    /// The shipped binary: `--profile dist` (fat LTO), optimised with a profile of a
    /// training load it serves on loopback (PGO; about a minute plus two builds), at
    /// target/pgo/xdp-ingress. deploy/Dockerfile and `cargo xtask bench` build it so.
    Dist {
        /// Only `--profile dist`, no PGO (target/dist/xdp-ingress).
        #[arg(long)]
        no_pgo: bool,
    },
    /// The main job on an embedded default: the seed scenario (redis on :9000 through the
    /// kernel, the dashboard Ingress through the router, the default backend) in network
    /// namespaces with real backends and no cluster. Runs until Ctrl-C.
    Demo {
        /// Stop after showing the requests succeed (for scripts and CI).
        #[arg(long)]
        once: bool,
        /// `--l4-mode` for xdp-ingress (auto, xdp, tc, userspace).
        #[arg(long, default_value = "auto")]
        l4_mode: String,
        /// The Gateway API form of the seed (deploy/examples/gateway/: an HTTPRoute for
        /// the dashboard, a TCPRoute for redis on :9000), with the same checks.
        #[arg(long)]
        gateway: bool,
    },
    /// Fuzz the hand-written parsers with libFuzzer (installs cargo-fuzz and nightly if
    /// missing): TARGET, or every target one after the other, for N seconds each. New
    /// inputs go to fuzz/scratch/ (git-ignored), failures to fuzz/artifacts/; `cargo test`
    /// replays the committed corpora in fuzz/corpus/.
    Fuzz {
        /// One target (h1_request, h1_differential, upstream_response, proxy_protocol,
        /// manifests); all of them when omitted.
        target: Option<String>,
        /// How long to fuzz each target.
        #[arg(long, default_value_t = fuzz::DEFAULT_SECONDS)]
        seconds: u64,
        /// Instead of fuzzing, add to fuzz/corpus/<target>/ the inputs of
        /// fuzz/scratch/<target>/ that reach code it does not (libFuzzer -merge=1), to commit.
        #[arg(long, conflicts_with = "seconds")]
        merge: bool,
    },
    /// Run everything: setup, build, unit tests, eBPF packet tests, network-namespace
    /// end-to-end tests, then fmt and clippy checks. This is what CI runs.
    Test {
        /// Extra arguments passed to `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::BuildEbpf { release } => build::ebpf(release).map(|path| {
            println!("{}", path.display());
        }),
        Task::Build { release } => build::workspace(release),
        Task::Dist { no_pgo } => dist::run(!no_pgo).map(drop),
        Task::Demo {
            once,
            l4_mode,
            gateway,
        } => demo(once, &l4_mode, gateway),
        Task::Test { args } => test::run(&args),
        Task::Bench { group, quick } => bench::run(&group, quick),
        Task::Fuzz {
            target,
            seconds,
            merge,
        } => {
            let mode = if merge {
                fuzz::Mode::Merge
            } else {
                fuzz::Mode::Run { seconds }
            };
            fuzz::run(target.as_deref(), mode)
        }
    }
}

fn demo(once: bool, l4_mode: &str, gateway: bool) -> Result<()> {
    setup::run()?;
    build::exec(build::cargo().args(["build", "-p", "ingress-user"]))?;
    build::exec(build::cargo().args(["build", "-p", "ingress-tests", "--bins"]))?;
    let mut demo = std::process::Command::new(build::root().join("target/debug/demo"));
    demo.args(["--l4-mode", l4_mode]);
    if once {
        demo.arg("--once");
    }
    if gateway {
        demo.arg("--gateway");
    }
    build::exec(&mut demo)
}
