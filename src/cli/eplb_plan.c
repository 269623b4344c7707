/* cli/eplb_plan.c - `eplb-plan`: the offline planner.  Statistics files in,
 * an expert map out, and a summary of how much balance the plan buys.
 *
 * A thin wrapper over the library: read (eplb_stats_read, summed with
 * eplb_stats_add), drop SGLang's all-zero dense rows, check the options
 * (eplb_plan_check_opts), plan (eplb_plan, or eplb_plan_from with
 * --current-map), write (eplb_placement_write, atomic), and report the
 * imbalance before and after against the floor (eplb_balance).  It exists
 * so that a user with a statistics dump and no cluster can get a map for
 * vllm-ascend, MindSpeed-RL or TensorRT-LLM in one command.  Exit codes:
 * 0 ok, 1 runtime error (file, parse, counts, shapes), 2 usage error.  See
 * docs/eplb-plan.md. */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "eplb/eplb.h"

#define PROG "eplb-plan"

typedef struct {
  const char **stats; /* --stats files, in order */
  int num_stats;
  eplb_cli_source_t *scen; /* --scenario SPEC[@W], in order */
  int num_scen;
  int32_t window; /* --window N, 0: none */
  eplb_cli_map_opts_t map; /* --mtp-layers, --mtp-from, --allow-duplicates */
  eplb_stats_format_t format;
  eplb_stats_read_opts_t ropts; /* --iter-range */
  eplb_map_format_t out_format; /* AUTO: from the --output extension */
  const char *output, *current_map;
  eplb_plan_opts_t plan;
  int have_slots, have_gpus, per_layer, quiet;
  double ema_alpha; /* --ema-alpha: -1 none, -2 auto, else 0..0.99 */
} args_t;

