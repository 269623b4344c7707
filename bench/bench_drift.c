/* bench_drift.c - plans judged on the traffic that follows, and the experts
 * a re-plan moves.
 *
 * Usage: bench_drift [--seeds N] [--json FILE] [STATS.json ...]
 *
 * Generated workloads: 58 layers x 256 experts in 8 groups, per-layer skew,
 * per-step noise, slow drift between windows.  Window 0 sets the current
 * placement (DeepSeek's plan of it, as a deployment running DeepSeek EPLB
 * would have); each policy re-plans on window 1 and is judged on every step
 * of window 2 (TensorRT-LLM's imbalance ratio: max/mean - 1 per layer and
 * step, averaged over steps, then layers).  Real statistics given on the
 * command line are used in threes: DeepSeek's plan of the first is the
 * current placement, policies re-plan on the second and are judged on the
 * third - once in the order given ("real chain"), and once for every
 * ordered triple of distinct files ("real triples": with SGLang's four
 * workloads, 24 triples; one chain alone is too few layers to tell apart
 * policies whose next-window figures differ by a few percent).
 *
 * Columns: in-sample imbalance (on the window planned for), next-window
 * imbalance, replicas moved from the current placement per layer, plan time.
 * Prints a table; --json writes the same numbers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eplb/eplb.h"
#include "eplb/series.h"

#define L 58
#define E 256
#define S 288
#define G 36
#define STEPS 32

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng;
static double unit(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) {
  return sqrt(-2 * log(unit())) * cos(6.283185307179586 * unit());
}

/* series[w][step][L][E] for 3 windows.  Popularity drifts continuously:
 * every step each expert's log-popularity takes a small random step, and
 * each group of 32 experts a shared one (experts of a group rise and fall
 * together); per-step routing noise comes on top. */
static double *generate(uint64_t seed) {
  rng = seed * 0x9E3779B97F4A7C15ULL + 1;
  double *logp = malloc(sizeof(double) * L * E);
  double *series = malloc(sizeof(double) * 3 * STEPS * L * E);
  for (int l = 0; l < L; l++) {
    double skew = 0.6 + 0.9 * unit();
    double group[8];
    for (int k = 0; k < 8; k++)
      group[k] = 0.4 * gauss();
    for (int e = 0; e < E; e++)
      logp[l * E + e] = skew * gauss() + group[e / 32];
  }
  const double step_sd = 0.25 / sqrt(STEPS), group_sd = 0.15 / sqrt(STEPS);
  for (int w = 0; w < 3; w++) {
    for (int t = 0; t < STEPS; t++) {
      double *step = series + ((size_t)w * STEPS + t) * L * E;
      for (int l = 0; l < L; l++) {
        double gd[8];
        for (int k = 0; k < 8; k++)
          gd[k] = group_sd * gauss();
        double sum = 0;
        for (int e = 0; e < E; e++) {
          logp[l * E + e] += step_sd * gauss() + gd[e / 32]; /* drift */
          double v = exp(logp[l * E + e] + 0.3 * gauss()); /* step noise */
          step[l * E + e] = v;
          sum += v;
        }
        for (int e = 0; e < E; e++) /* 4096 tokens x top-8 per step */
          step[l * E + e] = floor(32768.0 * step[l * E + e] / sum);
      }
    }
  }
  free(logp);
  return series;
}

static void window_sum(const double *series, int w, eplb_stats_t *st) {
  eplb_stats_init(st, L, E, NULL);
  for (int t = 0; t < STEPS; t++) {
    const double *step = series + ((size_t)w * STEPS + t) * L * E;
    for (int i = 0; i < L * E; i++)
      st->load[i] += step[i];
  }
}

/* Mean over layers of the mean over steps of max/mean - 1. */
static double judge(const double *series, int w, const eplb_placement_t *p) {
  double sum = 0;
  for (int l = 0; l < L; l++) {
    double s = 0;
    for (int t = 0; t < STEPS; t++) {
      const double *step = series + ((size_t)w * STEPS + t) * L * E;
      s += eplb_layer_imbalance(step + l * E, E, p->phy2log + l * S, S, G);
    }
    sum += s / STEPS;
  }
  return sum / L;
}

typedef struct {
  const char *name;
  eplb_policy_t policy;
  int from_current;
  double move_cost;
  int ema; /* plan on the EMA of the window, rate chosen by backtest */
} policy_t;

