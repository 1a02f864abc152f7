#!/usr/bin/env bash
# End-to-end benchmark of `recoup run`: a generated incident with N claimants x 3 assets
# (default 1,000,000), release build, stage timings (RECOUP_TIMINGS), wall time and peak RSS
# from GNU time. Usage: benches/pipeline_1m.sh [USERS] [--no-store]
set -euo pipefail
cd "$(dirname "$0")/.."
users="${1:-1000000}"
store_flag="${2:-}"
cargo build --release --quiet --bin recoup --example gen_incident
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
./target/release/examples/gen_incident "$dir/in" --users "$users" --assets 3 2>/dev/null
echo "input: $(du -sh "$dir/in" | cut -f1) in $(ls "$dir/in" | wc -l) files, $users users x 3 assets"
RECOUP_TIMINGS=1 /usr/bin/time -f 'wall %e s, peak RSS %M KiB' \
  ./target/release/recoup -q --db "$dir/bench.db" run "$dir/in/incident.toml" --out "$dir/out" $store_flag
echo "output: $(du -sh "$dir/out" | cut -f1)"
