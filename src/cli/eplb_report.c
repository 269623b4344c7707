/* cli/eplb_report.c - `eplb-report`: how evenly the experts' load falls on
 * the GPUs, before and after an expert map.
 *
 * Prints TensorRT-LLM's table (per layer: mean, std and imbalance ratio
 * max/mean - 1 of the per-GPU load; an "average" row), for the contiguous
 * placement a model starts with (or, with neither --map nor --num-gpus,
 * per expert: one expert per column) and for --map; then the coefficient of
 * variation of the expert loads and the hottest expert's share.  --svg
 * draws heat maps, --json feeds scripts.  With several workloads
 * (--scenario, --window) each one's imbalance under the map, and with
 * --cross-validate the forecast: each scenario judged on plans made from
 * the others.  The numbers come from the pure modules src/report/.  Exit codes:
 * 0 ok, 1 runtime error, 2 usage error. See docs/eplb-report.md. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "eplb/eplb.h"
#include "eplb/report.h"

#define PROG "eplb-report"

typedef struct {
  const char **stats;
  int num_stats;
  eplb_cli_source_t *scen; /* --scenario SPEC[@W], in order */
  int num_scen;
  int32_t window; /* --window N, 0: none */
  eplb_stats_format_t format;
  eplb_stats_read_opts_t ropts;
  const char *map, *svg, *json;
  int32_t num_gpus;  /* 0: not given */
  int32_t num_slots; /* --num-slots, 0: not given */
  int quiet, sum_iters, cross_validate;
} args_t;

/* --help: every option with its range. */
static void usage(FILE *f) {
  fprintf(
      f,
      "usage: eplb-report --stats PATH [--stats PATH ...] [--map FILE]\n"
      "                   [--num-gpus G] [--svg FILE] [--json FILE|-] "
      "[options]\n"
      "       eplb-report --scenario SPEC[@W] --scenario SPEC[@W] ... "
      "--cross-validate\n"
      "                   (--map FILE | --num-gpus G [--num-slots S]) "
      "[options]\n"
      "\n"
      "Shows how evenly the experts' load falls on the GPUs: per layer the "
      "mean,\n"
      "the sample standard deviation and the imbalance ratio (max/mean - 1) "
      "of\n"
      "the per-GPU load (TensorRT-LLM's table, with an 'average' row; "
      "computed\n"
      "on the load summed over the window), before (the contiguous\n"
      "placement: expert e on GPU e / (experts/G)) and after --map; the\n"
      "coefficient of variation of the expert loads and the hottest expert's\n"
      "share of its layer.  With neither --map nor --num-gpus the table is "
      "per\n"
      "expert (one expert per column).\n"
      "\n"
      "  --stats PATH         statistics file or dump directory; repeat to "
      "sum\n"
      "                       (MindSpeed-RL, SGLang, TensorRT-LLM, MindIE, as "
      "for\n"
      "                       eplb-plan); all-zero dense layers are skipped\n"
      "  --format F           auto (default), mindspeed, sglang, trtllm, "
      "mindie\n"
      "  --iter-range A-B     TensorRT-LLM dumps: iterations A..B only,\n"
      "                       0 <= A <= B <= %d (default: all)\n"
      "  --map FILE           expert map JSON or TensorRT-LLM YAML to "
      "evaluate\n"
      "  --num-gpus G         GPUs, %d..%d (default: the map's device count;\n"
      "                       required with a YAML map, which does not say)\n"
      "  --svg FILE           write a layer x GPU heat map before/after and\n"
      "                       per-GPU bars (self-contained SVG)\n"
      "  --json FILE|-        write the report as JSON ('-': standard output,\n"
      "                       and the table is not printed)\n"
      "  --sum-iterations     one TensorRT-LLM dump: compute the table on the "
      "load\n"
      "                       summed over iterations (default: per iteration,\n"
      "                       averaged, as TensorRT-LLM's report does)\n"
      "scenarios (docs/eplb-report.md):\n"
      "  --scenario SPEC[@W]  a workload: SPEC is anything --stats takes, "
      "summed\n"
      "                       into one scenario; W its weight, %g..%g "
      "(default 1);\n"
      "                       repeat; --stats, when given too, is one more.\n"
      "                       The tables are then on the scenarios' weighted\n"
      "                       mean (each layer of each normalised), and each\n"
      "                       scenario's imbalance is listed (and drawn in "
      "--svg)\n"
      "  --window N           read every source as a [steps][L][E] series "
      "and make\n"
      "                       one scenario of each N steps, %d..%d\n"
      "  --cross-validate     for each scenario (two or more), plan on the "
      "others\n"
      "                       and judge on it: eplb's scenario plan, and the\n"
      "                       balanced and deepseek plans of the others' "
      "mean;\n"
      "                       the mean is what to expect on traffic not seen "
      "yet.\n"
      "                       The plans have the map's slots and GPUs, or\n"
      "                       --num-gpus G and --num-slots S\n"
      "  --num-slots S        with --cross-validate and no --map: slots of "
      "the\n"
      "                       plans, %d..%d, a multiple of G, at least the\n"
      "                       experts (default: the experts)\n"
      "  --quiet              print no table\n"
      "  --help, --version\n"
      "\n"
      "exit status: 0 ok, 1 runtime error (file, format, counts, shapes),\n"
      "2 usage error (unknown option, missing or out-of-range value)\n",
      EPLB_MAX_ITER, EPLB_MIN_GPUS, EPLB_MAX_GPUS, EPLB_MIN_SCENARIO_WEIGHT,
      EPLB_MAX_SCENARIO_WEIGHT, 1, EPLB_MAX_STEPS, EPLB_MIN_SLOTS,
      EPLB_MAX_SLOTS);
}

