#!/usr/bin/env bash
# End-to-end benchmark of `recoup run`: a generated incident with USERS claimants x 3 assets
# (default 1,000,000), release build. Each run starts from a fresh database and output
# directory and is timed by GNU time (wall, user, system, peak RSS); the input is generated
# anew before every run, as a team's run reads files it has just been handed. Prints every
# run, then the median wall time and the largest peak RSS against the targets of issue 2
# (<= 10 s, <= 1.5 GiB), the stage timings (RECOUP_TIMINGS) of the run nearest the median,
# and whether every run wrote byte-identical files (md5 of each).
#
# Usage: benches/pipeline_1m.sh [USERS] [--no-store] [--runs N]     (N defaults to 5)
set -euo pipefail
cd "$(dirname "$0")/.."
users=1000000
store_flag=""
runs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --no-store) store_flag="--no-store" ;;
    --runs) runs="${2:?--runs takes a count}"; shift ;;
    [0-9]*) users="$1" ;;
    *) echo "usage: $0 [USERS] [--no-store] [--runs N]" >&2; exit 2 ;;
  esac
  shift
done
case "$runs" in
  ''|*[!0-9]*|0) echo "--runs takes a count of at least 1, got '$runs'" >&2; exit 2 ;;
esac
cargo build --release --quiet --locked --bin recoup --example gen_incident
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
for i in $(seq 1 "$runs"); do
  rm -rf "$dir/in" "$dir/out" "$dir"/bench.db*
  ./target/release/examples/gen_incident "$dir/in" --users "$users" --assets 3 >/dev/null 2>&1
  [ "$i" = 1 ] && echo "input: $(du -sh "$dir/in" | cut -f1) in $(ls "$dir/in" | wc -l) files, $users users x 3 assets; $runs runs"
  RECOUP_TIMINGS=1 /usr/bin/time -o "$dir/time.$i" -f '%e %U %S %M' \
    ./target/release/recoup -q --db "$dir/bench.db" run "$dir/in/incident.toml" --out "$dir/out" $store_flag \
    2> "$dir/stages.$i"
  (cd "$dir/out" && md5sum * | md5sum | cut -d' ' -f1) > "$dir/md5.$i"
  read -r wall user sys rss < "$dir/time.$i"
  printf 'run %2d: wall %6.2f s, user %6.2f s, sys %5.2f s, peak RSS %8d KiB, outputs %s\n' \
    "$i" "$wall" "$user" "$sys" "$rss" "$(cat "$dir/md5.$i")"
done
echo "output: $(du -sh "$dir/out" | cut -f1)"
# The median of an even count is the mean of the middle two.
median=$(cat "$dir"/time.* | cut -d' ' -f1 | sort -g | awk '{ v[NR] = $1 } END {
  if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
peak=$(cat "$dir"/time.* | cut -d' ' -f4 | sort -g | tail -1)
nearest=$(for i in $(seq 1 "$runs"); do
  awk -v m="$median" -v i="$i" '{ d = $1 - m; if (d < 0) d = -d; print d, i }' "$dir/time.$i"
done | sort -g | head -1 | cut -d' ' -f2)
echo "stage timings of run $nearest (nearest the median):"
sed 's/^/  /' "$dir/stages.$nearest"
# The targets are for a million claimants; other sizes print the figures alone.
awk -v m="$median" -v p="$peak" -v n="$runs" -v u="$users" 'BEGIN {
  if (u == 1000000) {
    tw = sprintf(" (target <= 10 s: %s)", m <= 10 ? "met" : "NOT met")
    tp = sprintf(" (target <= 1.5 GiB: %s)", p <= 1.5 * 1048576 ? "met" : "NOT met")
  }
  printf "median wall %.2f s over %d runs%s; largest peak RSS %d KiB = %.2f GiB%s\n", m, n, tw, p, p / 1048576, tp }'
if [ "$(sort -u "$dir"/md5.* | wc -l)" = 1 ]; then
  echo "outputs byte-identical across the runs"
else
  echo "outputs DIFFER between runs" >&2
  exit 1
fi
