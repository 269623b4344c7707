/* cli/eplb_sync.c - `eplb-sync`: every rank reads its histogram, the ranks
 * sum it, rank 0 plans, every rank gets and verifies the same plan, rank 0
 * writes the map.  Run it under mpirun or srun, one process per rank.
 *
 * A thin wrapper over eplb_sync_run_files (eplb/sync.h).  Every rank parses
 * its own command line, and an MPMD launch (`mpiexec -n 1 eplb-sync ... :
 * -n 1 eplb-sync --watch ...`) can give ranks different ones: so before
 * any collective of a mode the ranks agree, in one allgather, on the
 * outcome of parsing, the mode (one run, --watch, --recover) and a key of
 * the options; a rank that differs fails every rank (exit 2) instead of
 * entering other collectives than the rest.  A usage error found by every
 * rank is printed once, by rank 0.  Runtime errors are agreed by the
 * engine: rank 0 prints the one agreed message ("rank 3: stats/rank_3.json:
 * ...") and every rank exits 1, or 2 when the agreed error is a usage one
 * (an output that is a rank's input, options that do not fit the
 * statistics).  With --scenario, every rank reads its files of each
 * workload and the engine balances them all at once
 * (eplb_sync_run_scenario_files).  See docs/sync.md. */
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "cli/cli.h"
#include "eplb/eplb.h"
#include "eplb/migrate.h"
#include "eplb/rebalance.h"
#include "eplb/sync.h"
#include "mpi/watchdog.h"
#include "sync/internal.h"
#include "util/checksum.h"

#define PROG "eplb-sync"

