#!/usr/bin/env bash
# Regenerates rust/mmsb-capi/include/mmsb.h with cbindgen, then src/LibMMSB.jl from it.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd rust && MMSB_UPDATE_HEADER=1 cargo test -q -p mmsb-capi --test header_is_fresh)
if [ -f scripts/gen_libmmsb_jl.py ]; then python3 scripts/gen_libmmsb_jl.py; fi
echo "regenerated rust/mmsb-capi/include/mmsb.h"