enum {
  OPT_STATS = 256,
  OPT_FORMAT,
  OPT_ITER,
  OPT_MAP,
  OPT_GPUS,
  OPT_SVG,
  OPT_JSON,
  OPT_QUIET,
  OPT_HELP,
  OPT_VERSION,
  OPT_SUM_ITERS,
  OPT_SCENARIO,
  OPT_WINDOW,
  OPT_CROSS_VALIDATE,
  OPT_SLOTS
};

static const struct option long_opts[] = {
    {"stats", required_argument, 0, OPT_STATS},
    {"format", required_argument, 0, OPT_FORMAT},
    {"iter-range", required_argument, 0, OPT_ITER},
    {"map", required_argument, 0, OPT_MAP},
    {"num-gpus", required_argument, 0, OPT_GPUS},
    {"svg", required_argument, 0, OPT_SVG},
    {"json", required_argument, 0, OPT_JSON},
    {"quiet", no_argument, 0, OPT_QUIET},
    {"sum-iterations", no_argument, 0, OPT_SUM_ITERS},
    {"scenario", required_argument, 0, OPT_SCENARIO},
    {"window", required_argument, 0, OPT_WINDOW},
    {"cross-validate", no_argument, 0, OPT_CROSS_VALIDATE},
    {"num-slots", required_argument, 0, OPT_SLOTS},
    {"help", no_argument, 0, OPT_HELP},
    {"version", no_argument, 0, OPT_VERSION},
    {0, 0, 0, 0}};

/* Handles one option.  Returns 0, 2 (usage error) or -1 (--help/--version
 * printed: exit 0). */
