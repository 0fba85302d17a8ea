//! `mmsb`: the MMSB command-line tool.
//!
//! Subcommands:
//! * `mmsb demo`: the main job: an embedded store under a default data directory,
//!   a stream of random sparse and dense deltas, and a summary.
//! * `mmsb bench <group>`: benchmarks that report ratios to a yardstick measured
//!   in the same run and write `benchmark/results/<group>.json`.
//! * `mmsb log inspect|verify`, `mmsb checkpoint create|verify`, `mmsb recover`,
//!   `mmsb replay`: the durable store's data directory (see `docs/format.md`).

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod bench_alloc;
mod bench_delta;
mod bench_log;
mod bench_propagation;
mod bench_semiring;
mod bench_semiring_mxv;
mod bench_txn;
mod cmd_checkpoint;
mod cmd_log;
mod cmd_recover;
mod cmd_replay;
mod data_dir;
mod demo;
mod demo_pipeline;
mod machine;

/// The Memory-Mapped State Bus command-line tool.
#[derive(Parser)]
#[command(name = "mmsb", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo workload on an embedded store.
    Demo(demo::DemoArgs),
    /// Run a benchmark group and write benchmark/results/<group>.json.
    Bench {
        #[command(subcommand)]
        group: BenchGroup,
    },
    /// Inspect or verify the transaction log of a data directory.
    Log {
        #[command(subcommand)]
        cmd: cmd_log::LogCmd,
    },
    /// Create or verify checkpoints of a data directory.
    Checkpoint {
        #[command(subcommand)]
        cmd: cmd_checkpoint::CheckpointCmd,
    },
    /// Recover a data directory and report what recovery found.
    Recover(cmd_recover::RecoverArgs),
    /// Rebuild a past state (read-only) at an LSN or a time.
    Replay(cmd_replay::ReplayArgs),
}

#[derive(Subcommand)]
enum BenchGroup {
    /// The page allocator: allocate+free latency against malloc and
    /// mimalloc, and resident memory of 1M pages of 1 KiB.
    Alloc(bench_alloc::BenchAllocArgs),
    /// Delta apply kernels (scalar, AVX2, AVX-512) against memcpy.
    Delta(bench_delta::BenchDeltaArgs),
    /// The durable log: commits/s against SQLite, append bandwidth against
    /// write(2), recovery replay and checkpoint speed.
    Log(bench_log::BenchLogArgs),
    /// Propagation: updates/s against salsa on the same graphs, the engine's
    /// own cost per recomputed page, topological sort and BFS of the
    /// dependency graph against plain adjacency lists.
    Propagation(bench_propagation::BenchPropagationArgs),
    /// Optimistic transactions/s (low and high contention) and snapshot reads
    /// against a global Mutex<HashMap> and SQLite BEGIN IMMEDIATE.
    Txn(bench_txn::BenchTxnArgs),
    /// Semiring folds and accumulation (scalar, AVX2, AVX-512) against memcpy.
    Semiring(bench_semiring::BenchSemiringArgs),
}

/// Where result files go unless told otherwise: `benchmark/results` under the
/// repository root when run from inside it, else the current directory.
pub fn default_results_dir() -> PathBuf {
    let mut dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    loop {
        if dir.join("benchmark").is_dir() && dir.join("rust").is_dir() {
            return dir.join("benchmark").join("results");
        }
        if !dir.pop() {
            return PathBuf::from("benchmark/results");
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Bench { group } => match group {
            BenchGroup::Alloc(a) => bench_alloc::run(a),
            BenchGroup::Delta(a) => bench_delta::run(a),
            BenchGroup::Log(a) => bench_log::run(a),
            BenchGroup::Propagation(a) => bench_propagation::run(a),
            BenchGroup::Txn(a) => bench_txn::run(a),
            BenchGroup::Semiring(a) => bench_semiring::run(a),
        },
        Command::Log { cmd } => cmd_log::run(cmd),
        Command::Checkpoint { cmd } => cmd_checkpoint::run(cmd),
        Command::Recover(a) => cmd_recover::run(a),
        Command::Replay(a) => cmd_replay::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mmsb: error: {e}");
            ExitCode::FAILURE
        }
    }
}