/* --help: every option with its range. */
static void usage(FILE *f) {
  fprintf(
      f,
      "usage: eplb-plan --stats PATH [--stats PATH ...] --num-slots S "
      "--num-gpus G\n"
      "                 --output FILE [options]\n"
      "\n"
      "Plans where each expert of a Mixture-of-Experts model goes: reads "
      "token\n"
      "counts per layer and expert, replicates the hot experts into the S "
      "slots\n"
      "and packs them so that every GPU carries about the same load, writes "
      "the\n"
      "expert map, and prints the imbalance (max/mean - 1 over GPUs) before "
      "and\n"
      "after, with the floor no placement can beat.\n"
      "\n"
      "required:\n"
      "  --stats PATH         statistics; repeat to sum several (per-rank "
      "dumps).\n"
      "                       A file: MindSpeed-RL {\"layer\": {\"expert\": "
      "count}}\n"
      "                       or SGLang {\"logical_count\": [[...]]}; a "
      "directory:\n"
      "                       TensorRT-LLM (meta_info.json + "
      "rank{r}.safetensors)\n"
      "                       or MindIE (model_gen_config.json + "
      "{stage}_{rank}.csv).\n"
      "                       SGLang's all-zero dense layers are skipped and\n"
      "                       reported\n"
      "  --num-slots S        physical expert slots per layer over all GPUs,\n"
      "                       %d..%d, at least the number of experts, a "
      "multiple\n"
      "                       of G (S - experts = redundant slots)\n"
      "  --num-gpus G         GPUs (expert-parallel ranks), %d..%d\n"
      "  --output FILE        the map to write (atomically: temp file + "
      "rename)\n"
      "options:\n"
      "  --num-nodes N        nodes, %d..G, G %% N == 0 (default 1)\n"
      "  --num-groups K       expert groups, %d..experts (default 1); with N > "
      "1\n"
      "                       and K %% N == 0 the plan is hierarchical "
      "(groups\n"
      "                       packed to nodes), which needs experts %% K == 0\n"
      "  --policy P           balanced (default: never worse than deepseek, "
      "never\n"
      "                       one expert twice on a GPU) or deepseek "
      "(DeepSeek's\n"
      "                       EPLB, deterministic)\n"
      "  --format F           statistics format: auto (default: from the "
      "content),\n"
      "                       mindspeed, sglang, trtllm, mindie\n"
      "  --iter-range A-B     TensorRT-LLM dumps: sum iterations A..B only,\n"
      "                       0 <= A <= B <= %d (default: all)\n"
      "  --ema-alpha A|auto   plan for the traffic that follows: read each "
      "--stats\n"
      "                       as a per-step series (SGLang [steps][L][E] "
      "JSON,\n"
      "                       HDF5 [steps][L][E], TensorRT-LLM dump) and "
      "weight\n"
      "                       step t of T by (1-A)^(T-1-t), A in 0..0.99 (0 = "
      "plain\n"
      "                       sum); auto picks A by backtest on the series\n"
      "  --scenario SPEC[@W]  a scenario to balance at once with the others: "
      "SPEC\n"
      "                       is anything --stats takes (file, glob, dump\n"
      "                       directory), summed into one scenario; W its "
      "weight,\n"
      "                       %g..%g (default 1; each layer of each scenario "
      "is\n"
      "                       normalised to its own total); repeat for more.\n"
      "                       --stats, when given too, is one more scenario. "
      "The\n"
      "                       plan balances every scenario (docs/planner.md)\n"
      "  --window N           read every source as a [steps][L][E] series "
      "(as\n"
      "                       --ema-alpha does) and make one scenario of each "
      "N\n"
      "                       steps, %d..%d\n"
      "  --output-format F    expert-map (MindSpeed-RL / vllm-ascend / MindIE "
      "JSON),\n"
      "                       trtllm-yaml (TensorRT-LLM "
      "moe_load_balancer.yaml),\n"
      "                       sglang ({\"physical_to_logical_map\": ...}, rows "
      "=\n"
      "                       hidden layers) or deepseek (phy2log, log2phy,\n"
      "                       logcnt); default: trtllm-yaml for a .yaml/.yml\n"
      "                       FILE, else expert-map\n"
      "  --current-map FILE   re-plan from the placement the experts are in "
      "now (an\n"
      "                       expert map, TensorRT-LLM YAML, SGLang or "
      "DeepSeek\n"
      "                       map with the same layers,\n"
      "                       experts and slots): moves only what buys "
      "balance;\n"
      "                       global plans only\n"
      "  --max-moves M        with --current-map: replicas that may arrive on "
      "a new\n"
      "                       GPU per layer, -1..%d (-1 = no limit, default)\n"
      "  --move-cost C        with --current-map: imbalance traded per moved\n"
      "                       replica, 0..1 (default %g)\n"
      "  --keep-threshold T   with --current-map: keep layers whose imbalance "
      "is at\n"
      "                       most T, 0..100 (default %g)\n"
      "  --spill              hierarchical balanced plans: let hot experts "
      "place\n"
      "                       replicas on cooler nodes\n"
      "  --spill-cost C       imbalance traded per replica away from its "
      "group's\n"
      "                       node, 0..1 (default %g)\n"
      "  --mtp-layers N       multi-token-prediction layers the consumer "
      "serves\n"
      "                       after the last MoE layer (DeepSeek-V3/R1: 1), "
      "%d..%d\n"
      "                       (default 0): appended to the map with the "
      "next ids\n"
      "  --mtp-from R         how they are placed: last (the last MoE layer's "
      "plan,\n"
      "                       default), trivial (expert e on GPU e / slots per "
      "GPU)\n"
      "                       or stats (the statistics' last N layers are "
      "the MTP\n"
      "                       layers, planned from their counts)\n"
      "  --allow-duplicates   write an expert-map JSON in which a GPU holds "
      "an\n"
      "                       expert twice (--policy deepseek can plan one; "
      "vllm-\n"
      "                       ascend, MindSpeed-RL and MindIE drop the copy): "
      "else\n"
      "                       refused, naming the layer and GPU\n"
      "  --threads T          threads planning layers in parallel, %d..%d (0 "
      "=\n"
      "                       one per CPU this process may use, the default);\n"
      "                       the map is the same for any T\n"
      "  --per-layer          print the imbalance of every layer\n"
      "  --quiet              print nothing on success\n"
      "  --help, --version\n"
      "\n"
      "exit status: 0 ok, 1 runtime error (file, format, counts, shapes),\n"
      "2 usage error (unknown option, missing or out-of-range value)\n",
      EPLB_MIN_SLOTS, EPLB_MAX_SLOTS, EPLB_MIN_GPUS, EPLB_MAX_GPUS,
      EPLB_MIN_NODES, EPLB_MIN_GROUPS, EPLB_MAX_ITER,
      EPLB_MIN_SCENARIO_WEIGHT, EPLB_MAX_SCENARIO_WEIGHT, 1, EPLB_MAX_STEPS,
      EPLB_MAX_SLOTS,
      EPLB_DEFAULT_MOVE_COST, EPLB_DEFAULT_KEEP_THRESHOLD,
      EPLB_DEFAULT_SPILL_COST, 0, EPLB_MAX_MTP_LAYERS, EPLB_MIN_PLAN_THREADS,
      EPLB_MAX_PLAN_THREADS);
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
  OPT_CURRENT,
  OPT_MAX_MOVES,
  OPT_MOVE_COST,
  OPT_KEEP,
  OPT_SPILL,
  OPT_SPILL_COST,
  OPT_PER_LAYER,
  OPT_QUIET,
  OPT_HELP,
  OPT_VERSION,
  OPT_ITER,
  OPT_EMA,
  OPT_THREADS,
  OPT_SCENARIO,
  OPT_WINDOW,
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
    {"iter-range", required_argument, 0, OPT_ITER},
    {"ema-alpha", required_argument, 0, OPT_EMA},
    {"scenario", required_argument, 0, OPT_SCENARIO},
    {"window", required_argument, 0, OPT_WINDOW},
    {"mtp-layers", required_argument, 0, OPT_MTP_LAYERS},
    {"mtp-from", required_argument, 0, OPT_MTP_FROM},
    {"allow-duplicates", no_argument, 0, OPT_ALLOW_DUPS},
    {"output-format", required_argument, 0, OPT_OUT_FORMAT},
    {"output", required_argument, 0, OPT_OUTPUT},
    {"current-map", required_argument, 0, OPT_CURRENT},
    {"max-moves", required_argument, 0, OPT_MAX_MOVES},
    {"move-cost", required_argument, 0, OPT_MOVE_COST},
    {"keep-threshold", required_argument, 0, OPT_KEEP},
    {"spill", no_argument, 0, OPT_SPILL},
    {"spill-cost", required_argument, 0, OPT_SPILL_COST},
    {"threads", required_argument, 0, OPT_THREADS},
    {"per-layer", no_argument, 0, OPT_PER_LAYER},
    {"quiet", no_argument, 0, OPT_QUIET},
    {"help", no_argument, 0, OPT_HELP},
    {"version", no_argument, 0, OPT_VERSION},
    {0, 0, 0, 0}};

