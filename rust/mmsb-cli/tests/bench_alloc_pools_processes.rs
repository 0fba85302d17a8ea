//! `mmsb bench alloc --processes K` splits the latency samples over K fresh
//! runs of the binary and pools them: the result file must hold, for every
//! case, the pooled ratio (yardstick / MMSB, recomputed here from the two
//! latencies it reports) and the K ratios the processes alone would have
//! reported; a worker run must write exactly the samples it was asked for;
//! bad arguments (no processes, a filter that matches no case) must fail with a
//! clear message and write no result file.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn mmsb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mmsb"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("result file");
    serde_json::from_str(&text).expect("result file is JSON")
}

#[test]
fn pooled_run_reports_every_process_ratio_and_a_consistent_pooled_ratio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = mmsb()
        .args(["bench", "alloc", "--only", "pair/64B/t1", "--samples", "64"])
        .args(["--processes", "3", "--out"])
        .arg(dir.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for k in 1..=3 {
        assert!(stdout.contains(&format!("process {k} of 3")), "{stdout}");
    }
    let doc = read_json(&dir.path().join("alloc.json"));
    let results = doc["results"].as_array().expect("results");
    let names: Vec<&str> = results.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "pair/64B/t1/p50/vs_malloc",
            "pair/64B/t1/p50/vs_mimalloc",
            "pair/64B/t1/p99/vs_malloc",
            "pair/64B/t1/p99/vs_mimalloc",
        ]
    );
    for r in results {
        let value = r["value"].as_f64().expect("value");
        let yard = r["yardstick_value"].as_f64().expect("yardstick_value");
        let ratio = r["ratio"].as_f64().expect("ratio");
        assert!(value > 0.0 && yard > 0.0, "{r}");
        assert!(
            (ratio - yard / value).abs() <= 1e-9 * ratio.abs().max(1.0),
            "{r}"
        );
        let each = r["ratio_per_process"]
            .as_array()
            .expect("ratio_per_process");
        assert_eq!(each.len(), 3, "{r}");
        assert!(
            each.iter()
                .all(|x| x.as_f64().is_some_and(|x| x.is_finite() && x > 0.0)),
            "{r}"
        );
    }
}

#[test]
fn a_worker_writes_the_samples_of_every_selected_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("w.json");
    let out = mmsb()
        .args([
            "bench",
            "alloc",
            "--only",
            "64B/t1",
            "--samples",
            "32",
            "--worker-out",
        ])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases = read_json(&file);
    let cases = cases.as_array().expect("one entry per case");
    // pair/64B/t1 and burst32/64B/t1; one process each; mmsb, malloc, mimalloc.
    assert_eq!(cases.len(), 2);
    for case in cases {
        let processes = case.as_array().expect("processes");
        assert_eq!(processes.len(), 1);
        let lists = processes[0].as_array().expect("three allocators");
        assert_eq!(lists.len(), 3);
        for l in lists {
            // 16 rounds of 32 / 16 = 2 samples.
            assert_eq!(l.as_array().expect("samples").len(), 32);
        }
    }
}

/// Runs `bench alloc` with `args` and checks it fails, says `message`, and
/// writes no result file.
fn assert_refused(args: &[&str], message: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = mmsb()
        .args(["bench", "alloc"])
        .args(args)
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(message), "{err}");
    assert!(!dir.path().join("alloc.json").exists());
}

#[test]
fn zero_processes_is_refused_with_a_clear_message() {
    assert_refused(&["--processes", "0"], "--processes must be at least 1");
}

#[test]
fn an_only_filter_that_matches_no_case_is_refused() {
    assert_refused(
        &["--only", "pair/999B"],
        "no latency case matches --only \"pair/999B\"",
    );
}
