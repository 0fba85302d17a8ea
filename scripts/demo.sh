#!/usr/bin/env bash
# Builds the mmsb CLI (release) and runs the main job, `mmsb demo`, on the
# embedded default store. Extra arguments go to `mmsb demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
(cd rust && cargo build --release --locked -p mmsb-cli)
exec rust/target/release/mmsb demo "$@"