/* Handles one option with a value (the numeric and named ones). */
static int parse_value(args_t *a, int c, const char *v) {
  int x = 0, rc = eplb_cli_plan_option(PROG, eplb_cli_option_name(long_opts, c),
                                       v, &a->plan);
  if (rc >= 0) {
    a->have_slots |= c == OPT_SLOTS;
    a->have_gpus |= c == OPT_GPUS;
    return rc;
  }
  switch (c) {
  case OPT_FORMAT:
    rc = eplb_cli_parse_name(PROG, "--format", v, eplb_stats_format_from_name,
                             "auto, mindspeed, sglang, trtllm or mindie", &x);
    a->format = (eplb_stats_format_t)x;
    return rc;
  case OPT_OUT_FORMAT:
    rc = eplb_cli_parse_name(PROG, "--output-format", v,
                             eplb_map_format_from_name,
                             "expert-map, trtllm-yaml, sglang or deepseek", &x);
    a->out_format = (eplb_map_format_t)x;
    return rc;
  }
  return eplb_cli_usage_error(PROG, "internal: option %d not handled", c);
}

/* Handles one option.  Returns 0, 2 (usage error) or -1 (--help/--version
 * printed: exit 0). */
static int parse_one(args_t *a, int c, char *argv[]) {
  switch (c) {
  case OPT_STATS: a->stats[a->num_stats++] = optarg; return 0;
  case OPT_SCENARIO:
    return eplb_cli_parse_scenario(PROG, optarg, &a->scen[a->num_scen++]);
  case OPT_MTP_LAYERS:
  case OPT_MTP_FROM:
  case OPT_ALLOW_DUPS:
    return eplb_cli_map_option(PROG, eplb_cli_option_name(long_opts, c),
                               optarg, &a->map);
  case OPT_WINDOW:
    return eplb_cli_parse_int(PROG, "--window", optarg, 1, EPLB_MAX_STEPS,
                              &a->window)
               ? 2
               : 0;
  case OPT_OUTPUT: a->output = optarg; return 0;
  case OPT_CURRENT: a->current_map = optarg; return 0;
  case OPT_ITER:
    return eplb_cli_parse_iter_range(PROG, optarg, &a->ropts) ? 2 : 0;
  case OPT_EMA:
    if (strcmp(optarg, "auto") == 0) {
      a->ema_alpha = -2;
      return 0;
    }
    return eplb_cli_parse_double(PROG, "--ema-alpha", optarg, 0, 0.99,
                                 &a->ema_alpha)
               ? 2
               : 0;
  case OPT_SPILL: a->plan.spill = 1; return 0;
  case OPT_PER_LAYER: a->per_layer = 1; return 0;
  case OPT_QUIET: a->quiet = 1; return 0;
  case OPT_HELP: usage(stdout); return -1;
  case OPT_VERSION: printf("eplb-plan %s\n", eplb_version()); return -1;
  case '?':
  case ':': return eplb_cli_bad_option(PROG, c, argv, optind);
  }
  return parse_value(a, c, optarg);
}

