//! `mmsb bench delta`: apply kernels against memcpy of the same bytes.

use clap::Args;

/// Arguments of `mmsb bench delta`.
#[derive(Args)]
pub struct BenchDeltaArgs {
    /// Region size in MiB.
    #[arg(long, default_value_t = 64)]
    pub region_mib: usize,
}

/// Runs the benchmark.
pub fn run(_args: BenchDeltaArgs) -> Result<(), String> {
    Err("the delta benchmark is not built yet".into())
}