typedef struct {
  const char **stats;
  int num_stats;
  eplb_cli_source_t *scen; /* --scenario PATTERN[@W], in order */
  int num_scen;
  eplb_stats_format_t format;
  eplb_sync_opts_t sync;
  int have_slots, have_gpus, have_ema, have_history;
  int watch, recover;
  eplb_cli_map_opts_t map; /* --mtp-layers, --mtp-from, --allow-duplicates */
  eplb_watch_opts_t w; /* --watch: rounds; plan options copied from sync */
} args_t;

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: mpirun -np R eplb-sync --stats PATTERN --num-slots S --num-gpus "
      "G\n"
      "                              [--output FILE] [options]\n"
      "\n"
      "Every rank reads its own token counts (PATTERN with %%r replaced by "
      "the\n"
      "rank), the ranks sum them (MPI_Allreduce), rank 0 plans where each "
      "expert\n"
      "goes, every rank receives the plan and checksums it, and the ranks "
      "compare\n"
      "checksums so that none runs with a divergent map.  Rank 0 writes the "
      "map.\n"
      "Any failure on any rank fails every rank, naming the rank and the "
      "file.\n"
      "\n"
      "required:\n"
      "  --stats PATTERN      this rank's statistics, %%r = rank "
      "(stats/rank_%%r.json);\n"
      "                       repeat to sum several files per rank (1..%d);\n"
      "                       without %%r only with one rank. MindSpeed-RL or "
      "SGLang\n"
      "                       (see eplb-plan --help); SGLang's all-zero dense\n"
      "                       layers are skipped\n"
      "  --num-slots S        physical expert slots per layer over all GPUs,\n"
      "                       %d..%d, at least the number of experts, a "
      "multiple\n"
      "                       of G\n"
      "  --num-gpus G         GPUs of the plan, %d..%d (need not equal the "
      "ranks)\n"
      "options:\n"
      "  --output FILE        the map rank 0 writes (atomically)\n"
      "  --output-format F    expert-map, trtllm-yaml, sglang or deepseek "
      "(default:\n"
      "                       trtllm-yaml for a .yaml/.yml FILE, else "
      "expert-map)\n"
      "  --summary FILE       JSON summary: generation, imbalance "
      "before/after,\n"
      "                       seconds per phase (see docs/sync.md)\n"
      "  --generation N       generation of the current placement, 0..%llu\n"
      "                       (default 0); the plan is N + 1\n"
      "  --format F           statistics format: auto (default), mindspeed, "
      "sglang,\n"
      "                       trtllm or mindie (dump directories: PATTERN may "
      "name\n"
      "                       a directory per rank)\n"
      "  --num-nodes N        nodes, %d..G, G %% N == 0 (default 1)\n"
      "  --num-groups K       expert groups, %d..experts (default 1)\n"
      "  --policy P           balanced (default) or deepseek\n"
      "  --current-map FILE   re-plan from the current placement (rank 0 reads "
      "it)\n"
      "  --max-moves M        with --current-map: -1..%d (-1 = no limit, "
      "default)\n"
      "  --move-cost C        with --current-map: 0..1 (default %g)\n"
      "  --keep-threshold T   with --current-map: 0..100 (default %g)\n"
      "  --spill              hierarchical balanced plans: hot experts may "
      "spill\n"
      "  --spill-cost C       0..1 (default %g)\n"
      "  --scenario PATTERN[@W] a workload to balance at once with the "
      "others:\n"
      "                       this rank's files of it (%%r = rank, globs "
      "after\n"
      "                       that), summed; W its weight, %g..%g (default "
      "1);\n"
      "                       repeat (1..%d). --stats, when given too, is one "
      "more\n"
      "                       scenario. One MPI_Allreduce sums them all; the "
      "summary\n"
      "                       gives each one's imbalance (docs/sync.md)\n"
      "  --mtp-layers N       multi-token-prediction layers after the last "
      "MoE\n"
      "                       layer (DeepSeek-V3/R1: 1), 0..%d (default 0): "
      "in the\n"
      "                       map and the shards, after the statistics' "
      "layers\n"
      "  --mtp-from R         last (the last MoE layer's plan, default), "
      "trivial\n"
      "                       (expert e on GPU e / slots per GPU) or stats "
      "(the\n"
      "                       statistics' last N layers are the MTP layers)\n"
      "  --allow-duplicates   write an expert-map JSON in which a GPU holds an "
      "expert\n"
      "                       twice (--policy deepseek); without it such a "
      "plan\n"
      "                       fails every rank before any weight moves\n"
      "  --threads T          threads rank 0 plans layers on, 0..64 (0 = one "
      "per\n"
      "                       CPU rank 0 may use; default 1: other ranks of a "
      "node\n"
      "                       may share its cores); the map is the same for "
      "any T\n"
      "  --quiet              print nothing on success\n"
      "  --help, --version\n"
      "shards (docs/shards.md): one rank per shard\n"
      "  --shards DIR         move the expert weights in DIR/shard_<rank>.h5 "
      "to the\n"
      "                       plan, two-phase commit; the shards' map is the "
      "current\n"
      "                       placement, their generation the current one, "
      "their\n"
      "                       shape the default --num-slots and --num-gpus\n"
      "  --max-buffer-mb M    bytes in flight per rank per batch, %d..%d MiB\n"
      "                       (default %d)\n"
      "  --timeout SEC        a rank that waits for the others longer than SEC\n"
      "                       in any phase aborts the job, %d..%d (default %d)\n"
      "                       naming the phase and the ranks; shards untouched\n"
      "                       or recoverable\n"
      "  --recover            bring DIR back to one generation after a crash "
      "(roll\n"
      "                       forward if the journal says so, else back); "
      "needs\n"
      "                       --shards only\n"
      "online (--watch): rounds beside a running job, until --max-rounds or\n"
      "SIGTERM/SIGINT (which finish the current round and exit 0)\n"
      "  --watch              every round, every rank re-reads its statistics "
      "as\n"
      "                       cumulative counters; rank 0 logs one line per "
      "round\n"
      "  --interval SEC       seconds between rounds, 0.01..86400 (default "
      "60)\n"
      "  --trigger FILE       also start a round when FILE appears (then "
      "removed)\n"
      "  --max-rounds N       0..1000000000 (default 0 = until a signal)\n"
      "  --ema-alpha A        weight of the newest round, (0, 1] (default "
      "0.5)\n"
      "  --threshold T        rebalance only above this imbalance, 0..100\n"
      "                       (default 0.1)\n"
      "  --min-gain X         ... and only if a layer gains this much, 0..100\n"
      "                       (default 0.02)\n"
      "  --layers-per-round N layers moved per round, worst first, 0..%d\n"
      "                       (default 0 = all)\n"
      "  --history K          the last K rounds' windows (what each round "
      "added\n"
      "                       to the counters) are the scenarios of the plan "
      "and\n"
      "                       of the decision (the mean of each window's "
      "imbalance\n"
      "                       against --threshold and --min-gain), 1..%d\n"
      "                       (default 1: the smoothed load, --ema-alpha)\n"
      "\n"
      "environment: EPLB_FAULT injects faults for tests (docs/sync.md)\n"
      "exit status (the same on every rank): 0 ok, 1 runtime error on any "
      "rank\n"
      "(file, format, counts, shapes, divergent plan), 2 usage error\n",
      EPLB_SYNC_MAX_STATS, EPLB_MIN_SLOTS, EPLB_MAX_SLOTS, EPLB_MIN_GPUS,
      EPLB_MAX_GPUS, (unsigned long long)(EPLB_MAX_GENERATION - 1),
      EPLB_MIN_NODES, EPLB_MIN_GROUPS, EPLB_MAX_SLOTS, EPLB_DEFAULT_MOVE_COST,
      EPLB_DEFAULT_KEEP_THRESHOLD, EPLB_DEFAULT_SPILL_COST,
      EPLB_MIN_SCENARIO_WEIGHT, EPLB_MAX_SCENARIO_WEIGHT, EPLB_MAX_SCENARIOS,
      EPLB_MAX_MTP_LAYERS, EPLB_MIGRATE_MIN_BUFFER_MB, EPLB_MIGRATE_MAX_BUFFER_MB,
      EPLB_MIGRATE_DEFAULT_BUFFER_MB, EPLB_MIGRATE_MIN_TIMEOUT_S,
      EPLB_MIGRATE_MAX_TIMEOUT_S, EPLB_MIGRATE_DEFAULT_TIMEOUT_S,
      EPLB_MAX_LAYERS, EPLB_MAX_SCENARIOS);
}