/* The output may not be one of the statistics (by identity: another name,
 * a glob match, a symbolic link, a file of a dump directory).  The current
 * map is not an input here: --current-map M --output M replaces the map on
 * purpose, atomically. */
static int check_files(const args_t *a) {
  eplb_cli_file_t out = {"--output", a->output};
  int n = a->num_stats + a->num_scen;
  eplb_cli_file_t *in = calloc((size_t)n + 1, sizeof(*in));
  if (in == NULL)
    return eplb_cli_usage_error(PROG, "out of memory");
  for (int i = 0; i < a->num_stats; i++)
    in[i] = (eplb_cli_file_t){"--stats", a->stats[i]};
  for (int i = 0; i < a->num_scen; i++)
    in[a->num_stats + i] = (eplb_cli_file_t){"--scenario", a->scen[i].label};
  int rc = eplb_cli_check_outputs(PROG, &out, 1, in, n);
  free(in);
  return rc;
}

/* What must be there after the options: --stats, S, G, --output. */
static int check_required(const args_t *a, int argc, char *argv[]) {
  if (optind < argc)
    return eplb_cli_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
  if (a->num_stats == 0 && a->num_scen == 0)
    return eplb_cli_usage_error(PROG,
                                "--stats PATH is required (or --scenario SPEC)");
  if (a->ema_alpha != -1 && (a->num_scen > 0 || a->window > 0))
    return eplb_cli_usage_error(PROG,
                                "--ema-alpha weights the steps of one series "
                                "into one histogram; with --scenario or "
                                "--window every source or window is a "
                                "scenario of its own: drop one of them");
  if (!a->have_slots)
    return eplb_cli_usage_error(PROG, "--num-slots S is required");
  if (!a->have_gpus)
    return eplb_cli_usage_error(PROG, "--num-gpus G is required");
  if (a->output == NULL || a->output[0] == '\0')
    return eplb_cli_usage_error(PROG, "--output FILE is required");
  if (eplb_cli_check_map_name(PROG, a->output, a->out_format))
    return EPLB_CLI_EXIT_USAGE;
  return check_files(a);
}

/* Parses argv into *a (a->stats must hold argc entries).  Returns 0, 2, or
 * -1 for --help/--version. */
static int parse_args(int argc, char *argv[], args_t *a) {
  eplb_plan_opts_default(&a->plan);
  a->plan.threads = 0; /* one process: use the machine's CPUs */
  a->ema_alpha = -1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":", long_opts, NULL)) != -1) {
    int rc = parse_one(a, c, argv);
    if (rc)
      return rc;
  }
  int rc = check_required(a, argc, argv);
  if (rc == 0 && a->out_format == EPLB_MAP_AUTO)
    a->out_format = eplb_map_format_for_path(a->output);
  return rc;
}