static int parse_one(args_t *a, int c, char *argv[]) {
  int f;
  switch (c) {
  case OPT_STATS: a->stats[a->num_stats++] = optarg; return 0;
  case OPT_FORMAT:
    f = eplb_stats_format_from_name(optarg);
    if (f < 0)
      return eplb_cli_usage_error(PROG,
                                  "--format '%s' is unknown; use auto, "
                                  "mindspeed, sglang, trtllm or mindie",
                                  optarg);
    a->format = (eplb_stats_format_t)f;
    return 0;
  case OPT_ITER:
    return eplb_cli_parse_iter_range(PROG, optarg, &a->ropts) ? 2 : 0;
  case OPT_GPUS:
    return eplb_cli_parse_int(PROG, "--num-gpus", optarg, EPLB_MIN_GPUS,
                              EPLB_MAX_GPUS, &a->num_gpus)
               ? 2
               : 0;
  case OPT_SLOTS:
    return eplb_cli_parse_int(PROG, "--num-slots", optarg, EPLB_MIN_SLOTS,
                              EPLB_MAX_SLOTS, &a->num_slots)
               ? 2
               : 0;
  case OPT_SCENARIO:
    return eplb_cli_parse_scenario(PROG, optarg, &a->scen[a->num_scen++]);
  case OPT_WINDOW:
    return eplb_cli_parse_int(PROG, "--window", optarg, 1, EPLB_MAX_STEPS,
                              &a->window)
               ? 2
               : 0;
  case OPT_CROSS_VALIDATE: a->cross_validate = 1; return 0;
  case OPT_MAP: a->map = optarg; return 0;
  case OPT_SVG: a->svg = optarg; return 0;
  case OPT_JSON: a->json = optarg; return 0;
  case OPT_QUIET: a->quiet = 1; return 0;
  case OPT_SUM_ITERS: a->sum_iters = 1; return 0;
  case OPT_HELP: usage(stdout); return -1;
  case OPT_VERSION: printf("eplb-report %s\n", eplb_version()); return -1;
  }
  return eplb_cli_bad_option(PROG, c, argv, optind);
}

/* --json and --svg may be neither a --stats nor the --map (by identity:
 * another name, a glob match, a link, a file of a dump), nor each other. */
static int check_files(const args_t *a) {
  eplb_cli_file_t out[2] = {{"--json", a->json}, {"--svg", a->svg}};
  eplb_cli_file_t *in =
      calloc((size_t)a->num_stats + (size_t)a->num_scen + 1, sizeof(*in));
  if (in == NULL)
    return eplb_cli_usage_error(PROG, "out of memory");
  int n = 0;
  for (int i = 0; i < a->num_stats; i++)
    in[n++] = (eplb_cli_file_t){"--stats", a->stats[i]};
  for (int i = 0; i < a->num_scen; i++)
    in[n++] = (eplb_cli_file_t){"--scenario", a->scen[i].label};
  if (a->map)
    in[n++] = (eplb_cli_file_t){"--map", a->map};
  int rc = eplb_cli_check_outputs(PROG, out, 2, in, n);
  free(in);
  return rc;
}

/* Parses argv into *a.  Returns 0, 2, or -1 for --help/--version. */
static int parse_args(int argc, char *argv[], args_t *a) {
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":", long_opts, NULL)) != -1) {
    int rc = parse_one(a, c, argv);
    if (rc)
      return rc;
  }
  if (optind < argc)
    return eplb_cli_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
  if (a->num_stats == 0 && a->num_scen == 0)
    return eplb_cli_usage_error(
        PROG, "--stats PATH is required (or --scenario SPEC)");
  if (a->num_slots && !a->cross_validate)
    return eplb_cli_usage_error(PROG, "--num-slots sets the shape of the "
                                      "--cross-validate plans; add "
                                      "--cross-validate or drop it");
  if (a->num_slots && a->map)
    return eplb_cli_usage_error(PROG, "--num-slots and --map: the map says "
                                      "the slots; drop --num-slots");
  if (a->cross_validate && a->num_scen == 0 && a->window == 0)
    return eplb_cli_usage_error(PROG, "--cross-validate needs two scenarios "
                                      "or more: --scenario SPEC (repeat) or "
                                      "--window N");
  if (a->cross_validate && !a->map && !a->num_gpus)
    return eplb_cli_usage_error(PROG, "--cross-validate plans on a shape: "
                                      "give --map FILE or --num-gpus G (and "
                                      "--num-slots S)");
  if ((a->svg && a->svg[0] == '\0') || (a->json && a->json[0] == '\0'))
    return eplb_cli_usage_error(PROG, "--svg and --json need a file name");
  return check_files(a);
}

/* ---- the placements ---------------------------------------------------- */