enum {
  OPT_STATS = 256,
  OPT_SLOTS,
  OPT_GPUS,
  OPT_NODES,
  OPT_GROUPS,
  OPT_POLICY,
  OPT_FORMAT,
  OPT_OUT_FORMAT,
  OPT_OUTPUT,
  OPT_SUMMARY,
  OPT_GENERATION,
  OPT_CURRENT,
  OPT_MAX_MOVES,
  OPT_MOVE_COST,
  OPT_KEEP,
  OPT_SPILL,
  OPT_SPILL_COST,
  OPT_QUIET,
  OPT_HELP,
  OPT_VERSION,
  OPT_WATCH,
  OPT_INTERVAL,
  OPT_TRIGGER,
  OPT_MAX_ROUNDS,
  OPT_EMA,
  OPT_THRESHOLD,
  OPT_MIN_GAIN,
  OPT_LAYERS_PER_ROUND,
  OPT_SHARDS,
  OPT_MAX_BUFFER,
  OPT_TIMEOUT,
  OPT_RECOVER,
  OPT_THREADS,
  OPT_SCENARIO,
  OPT_HISTORY,
  OPT_MTP_LAYERS,
  OPT_MTP_FROM,
  OPT_ALLOW_DUPS
};

static const struct option long_opts[] = {
    {"stats", required_argument, 0, OPT_STATS},
    {"num-slots", required_argument, 0, OPT_SLOTS},
    {"num-gpus", required_argument, 0, OPT_GPUS},
    {"num-nodes", required_argument, 0, OPT_NODES},
    {"num-groups", required_argument, 0, OPT_GROUPS},
    {"policy", required_argument, 0, OPT_POLICY},
    {"format", required_argument, 0, OPT_FORMAT},
    {"output-format", required_argument, 0, OPT_OUT_FORMAT},
    {"output", required_argument, 0, OPT_OUTPUT},
    {"summary", required_argument, 0, OPT_SUMMARY},
    {"generation", required_argument, 0, OPT_GENERATION},
    {"current-map", required_argument, 0, OPT_CURRENT},
    {"max-moves", required_argument, 0, OPT_MAX_MOVES},
    {"move-cost", required_argument, 0, OPT_MOVE_COST},
    {"keep-threshold", required_argument, 0, OPT_KEEP},
    {"spill", no_argument, 0, OPT_SPILL},
    {"spill-cost", required_argument, 0, OPT_SPILL_COST},
    {"threads", required_argument, 0, OPT_THREADS},
    {"quiet", no_argument, 0, OPT_QUIET},
    {"help", no_argument, 0, OPT_HELP},
    {"version", no_argument, 0, OPT_VERSION},
    {"watch", no_argument, 0, OPT_WATCH},
    {"interval", required_argument, 0, OPT_INTERVAL},
    {"trigger", required_argument, 0, OPT_TRIGGER},
    {"max-rounds", required_argument, 0, OPT_MAX_ROUNDS},
    {"ema-alpha", required_argument, 0, OPT_EMA},
    {"threshold", required_argument, 0, OPT_THRESHOLD},
    {"min-gain", required_argument, 0, OPT_MIN_GAIN},
    {"layers-per-round", required_argument, 0, OPT_LAYERS_PER_ROUND},
    {"shards", required_argument, 0, OPT_SHARDS},
    {"max-buffer-mb", required_argument, 0, OPT_MAX_BUFFER},
    {"timeout", required_argument, 0, OPT_TIMEOUT},
    {"recover", no_argument, 0, OPT_RECOVER},
    {"scenario", required_argument, 0, OPT_SCENARIO},
    {"history", required_argument, 0, OPT_HISTORY},
    {"mtp-layers", required_argument, 0, OPT_MTP_LAYERS},
    {"mtp-from", required_argument, 0, OPT_MTP_FROM},
    {"allow-duplicates", no_argument, 0, OPT_ALLOW_DUPS},
    {0, 0, 0, 0}};

