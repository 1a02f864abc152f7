#!/usr/bin/env bash
# Side by side: OpenZeppelin merkle-tree 1.0.8 (JS) vs recoup on the same N leaves
# (shared/bench/oz_merkle_bench.js), both `of()` + every proof. Checks the roots are equal
# and prints the ratio. Then the 1M-leaf build against the keccak floor on two threads.
#
#   benches/merkle_vs_oz.sh [N=100000] [FLOOR_N=1000000] [RUNS=7]
#
# Needs node and tests/node_modules (`npm install --no-save --prefix tests`), which holds
# @openzeppelin/merkle-tree 1.0.8; shared/ beside the checkout (SHARED to override).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
FLOOR_N=${2:-1000000}
RUNS=${3:-7}
SHARED=${SHARED:-../shared}
JS="$SHARED/bench/oz_merkle_bench.js"
[ -f "$JS" ] || { echo "missing $JS (set SHARED=path/to/shared)" >&2; exit 2; }
[ -d tests/node_modules/@openzeppelin/merkle-tree ] || { echo "missing tests/node_modules: run npm install --no-save --prefix tests" >&2; exit 2; }

cargo bench --bench merkle --no-run >/dev/null 2>&1 || cargo bench --bench merkle --no-run
echo "== recoup, N=$N (all cores: $(nproc))"
RUST=$(cargo bench --bench merkle -q -- oz "$N" 2>/dev/null | tail -1)
echo "$RUST"
echo "== OpenZeppelin merkle-tree 1.0.8 (node $(node --version)), N=$N"
# Resolve the module from tests/node_modules without writing anything into shared/.
JSOUT=$(NODE_PATH="$PWD/tests/node_modules" node "$JS" "$N" 2>/dev/null | tail -1)
echo "$JSOUT"
node -e '
const r = JSON.parse(process.argv[1]), j = JSON.parse(process.argv[2]);
if (r.root !== j.root) { console.error("ROOTS DIFFER", r.root, j.root); process.exit(1); }
const ratio = j.total_ms / r.total_ms;
console.log(`same root ${r.root}; OZ of+getProof ${j.total_ms} ms, recoup ${r.total_ms.toFixed(1)} ms: ${ratio.toFixed(0)}x faster (target >= 200x: ${ratio >= 200 ? "met" : "MISSED"})`);
' "$RUST" "$JSOUT"

echo "== 1M-leaf OZ tree vs keccak floor, 2 threads, median of $RUNS"
FLOOR=$(cargo bench --bench merkle -q -- floor "$FLOOR_N" "$RUNS" 2>/dev/null | tail -1)
echo "$FLOOR"
node -e '
const f = JSON.parse(process.argv[1]);
console.log(`StandardMerkleTree::of_flat ${f.of_over_floor}x floor, build_tree ${f.build_tree_over_floor}x floor (target <= 1.5x: ${f.of_over_floor <= 1.5 ? "met" : "MISSED"})`);
' "$FLOOR"