/* ---- reading -------------------------------------------------------- */

/* --ema-alpha: every --stats read as a series, the series summed step by
 * step (they must cover the same steps), then weighted into *st. */
static int read_series(const args_t *a, eplb_stats_t *st, eplb_error_t *err) {
  eplb_series_t sum, more;
  int rc = eplb_series_read(&sum, a->stats[0], err);
  for (int i = 1; i < a->num_stats && rc == 0; i++) {
    rc = eplb_series_read(&more, a->stats[i], err);
    if (rc == 0 &&
        (more.num_steps != sum.num_steps || more.num_layers != sum.num_layers ||
         more.num_experts != sum.num_experts))
      rc =
          eplb_error_set(err, EPLB_ESHAPE,
                         "%s has %d steps x %d layers x %d experts but %s has "
                         "%d x %d x %d; series summed with --ema-alpha must "
                         "cover the same steps",
                         a->stats[i], (int)more.num_steps, (int)more.num_layers,
                         (int)more.num_experts, a->stats[0], (int)sum.num_steps,
                         (int)sum.num_layers, (int)sum.num_experts);
    size_t n = (size_t)sum.num_steps * (size_t)sum.num_layers *
               (size_t)sum.num_experts;
    for (size_t k = 0; rc == 0 && k < n; k++)
      sum.load[k] += more.load[k];
    eplb_series_cleanup(&more);
  }
  double alpha = a->ema_alpha;
  if (rc == 0 && alpha < 0)
    rc = eplb_series_choose_alpha(&sum, &alpha, err);
  if (rc == 0 && !a->quiet)
    printf("series            %d steps, EMA rate %.2f%s\n", (int)sum.num_steps,
           alpha, a->ema_alpha < 0 ? " (chosen by backtest)" : "");
  if (rc == 0)
    rc = eplb_series_sum(&sum, alpha, st, err);
  if (rc == 0)
    st->dense_rows = sum.dense_rows;
  eplb_series_cleanup(&sum);
  return rc;
}

/* Reads and sums every --stats file or dump directory into *st. */
static int read_stats(const args_t *a, eplb_stats_t *st, eplb_error_t *err) {
  if (a->ema_alpha != -1)
    return read_series(a, st, err);
  return eplb_stats_read_many(st, a->stats, a->num_stats, a->format, &a->ropts,
                              err);
}

/* Drops the all-zero (dense) layers when a source padded them; their ids go
 * to *ids / *n for the summary. */
static int drop_dense(eplb_stats_t *st, int32_t **ids, int32_t *n,
                      eplb_error_t *err) {
  *ids = NULL;
  *n = 0;
  if (!st->dense_rows)
    return 0;
  int rc = eplb_stats_zero_layer_ids(st, ids, n, err);
  if (rc == 0)
    rc = eplb_stats_drop_zero_layers(st, NULL, err);
  return rc;
}

/* ---- the summary ---------------------------------------------------- */

typedef struct {
  const eplb_stats_t *st;
  const eplb_cli_scenarios_t *sc; /* two or more: the plan balanced them */
  const eplb_placement_t *before, *after;
  eplb_balance_t b0, b1;
  double plan_ms, total_ms;
  const int32_t *dropped;
  int32_t num_dropped;
  int64_t moves; /* -1 without --current-map */
  eplb_map_format_t out_format;
} summary_t;

/* The "layers" line, with the all-zero layers that were skipped. */
static void print_dropped(const summary_t *s) {
  printf("layers            %d", (int)s->st->num_layers);
  if (s->num_dropped > 0) {
    printf(" (%d all-zero dense layers skipped:", (int)s->num_dropped);
    for (int32_t i = 0; i < s->num_dropped; i++)
      printf("%s%d", i ? ", " : " ", (int)s->dropped[i]);
    printf(")");
  }
  printf("\n");
}

/* Mean over layers of the fraction of tokens served off their group's
 * node (hierarchical plans). */