/* Every rank parses and finds the same usage error; only rank 0's
 * message reaches the terminal (parse_args silences the others). */
static int g_rank;

/* The numeric options, range-checked (the message on rank 0 only). */
static int parse_number(args_t *a, int c, const char *v) {
  const char *p = PROG; /* silenced on ranks > 0, see parse_args */
  int bad = eplb_cli_plan_option(p, eplb_cli_option_name(long_opts, c), v,
                                 &a->sync.plan);
  if (bad >= 0) { /* planner options: as eplb-plan parses them */
    a->have_slots |= c == OPT_SLOTS;
    a->have_gpus |= c == OPT_GPUS;
    return bad;
  }
  bad = 0;
  switch (c) {
  case OPT_GENERATION: {
    int64_t g = 0;
    bad = eplb_cli_parse_int64(p, "--generation", v, 0,
                               (long long)(EPLB_MAX_GENERATION - 1), &g);
    a->sync.generation = (uint64_t)g;
    break;
  }
  case OPT_INTERVAL:
    bad = eplb_cli_parse_double(p, "--interval", v, 0.01, 86400,
                                &a->w.interval_s);
    break;
  case OPT_MAX_ROUNDS:
    bad = eplb_cli_parse_int64(p, "--max-rounds", v, 0, EPLB_WATCH_MAX_ROUNDS,
                               &a->w.max_rounds);
    break;
  case OPT_EMA:
    bad = eplb_cli_parse_double(p, "--ema-alpha", v, 1e-9, 1,
                                &a->w.rb.online.ema_alpha);
    a->have_ema = 1;
    break;
  case OPT_HISTORY:
    bad = eplb_cli_parse_int(p, "--history", v, 1, EPLB_MAX_SCENARIOS,
                             &a->w.rb.online.history);
    a->have_history = 1;
    break;
  case OPT_THRESHOLD:
    bad = eplb_cli_parse_double(p, "--threshold", v, 0, 100,
                                &a->w.rb.online.threshold);
    break;
  case OPT_MIN_GAIN:
    bad = eplb_cli_parse_double(p, "--min-gain", v, 0, 100,
                                &a->w.rb.online.min_gain);
    break;
  case OPT_MAX_BUFFER:
    bad =
        eplb_cli_parse_int(p, "--max-buffer-mb", v, EPLB_MIGRATE_MIN_BUFFER_MB,
                           EPLB_MIGRATE_MAX_BUFFER_MB, &a->sync.max_buffer_mb);
    break;
  case OPT_TIMEOUT:
    bad = eplb_cli_parse_int(p, "--timeout", v, EPLB_MIGRATE_MIN_TIMEOUT_S,
                             EPLB_MIGRATE_MAX_TIMEOUT_S, &a->sync.timeout_s);
    break;
  case OPT_LAYERS_PER_ROUND:
    bad = eplb_cli_parse_int(p, "--layers-per-round", v, 0, EPLB_MAX_LAYERS,
                             &a->w.rb.online.layers_per_round);
    break;
  default:
    return eplb_cli_usage_error(PROG, "internal: option %d not handled", c);
  }
  return bad ? EPLB_CLI_EXIT_USAGE : 0;
}