/* Reads --map and fits it to the statistics (same layers; G from the map,
 * or --num-gpus for a YAML map). */
static int read_map(const args_t *a, const eplb_stats_t *st,
                    eplb_placement_t *p, eplb_error_t *err) {
  int rc = eplb_placement_read_for(p, a->map, st, 0, a->num_gpus, "--map", err);
  if (rc == 0 && p->num_gpus == 1 && a->num_gpus == 0 && p->num_slots > 1) {
    int32_t slots = p->num_slots; /* cleanup zeroes it */
    eplb_placement_cleanup(p);
    return eplb_error_set(err, EPLB_EARG,
                          "--map %s does not say how many "
                          "GPUs share its %d slots (TensorRT-LLM YAML); "
                          "pass --num-gpus G",
                          a->map, (int)slots);
  }
  return rc;
}

/* The contiguous placement on G GPUs: E slots when G divides E (as the
 * model starts, no redundancy), else S slots (the map's). */
static int make_before(const eplb_stats_t *st, int32_t G, int32_t S,
                       eplb_placement_t *p, eplb_error_t *err) {
  int32_t E = st->num_experts;
  int rc = eplb_placement_init_contiguous(p, st->num_layers, E,
                                          E % G == 0 ? E : S, G, err);
  if (rc == 0)
    memcpy(p->layer_ids, st->layer_ids,
           sizeof(int32_t) * (size_t)st->num_layers);
  return rc;
}

/* ---- the table --------------------------------------------------------- */

/* One row: label, then mean/std/ratio of before (and after). */
static void print_row(const char *label, double m0, double s0, double r0,
                      int after, double m1, double s1, double r1) {
  printf("%-8s %14.2f %14.2f %10.4f", label, m0, s0, r0);
  if (after)
    printf("   %14.2f %14.2f %10.4f", m1, s1, r1);
  printf("\n");
}

/* The table and the balance metrics on stdout. */
static void print_report(const args_t *a, const eplb_report_t *r) {
  const eplb_report_table_t *b = &r->before, *t = &r->after;
  int per_expert = a->map == NULL && a->num_gpus == 0;
  printf("before: %s\n",
         per_expert
             ? "per expert (no --map, no --num-gpus): one expert per column"
             : "contiguous placement (expert e on GPU e / (slots per GPU))");
  if (r->has_after)
    printf("after:  %s (%d GPUs)\n", a->map, (int)t->num_gpus);
  if (r->num_steps > 1)
    printf("per iteration, averaged over %d iterations (as TensorRT-LLM's "
           "report)\n",
           (int)r->num_steps);
  else if (a->num_scen > 0 || a->window > 0)
    printf("on the scenarios' weighted mean (each layer of each normalised "
           "to its own total)\n");
  else
    printf("on the load summed over the window\n");
  printf("%-8s %14s %14s %10s", "layer", "mean", "std", "imb-ratio");
  if (r->has_after)
    printf("   %14s %14s %10s", "mean-after", "std-after", "imb-after");
  printf("\n");
  for (int32_t l = 0; l < r->num_layers; l++) {
    char label[16];
    snprintf(label, sizeof(label), "%d", (int)r->layer_ids[l]);
    print_row(label, b->mean[l], b->std[l], b->ratio[l], r->has_after,
              r->has_after ? t->mean[l] : 0, r->has_after ? t->std[l] : 0,
              r->has_after ? t->ratio[l] : 0);
  }
  print_row("average", b->avg_mean, b->avg_std, b->avg_ratio, r->has_after,
            t->avg_mean, t->avg_std, t->avg_ratio);
  printf("expert load CV        %.4f (std/mean over experts, averaged over "
         "layers)\n",
         r->avg_cv);
  printf("hottest expert share  %.4f average, %.4f max (layer %d, expert %d)\n",
         r->avg_hot_share, r->max_hot_share,
         (int)r->layer_ids[r->max_hot_layer],
         (int)r->hot_expert[r->max_hot_layer]);
}

