#!/usr/bin/env bash
# test_slurm: a real single-node Slurm on localhost runs eplb's job scripts.
#
# Starts munged, slurmctld and slurmd (Debian's munge and slurm-wlm) in a
# temporary directory, configured without cgroups (proctrack/linuxproc,
# task/none), without accounting, with its own munge key, socket and ports,
# so nothing of the machine's own configuration is used or changed.  Then
# submits slurm/*.sbatch with `sbatch`, waits (bounded) and checks what the jobs wrote:
#   srun      eplb-sync.sbatch, srun --mpi=pmix, 4 tasks on 2 CPUs (-O): the
#             map equals eplb-plan's on the same files, the summary is there
#   mpirun    the same job with EPLB_LAUNCHER=mpirun, TensorRT-LLM YAML
#   shards    with EPLB_SHARDS (and the shards' shape): the weights moved,
#             eplb-shard verify proves every byte against the new map
#   fail      rank 1's statistics missing: the job exits non-zero, the log
#             names the rank and the file, no map is written
#   usage     an unknown EPLB_LAUNCHER: the job exits 2 and says why
#   train     train-and-rebalance.sbatch: a stand-in trainer beside
#             eplb-sync --watch in one allocation; eplb rebalances, then
#             stops cleanly on SIGTERM when the trainer ends
#   train_short  the same with a trainer that ends at once
# Every wait is bounded and every command has a timeout; the trap stops
# every daemon this script started and removes the directory, even on
# failure.  Missing Slurm or munge is a failure, not a skip.
#
# Usage: run.sh BIN_DIR REPO_DIR WORK_DIR [CASE ...]   (default: every case)
#   EPLB_SLURM_KEEP=1 keeps the directory (logs, job outputs) after success.
# Exit: 0 when every case passed; 1 with "test_slurm: error: ..." otherwise.
set -euo pipefail

bin=$(cd "$1" && pwd) repo=$(cd "$2" && pwd) work=$3
shift 3
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(srun mpirun shards fail usage train train_short)

JOB_TIMEOUT=${EPLB_SLURM_JOB_TIMEOUT:-120} # seconds a job may take, submit to end
T="timeout 30"                              # any other command

tmp=""
pids=()

log() { echo "test_slurm: $*"; }

# dump_logs: the daemons' logs, for a failure's diagnosis.
dump_logs() {
  [ -n "$tmp" ] || return 0
  for f in "$tmp"/munged.log "$tmp"/slurmctld.log "$tmp"/slurmd.log; do
    [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 20 "$f" >&2; }
  done
  return 0
}

fail() {
  echo "test_slurm: error: $*" >&2
  dump_logs
  exit 1
}