/* One option.  Returns 0, 2 (usage error) or -1 (--help/--version). */
static int parse_one(args_t *a, int c, char *argv[]) {
  int x = 0, rc = 0;
  switch (c) {
  case OPT_STATS:
    if (a->num_stats >= EPLB_SYNC_MAX_STATS)
      return eplb_cli_usage_error(PROG, "at most %d --stats patterns",
                                  EPLB_SYNC_MAX_STATS);
    a->stats[a->num_stats++] = optarg;
    return 0;
  case OPT_SCENARIO:
    if (a->num_scen >= EPLB_MAX_SCENARIOS)
      return eplb_cli_usage_error(PROG, "at most %d --scenario",
                                  EPLB_MAX_SCENARIOS);
    return eplb_cli_parse_scenario(PROG, optarg, &a->scen[a->num_scen++]);
  case OPT_OUTPUT: a->sync.output = optarg; return 0;
  case OPT_SUMMARY: a->sync.summary = optarg; return 0;
  case OPT_CURRENT: a->sync.current_map = optarg; return 0;
  case OPT_SPILL: a->sync.plan.spill = 1; return 0;
  case OPT_QUIET: a->sync.quiet = 1; return 0;
  case OPT_WATCH: a->watch = 1; return 0;
  case OPT_RECOVER: a->recover = 1; return 0;
  case OPT_SHARDS: a->sync.shards_dir = optarg; return 0;
  case OPT_TRIGGER: a->w.trigger = optarg; return 0;
  case OPT_FORMAT:
    rc = eplb_cli_parse_name(PROG, "--format", optarg,
                             eplb_stats_format_from_name,
                             "auto, mindspeed, sglang, trtllm or mindie", &x);
    a->format = (eplb_stats_format_t)x;
    return rc;
  case OPT_OUT_FORMAT:
    rc = eplb_cli_parse_name(PROG, "--output-format", optarg,
                             eplb_map_format_from_name,
                             "expert-map, trtllm-yaml, sglang or deepseek", &x);
    a->sync.output_format = (eplb_map_format_t)x;
    return rc;
  case OPT_MTP_LAYERS:
  case OPT_MTP_FROM:
  case OPT_ALLOW_DUPS:
    return eplb_cli_map_option(PROG, eplb_cli_option_name(long_opts, c),
                               optarg, &a->map);
  case OPT_HELP:
    if (g_rank == 0)
      usage(stdout);
    return -1;
  case OPT_VERSION:
    if (g_rank == 0)
      printf("eplb-sync %s\n", eplb_version());
    return -1;
  case '?':
  case ':':
    eplb_cli_bad_option(PROG, c, argv, optind);
    return EPLB_CLI_EXIT_USAGE;
  }
  return parse_number(a, c, optarg);
}

/* --scenario and --history against the modes (identical on every rank). */
static int check_scenario_modes(const args_t *a) {
  if (a->watch && a->num_scen)
    return eplb_cli_usage_error(
        PROG, "--scenario and --watch: the scenarios of --watch are its "
              "rounds' windows (--history K); drop --scenario");
  if (!a->watch && a->have_history)
    return eplb_cli_usage_error(PROG,
                                "--history needs --watch (one run: give the "
                                "windows as --scenario)");
  if (a->w.rb.online.history > 1 && a->have_ema)
    return eplb_cli_usage_error(
        PROG, "--ema-alpha smooths the rounds into one load; with --history "
              "K the last K rounds are scenarios of their own: drop one of "
              "them");
  return 0;
}

/* What must hold after the options (identical on every rank). */
static int check_required(const args_t *a, int argc, char *argv[], int size) {
  if (optind < argc)
    return eplb_cli_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
  if (a->recover) {
    if (a->sync.shards_dir == NULL)
      return eplb_cli_usage_error(PROG, "--recover needs --shards DIR");
    if (a->watch || a->num_stats || a->num_scen)
      return eplb_cli_usage_error(
          PROG, "--recover takes only --shards (and --quiet)");
    return 0;
  }
  if (a->num_stats == 0 && a->num_scen == 0)
    return eplb_cli_usage_error(
        PROG, "--stats PATTERN is required (or --scenario PATTERN)");
  /* With shards, slots and GPUs default to the shards' shape. */
  if (!a->have_slots && a->sync.shards_dir == NULL)
    return eplb_cli_usage_error(PROG,
                                "--num-slots S is required (or --shards DIR)");
  if (!a->have_gpus && a->sync.shards_dir == NULL)
    return eplb_cli_usage_error(PROG,
                                "--num-gpus G is required (or --shards DIR)");
  if (a->sync.shards_dir && a->sync.current_map)
    return eplb_cli_usage_error(
        PROG, "--current-map and --shards: the shards say where the "
              "experts are; drop --current-map");
  for (int i = 0; i < a->num_stats; i++) {
    if (size > 1 && strstr(a->stats[i], "%r") == NULL)
      return eplb_cli_usage_error(
          PROG,
          "--stats %s has no %%r but %d ranks run: every rank "
          "would read the same file; use a pattern such as "
          "stats/rank_%%r.json",
          a->stats[i], size);
  }
  for (int i = 0; i < a->num_scen; i++) {
    if (size > 1 && strstr(a->scen[i].label, "%r") == NULL)
      return eplb_cli_usage_error(
          PROG,
          "--scenario %s has no %%r but %d ranks run: every rank "
          "would read the same file; use a pattern such as "
          "decode/rank_%%r.json",
          a->scen[i].label, size);
  }
  if (!a->watch && (a->w.trigger || a->w.max_rounds))
    return eplb_cli_usage_error(PROG,
                                "--trigger and --max-rounds need --watch");
  int rc = check_scenario_modes(a);
  if (rc)
    return rc;
  if (a->watch && (a->map.mtp_layers || a->map.allow_dups))
    return eplb_cli_usage_error(
        PROG, "--mtp-layers and --allow-duplicates apply to one sync; "
              "--watch writes the map of its MoE layers (run eplb-plan "
              "--current-map on it to add MTP layers)");
  if (eplb_cli_check_map_name(PROG, a->sync.output, a->sync.output_format))
    return EPLB_CLI_EXIT_USAGE;
  /* The map and the summary: not one file, not a device; the summary not
   * the current map (the map may replace it: on purpose, atomically).
   * (Against each rank's statistics, once %r is expanded, in the engine.) */
  eplb_cli_file_t outs[2] = {{"--output", a->sync.output},
                             {"--summary", a->sync.summary}};
  eplb_cli_file_t cur = {"--current-map", a->sync.current_map};
  rc = eplb_cli_check_outputs(PROG, outs, 2, NULL, 0);
  return rc ? rc : eplb_cli_check_outputs(PROG, &outs[1], 1, &cur, 1);
}

