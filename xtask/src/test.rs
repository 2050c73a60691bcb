//! The one command that runs every test, as CI does.

use anyhow::Result;

use crate::{
    build::{cargo, exec},
    setup,
};

/// setup → build → all tests (unit, BPF_PROG_TEST_RUN, netns end to end) → fmt → clippy.
pub fn run(extra: &[String]) -> Result<()> {
    setup::run()?;
    crate::build::workspace(false)?;
    // Network-namespace suites start real servers and the real binary; two at a time is what
    // a 2-core machine sustains without starving their timeouts.
    exec(
        cargo()
            .args(["test", "--no-fail-fast"])
            .args(extra)
            .args(["--", "--test-threads=2"]),
    )?;
    if extra.is_empty() {
        exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
        exec(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    }
    println!("xtask test: all passed");
    Ok(())
}