# cleanup: cancels our jobs, stops the daemons we started (TERM, then KILL
# after 10 s), removes the directory.  Runs on every exit.
cleanup() {
  local rc=$?
  set +e
  if [ -n "$tmp" ] && [ -f "$tmp/slurm.conf" ]; then
    $T scancel --quiet --user="$(id -un)" >/dev/null 2>&1
    for _ in $(seq 50); do
      [ -z "$($T squeue -h 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [ -n "$tmp" ] && [ "$rc" -eq 0 ] && [ "${EPLB_SLURM_KEEP:-0}" != 1 ]; then
    rm -rf "$tmp"
  elif [ -n "$tmp" ]; then
    echo "test_slurm: kept $tmp for inspection" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# --- Prerequisites.  Without root or Slurm the test is skipped (exit 77,
# which CTest shows as "Skipped", with the reason printed), so a plain
# `ctest` in a new clone is green; scripts/test.sh sets
# EPLB_REQUIRE_SLURM=1 (it installs Slurm), and then a missing piece fails.
skip() {
  if [ "${EPLB_REQUIRE_SLURM:-0}" = 1 ]; then
    fail "$* (EPLB_REQUIRE_SLURM=1)"
  fi
  echo "test_slurm: skipped: $*" >&2
  exit 77
}
[ "$(id -u)" = 0 ] || skip "the test Slurm runs its daemons as root (SlurmUser=root, munged --force): run it as root"
for c in munged slurmctld slurmd sbatch squeue sinfo scontrol scancel srun; do
  command -v "$c" >/dev/null 2>&1 || skip "'$c' not found: install Debian's slurm-wlm and munge" \
    "(scripts/setup.sh does it unless EPLB_WITH_SLURM=0)"
done
plugdir=$(dirname "$(dpkg -L slurm-wlm-basic-plugins 2>/dev/null | grep -m1 '/mpi_pmix.so$' || true)")
[ -f "$plugdir/mpi_pmix.so" ] || skip "Slurm's mpi_pmix plugin not found: install Debian's slurm-wlm-basic-plugins"
for p in eplb-sync eplb-plan eplb-synth-stats eplb-shard; do
  [ -x "$bin/$p" ] || fail "$bin/$p not found: build eplb first"
done

mkdir -p "$work"
tmp=$(mktemp -d "$(cd "$work" && pwd)/slurm.XXXXXX")
chmod 700 "$tmp"
node=$(hostname -s)
cpus=$(nproc)

# free_port: a TCP port nobody listens on (random in 20000..39999).
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  fail "no free TCP port found for Slurm"
}

start_munge() {
  dd if=/dev/urandom of="$tmp/munge.key" bs=1024 count=1 status=none
  chmod 600 "$tmp/munge.key"
  munged -F --force --socket="$tmp/munge.sock" --key-file="$tmp/munge.key" \
    --pid-file="$tmp/munged.pid" --log-file="$tmp/munged.log" \
    --seed-file="$tmp/munged.seed" >"$tmp/munged.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do [ -S "$tmp/munge.sock" ] && return 0; sleep 0.1; done
  cat "$tmp/munged.out" >&2
  fail "munged did not create $tmp/munge.sock within 5 s"
}

write_conf() {
  local ctld_port slurmd_port
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
  mkdir -p "$tmp/state" "$tmp/spool"
  : >"$tmp/plugstack.conf"
  cat >"$tmp/slurm.conf" <<EOF
ClusterName=eplbtest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge.sock
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
PlugStackConfig=$tmp/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MailProg=/bin/true
KillWait=5
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$tmp/slurm.conf
}

start_slurm() {
  slurmctld -D -i -f "$SLURM_CONF" >"$tmp/slurmctld.out" 2>&1 &
  pids+=($!)
  slurmd -D -N "$node" -f "$SLURM_CONF" >"$tmp/slurmd.out" 2>&1 &
  pids+=($!)
  local state=""
  for _ in $(seq 150); do
    state=$($T sinfo -h -n "$node" -o %t 2>/dev/null || true)
    [ "$state" = idle ] && return 0
    sleep 0.2
  done
  cat "$tmp/slurmctld.out" "$tmp/slurmd.out" >&2
  fail "node $node is not idle after 30 s (state '$state')"
}

# submit NAME SCRIPT [sbatch options...]: runs the job to its end in
# $tmp/NAME (the submit directory), records its exit code in $tmp/NAME/rc
# and its job id in $tmp/NAME/jobid.  The job's environment is this one.
# Polls every 0.2 s for at most JOB_TIMEOUT seconds (sbatch --wait polls
# every few seconds only).
submit() {
  local name=$1 script=$2 id st="" t0
  shift 2
  mkdir -p "$tmp/$name"
  t0=$(date +%s.%N)
  id=$(cd "$tmp/$name" && $T sbatch --parsable "$@" "$script" 2>"$tmp/$name/sbatch.err") \
    || { cat "$tmp/$name/sbatch.err" >&2; fail "$name: sbatch $script failed"; }
  id=${id%%;*}
  echo "$id" >"$tmp/$name/jobid"
  for ((i = 0; i < JOB_TIMEOUT * 5; i++)); do
    st=$($T scontrol show job -o "$id" 2>/dev/null || true)
    case "$st" in *JobState=COMPLETED*|*JobState=FAILED*|*JobState=CANCELLED*|\
                  *JobState=TIMEOUT*|*JobState=NODE_FAIL*|*JobState=OUT_OF_MEMORY*) break ;; esac
    sleep 0.2
  done
  case "$st" in *JobState=COMPLETED*|*JobState=FAILED*) ;; *)
    fail "$name: job $id not finished after $JOB_TIMEOUT s ($(grep -o 'JobState=[A-Z_]*' <<<"$st"))" ;;
  esac
  # ExitCode=<status>:<signal>; a signal counts as a failure.
  local ec
  ec=$(grep -o 'ExitCode=[0-9]*:[0-9]*' <<<"$st" | cut -d= -f2)
  if [ "${ec#*:}" != 0 ]; then echo 128 >"$tmp/$name/rc"; else echo "${ec%%:*}" >"$tmp/$name/rc"; fi
  log "$name: job $id exited $(cat "$tmp/$name/rc") in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
}