static const policy_t policies[] = {
    {"deepseek", EPLB_POLICY_DEEPSEEK, 0, 0, 0},
    {"balanced", EPLB_POLICY_BALANCED, 0, 0, 0},
    {"balanced ema", EPLB_POLICY_BALANCED, 0, 0, 1},
    {"balanced+current", EPLB_POLICY_BALANCED, 1, EPLB_DEFAULT_MOVE_COST, 0},
    {"balanced+current ema", EPLB_POLICY_BALANCED, 1, EPLB_DEFAULT_MOVE_COST, 1},
    {"balanced+current mc=0.0005", EPLB_POLICY_BALANCED, 1, 0.0005, 0},
    {"balanced+current mc=0", EPLB_POLICY_BALANCED, 1, 0.0, 0},
};
#define NPOL (sizeof(policies) / sizeof(policies[0]))

typedef struct {
  double in, next, moved, ms;
  int n;
} acc_t;

static void plan_one(const policy_t *pol, const eplb_stats_t *st,
                     const eplb_placement_t *cur, eplb_placement_t *out,
                     double *ms) {
  eplb_plan_opts_t o;
  eplb_plan_opts_default(&o);
  o.num_slots = S;
  o.num_gpus = G;
  o.policy = pol->policy;
  o.move_cost = pol->move_cost;
  eplb_error_t err;
  double t0 = now_s();
  int rc = pol->from_current ? eplb_plan_from(st, cur, &o, out, &err)
                             : eplb_plan(st, &o, out, &err);
  *ms = (now_s() - t0) * 1e3;
  if (rc) {
    fprintf(stderr, "bench_drift: %s\n", eplb_error_message(&err));
    exit(1);
  }
}