/* A scenario's name, cut from the left to fit `width` columns. */
static void print_name(const char *name, int width) {
  int len = (int)strlen(name);
  if (len > width)
    printf("  ...%-*s", width - 3, name + len - (width - 3));
  else
    printf("  %-*s", width, name);
}

/* Each scenario's imbalance before and after, and their weighted mean. */
static void print_scenarios(const eplb_report_t *r) {
  const eplb_report_scenarios_t *s = r->scenarios;
  printf("scenarios             %d (mean imbalance ratio before%s, each on "
         "its own load):\n",
         (int)s->num_scenarios, r->has_after ? " -> after" : "");
  for (int32_t k = 0; k < s->num_scenarios; k++) {
    const eplb_report_scenario_t *v = &s->scenario[k];
    print_name(v->name, 40);
    printf(" w %-6g %.4f", v->weight, v->before.avg_ratio);
    if (r->has_after)
      printf(" -> %.4f", v->after.avg_ratio);
    printf("\n");
  }
  printf("  %-40s %-8s %.4f", "weighted mean", "", s->mean_before);
  if (r->has_after)
    printf(" -> %.4f", s->mean_after);
  printf("\n");
}

/* The leave-one-out table and its mean. */
static void print_cv(const eplb_report_t *r) {
  const eplb_report_scenarios_t *s = r->scenarios;
  const eplb_report_cv_t *cv = &s->cv;
  printf("cross-validation      each scenario judged on plans made from the "
         "others\n"
         "                      (%d slots on %d GPUs; mean imbalance ratio "
         "on the scenario left out)\n",
         (int)cv->num_slots, (int)cv->num_gpus);
  printf("  %-40s %-8s %8s %8s %8s\n", "left out", "weight", "robust",
         "balanced", "deepseek");
  for (int32_t k = 0; k < cv->num_scenarios; k++) {
    print_name(s->scenario[k].name, 40);
    printf(" %-8g %8.4f %8.4f %8.4f\n", s->scenario[k].weight, cv->robust[k],
           cv->balanced[k], cv->deepseek[k]);
  }
  printf("  %-49s %8.4f %8.4f %8.4f\n",
         "mean: what to expect on traffic not seen yet", cv->mean_robust,
         cv->mean_balanced, cv->mean_deepseek);
  printf("  (robust: eplb's plan balancing the others at once; balanced, "
         "deepseek:\n   plans of the others' weighted mean)\n");
}

/* A map in which a GPU holds an expert twice: its consumers (vllm-ascend,
 * MindSpeed-RL, MindIE) drop the copy, so the table's "after" is not what
 * they serve. */
static void print_duplicates(const args_t *a, const eplb_placement_t *p) {
  int32_t l = 0, g = 0, e = 0;
  int64_t n = eplb_placement_duplicates(p, &l, &g, &e);
  if (n <= 0)
    return;
  printf("duplicates            %lld GPU%s of %s hold an expert twice (first: "
         "layer %d, GPU %d, expert %d): vllm-ascend, MindSpeed-RL and MindIE "
         "drop the copy\n",
         (long long)n, n > 1 ? "s" : "", a->map, (int)p->layer_ids[l], (int)g,
         (int)e);
}

/* ---- the run ----------------------------------------------------------- */

typedef struct {
  eplb_stats_t st;         /* the statistics, or the scenarios' weighted mean */
  eplb_cli_scenarios_t sc; /* with --scenario / --window: two or more */
  eplb_series_t series;    /* one TensorRT-LLM dump, per iteration */
  eplb_placement_t before, after;
  eplb_report_t rep;
} run_t;

/* --scenario / --window: the sources read as scenarios into r->sc, their
 * weighted mean into r->st (as eplb-plan reads them); one scenario is
 * the statistics themselves. */
static int read_scenarios(const args_t *a, run_t *r, eplb_error_t *err) {
  int rc = eplb_cli_read_options_scenarios(
      (const char **)a->stats, a->num_stats, a->scen, a->num_scen, a->window,
      a->format, &a->ropts, &r->sc, err);
  if (rc)
    return rc;
  if (r->sc.num == 1) { /* the statistics themselves */
    r->st = r->sc.stats[0];
    r->st.dense_rows = 0; /* dropped already */
    r->sc.num = 0;
    return 0;
  }
  return eplb_cli_scenarios_sum(&r->sc, &r->st, err);
}