# job_log NAME: the job's --output file (%x-%j.out).
job_log() {
  local f=("$tmp/$1"/*-"$(cat "$tmp/$1/jobid")".out)
  [ -f "${f[0]}" ] || fail "$1: the job wrote no %x-%j.out log in $tmp/$1"
  echo "${f[0]}"
}

expect_ok() { # expect_ok NAME: exit 0, else show the job's log
  if [ "$(cat "$tmp/$1/rc")" != 0 ]; then
    cat "$tmp/$1/sbatch.err" >&2
    cat "$(job_log "$1")" >&2 || true
    fail "$1: the job exited $(cat "$tmp/$1/rc"), expected 0 (its log is above)"
  fi
}

# make_stats DIR RANKS FORMAT: synthetic per-rank statistics in DIR.
make_stats() {
  mkdir -p "$1"
  $T "$bin/eplb-synth-stats" --out "$1/rank_%r.json" --ranks "$2" --layers 6 \
    --experts 16 --tokens 5000 --format "$3" --seed 7 || fail "eplb-synth-stats failed"
}

# same_as_plan NAME MAP FORMAT RANKS SLOTS GPUS: MAP equals eplb-plan's on
# the summed statistics of NAME.
same_as_plan() {
  local d=$tmp/$1 files=()
  for ((r = 0; r < $4; r++)); do files+=(--stats "$d/stats/rank_$r.json"); done
  $T "$bin/eplb-plan" "${files[@]}" --num-slots "$5" --num-gpus "$6" \
    --output-format "$3" --output "$d/expected.$3" >/dev/null \
    || fail "$1: eplb-plan on the same statistics failed"
  cmp -s "$2" "$d/expected.$3" || fail "$1: $2 differs from eplb-plan's map $d/expected.$3"
}

case_srun() {
  make_stats "$tmp/srun/stats" 4 mindspeed
  EPLB_SYNC=$bin/eplb-sync EPLB_NUM_SLOTS=20 EPLB_NUM_GPUS=4 \
    submit srun "$repo/slurm/eplb-sync.sbatch" --ntasks=4 --overcommit
  expect_ok srun
  local d=$tmp/srun
  [ -s "$d/out/expert_map.json" ] || fail "srun: no map at $d/out/expert_map.json"
  grep -q '"ranks":[[:space:]]*4' "$d/out/summary.json" || fail "srun: summary without \"ranks\": 4"
  grep -q '"generation":[[:space:]]*1' "$d/out/summary.json" || fail "srun: summary without generation 1"
  grep -q 'launcher srun' "$(job_log srun)" || fail "srun: the job log does not say it used srun"
  same_as_plan srun "$d/out/expert_map.json" expert-map 4 20 4
}

case_mpirun() {
  make_stats "$tmp/mpirun/stats" 2 sglang
  EPLB_SYNC=$bin/eplb-sync EPLB_LAUNCHER=mpirun EPLB_NUM_SLOTS=24 EPLB_NUM_GPUS=8 \
    EPLB_OUTPUT=out/moe_load_balancer.yaml \
    submit mpirun "$repo/slurm/eplb-sync.sbatch" --ntasks=2
  expect_ok mpirun
  grep -q 'launcher mpirun' "$(job_log mpirun)" || fail "mpirun: the job log does not say it used mpirun"
  same_as_plan mpirun "$tmp/mpirun/out/moe_load_balancer.yaml" trtllm-yaml 2 24 8
}

case_shards() {
  local d=$tmp/shards
  make_stats "$d/stats" 4 mindspeed
  $T "$bin/eplb-shard" create --dir "$d/shards" --ranks 4 --layers 6 --experts 16 \
    --slots-per-rank 5 --dataset w:float32:8 --dataset s:uint8:3 --quiet \
    || fail "shards: eplb-shard create failed"
  # No EPLB_NUM_SLOTS/GPUS: the shards' shape (20 slots on 4 GPUs).
  EPLB_SYNC=$bin/eplb-sync EPLB_SHARDS=shards \
    submit shards "$repo/slurm/eplb-sync.sbatch" --ntasks=4 --overcommit
  expect_ok shards
  $T "$bin/eplb-shard" verify --dir "$d/shards" --expect-map "$d/out/expert_map.json" \
    >"$d/verify.out" 2>&1 || { cat "$d/verify.out" >&2; fail "shards: eplb-shard verify failed after the job"; }
  grep -q '"experts_received"' "$d/out/summary.json" || fail "shards: summary without experts_received"
  grep -q '"slots":[[:space:]]*20' "$d/out/summary.json" || fail "shards: the plan did not take the shards' 20 slots"
}

case_fail() {
  local d=$tmp/fail
  make_stats "$d/stats" 2 mindspeed
  rm "$d/stats/rank_1.json"
  EPLB_SYNC=$bin/eplb-sync EPLB_NUM_SLOTS=20 EPLB_NUM_GPUS=4 \
    submit fail "$repo/slurm/eplb-sync.sbatch" --ntasks=2
  [ "$(cat "$d/rc")" != 0 ] || fail "fail: the job exited 0 although rank 1's statistics are missing"
  local lg
  lg=$(job_log fail)
  grep -q 'eplb-sync: error: .*rank 1.*rank_1.json' "$lg" \
    || { cat "$lg" >&2; fail "fail: the job log does not name rank 1 and rank_1.json (log above)"; }
  grep -q 'eplb-sync.sbatch: error: eplb-sync exited' "$lg" || fail "fail: the job script did not report the failure"
  [ ! -e "$d/out/expert_map.json" ] || fail "fail: a map was written although the job failed"
}

case_usage() {
  EPLB_SYNC=$bin/eplb-sync EPLB_LAUNCHER=pbsdsh \
    submit usage "$repo/slurm/eplb-sync.sbatch" --ntasks=1
  [ "$(cat "$tmp/usage/rc")" = 2 ] || fail "usage: an unknown EPLB_LAUNCHER exited $(cat "$tmp/usage/rc"), expected 2"
  grep -q "EPLB_LAUNCHER='pbsdsh' is unknown" "$(job_log usage)" || fail "usage: the job log does not name the bad launcher"
}

# train_case NAME STEP_SECONDS: train-and-rebalance.sbatch with fake-train.sh
# (4 steps of STEP_SECONDS) beside eplb-sync --watch every 0.5 s.
train_case() {
  local d=$tmp/$1
  EPLB_SYNC=$bin/eplb-sync EPLB_SYNTH=$bin/eplb-synth-stats EPLB_FAKE_STEPS=4 \
    EPLB_FAKE_STEP_SECONDS=$2 \
    EPLB_TRAIN_CMD="$repo/slurm/fake-train.sh" EPLB_NUM_SLOTS=20 EPLB_NUM_GPUS=4 \
    EPLB_INTERVAL=0.5 EPLB_STATS_WAIT=30 EPLB_STOP_WAIT=30 \
    submit "$1" "$repo/slurm/train-and-rebalance.sbatch" --ntasks=2
  expect_ok "$1"
  local lg
  lg=$(job_log "$1")
  [ -s "$d/out/expert_map.json" ] || { cat "$lg" >&2; fail "$1: no map at $d/out/expert_map.json (log above)"; }
  grep -q 'fake-train: step 4/4' "$lg" || { cat "$lg" >&2; fail "$1: the trainer did not run its 4 steps (log above)"; }
  grep -q 'eplb: round 1: .*rebalanced to generation 1' "$lg" \
    || { cat "$lg" >&2; fail "$1: eplb's first round did not rebalance (log above)"; }
  grep -q '"rebalances":[[:space:]]*[1-9]' "$d/out/watch.json" || fail "$1: watch.json counts no rebalance"
  grep -q 'eplb: watch ended after' "$lg" || { cat "$lg" >&2; fail "$1: eplb did not end on SIGTERM (log above)"; }
  grep -q 'trainer and eplb-sync done' "$lg" || fail "$1: the job script did not finish cleanly"
}

# train: a trainer that runs for seconds, eplb rounds while it runs.
case_train() { train_case train 1; }
# train_short: a trainer that ends at once; eplb must still start, do its
# round and stop cleanly (not be signalled while it starts up).
case_train_short() { train_case train_short 0; }

log "starting munged, slurmctld, slurmd in $tmp (node $node, $cpus CPUs)"
t_start=$(date +%s.%N)
start_munge
write_conf
start_slurm
log "Slurm up in $(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"

# The job's environment: Open MPI as root on a 2-core machine (mpirun case).
. "$repo/scripts/env.sh"

for c in "${cases[@]}"; do
  declare -F "case_$c" >/dev/null || fail "unknown case '$c'"
  "case_$c"
  log "$c: ok"
done
log "ok (${cases[*]})"