int main(int argc, char **argv) {
  int seeds = 3, first = 1;
  const char *json = NULL;
  while (first < argc && strncmp(argv[first], "--", 2) == 0) {
    if (strcmp(argv[first], "--seeds") == 0 && first + 1 < argc) {
      seeds = atoi(argv[first + 1]);
      if (seeds < 1 || seeds > 100) {
        fprintf(stderr, "bench_drift: --seeds must be in 1..100\n");
        return 2;
      }
    } else if (strcmp(argv[first], "--json") == 0 && first + 1 < argc) {
      json = argv[first + 1];
    } else {
      fprintf(stderr, "usage: bench_drift [--seeds N] [--json FILE] [STATS ...]\n");
      return 2;
    }
    first += 2;
  }
  acc_t gen[NPOL] = {0}, real[NPOL] = {0}, triples[NPOL] = {0};
  eplb_plan_opts_t o;
  eplb_plan_opts_default(&o);
  o.num_slots = S;
  o.num_gpus = G;
  o.policy = EPLB_POLICY_DEEPSEEK;
  for (int sd = 1; sd <= seeds; sd++) {
    double *series = generate((uint64_t)sd);
    eplb_stats_t w0, w1;
    window_sum(series, 0, &w0);
    window_sum(series, 1, &w1);
    eplb_placement_t cur;
    if (eplb_plan(&w0, &o, &cur, NULL) != 0)
      return 1;
    /* Window 1 as a series, for the EMA policies (the backtest and the
     * weighted sum count in the plan time). */
    eplb_series_t ser;
    if (eplb_series_init(&ser, STEPS, L, E, NULL) != 0)
      return 1;
    memcpy(ser.load, series + (size_t)STEPS * L * E,
           sizeof(double) * STEPS * L * E);
    for (size_t k = 0; k < NPOL; k++) {
      eplb_placement_t p;
      double ms, ema_ms = 0, alpha = 0;
      eplb_stats_t wk = w1;
      if (policies[k].ema) {
        double t0 = now_s();
        eplb_series_choose_alpha(&ser, &alpha, NULL);
        eplb_series_sum(&ser, alpha, &wk, NULL);
        ema_ms = (now_s() - t0) * 1e3;
        if (k == 2)
          printf("# seed %d: EMA rate chosen by backtest %.2f\n", sd, alpha);
      }
      plan_one(&policies[k], &wk, &cur, &p, &ms);
      ms += ema_ms;
      if (policies[k].ema)
        eplb_stats_cleanup(&wk);
      eplb_balance_t b;
      eplb_balance(&w1, &p, &b, NULL);
      gen[k].in += b.imbalance;
      gen[k].next += judge(series, 2, &p);
      gen[k].moved += (double)eplb_placement_moves(&cur, &p) / L;
      gen[k].ms += ms;
      gen[k].n++;
      eplb_placement_cleanup(&p);
    }
    eplb_placement_cleanup(&cur);
    eplb_series_cleanup(&ser);
    eplb_stats_cleanup(&w0);
    eplb_stats_cleanup(&w1);
    free(series);
  }
  /* Real statistics: DeepSeek's plan of file a is the current placement,
   * every policy re-plans on file b and is judged on file c.  The chain
   * takes (i, i+1, i+2) in the order given; the triples every ordered
   * (a, b, c) of distinct files. */
  int nf = argc - first;
  if (nf > 8) {
    fprintf(stderr, "bench_drift: at most 8 statistics files\n");
    return 2;
  }
  eplb_stats_t f[8];
  eplb_placement_t ds[8];
  for (int j = 0; j < nf; j++) {
    int32_t d;
    if (eplb_stats_read(&f[j], argv[first + j], EPLB_STATS_AUTO, NULL) != 0 ||
        eplb_stats_drop_zero_layers(&f[j], &d, NULL) != 0 ||
        f[j].num_experts != E || f[j].num_layers != f[0].num_layers ||
        eplb_plan(&f[j], &o, &ds[j], NULL) != 0) {
      fprintf(stderr, "bench_drift: cannot use %s\n", argv[first + j]);
      return 1;
    }
  }
  for (int a = 0; a < nf; a++)
    for (int b = 0; b < nf; b++)
      for (int c = 0; c < nf; c++) {
        if (a == b || b == c || a == c)
          continue;
        int chain = b == a + 1 && c == a + 2;
        for (size_t k = 0; k < NPOL; k++) {
          if (policies[k].ema)
            continue; /* the real statistics are sums, not series */
          eplb_placement_t p;
          double ms;
          plan_one(&policies[k], &f[b], &ds[a], &p, &ms);
          eplb_balance_t bi, bn;
          eplb_balance(&f[b], &p, &bi, NULL);
          eplb_balance(&f[c], &p, &bn, NULL);
          double mv = (double)eplb_placement_moves(&ds[a], &p) / f[b].num_layers;
          for (int set = chain ? 0 : 1; set < 2; set++) {
            acc_t *r = set ? &triples[k] : &real[k];
            r->in += bi.imbalance;
            r->next += bn.imbalance;
            r->moved += mv;
            r->ms += ms;
            r->n++;
          }
          eplb_placement_cleanup(&p);
        }
      }
  for (int j = 0; j < nf; j++) {
    eplb_placement_cleanup(&ds[j]);
    eplb_stats_cleanup(&f[j]);
  }

  printf("# eplb plans judged on the following traffic (%d x %d -> %d slots "
         "on %d GPUs)\n", L, E, S, G);
  printf("# current placement = DeepSeek's plan of the previous window; moved "
         "= replicas per layer that arrive on a new GPU\n");
  printf("%-13s %-28s %10s %10s %10s %10s\n", "# workload", "policy",
         "in-sample", "next", "moved", "plan (ms)");
  FILE *jf = json ? fopen(json, "w") : NULL;
  if (jf)
    fprintf(jf, "{\"shape\": {\"layers\": %d, \"experts\": %d, \"slots\": %d, "
                "\"gpus\": %d}, \"results\": [", L, E, S, G);
  int firstrow = 1;
  for (int set = 0; set < 3; set++) {
    acc_t *acc = set == 2 ? triples : set ? real : gen;
    const char *label = set == 2 ? "real triples" : set ? "real chain" : "generated";
    for (size_t k = 0; k < NPOL; k++) {
      if (acc[k].n == 0)
        continue;
      double n = acc[k].n;
      printf("%-13s %-28s %10.4f %10.4f %10.1f %10.2f\n", label,
             policies[k].name, acc[k].in / n, acc[k].next / n,
             acc[k].moved / n, acc[k].ms / n);
      if (jf)
        fprintf(jf, "%s{\"workload\": \"%s\", \"policy\": \"%s\", "
                    "\"in_sample\": %.6f, \"next\": %.6f, \"moved_per_layer\": "
                    "%.2f, \"plan_ms\": %.3f, \"runs\": %d}",
                firstrow ? "" : ", ", label, policies[k].name, acc[k].in / n,
                acc[k].next / n, acc[k].moved / n, acc[k].ms / n, acc[k].n);
      firstrow = 0;
    }
  }
  if (jf) {
    fprintf(jf, "]}\n");
    fclose(jf);
  }
  return 0;
}
