/* bench_plan.c - plan quality and plan time of eplb's policies.
 *
 * Usage: bench_plan [--reps N] [--min] [--threads T] [STATS.json ...]
 * For each statistics file (SGLang logical_count; ../shared/data/sglang_dsv3
 * has real DeepSeek-V3 ones) and for generated skewed loads, on the
 * DeepSeek-V3 shapes (288 slots / 36 GPUs, 256 / 32, 320 / 64, and the
 * hierarchical 288 / 36 on 4 nodes with 8 groups): mean imbalance
 * (max/mean - 1, averaged over layers) of the contiguous placement, of
 * `deepseek` and of `balanced`, the floor, and the median plan time of the
 * whole histogram (--min: the fastest of the N runs instead, steadier on a
 * machine others are loading).  The balanced plan is timed on one thread
 * and on T (--threads, default 0 = one per CPU the process may use, as eplb-plan).
 * Prints figures; asserts nothing about time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eplb/eplb.h"

typedef struct {
  const char *name;
  int32_t S, G, N, K, spill;
} shape_t;

static const shape_t shapes[] = {
    {"288/36", 288, 36, 1, 1, 0},
    {"256/32", 256, 32, 1, 1, 0},
    {"320/64", 320, 64, 1, 1, 0},
    {"288/36 h4x8", 288, 36, 4, 8, 0},
    {"288/36 h4x8 spill", 288, 36, 4, 8, 1},
};

/* Mean over layers of the fraction of tokens served away from their
 * group's node (reported for hierarchical shapes). */
static double cross_node(const eplb_stats_t *st, const eplb_plan_opts_t *o) {
  eplb_placement_t p;
  if (eplb_plan(st, o, &p, NULL) != 0)
    exit(1);
  double sum = 0;
  for (int32_t l = 0; l < st->num_layers; l++)
    sum += eplb_layer_cross_node(st->load + (size_t)l * st->num_experts,
                                 st->num_experts, p.phy2log + (size_t)l * p.num_slots,
                                 p.num_slots, p.num_gpus, o->num_nodes,
                                 o->num_groups);
  eplb_placement_cleanup(&p);
  return sum / st->num_layers;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Report the fastest run instead of the median (--min). */
static int use_min = 0;

/* Threads of the second balanced timing (--threads). */
static int32_t threads = 0;

/* Plans `st` reps times; returns the median (or minimum) seconds and fills
 * *bal. */
static double plan_timed(const eplb_stats_t *st, const eplb_plan_opts_t *o,
                         int reps, eplb_balance_t *bal) {
  double *t = malloc(sizeof(double) * (size_t)reps);
  eplb_error_t err;
  for (int r = 0; r < reps; r++) {
    eplb_placement_t p;
    double t0 = now_s();
    if (eplb_plan(st, o, &p, &err) != 0) {
      fprintf(stderr, "bench_plan: %s\n", eplb_error_message(&err));
      exit(1);
    }
    t[r] = now_s() - t0;
    if (r == 0 && eplb_balance(st, &p, bal, &err) != 0) {
      fprintf(stderr, "bench_plan: %s\n", eplb_error_message(&err));
      exit(1);
    }
    eplb_placement_cleanup(&p);
  }
  qsort(t, (size_t)reps, sizeof(double), cmp_double);
  double med = use_min ? t[0] : t[reps / 2];
  free(t);
  return med;
}

/* The floor that counts only the hottest expert's share (mean over
 * layers of max(0, m * G / total - 1), m its load per replica after
 * greedy replication) - reported beside eplb's tighter floor. */
static double hot_floor(const eplb_stats_t *st, const shape_t *sh) {
  int32_t E = st->num_experts;
  double sum = 0;
  int32_t *cnt = malloc(sizeof(int32_t) * (size_t)E);
  double *w = malloc(sizeof(double) * (size_t)E);
  for (int32_t l = 0; l < st->num_layers; l++) {
    const double *ld = st->load + (size_t)l * E;
    double total = 0;
    for (int32_t e = 0; e < E; e++) {
      cnt[e] = 1;
      total += ld[e];
    }
    for (int32_t r = E; r < sh->S; r++) { /* greedy: hottest per replica */
      int32_t best = 0;
      for (int32_t e = 1; e < E; e++)
        if (ld[e] * cnt[best] > ld[best] * cnt[e])
          best = e;
      cnt[best]++;
    }
    double m = 0;
    for (int32_t e = 0; e < E; e++)
      w[e] = ld[e] / cnt[e], m = w[e] > m ? w[e] : m;
    double f = total > 0 ? m * sh->G / total - 1 : 0;
    sum += f > 0 ? f : 0;
  }
  free(cnt);
  free(w);
  return sum / st->num_layers;
}

static void run(const char *label, const eplb_stats_t *st, int reps) {
  for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
    const shape_t *sh = &shapes[i];
    eplb_plan_opts_t o;
    eplb_plan_opts_default(&o);
    o.num_slots = sh->S;
    o.num_gpus = sh->G;
    o.num_nodes = sh->N;
    o.num_groups = sh->K;
    eplb_placement_t c;
    char xn[32] = "-";
    eplb_balance_t before, ds, bl;
    if (eplb_placement_init(&c, st->num_layers, st->num_experts, sh->S, sh->G,
                            NULL) != 0 ||
        eplb_placement_contiguous(&c, NULL) != 0 ||
        eplb_balance(st, &c, &before, NULL) != 0) {
      fprintf(stderr, "bench_plan: cannot build the contiguous placement\n");
      exit(1);
    }
    eplb_placement_cleanup(&c);
    o.policy = EPLB_POLICY_DEEPSEEK;
    double tds = plan_timed(st, &o, reps, &ds);
    o.policy = EPLB_POLICY_BALANCED;
    o.spill = sh->spill;
    double tbl = plan_timed(st, &o, reps, &bl);
    eplb_balance_t blt;
    o.threads = threads;
    double tblt = plan_timed(st, &o, reps, &blt);
    o.threads = 1;
    if (blt.imbalance != bl.imbalance) {
      fprintf(stderr, "bench_plan: %s %s: the map depends on the thread count\n",
              label, sh->name);
      exit(1);
    }
    if (sh->N > 1)
      snprintf(xn, sizeof(xn), "%.4f", cross_node(st, &o));
    printf("%-26s %-18s %8.4f %8.4f %8.4f %8.4f %8.4f %8s %8.3f %8.3f %8.3f\n",
           label, sh->name, before.imbalance, ds.imbalance, bl.imbalance,
           bl.floor, hot_floor(st, sh), xn, tds * 1e3, tbl * 1e3, tblt * 1e3);
  }
}