/* 1 if the report is per iteration: one --stats, a TensorRT-LLM dump. */
static int per_iteration(const args_t *a) {
  char meta[4096];
  struct stat sb;
  if (a->sum_iters || a->num_stats != 1 || strpbrk(a->stats[0], "*?[") ||
      (a->format != EPLB_STATS_AUTO && a->format != EPLB_STATS_TRTLLM))
    return 0;
  snprintf(meta, sizeof(meta), "%s/meta_info.json", a->stats[0]);
  return stat(a->stats[0], &sb) == 0 && S_ISDIR(sb.st_mode) &&
         stat(meta, &sb) == 0;
}

/* Reads the statistics: summed, per iteration (then st is their sum), or
 * as scenarios. */
static int read_stats(const args_t *a, run_t *r, eplb_error_t *err) {
  if (a->num_scen > 0 || a->window > 0)
    return read_scenarios(a, r, err);
  if (!per_iteration(a))
    return eplb_stats_read_many(&r->st, a->stats, a->num_stats, a->format,
                                &a->ropts, err);
  int rc =
      eplb_stats_read_trtllm_series(&r->series, a->stats[0], &a->ropts, err);
  /* A series too large to hold is found where the directory is not known. */
  if (rc && strstr(err->msg, a->stats[0]) == NULL)
    eplb_error_prefix(err, "%s", a->stats[0]);
  if (rc == 0)
    rc = eplb_series_sum(&r->series, 0, &r->st, err);
  if (rc == 0)
    memcpy(r->st.layer_ids, r->series.layer_ids,
           sizeof(int32_t) * (size_t)r->st.num_layers);
  return rc;
}

/* Each scenario's tables under the placements, into the report. */
static int add_scenarios(const args_t *a, run_t *r, eplb_error_t *err) {
  const char **names = malloc(sizeof(*names) * (size_t)r->sc.num);
  if (names == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t k = 0; k < r->sc.num; k++)
    names[k] = r->sc.names[k];
  eplb_scenarios_t sc = {r->sc.num, r->sc.stats, r->sc.weights};
  int rc = eplb_report_add_scenarios(&r->rep, &sc, names, &r->before,
                                     a->map ? &r->after : NULL, err);
  free(names);
  return rc;
}

/* Reads, drops dense rows, builds the placements and the report. */
static int compute(const args_t *a, run_t *r, eplb_error_t *err) {
  int rc = read_stats(a, r, err);
  if (rc == 0 && r->st.dense_rows)
    rc = eplb_stats_drop_zero_layers(&r->st, NULL, err);
  if (rc == 0 && a->map)
    rc = read_map(a, &r->st, &r->after, err);
  if (rc)
    return rc;
  int32_t E = r->st.num_experts;
  int32_t G = a->map ? r->after.num_gpus : a->num_gpus ? a->num_gpus : E;
  /* Without a map, --num-slots (a multiple of G) stands in for the map's
   * slots when G does not divide the experts. */
  int32_t S = a->map ? r->after.num_slots : a->num_slots ? a->num_slots : E;
  if (!a->map && E % G != 0 && S % G != 0)
    return eplb_error_set(err, EPLB_EARG,
                          "--num-gpus %d does not divide the "
                          "%d experts; the contiguous placement needs "
                          "experts %% G == 0%s",
                          (int)G, (int)E,
                          a->num_slots ? " (or --num-slots a multiple of G)"
                                       : "");
  rc = make_before(&r->st, G, S, &r->before, err);
  if (rc == 0 && r->series.num_steps > 0)
    rc = eplb_report_compute_series(&r->rep, &r->series, &r->before,
                                    a->map ? &r->after : NULL, err);
  else if (rc == 0)
    rc = eplb_report_compute(&r->rep, &r->st, &r->before,
                             a->map ? &r->after : NULL, err);
  if (rc == 0 && r->sc.num > 1)
    rc = add_scenarios(a, r, err);
  return rc;
}

