#!/usr/bin/env bash
# Import throughput of `eplb-shard import` against dd of the same bytes on
# the same disk, and the import's peak memory.
#
# Generates a DeepSeek-style FP8 checkpoint of about GIB GiB
# (bench/gen_checkpoint.py: 64 experts x [gate, up, down] 2 MiB each + F32
# scales per MoE layer, ~1 GiB files, an index), then REPS times, each from
# a cold page cache for the checkpoint's files (sync, then dd
# iflag=nocache count=0 on each file: only our files are dropped, not the
# shared machine's cache):
#   dd      every checkpoint file copied to the same disk, bs=4M conv=fsync
#   import  eplb-shard import onto RANKS ranks, 64/RANKS slots each (no
#           redundancy: it writes what it reads), under /usr/bin/time -v
# and prints each run, the medians, the ratio and the peak RSS.
#
# Usage: bench/run_import.sh [BUILD_DIR] [GIB] [REPS] [RANKS]
#   defaults: build, 4 GiB, 3 runs, 8 ranks
# Disk use: 3 x GIB (checkpoint, shards, dd's copy) + 1 GiB, checked with df
# first; the size is scaled down when the disk is short.  Removed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
gib=${2:-4} reps=${3:-3} ranks=${4:-8}
py=/usr/bin/python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/eplb_bench_import.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

avail_gib=$(($(df -Pk "$tmp" | awk 'NR == 2 {print $4}') / 1048576))
if ((3 * gib + 1 > avail_gib)); then
  gib=$(((avail_gib - 1) / 3))
  ((gib >= 1)) || { echo "run_import: only ${avail_gib} GiB free in $tmp" >&2; exit 1; }
  echo "# disk short (${avail_gib} GiB free): scaled down to ${gib} GiB"
fi
"$py" "$root/bench/gen_checkpoint.py" "$tmp/ckpt" "$gib" | sed 's/^/# /'
files=("$tmp"/ckpt/*.safetensors)
bytes=$(stat -c %s "${files[@]}" | awk '{s += $1} END {printf "%.0f", s}')

cold() { # cold FILES...: written back, and out of the page cache
  sync
  for f in "$@"; do dd if="$f" iflag=nocache count=0 status=none; done
}
now() { date +%s.%N; }

printf '# %s: %d files, %d bytes; %d ranks x %d slots; %s\n' "$(hostname)" \
  "${#files[@]}" "$bytes" "$ranks" $((64 / ranks)) "$(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-4s %12s %12s %12s %14s\n' run dd_MB/s import_MB/s ratio peak_RSS_MiB
dd_all=() imp_all=() rss_all=()
for ((i = 1; i <= reps; i++)); do
  rm -rf "$tmp/dd" "$tmp/shards" && mkdir "$tmp/dd"
  cold "${files[@]}"
  t0=$(now)
  for f in "${files[@]}"; do
    dd if="$f" of="$tmp/dd/${f##*/}" bs=4M conv=fsync status=none
  done
  t1=$(now)
  rm -rf "$tmp/dd"
  cold "${files[@]}"
  t2=$(now)
  /usr/bin/time -v -o "$tmp/time.txt" "$build/bin/eplb-shard" import --checkpoint "$tmp/ckpt" \
    --dir "$tmp/shards" --ranks "$ranks" --slots-per-rank $((64 / ranks)) > "$tmp/imp.txt"
  t3=$(now)
  read_b=$(sed -n 's/.*checkpoint.*: \([0-9.]*\) \([kMGT]*B\) read.*/\1 \2/p' "$tmp/imp.txt")
  rss=$(awk -F: '/Maximum resident set size/ {print int($2 / 1024)}' "$tmp/time.txt")
  ddr=$(echo "$bytes $t0 $t1" | awk '{printf "%.0f", $1 / ($3 - $2) / 1e6}')
  impr=$(echo "$bytes $t2 $t3" | awk '{printf "%.0f", $1 / ($3 - $2) / 1e6}')
  printf '%-4d %12s %12s %12s %14s\n' "$i" "$ddr" "$impr" \
    "$(echo "$impr $ddr" | awk '{printf "%.2f", $1 / $2}')" "$rss"
  dd_all+=("$ddr") imp_all+=("$impr") rss_all+=("$rss")
  [[ $i == 1 ]] && sed 's/^/# /' "$tmp/imp.txt" && echo "# (the import read $read_b)"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
md=$(median "${dd_all[@]}") mi=$(median "${imp_all[@]}")
printf 'median: dd %s MB/s, import %s MB/s: import at %s%% of dd; peak RSS %s MiB (checkpoint %d MiB)\n' \
  "$md" "$mi" "$(echo "$mi $md" | awk '{printf "%.0f", 100 * $1 / $2}')" \
  "$(median "${rss_all[@]}")" $((bytes >> 20))