static double cross_node(const args_t *a, const summary_t *s) {
  const eplb_placement_t *p = s->after;
  double sum = 0;
  for (int32_t l = 0; l < p->num_layers; l++)
    sum += eplb_layer_cross_node(
        s->st->load + (size_t)l * (size_t)p->num_experts, p->num_experts,
        p->phy2log + (size_t)l * (size_t)p->num_slots, p->num_slots,
        p->num_gpus, a->plan.num_nodes, a->plan.num_groups);
  return sum / p->num_layers;
}

/* Each scenario's imbalance before and after, and their weighted mean. */
static void print_scenarios(const summary_t *s) {
  const eplb_cli_scenarios_t *sc = s->sc;
  double wsum = 0, m0 = 0, m1 = 0;
  printf("scenarios         %d, balanced at once (imbalance before -> after):\n",
         (int)sc->num);
  for (int32_t k = 0; k < sc->num; k++) {
    eplb_balance_t b0, b1;
    if (eplb_balance(&sc->stats[k], s->before, &b0, NULL) ||
        eplb_balance(&sc->stats[k], s->after, &b1, NULL))
      continue;
    const char *name = sc->names[k];
    size_t len = strlen(name);
    printf("  %s%-40s w %-6g %.4f -> %.4f\n", len > 40 ? "..." : "",
           len > 40 ? name + len - 37 : name, sc->weights[k], b0.imbalance,
           b1.imbalance);
    wsum += sc->weights[k];
    m0 += sc->weights[k] * b0.imbalance;
    m1 += sc->weights[k] * b1.imbalance;
  }
  if (wsum > 0)
    printf("  %-40.40s %-8s %.4f -> %.4f\n", "weighted mean", "", m0 / wsum,
           m1 / wsum);
}

/* The summary on stdout (see docs/eplb-plan.md). */
static void print_summary(const args_t *a, const summary_t *s) {
  const eplb_plan_opts_t *o = &a->plan;
  const eplb_placement_t *p = s->after;
  int hier = eplb_plan_is_hierarchical(o);
  print_dropped(s);
  printf("experts           %d\n", (int)p->num_experts);
  printf("slots             %d on %d GPUs (%d per GPU, %d redundant)\n",
         (int)p->num_slots, (int)p->num_gpus, (int)(p->num_slots / p->num_gpus),
         (int)(p->num_slots - p->num_experts));
  printf("policy            %s (%s, %d node%s, %d group%s%s)\n",
         eplb_policy_name(o->policy), hier ? "hierarchical" : "global",
         (int)o->num_nodes, o->num_nodes > 1 ? "s" : "", (int)o->num_groups,
         o->num_groups > 1 ? "s" : "", o->spill ? ", spill" : "");
  printf("plan time         %.3f ms (whole run %.1f ms)\n", s->plan_ms,
         s->total_ms);
  printf("imbalance before  %.4f (%s%s; worst layer %d: %.4f)\n",
         s->b0.imbalance,
         a->current_map ? "current map" : "contiguous placement",
         s->sc ? ", on the scenarios' weighted mean" : "",
         (int)s->before->layer_ids[s->b0.worst_layer], s->b0.max_imbalance);
  printf("imbalance after   %.4f (worst layer %d: %.4f)\n", s->b1.imbalance,
         (int)p->layer_ids[s->b1.worst_layer], s->b1.max_imbalance);
  printf("imbalance floor   %.4f (lower bound for these loads)\n", s->b1.floor);
  printf("balancedness      %.4f -> %.4f (mean/max)\n", s->b0.balancedness,
         s->b1.balancedness);
  if (s->moves >= 0)
    printf("replicas moved    %lld (%.1f per layer)\n", (long long)s->moves,
           (double)s->moves / p->num_layers);
  if (hier && o->num_nodes > 1)
    printf("off-node tokens   %.4f (fraction served away from their group's "
           "node)\n",
           cross_node(a, s));
  if (s->sc != NULL)
    print_scenarios(s);
  printf("output            %s (%s)\n", a->output,
         eplb_map_format_name(s->out_format));
}