/* Parses argv; 0, 2 or -1 (--help/--version printed). */
static int parse_args_all(int argc, char *argv[], int size, args_t *a) {
  eplb_sync_opts_default(&a->sync);
  eplb_watch_opts_default(&a->w);
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":", long_opts, NULL)) != -1) {
    int rc = parse_one(a, c, argv);
    if (rc)
      return rc;
  }
  a->sync.mtp_layers = eplb_cli_mtp_appended(&a->map);
  a->sync.mtp_from = a->map.mtp_from == EPLB_MTP_TRIVIAL ? EPLB_MTP_TRIVIAL
                                                         : EPLB_MTP_LAST;
  a->sync.allow_duplicates = a->map.allow_dups;
  return check_required(a, argc, argv, size);
}

/* Every rank parses (each needs the options), and finds the same usage
 * error; only rank 0 may say it, so the others parse with stderr sent to
 * /dev/null instead of printing the message R times. */
static int parse_args(int argc, char *argv[], int size, args_t *a) {
  int saved = -1;
  if (g_rank != 0) {
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    int null = open("/dev/null", O_WRONLY);
    if (saved >= 0 && null >= 0)
      dup2(null, STDERR_FILENO);
    if (null >= 0)
      close(null);
  }
  int rc = parse_args_all(argc, argv, size, a);
  if (saved >= 0) {
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
  }
  return rc;
}

/* ---- agreeing on what to run ------------------------------------------ */

enum { MODE_RUN, MODE_WATCH, MODE_RECOVER, MODE_INFO, MODE_USAGE };

static const char *mode_name(int32_t m) {
  switch (m) {
  case MODE_RUN: return "one sync";
  case MODE_WATCH: return "--watch";
  case MODE_RECOVER: return "--recover";
  case MODE_INFO: return "--help or --version";
  }
  return "with a usage error in its options";
}

/* What each rank tells the others before any collective of a mode. */
typedef struct {
  int32_t mode, pad;
  uint64_t key; /* the options that decide which collectives run */
} start_t;

/* A key of every option that steers the collectives of any mode. */
static uint64_t options_key(const args_t *a) {
  const eplb_watch_opts_t *w = &a->w;
  const double f[] = {(double)a->sync.generation,
                      a->sync.output != NULL,
                      a->sync.summary != NULL,
                      a->sync.current_map != NULL,
                      a->sync.max_buffer_mb,
                      a->sync.timeout_s,
                      a->num_stats,
                      (double)a->format,
                      w->interval_s,
                      (double)w->max_rounds,
                      w->trigger != NULL,
                      w->rb.online.ema_alpha,
                      w->rb.online.threshold,
                      w->rb.online.min_gain,
                      w->rb.online.layers_per_round,
                      w->rb.online.history,
                      a->num_scen};
  uint64_t k = eplb__plan_opts_key(&a->sync.plan, 0);
  k = eplb__checksum(f, sizeof(f), k);
  for (int i = 0; i < a->num_scen; i++)
    k = eplb__checksum(&a->scen[i].weight, sizeof(double), k);
  return eplb__string_key(a->sync.shards_dir, k);
}

