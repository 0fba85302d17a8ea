//! `mmsb demo` with small sizes: it exits 0 and prints the lines that say what
//! it checked (random deltas against the reference model, every pipeline wave
//! against a from-scratch recomputation, the round trip through a reopen with
//! no recompute function run). A second run on the same data directory starts
//! from the first run's recovered store (its pages, graph and derived pages)
//! and must replace them cleanly.

use std::path::Path;
use std::process::Command;

fn run_demo(dir: &Path, seed: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mmsb"))
        .args(["demo", "--data-dir"])
        .arg(dir)
        .args(["--deltas", "600", "--pages", "4", "--page-size", "4096"])
        .args(["--batch", "64", "--seed", seed])
        .output()
        .expect("the mmsb binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mmsb demo failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_has(out: &str, needle: &str) {
    assert!(out.contains(needle), "demo output lacks {needle:?}:\n{out}");
}

#[test]
fn demo_exits_zero_and_reports_every_check_twice_on_one_data_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (run, seed) in ["1", "2"].iter().enumerate() {
        let out = run_demo(dir.path(), seed);
        assert_has(&out, "verified: all 4 pages equal the reference model");
        assert_has(&out, "wave 1 build (graph + data)");
        assert_has(&out, "wave 3 saturated sensor 1");
        assert_has(&out, "1 recomputed, 1 cut off, 0 derived deltas logged");
        assert_has(&out, "plan invalidated (#2)");
        assert_has(&out, "deferred: 6 commits logged inputs only");
        assert_has(&out, "propagate (one wave)");
        assert_has(&out, "verified after every wave");
        assert_has(&out, "round trip: every page equals the state before close");
        assert_has(
            &out,
            "pipeline pages byte-exact; 0 recompute calls on reopen",
        );
        assert_has(&out, "re-attached, sensor");
        if run == 1 {
            assert_has(&out, "deleted the 18 pages of the previous run");
        }
    }
}