/* --cross-validate: the plans' options from the map or --num-gpus /
 * --num-slots.  Returns 0, or 2 after a usage error (a shape that does not
 * fit the statistics). */
static int cv_opts(const args_t *a, const run_t *r, eplb_plan_opts_t *o) {
  eplb_plan_opts_default(o);
  o->threads = 0; /* one process: the machine's CPUs */
  o->num_gpus = a->map ? r->after.num_gpus : a->num_gpus;
  o->num_slots = a->map         ? r->after.num_slots
                 : a->num_slots ? a->num_slots
                                : r->st.num_experts;
  if (r->sc.num < 2)
    return eplb_cli_usage_error(PROG,
                                "--cross-validate needs two scenarios or "
                                "more, and the sources make %d; give more "
                                "--scenario or a shorter --window",
                                r->sc.num > 0 ? (int)r->sc.num : 1);
  eplb_error_t err;
  if (eplb_plan_check_opts(o, r->st.num_experts, &err) != 0)
    return eplb_cli_usage_error(PROG, "--cross-validate: %s", err.msg);
  return 0;
}

/* The leave-one-out table into the report's scenarios. */
static int cross_validate(const eplb_plan_opts_t *o, run_t *r,
                          eplb_error_t *err) {
  eplb_scenarios_t sc = {r->sc.num, r->sc.stats, r->sc.weights};
  eplb_report_cv_t cv = {0};
  int rc = eplb_report_cross_validate(&sc, o, &cv, err);
  if (rc)
    return rc;
  r->rep.scenarios->cv = cv;
  r->rep.scenarios->has_cv = 1;
  return 0;
}

/* Everything after the options; returns the exit code. */
static int run(const args_t *a, run_t *r) {
  eplb_error_t err;
  eplb_error_clear(&err);
  int rc = compute(a, r, &err);
  if (rc == 0 && a->cross_validate) {
    eplb_plan_opts_t o;
    int urc = cv_opts(a, r, &o);
    if (urc)
      return urc;
    rc = cross_validate(&o, r, &err);
  }
  if (rc == 0 && a->svg)
    rc = eplb_report_write_svg(&r->rep, a->svg, &err);
  if (rc == 0 && a->json)
    rc = eplb_report_write_json(&r->rep, a->json, &err);
  if (rc)
    return eplb_cli_report(PROG, &err);
  if (!a->quiet && !(a->json && strcmp(a->json, "-") == 0)) {
    print_report(a, &r->rep);
    if (a->map)
      print_duplicates(a, &r->after);
    if (r->rep.scenarios)
      print_scenarios(&r->rep);
    if (r->rep.scenarios && r->rep.scenarios->has_cv)
      print_cv(&r->rep);
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
  args_t a = {.format = EPLB_STATS_AUTO, .ropts = {-1, -1}};
  a.stats = calloc((size_t)argc + 1, sizeof(*a.stats));
  a.scen = calloc((size_t)argc + 1, sizeof(*a.scen));
  if (a.stats == NULL || a.scen == NULL) {
    eplb_cli_error(PROG, "out of memory");
    free(a.stats);
    free(a.scen);
    return 1;
  }
  int rc = parse_args(argc, argv, &a);
  if (rc != 0) {
    free_args(&a);
    return rc < 0 ? 0 : rc;
  }
  run_t r;
  memset(&r, 0, sizeof(r));
  rc = run(&a, &r);
  eplb_report_cleanup(&r.rep);
  eplb_series_cleanup(&r.series);
  eplb_placement_cleanup(&r.before);
  eplb_placement_cleanup(&r.after);
  /* r.st is the statistics, the scenarios' mean, or the one scenario's
   * (then taken out of r.sc, whose num is 0): its own either way. */
  eplb_stats_cleanup(&r.st);
  eplb_cli_scenarios_cleanup(&r.sc);
  free_args(&a);
  return rc;
}