/* "rank 3" or "ranks 1, 3, 4" (at most 8 named) of the ranks r with
 * differs(r), into buf. */
static void rank_list(const start_t *all, int size, int by_mode, char *buf,
                      size_t cap) {
  int n = 0;
  size_t used = 0;
  for (int r = 1; r < size; r++) {
    int d = by_mode ? all[r].mode != all[0].mode : all[r].key != all[0].key;
    if (!d)
      continue;
    if (n < 8) {
      int w = snprintf(buf + used, cap - used, "%s%d", n ? ", " : "", r);
      if (w > 0 && used + (size_t)w < cap)
        used += (size_t)w;
    }
    n++;
  }
  char tmp[160];
  snprintf(tmp, sizeof(tmp), "%s %.100s%s", n > 1 ? "ranks" : "rank", buf,
           n > 8 ? ", ..." : "");
  snprintf(buf, cap, "%s", tmp);
}

/* One allgather: every rank's mode (or its usage error) and options key.
 * Returns -1 to go on (every rank the same, parsed), else the exit code
 * every rank returns (0 after --help on every rank, 2 otherwise). */
static int agree_start(int parse_rc, const args_t *a, int size) {
  start_t mine = {.mode = parse_rc > 0   ? MODE_USAGE
                          : parse_rc < 0 ? MODE_INFO
                          : a->recover   ? MODE_RECOVER
                          : a->watch     ? MODE_WATCH
                                         : MODE_RUN};
  if (parse_rc == 0)
    mine.key = options_key(a);
  start_t *all = calloc((size_t)size, sizeof(*all));
  if (all == NULL) {
    fprintf(stderr, "%s: error: rank %d: out of memory\n", PROG, g_rank);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  /* MPI_COMM_WORLD's default handler aborts the job on an MPI failure. */
  MPI_Allgather(&mine, (int)sizeof(mine), MPI_BYTE, all, (int)sizeof(mine),
                MPI_BYTE, MPI_COMM_WORLD);
  int same_mode = 1, same_key = 1;
  for (int r = 1; r < size; r++) {
    same_mode &= all[r].mode == all[0].mode;
    same_key &= all[r].key == all[0].key;
  }
  int code = -1;
  char who[256] = "";
  if (!same_mode) {
    code = EPLB_CLI_EXIT_USAGE;
    int r = 1;
    while (all[r].mode == all[0].mode)
      r++;
    rank_list(all, size, 1, who, sizeof(who));
    if (g_rank == 0 && all[0].mode != MODE_USAGE)
      eplb_cli_usage_error(PROG,
                           "%s: %s, but rank 0 runs %s; every rank must be "
                           "given the same options (an MPMD launch may not "
                           "mix them)",
                           who, mode_name(all[r].mode), mode_name(all[0].mode));
  } else if (all[0].mode == MODE_USAGE) {
    code = EPLB_CLI_EXIT_USAGE; /* printed by rank 0 while parsing */
  } else if (all[0].mode == MODE_INFO) {
    code = EPLB_CLI_EXIT_OK;
  } else if (!same_key) {
    code = EPLB_CLI_EXIT_USAGE;
    rank_list(all, size, 0, who, sizeof(who));
    if (g_rank == 0)
      eplb_cli_usage_error(PROG,
                           "%s: options differ from rank 0's; every rank "
                           "must be given the same options",
                           who);
  }
  free(all);
  return code;
}

/* SIGTERM/SIGINT during --watch: finish the round, then exit 0. */
static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
}

/* --recover: one generation again after a crash. */
static int run_recover(const args_t *a, eplb_error_t *err) {
  eplb_recover_result_t r;
  memset(&r, 0, sizeof(r));
  int rc = eplb_shards_recover(MPI_COMM_WORLD, a->sync.shards_dir, &r, err);
  if (rc == 0 && g_rank == 0 && !a->sync.quiet) {
    printf("eplb-sync: %s: generation %llu on every shard (%s; %lld renamed, "
           "%lld temporary files removed)\n",
           a->sync.shards_dir, (unsigned long long)r.generation,
           r.rolled_forward ? "rolled forward"
           : r.rolled_back  ? "rolled back"
                            : "nothing to do",
           (long long)r.renamed, (long long)r.removed);
    fflush(stdout);
  }
  return rc;
}

/* --scenario: the scenarios (--stats, when given, first: one more) read
 * and balanced at once. */