static uint64_t rng = 88172645463325252ULL;
static double unit(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

/* 58 layers x 256 experts: per-layer Zipf-like skew, integer counts. */
static void generate(eplb_stats_t *st, double skew) {
  if (eplb_stats_init(st, 58, 256, NULL) != 0)
    exit(1);
  for (int32_t l = 0; l < 58; l++) {
    double s = skew * (0.5 + unit());
    for (int32_t e = 0; e < 256; e++)
      st->load[l * 256 + e] = floor(1e4 * pow(unit() + 1e-3, -s));
  }
}

int main(int argc, char **argv) {
  int reps = 21, first = 1;
  for (;;) {
    if (argc > first + 1 && strcmp(argv[first], "--reps") == 0) {
      reps = atoi(argv[first + 1]);
      if (reps < 1 || reps > 10000) {
        fprintf(stderr, "bench_plan: --reps must be in 1..10000\n");
        return 2;
      }
      first += 2;
    } else if (argc > first + 1 && strcmp(argv[first], "--threads") == 0) {
      threads = atoi(argv[first + 1]);
      if (threads < EPLB_MIN_PLAN_THREADS || threads > EPLB_MAX_PLAN_THREADS) {
        fprintf(stderr, "bench_plan: --threads must be in %d..%d\n",
                EPLB_MIN_PLAN_THREADS, EPLB_MAX_PLAN_THREADS);
        return 2;
      }
      first += 2;
    } else if (argc > first && strcmp(argv[first], "--min") == 0) {
      use_min = 1;
      first++;
    } else {
      break;
    }
  }
  printf("# eplb plan quality and time (eplb %s)\n", eplb_version());
  printf("# imbalance = mean over layers of max/mean - 1 of GPU loads; floor = "
         "best any plan can do; time = %s of %d plans of all layers\n",
         use_min ? "fastest" : "median", reps);
  printf("# floor = eplb_layer_floor (hottest replica + the slots its GPU must "
         "also fill); hot-floor = hottest replica's share alone\n");
  printf("# xnode = fraction of tokens served away from their expert group's "
         "node (balanced plan, hierarchical shapes)\n");
  printf("# ds, bal: one thread; bal xT: --threads %d (0 = one per usable CPU)\n",
         (int)threads);
  printf("%-26s %-18s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n", "# workload", "shape",
         "contig", "deepseek", "balanced", "floor", "hotfloor", "xnode",
         "ds (ms)", "bal (ms)", "bal xT");
  for (int i = first; i < argc; i++) {
    eplb_stats_t st;
    eplb_error_t err;
    int32_t dropped = 0;
    if (eplb_stats_read(&st, argv[i], EPLB_STATS_AUTO, &err) != 0 ||
        eplb_stats_drop_zero_layers(&st, &dropped, &err) != 0) {
      fprintf(stderr, "bench_plan: %s\n", eplb_error_message(&err));
      return 1;
    }
    const char *base = strrchr(argv[i], '/');
    run(base ? base + 1 : argv[i], &st, reps);
    eplb_stats_cleanup(&st);
  }
  const double skews[] = {0.3, 0.6, 0.9};
  for (size_t k = 0; k < sizeof(skews) / sizeof(skews[0]); k++) {
    eplb_stats_t st;
    generate(&st, skews[k]);
    char label[64];
    snprintf(label, sizeof(label), "generated skew %.1f", skews[k]);
    run(label, &st, reps);
    eplb_stats_cleanup(&st);
  }
  return 0;
}
