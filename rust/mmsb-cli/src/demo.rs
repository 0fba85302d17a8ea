//! `mmsb demo`: the main job.

use clap::Args;

/// Arguments of `mmsb demo`.
#[derive(Args)]
pub struct DemoArgs {}

/// Runs the demo.
pub fn run(_args: DemoArgs) -> Result<(), String> {
    Err("the demo is not built yet".into())
}