/* --per-layer: imbalance before and after, and the floor, per layer. */
static void print_per_layer(const summary_t *s) {
  const eplb_placement_t *p = s->after, *q = s->before;
  int32_t E = p->num_experts, S = p->num_slots, G = p->num_gpus;
  printf("%-7s %10s %10s %10s\n", "layer", "before", "after", "floor");
  for (int32_t l = 0; l < p->num_layers; l++) {
    const double *ld = s->st->load + (size_t)l * (size_t)E;
    printf(
        "%-7d %10.4f %10.4f %10.4f\n", (int)p->layer_ids[l],
        eplb_layer_imbalance(ld, E, q->phy2log + (size_t)l * (size_t)S, S, G),
        eplb_layer_imbalance(ld, E, p->phy2log + (size_t)l * (size_t)S, S, G),
        eplb_layer_floor(ld, E, S, G));
  }
}

/* ---- the run -------------------------------------------------------- */

typedef struct {
  eplb_stats_t st; /* the statistics, or the scenarios' weighted mean */
  eplb_cli_scenarios_t sc; /* with --scenario / --window */
  eplb_placement_t before, after;
  int32_t *dropped;
  int32_t num_dropped;
} run_t;

/* --scenario / --window: the sources read as scenarios into r->sc, their
 * normalised weighted mean into r->st.  One scenario is read as it is
 * (its plan is the plain plan of it). */
static int read_scenarios(const args_t *a, run_t *r, eplb_error_t *err) {
  int rc = eplb_cli_read_options_scenarios(
      (const char **)a->stats, a->num_stats, a->scen, a->num_scen, a->window,
      a->format, &a->ropts, &r->sc, err);
  if (rc)
    return rc;
  r->dropped = r->sc.dropped;
  r->num_dropped = r->sc.num_dropped;
  r->sc.dropped = NULL;
  if (r->sc.num == 1) { /* the statistics themselves */
    r->st = r->sc.stats[0];
    r->sc.num = 0;
    return 0;
  }
  return eplb_cli_scenarios_sum(&r->sc, &r->st, err);
}

/* MTP layers eplb-plan appends (not --mtp-from stats). */
static int32_t appended(const args_t *a) {
  return eplb_cli_mtp_appended(&a->map);
}

/* The placement the imbalance "before" is measured on. */
static int make_before(const args_t *a, run_t *r, eplb_error_t *err) {
  /* The current map of a plan that appends MTP layers holds them too. */
  if (a->current_map != NULL)
    return eplb_placement_read_for_mtp(&r->before, a->current_map, &r->st,
                                       a->plan.num_slots, a->plan.num_gpus,
                                       appended(a), "--current-map", err);
  int rc = eplb_placement_init_contiguous(&r->before, r->st.num_layers,
                                          r->st.num_experts, a->plan.num_slots,
                                          a->plan.num_gpus, err);
  if (rc == 0)
    memcpy(r->before.layer_ids, r->st.layer_ids,
           sizeof(int32_t) * (size_t)r->st.num_layers);
  return rc;
}

/* Plans, timing the planner's call alone. */
static int plan(const args_t *a, run_t *r, summary_t *s, eplb_error_t *err) {
  eplb_scenarios_t sc = {r->sc.num, r->sc.stats, r->sc.weights};
  double t0 = eplb_cli_now();
  int rc;
  if (r->sc.num > 1)
    rc = a->current_map != NULL ? eplb_plan_scenarios_from(&sc, &r->before,
                                                           &a->plan, &r->after,
                                                           err)
                                : eplb_plan_scenarios(&sc, &a->plan, &r->after,
                                                      err);
  else
    rc = a->current_map != NULL
             ? eplb_plan_from(&r->st, &r->before, &a->plan, &r->after, err)
             : eplb_plan(&r->st, &a->plan, &r->after, err);
  s->plan_ms = (eplb_cli_now() - t0) * 1e3;
  return rc;
}

