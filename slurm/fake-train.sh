#!/usr/bin/env bash
# A stand-in trainer for slurm/train-and-rebalance.sbatch: every task
# (SLURM_PROCID = rank) writes cumulative MindSpeed-RL statistics to
# EPLB_STATS (%r = rank) once per step, atomically (temporary file, then
# rename), as a trainer would, and says which map generation it would reload.
#   EPLB_FAKE_STEPS (default 5), EPLB_FAKE_STEP_SECONDS (default 1),
#   EPLB_SYNTH (default eplb-synth-stats), EPLB_FAKE_LAYERS (6),
#   EPLB_FAKE_EXPERTS (16)
set -euo pipefail
rank=${SLURM_PROCID:-0}
steps=${EPLB_FAKE_STEPS:-5}
out=${EPLB_STATS:-stats/rank_%r.json}
out=${out//%r/$rank}
mkdir -p "$(dirname "$out")"
for ((s = 1; s <= steps; s++)); do
  # Counters only grow: step s has seen s * 10000 tokens per layer.
  "${EPLB_SYNTH:-eplb-synth-stats}" --out "$out.tmp%r" --ranks 1 \
    --layers "${EPLB_FAKE_LAYERS:-6}" --experts "${EPLB_FAKE_EXPERTS:-16}" \
    --tokens $((s * 10000)) --seed $((rank + 1))
  mv -f "$out.tmp0" "$out"
  if [ "$rank" = 0 ]; then
    gen=none
    [ -f "${EPLB_OUTPUT:-out/expert_map.json}" ] && gen=present
    echo "fake-train: step $s/$steps, statistics written, map $gen"
  fi
  sleep "${EPLB_FAKE_STEP_SECONDS:-1}"
done
