/* bench_robust.c - plans judged on traffic they were not made from.
 *
 * Usage: bench_robust [--shape S/G] [--reps N] [--speed] [--json FILE]
 *                     STATS...
 * The statistics files are grouped by phase, the part of the file name
 * before the first '_' (SGLang's decode_in1000out1000.json is "decode").
 * For each phase with two workloads or more, leave-one-out: each workload
 * in turn is left out, the others of its phase are the plan's input, and
 * the plan is judged on the one left out (mean over MoE layers of max/mean
 * - 1 of GPU loads; all-zero dense layers are dropped).  Plans compared:
 *   robust    eplb's scenario plan (eplb_plan_scenarios), each workload a
 *             scenario of equal weight;
 *   sum       eplb's balanced plan of the per-layer normalised sum;
 *   deepseek  DeepSeek's algorithm (--policy deepseek) on the same sum;
 * with the robust plan's in-sample imbalance on that sum and the time of
 * the robust plan (one thread, fastest of --reps).  Last, the speed case
 * of docs/planner.md: the robust plan of up to six of the given workloads
 * at once, every layer, one thread (--speed: that alone).  Prints a table (and
 * JSON with
 * --json); asserts nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eplb/eplb.h"

#define MAX_FILES 64

typedef struct {
  char phase[64];
  const char *path;
  eplb_stats_t st; /* dense layers dropped */
} work_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, const eplb_error_t *err) {
  fprintf(stderr, "bench_robust: %s: %s\n", what, eplb_error_message(err));
  exit(1);
}

/* The phase of a file: its base name up to the first '_' or '.'. */
static void phase_of(const char *path, char *out, size_t cap) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  size_t n = strcspn(b, "_.");
  snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), b);
}

/* Mean over layers of the imbalance of p on st. */
static double imbalance(const eplb_stats_t *st, const eplb_placement_t *p) {
  eplb_balance_t b;
  eplb_error_t err;
  if (eplb_balance(st, p, &b, &err))
    die("balance", &err);
  return b.imbalance;
}

/* The per-layer normalised sum of n histograms (equal weights). */
static void normalised_sum(eplb_stats_t *const *in, int n, eplb_stats_t *out) {
  eplb_error_t err;
  const eplb_stats_t *s0 = in[0];
  if (eplb_stats_init(out, s0->num_layers, s0->num_experts, &err))
    die("stats", &err);
  memcpy(out->layer_ids, s0->layer_ids, sizeof(int32_t) * s0->num_layers);
  int32_t E = s0->num_experts;
  for (int i = 0; i < n; i++)
    for (int32_t l = 0; l < s0->num_layers; l++) {
      const double *x = in[i]->load + (size_t)l * E;
      double t = 0;
      for (int32_t e = 0; e < E; e++)
        t += x[e];
      for (int32_t e = 0; t > 0 && e < E; e++)
        out->load[(size_t)l * E + e] += x[e] / t / n;
    }
}

/* The robust plan of the n histograms, fastest of reps, into *p and
 * *ms (milliseconds). */
static void robust_plan(eplb_stats_t *const *in, int n,
                        const eplb_plan_opts_t *o, int reps,
                        eplb_placement_t *p, double *ms) {
  eplb_stats_t *arr = malloc(sizeof(*arr) * (size_t)n);
  for (int i = 0; i < n; i++)
    arr[i] = *in[i]; /* shallow: the plan only reads them */
  eplb_scenarios_t sc = {.num_scenarios = n, .stats = arr};
  eplb_error_t err;
  *ms = HUGE_VAL;
  for (int r = 0; r < reps; r++) {
    eplb_placement_t q;
    double t0 = now_s();
    if (eplb_plan_scenarios(&sc, o, &q, &err))
      die("robust plan", &err);
    double t = (now_s() - t0) * 1e3;
    *ms = t < *ms ? t : *ms;
    if (r == 0)
      *p = q;
    else
      eplb_placement_cleanup(&q);
  }
  free(arr);
}

static void plan_sum(const eplb_stats_t *sum, const eplb_plan_opts_t *o,
                     eplb_policy_t policy, eplb_placement_t *p) {
  eplb_plan_opts_t x = *o;
  x.policy = policy;
  eplb_error_t err;
  if (eplb_plan(sum, &x, p, &err))
    die("plan of the sum", &err);
}

typedef struct {
  double robust, sum, deepseek, insample, ms;
} row_t;

/* Leave-one-out over the n workloads of one phase: rows[n]. */
static void leave_one_out(work_t *w, int n, const eplb_plan_opts_t *o, int reps,
                          row_t *rows) {
  eplb_stats_t *train[MAX_FILES];
  for (int j = 0; j < n; j++) {
    int m = 0;
    for (int i = 0; i < n; i++)
      if (i != j)
        train[m++] = &w[i].st;
    eplb_stats_t sum;
    normalised_sum(train, m, &sum);
    eplb_placement_t pr, ps, pd;
    robust_plan(train, m, o, reps, &pr, &rows[j].ms);
    plan_sum(&sum, o, EPLB_POLICY_BALANCED, &ps);
    plan_sum(&sum, o, EPLB_POLICY_DEEPSEEK, &pd);
    rows[j].robust = imbalance(&w[j].st, &pr);
    rows[j].sum = imbalance(&w[j].st, &ps);
    rows[j].deepseek = imbalance(&w[j].st, &pd);
    rows[j].insample = imbalance(&sum, &pr);
    eplb_placement_cleanup(&pr);
    eplb_placement_cleanup(&ps);
    eplb_placement_cleanup(&pd);
    eplb_stats_cleanup(&sum);
  }
}

