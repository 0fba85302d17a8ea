#!/usr/bin/env bash
# CI entry point for the Julia package. Without Julia (our build machines) it
# checks the sources statically; with `julia` on PATH it also runs the tests.
#
#   1. builds libmmsb if needed (cargo build --release -p mmsb-capi)
#   2. installs the pinned parser for the checker if missing
#   3. src/LibMMSB.jl is fresh         (scripts/gen_libmmsb_jl.py --check)
#   4. the checker catches known bugs  (scripts/check_julia.py --self-test)
#   5. the package passes the checker  (scripts/check_julia.py)
#   6. if julia is on PATH: Pkg.build() and Pkg.test()
set -euo pipefail
cd "$(dirname "$0")/.."

TREE_SITTER_VERSION=0.24.0
TREE_SITTER_JULIA_VERSION=0.23.1
PYTHON=${PYTHON:-python3}

case "$(uname -s)" in
  Darwin) ext=dylib ;;
  *) ext=so ;;
esac
LIB=${MMSB_LIB:-${CARGO_TARGET_DIR:-$PWD/rust/target}/release/libmmsb.$ext}

if [ -z "${MMSB_LIB:-}" ]; then
  echo "== building libmmsb (cargo build --release -p mmsb-capi)"
  (cd rust && cargo build --release -p mmsb-capi)
fi
[ -f "$LIB" ] || { echo "julia-check: $LIB does not exist" >&2; exit 2; }

if ! "$PYTHON" - <<PY 2>/dev/null
import importlib.metadata as m, sys
ok = (m.version("tree-sitter") == "$TREE_SITTER_VERSION"
      and m.version("tree-sitter-julia") == "$TREE_SITTER_JULIA_VERSION")
sys.exit(0 if ok else 1)
PY
then
  echo "== installing tree-sitter==$TREE_SITTER_VERSION tree-sitter-julia==$TREE_SITTER_JULIA_VERSION"
  "$PYTHON" -m pip install --quiet "tree-sitter==$TREE_SITTER_VERSION" \
    "tree-sitter-julia==$TREE_SITTER_JULIA_VERSION"
fi

echo "== src/LibMMSB.jl is generated from the current header"
"$PYTHON" scripts/gen_libmmsb_jl.py --check

echo "== checker self-test"
"$PYTHON" scripts/check_julia.py --self-test --lib "$LIB"

echo "== static checks of the Julia package"
"$PYTHON" scripts/check_julia.py --lib "$LIB"

if command -v julia >/dev/null 2>&1; then
  echo "== julia: Pkg.build() and Pkg.test()"
  MMSB_LIB="$LIB" julia --project=. -e 'using Pkg; Pkg.build(); Pkg.test()'
else
  echo "== julia is not on PATH: skipped running test/runtests.jl"
fi