static int run_scenarios(const args_t *a, eplb_sync_result_t *res,
                         eplb_error_t *err) {
  int n = (a->num_stats > 0) + a->num_scen, i = 0;
  eplb_sync_scenario_t *sc = calloc((size_t)n, sizeof(*sc));
  if (sc == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (a->num_stats > 0)
    sc[i++] = (eplb_sync_scenario_t){
        a->stats, a->num_stats, 1, a->num_stats == 1 ? a->stats[0] : "--stats"};
  for (int j = 0; j < a->num_scen; j++)
    sc[i++] = (eplb_sync_scenario_t){a->scen[j].paths, 1, a->scen[j].weight,
                                     a->scen[j].label};
  int rc = eplb_sync_run_scenario_files(MPI_COMM_WORLD, sc, n, a->format,
                                        &a->sync, res, err);
  free(sc);
  return rc;
}

/* --watch: the plan options of the one-shot run go to every round. */
static int run_watch(args_t *a, eplb_error_t *err) {
  eplb_watch_opts_t *w = &a->w;
  w->rb.online.plan = a->sync.plan;
  w->rb.generation = a->sync.generation;
  w->rb.output = a->sync.output;
  w->rb.output_format = a->sync.output_format;
  w->rb.quiet = a->sync.quiet;
  w->rb.shards_dir = a->sync.shards_dir;
  w->rb.max_buffer_mb = a->sync.max_buffer_mb;
  w->rb.timeout_s = a->sync.timeout_s;
  w->current_map = a->sync.current_map;
  w->summary = a->sync.summary;
  w->stop = &g_stop;
  install_signals();
  return eplb_watch_run(MPI_COMM_WORLD, a->stats, a->num_stats, a->format, w,
                        err);
}

int main(int argc, char *argv[]) {
  int rc = MPI_Init(&argc, &argv);
  if (rc != MPI_SUCCESS) {
    fprintf(stderr,
            "%s: error: MPI_Init failed (%d); run under mpirun or srun\n", PROG,
            rc);
    return EPLB_CLI_EXIT_RUNTIME;
  }
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  args_t a;
  memset(&a, 0, sizeof(a));
  a.stats = calloc((size_t)argc + 1, sizeof(char *));
  a.scen = calloc((size_t)argc + 1, sizeof(*a.scen));
  int exit_code = EPLB_CLI_EXIT_OK;
  if (a.stats == NULL || a.scen == NULL) {
    fprintf(stderr, "%s: error: rank %d: out of memory\n", PROG, g_rank);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  rc = parse_args(argc, argv, size, &a);
  int agreed = agree_start(rc, &a, size);
  if (agreed >= 0) {
    exit_code = agreed;
    rc = 1;
  }
  if (rc == 0) /* every phase, --watch and --recover too (watchdog.h) */
    eplb__watch_timeout(a.sync.timeout_s);
  if (rc == 0 && g_rank == 0) /* no-op for --threads 1, the default */
    eplb_plan_warm_up(a.sync.plan.threads, NULL); /* while the files load */
  if (rc == 0) {
    eplb_error_t err = {0};
    eplb_sync_result_t res;
    memset(&res, 0, sizeof(res));
    rc = a.recover ? run_recover(&a, &err)
         : a.watch ? run_watch(&a, &err)
         : a.num_scen
             ? run_scenarios(&a, &res, &err)
             : eplb_sync_run_files(MPI_COMM_WORLD, a.stats, a.num_stats,
                                   a.format, &a.sync, &res, &err);
    if (rc == 0 && g_rank == 0 && !a.recover && !a.watch && !a.sync.quiet &&
        a.sync.output != NULL)
      eplb_cli_print_settings(stdout, &res.placement,
                              a.sync.output_format == EPLB_MAP_AUTO
                                  ? eplb_map_format_for_path(a.sync.output)
                                  : a.sync.output_format,
                              a.sync.output, a.map.mtp_layers);
    if (rc) {
      /* The message and its code are agreed: rank 0 says it for everyone,
       * every rank exits with the code's status (2 for a usage error). */
      if (g_rank == 0)
        eplb_cli_report(PROG, &err);
      exit_code =
          err.code == EPLB_EARG ? EPLB_CLI_EXIT_USAGE : EPLB_CLI_EXIT_RUNTIME;
    }
    eplb_sync_result_cleanup(&res);
  }
  for (int i = 0; i < a.num_scen; i++)
    eplb_cli_source_cleanup(&a.scen[i]);
  free(a.scen);
  free(a.stats);
  MPI_Finalize();
  return exit_code;
}