static void load_all(work_t *w, int n) {
  for (int i = 0; i < n; i++) {
    eplb_error_t err;
    if (eplb_stats_read(&w[i].st, w[i].path, EPLB_STATS_AUTO, &err))
      die(w[i].path, &err);
    int32_t dropped = 0;
    if (eplb_stats_drop_zero_layers(&w[i].st, &dropped, &err))
      die(w[i].path, &err);
    phase_of(w[i].path, w[i].phase, sizeof(w[i].phase));
  }
}

static const char *base(const char *p) {
  const char *b = strrchr(p, '/');
  return b ? b + 1 : p;
}

int main(int argc, char **argv) {
  int32_t S = 288, G = 36;
  int reps = 5, n = 0, speed_only = 0;
  const char *json = NULL;
  work_t w[MAX_FILES];
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc) {
      if (sscanf(argv[++i], "%d/%d", &S, &G) != 2 || S < 1 || G < 1) {
        fprintf(stderr, "bench_robust: --shape S/G, e.g. 288/36\n");
        return 2;
      }
    } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = atoi(argv[++i]);
      reps = reps < 1 ? 1 : reps > 1000 ? 1000 : reps;
    } else if (strcmp(argv[i], "--speed") == 0) {
      speed_only = 1;
    } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json = argv[++i];
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "usage: bench_robust [--shape S/G] [--reps N] "
                      "[--speed] [--json FILE] STATS...\n");
      return 2;
    } else if (n < MAX_FILES) {
      w[n++].path = argv[i];
    }
  }
  if (n < 2) {
    fprintf(stderr, "bench_robust: give two statistics files or more "
                    "(../shared/data/sglang_dsv3/*.json)\n");
    return 2;
  }
  load_all(w, n);
  eplb_plan_opts_t o;
  eplb_plan_opts_default(&o);
  o.num_slots = S;
  o.num_gpus = G;
  o.threads = 1;
  FILE *jf = json ? fopen(json, "w") : NULL;
  if (json && jf == NULL) {
    perror(json);
    return 1;
  }
  if (jf)
    fprintf(jf, "{\"shape\": \"%d/%d\", \"phases\": [", S, G);
  printf("# leave-one-out: plan on the other workloads of the phase, judge "
         "on the one left out\n# imbalance = mean over layers of max/mean - "
         "1 of GPU loads; %d slots / %d GPUs; time: robust plan, 1 thread, "
         "fastest of %d\n",
         S, G, reps);
  printf("%-28s %-8s %8s %8s %8s %8s %9s\n", "left out", "phase", "robust",
         "sum", "deepseek", "in-samp", "time(ms)");
  int first_phase = 1;
  for (int i = 0; i < n && !speed_only; i++) {
    int seen = 0, m = 0;
    for (int j = 0; j < i; j++)
      seen |= strcmp(w[j].phase, w[i].phase) == 0;
    if (seen)
      continue;
    work_t grp[MAX_FILES];
    for (int j = i; j < n; j++)
      if (strcmp(w[j].phase, w[i].phase) == 0)
        grp[m++] = w[j];
    if (m < 2)
      continue;
    row_t rows[MAX_FILES], mean = {0};
    leave_one_out(grp, m, &o, reps, rows);
    if (jf)
      fprintf(jf, "%s{\"phase\": \"%s\", \"left_out\": [",
              first_phase ? "" : ", ", w[i].phase);
    first_phase = 0;
    for (int j = 0; j < m; j++) {
      printf("%-28s %-8s %8.4f %8.4f %8.4f %8.4f %9.3f\n", base(grp[j].path),
             grp[j].phase, rows[j].robust, rows[j].sum, rows[j].deepseek,
             rows[j].insample, rows[j].ms);
      mean.robust += rows[j].robust / m;
      mean.sum += rows[j].sum / m;
      mean.deepseek += rows[j].deepseek / m;
      mean.insample += rows[j].insample / m;
      mean.ms += rows[j].ms / m;
      if (jf)
        fprintf(jf,
                "%s{\"file\": \"%s\", \"robust\": %.6f, \"sum\": %.6f, "
                "\"deepseek\": %.6f, \"in_sample\": %.6f, \"ms\": %.4f}",
                j ? ", " : "", base(grp[j].path), rows[j].robust, rows[j].sum,
                rows[j].deepseek, rows[j].insample, rows[j].ms);
    }
    printf("%-28s %-8s %8.4f %8.4f %8.4f %8.4f %9.3f   robust/deepseek %.3f\n",
           "mean", w[i].phase, mean.robust, mean.sum, mean.deepseek,
           mean.insample, mean.ms, mean.robust / mean.deepseek);
    if (jf)
      fprintf(jf,
              "], \"mean\": {\"robust\": %.6f, \"sum\": %.6f, \"deepseek\": "
              "%.6f, \"in_sample\": %.6f, \"ms\": %.4f}}",
              mean.robust, mean.sum, mean.deepseek, mean.insample, mean.ms);
  }
  /* The speed case: up to six workloads as scenarios, all layers. */
  int k = n < 6 ? n : 6;
  eplb_stats_t *sc[6];
  for (int i = 0; i < k; i++)
    sc[i] = &w[i].st;
  eplb_placement_t p;
  double ms = 0;
  robust_plan(sc, k, &o, reps, &p, &ms);
  printf("# speed: robust plan of %d scenarios, %d layers, %d/%d, 1 thread: "
         "%.3f ms (fastest of %d)\n",
         k, w[0].st.num_layers, S, G, ms, reps);
  eplb_placement_cleanup(&p);
  if (jf) {
    fprintf(
        jf,
        "], \"speed\": {\"scenarios\": %d, \"layers\": %d, \"ms\": %.4f}}\n", k,
        w[0].st.num_layers, ms);
    fclose(jf);
  }
  for (int i = 0; i < n; i++)
    eplb_stats_cleanup(&w[i].st);
  return 0;
}
