#!/usr/bin/env bash
# Side-by-side benchmark: recoup's governance-capture Monte Carlo against radCAD 0.14.0 on the
# reference model of shared/bench/radcad_reference.py (models/governance/radcad_reference.toml),
# in the same run. Prints both results, the speed ratio, and whether recoup's P(capture) falls
# inside radCAD's Wilson 99% interval.
#
#   benches/sim_vs_radcad.sh            # 10,000 runs × 100 days each, plus a 10M-run throughput run
#   RUNS=10000 BIG=10000000 SHARED=../shared VENV=.venv-radcad benches/sim_vs_radcad.sh
#
# Installs radCAD into $VENV if missing (radcad 0.14.0 needs typing_extensions, which its wheel
# does not declare). Builds recoup in release mode (honours CARGO_TARGET_DIR).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED:-$REPO/../shared}"
VENV="${VENV:-$REPO/.venv-radcad}"
RUNS="${RUNS:-10000}"
BIG="${BIG:-10000000}"
REF="$SHARED/bench/radcad_reference.py"
MODEL="$REPO/models/governance/radcad_reference.toml"
[ -f "$REF" ] || { echo "missing $REF (set SHARED=path/to/shared)" >&2; exit 2; }

if ! "$VENV/bin/python" -c 'import radcad, typing_extensions, numpy' 2>/dev/null; then
  echo "installing radCAD 0.14.0 into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q radcad==0.14.0 typing_extensions numpy
fi

(cd "$REPO" && cargo build --release --quiet --bin recoup)
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/recoup"

TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
echo "radCAD: $RUNS runs × 100 days, SINGLE_PROCESS, no deepcopy, substeps dropped" >&2
"$VENV/bin/python" "$REF" --mode radcad --runs "$RUNS" --backend SINGLE_PROCESS --no-deepcopy --drop-substeps > "$TMP/radcad.json"
echo "recoup: $RUNS runs × 100 days" >&2
"$BIN" --json simulate "$MODEL" --trials "$RUNS" --seed 1 --no-sweep > "$TMP/recoup.json" 2> "$TMP/recoup.err"
echo "recoup: $BIG runs × 100 days (throughput)" >&2
"$BIN" --json simulate "$MODEL" --trials "$BIG" --seed 1 --no-sweep > "$TMP/recoup_big.json" 2> "$TMP/recoup_big.err"

python3 - "$TMP" <<'PY'
import json, math, re, sys
d = sys.argv[1]
rc = json.load(open(f"{d}/radcad.json"))
rs = json.load(open(f"{d}/recoup.json"))
rb = json.load(open(f"{d}/recoup_big.json"))
def secs(path):
    m = re.search(r"in ([0-9.]+) s", open(path).read())
    return float(m.group(1))
def wilson(k, n, z=2.575829303548901):
    p = k / n; dd = 1 + z*z/n; c = (p + z*z/(2*n)) / dd
    h = z * math.sqrt(p*(1-p)/n + z*z/(4*n*n)) / dd
    return c - h, c + h
lo, hi = wilson(rc["captures"], rc["n"])
t_small, t_big = secs(f"{d}/recoup.err"), secs(f"{d}/recoup_big.err")
r_rc = rc["runs_per_s"]
r_small = rs["trials"] / t_small
r_big = rb["trials"] / t_big
p = rs["p_capture"]["p"]
print(f"radCAD 0.14.0 : {rc['n']} runs in {rc['wall_s']} s = {r_rc:,.0f} runs/s; P(capture) = {rc['p_capture']:.4f}, Wilson 99% [{lo:.4f}, {hi:.4f}]")
print(f"recoup        : {rs['trials']} runs in {t_small:.4f} s = {r_small:,.0f} runs/s; P(capture) = {p:.4f} ({rs['p_capture']['count']} of {rs['trials']}); exact {rs['exact_p_capture']:.4f}")
print(f"recoup (big)  : {rb['trials']} runs in {t_big:.3f} s = {r_big:,.0f} runs/s; P(capture) = {rb['p_capture']['p']:.5f}, Wilson 99% [{rb['p_capture']['wilson99'][0]:.5f}, {rb['p_capture']['wilson99'][1]:.5f}]")
print(f"speed ratio   : {r_small / r_rc:,.0f}x at {rs['trials']} runs, {r_big / r_rc:,.0f}x at {rb['trials']} runs")
inside = lo <= p <= hi
print(f"recoup P(capture) inside radCAD's 99% interval: {'yes' if inside else 'NO'}")
print(f"exact P(capture) inside radCAD's 99% interval: {'yes' if lo <= rs['exact_p_capture'] <= hi else 'NO'}")
sys.exit(0 if inside else 1)
PY