/* Everything after the options; returns the exit code. */
static int run(const args_t *a, run_t *r, double t_start) {
  eplb_error_t err;
  eplb_error_clear(&err);
  summary_t s = {
      .st = &r->st, .before = &r->before, .after = &r->after, .moves = -1};
  int rc;
  if (a->num_scen > 0 || a->window > 0) {
    rc = read_scenarios(a, r, &err);
    s.sc = r->sc.num > 1 ? &r->sc : NULL;
  } else {
    rc = read_stats(a, &r->st, &err);
    if (rc == 0)
      rc = drop_dense(&r->st, &r->dropped, &r->num_dropped, &err);
  }
  if (rc)
    return eplb_cli_report(PROG, &err);
  /* Option errors that depend on the statistics (S < E, K vs E) are usage
   * errors: exit 2. */
  if (eplb_plan_check_opts(&a->plan, r->st.num_experts, &err) != 0)
    return eplb_cli_usage_error(PROG, "%s", err.msg);
  if (a->map.mtp_from == EPLB_CLI_MTP_FROM_STATS && r->st.num_layers <= a->map.mtp_layers)
    return eplb_cli_usage_error(PROG,
                                "--mtp-from stats: the statistics hold %d "
                                "layers, so their last %d cannot be MTP "
                                "layers after MoE layers; use --mtp-from "
                                "last or trivial",
                                (int)r->st.num_layers, (int)a->map.mtp_layers);
  rc = make_before(a, r, &err);
  if (rc == 0)
    rc = plan(a, r, &s, &err);
  if (rc == 0)
    rc = eplb_balance(&r->st, &r->before, &s.b0, &err);
  if (rc == 0)
    rc = eplb_balance(&r->st, &r->after, &s.b1, &err);
  if (rc == 0 && a->current_map != NULL)
    s.moves = eplb_placement_moves(&r->before, &r->after);
  /* The MTP layers go into the map only: the metrics are the MoE layers'
   * the statistics counted. */
  if (rc == 0)
    rc = eplb_placement_append_layers(&r->after, appended(a),
                                      (eplb_mtp_rule_t)a->map.mtp_from, &err);
  eplb_map_write_opts_t wo = {.allow_duplicates = a->map.allow_dups};
  if (rc == 0)
    rc = eplb_placement_write_opts(&r->after, a->output, a->out_format, &wo,
                                   &err);
  if (rc)
    return eplb_cli_report(PROG, &err);
  s.dropped = r->dropped;
  s.num_dropped = r->num_dropped;
  s.out_format = a->out_format;
  s.total_ms = (eplb_cli_now() - t_start) * 1e3;
  if (!a->quiet) {
    print_summary(a, &s);
    if (a->per_layer)
      print_per_layer(&s);
    eplb_cli_print_settings(stdout, &r->after, a->out_format, a->output,
                            a->map.mtp_layers);
  }
  return 0;
}

static void free_args(args_t *a) {
  for (int i = 0; i < a->num_scen; i++)
    eplb_cli_source_cleanup(&a->scen[i]);
  free(a->scen);
  free(a->stats);
}

int main(int argc, char *argv[]) {
  double t_start = eplb_cli_now();
  /* Memory freed after reading (the file's text, parse buffers) is kept
   * for the plan's arrays instead of going back to the kernel: a fresh
   * page costs a fault, a visible share of a cold plan on a VM
   * (docs/planner.md). */
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  args_t a = {.format = EPLB_STATS_AUTO,
              .out_format = EPLB_MAP_AUTO,
              .ropts = {-1, -1}};
  a.stats = calloc((size_t)argc + 1, sizeof(*a.stats));
  a.scen = calloc((size_t)argc + 1, sizeof(*a.scen));
  if (a.stats == NULL || a.scen == NULL) {
    eplb_cli_error(PROG, "out of memory");
    return 1;
  }
  int rc = parse_args(argc, argv, &a);
  if (rc != 0) {
    free_args(&a);
    return rc < 0 ? 0 : rc;
  }
  /* The planning threads start while the statistics are read (their start
   * cost a quarter of a plan when it was inside it); a failure here only
   * means eplb_plan starts them itself. */
  eplb_plan_warm_up(a.plan.threads, NULL);
  run_t r;
  memset(&r, 0, sizeof(r));
  rc = run(&a, &r, t_start);
  free(r.dropped);
  eplb_placement_cleanup(&r.before);
  eplb_placement_cleanup(&r.after);
  /* r.st is the statistics, the scenarios' mean, or the one scenario's
   * (then taken out of r.sc, whose num is 0): its own either way. */
  eplb_stats_cleanup(&r.st);
  eplb_cli_scenarios_cleanup(&r.sc);
  free_args(&a);
  return rc;
}
