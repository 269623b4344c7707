/* bench_scale.c - plan time and quality as the deployment grows, from
 * DeepSeek-V3's 288 slots / 36 GPUs to the top of the documented range.
 *
 * Usage: bench_scale [--layers L] [--budget SEC] [--min-slots S]
 *                    [--max-slots S] [--modes LIST] [--threads T]
 *
 * Statistics are generated as `eplb-synth-stats --layers L --experts 384
 * --tokens 1000000 --skew 1.0 --seed 1` writes them (the same counts; 256
 * experts for the 288/36 row, which cannot hold 384).  Shapes: 288/36,
 * 1024/256, 4096/1024, 16384/4096, 65536/16384, 262144/65536 and
 * 1048576/65536 (4 slots per GPU up to 65536 GPUs, then 16).  Modes
 * (--modes, comma-separated, default all):
 *   fresh  eplb_plan, balanced (and deepseek for comparison)
 *   from   eplb_plan_from: the current map is DeepSeek's plan of the
 *          previous window (rank 1 of eplb-synth-stats: the same routing,
 *          other tokens), re-planned on rank 0's (replicas moved per
 *          layer reported)
 *   hier   hierarchical: 4 nodes, 8 groups
 *   spill  the same with --spill
 *   scen   eplb_plan_scenarios over 4 windows (ranks 0..3), equal weights
 * Layers are planned one call each, one thread, until all L are done or
 * --budget seconds (default 30) were spent on the row: then the time is
 * extrapolated to L layers and marked `~`.  Columns: the 60-layer (L) plan
 * time, ms per layer, its growth per 4x slots from the row above
 * ((t2/t1)^(log 4 / log(S2/S1))), mean imbalance (max/mean - 1 over GPUs,
 * on the planned window; scen: the mean over the 4 windows), DeepSeek's,
 * and the layers where balanced is worse than DeepSeek (of those where
 * DeepSeek's map holds no expert twice on a GPU, which no valid map can
 * copy).  --threads T > 1
 * adds the whole plan on T threads when all layers fit the budget.
 * Prints figures; asserts nothing about time. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eplb/eplb.h"

typedef struct {
  int32_t S, G, E;
} shape_t;

static const shape_t shapes[] = {
    {288, 36, 256},        {1024, 256, 384},     {4096, 1024, 384},
    {16384, 4096, 384},    {65536, 16384, 384},  {262144, 65536, 384},
    {1048576, 65536, 384},
};

enum { MODE_FRESH, MODE_FROM, MODE_HIER, MODE_SPILL, MODE_SCEN, NMODES };
static const char *mode_names[NMODES] = {"fresh", "from", "hier", "spill",
                                         "scen"};
#define NSCEN 4

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* eplb-synth-stats' generator (one rank): its mixer and formula. */
static uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static double unit(uint64_t key) {
  return ((double)(mix64(key) >> 11) + 1.0) / 9007199254740992.0;
}

/* Rank r of eplb-synth-stats --ranks: the same routing (seed), other
 * tokens (per-expert noise of +-20%): the windows of one deployment. */
static void synth(eplb_stats_t *st, int32_t L, int32_t E, uint64_t seed,
                  uint64_t r) {
  const double skew = 1.0, tokens = 1e6;
  if (eplb_stats_init(st, L, E, NULL) != 0)
    exit(1);
  double *w = malloc(sizeof(double) * (size_t)E);
  for (int32_t l = 0; l < L; l++) {
    double lskew = skew * (0.5 + unit(seed * 7919 + (uint64_t)l));
    double sum = 0;
    for (int32_t e = 0; e < E; e++) {
      double base =
          pow(unit((seed << 40) ^ ((uint64_t)l << 20) ^ (uint64_t)e), -lskew);
      double noise = 0.8 + 0.4 * unit((seed << 40) ^ ((r + 1) << 52) ^
                                      ((uint64_t)l << 20) ^ (uint64_t)e);
      w[e] = base * noise;
      sum += w[e];
    }
    for (int32_t e = 0; e < E; e++)
      st->load[(size_t)l * E + e] = floor(tokens * w[e] / sum);
  }
  free(w);
}

/* Layer l of st as a one-layer histogram (a view: nothing to free). */
static eplb_stats_t layer_view(const eplb_stats_t *st, int32_t l,
                               int32_t *id) {
  eplb_stats_t v = *st;
  v.num_layers = 1;
  v.layer_ids = id;
  v.load = st->load + (size_t)l * st->num_experts;
  *id = l;
  return v;
}

static void die(const char *what, const eplb_error_t *err) {
  fprintf(stderr, "bench_scale: %s: %s\n", what, eplb_error_message(err));
  exit(1);
}

/* Result of one row and mode. */
typedef struct {
  int32_t done;  /* layers planned */
  double secs;   /* their plan time */
  double imb;    /* mean imbalance of balanced over the layers done */
  double ds_imb; /* deepseek's, on the same layers (fresh, hier) */
  int32_t worse; /* layers where balanced > deepseek */
  double moved;  /* replicas moved per layer (from) */
  double t_thr;  /* whole plan on --threads T (0: not run) */
} result_t;

static double layer_imb(const eplb_stats_t *st, const eplb_placement_t *p) {
  eplb_balance_t b;
  eplb_error_t err;
  if (eplb_balance(st, p, &b, &err) != 0)
    die("balance", &err);
  return b.imbalance;
}

/* Plans layer l of the data into *p under opts, timed: returns seconds. */
static double plan_layer(int mode, const eplb_stats_t *st,
                         const eplb_stats_t *scen, const eplb_placement_t *cur,
                         int32_t l, const eplb_plan_opts_t *o,
                         eplb_placement_t *p) {
  eplb_error_t err;
  int32_t id;
  eplb_stats_t v = layer_view(st, l, &id);
  int rc;
  double t0 = now_s();
  if (mode == MODE_FROM) {
    eplb_placement_t c = *cur;
    c.num_layers = 1;
    c.layer_ids = &id;
    c.phy2log = cur->phy2log + (size_t)l * cur->num_slots;
    rc = eplb_plan_from(&v, &c, o, p, &err);
  } else if (mode == MODE_SCEN) {
    eplb_stats_t views[NSCEN];
    int32_t ids[NSCEN];
    for (int k = 0; k < NSCEN; k++)
      views[k] = layer_view(&scen[k], l, &ids[k]);
    eplb_scenarios_t sc = {.num_scenarios = NSCEN, .stats = views};
    t0 = now_s();
    rc = eplb_plan_scenarios(&sc, o, p, &err);
  } else {
    rc = eplb_plan(&v, o, p, &err);
  }
  double t = now_s() - t0;
  if (rc)
    die("plan", &err);
  return t;
}

static int32_t threads = 1;

static result_t run_mode(int mode, const shape_t *sh, int32_t L,
                         double budget, const eplb_stats_t *st,
                         const eplb_stats_t *scen,
                         const eplb_placement_t *cur) {
  result_t r = {0};
  eplb_plan_opts_t o;
  eplb_plan_opts_default(&o);
  o.num_slots = sh->S;
  o.num_gpus = sh->G;
  if (mode == MODE_HIER || mode == MODE_SPILL) {
    o.num_nodes = 4;
    o.num_groups = 8;
    o.spill = mode == MODE_SPILL;
  }
  double start = now_s();
  for (int32_t l = 0; l < L && (l == 0 || now_s() - start < budget); l++) {
    eplb_placement_t p;
    int32_t id;
    eplb_stats_t v = layer_view(st, l, &id);
    r.secs += plan_layer(mode, st, scen, cur, l, &o, &p);
    double bi = 0;
    if (mode == MODE_SCEN) {
      for (int k = 0; k < NSCEN; k++) {
        eplb_stats_t vk = layer_view(&scen[k], l, &id);
        bi += layer_imb(&vk, &p) / NSCEN;
      }
    } else {
      bi = layer_imb(&v, &p);
    }
    r.imb += bi;
    if (mode == MODE_FROM) {
      eplb_placement_t c = *cur;
      c.num_layers = 1;
      c.layer_ids = &id;
      c.phy2log = cur->phy2log + (size_t)l * cur->num_slots;
      r.moved += (double)eplb_placement_moves(&c, &p);
    }
    eplb_placement_cleanup(&p);
    if (mode == MODE_FRESH || mode == MODE_HIER) {
      eplb_plan_opts_t d = o;
      eplb_error_t err;
      d.policy = EPLB_POLICY_DEEPSEEK;
      if (eplb_plan(&v, &d, &p, &err) != 0)
        die("deepseek plan", &err);
      double di = layer_imb(&v, &p);
      /* A DeepSeek map with an expert twice on a GPU is one no valid map
       * can copy (docs/planner.md): such layers are not counted. */
      int dup = eplb_placement_check(&p, 1, "deepseek", NULL) != 0;
      eplb_placement_cleanup(&p);
      r.ds_imb += di;
      r.worse += bi > di && !dup;
    }
    r.done++;
  }
  r.imb /= r.done;
  r.ds_imb /= r.done;
  r.moved /= r.done;
  if (threads != 1 && r.done == L && mode == MODE_FRESH) {
    eplb_placement_t p;
    eplb_error_t err;
    o.threads = threads;
    double t0 = now_s();
    if (eplb_plan(st, &o, &p, &err) != 0)
      die("plan", &err);
    r.t_thr = now_s() - t0;
    eplb_placement_cleanup(&p);
  }
  return r;
}

static int parse_modes(const char *s, int *on) {
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", s);
  for (int m = 0; m < NMODES; m++)
    on[m] = 0;
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    int m = 0;
    while (m < NMODES && strcmp(tok, mode_names[m]) != 0)
      m++;
    if (m == NMODES)
      return -1;
    on[m] = 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  int32_t L = 60;
  long max_slots = 1048576, min_slots = 288;
  double budget = 30;
  int on[NMODES] = {1, 1, 1, 1, 1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v && strcmp(a, "--layers") == 0 && (L = atoi(v)) >= 1 && L <= 4096)
      i++;
    else if (v && strcmp(a, "--budget") == 0 && (budget = atof(v)) > 0 &&
             budget <= 86400)
      i++;
    else if (v && strcmp(a, "--max-slots") == 0 &&
             (max_slots = atol(v)) >= 288 && max_slots <= 1048576)
      i++;
    else if (v && strcmp(a, "--min-slots") == 0 &&
             (min_slots = atol(v)) >= 288 && min_slots <= 1048576)
      i++;
    else if (v && strcmp(a, "--modes") == 0 && parse_modes(v, on) == 0)
      i++;
    else if (v && strcmp(a, "--threads") == 0 &&
             (threads = atoi(v)) >= EPLB_MIN_PLAN_THREADS &&
             threads <= EPLB_MAX_PLAN_THREADS)
      i++;
    else {
      fprintf(stderr,
              "usage: bench_scale [--layers 1..4096] [--budget SEC] "
              "[--min-slots S] [--max-slots 288..1048576] [--modes fresh,from,hier,spill,scen] "
              "[--threads 0..64]\n");
      return 2;
    }
  }
  printf("# eplb plan time and imbalance by scale (eplb %s)\n", eplb_version());
  printf("# synthetic: %d layers, 384 experts (256 at 288/36), 1e6 tokens, "
         "skew 1.0, seed 1; one thread, one call per layer\n",
         (int)L);
  printf("# time: of all %d layers (~: extrapolated from the layers planned "
         "within %.0f s); x4: growth of ms/layer per 4x slots\n",
         (int)L, budget);
  printf("%-15s %-6s %6s %10s %9s %6s %8s %8s %6s %8s %9s\n", "# S/G", "mode",
         "layers", "time (s)", "ms/layer", "x4", "imbal", "deepseek", "worse",
         "moved", "xT (s)");
  for (int m = 0; m < NMODES; m++) {
    if (!on[m])
      continue;
    double prev_ms = 0;
    int32_t prev_S = 0;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
      const shape_t *sh = &shapes[i];
      if (sh->S > max_slots)
        break;
      if (sh->S < min_slots)
        continue;
      eplb_stats_t st, scen[NSCEN];
      eplb_placement_t cur = {0};
      synth(&st, L, sh->E, 1, 0);
      if (m == MODE_SCEN)
        for (int k = 0; k < NSCEN; k++)
          synth(&scen[k], L, sh->E, 1, (uint64_t)k);
      if (m == MODE_FROM) {
        eplb_stats_t prev;
        eplb_plan_opts_t d;
        eplb_error_t err;
        synth(&prev, L, sh->E, 1, 1);
        eplb_plan_opts_default(&d);
        d.num_slots = sh->S;
        d.num_gpus = sh->G;
        d.policy = EPLB_POLICY_DEEPSEEK;
        if (eplb_plan(&prev, &d, &cur, &err) != 0)
          die("current map", &err);
        eplb_stats_cleanup(&prev);
      }
      result_t r = run_mode(m, sh, L, budget, &st, scen, &cur);
      double ms = 1e3 * r.secs / r.done;
      char label[32], x4[16] = "-", ds[16] = "-", worse[16] = "-",
                      moved[16] = "-", thr[16] = "-";
      snprintf(label, sizeof(label), "%d/%d", (int)sh->S, (int)sh->G);
      if (prev_S > 0)
        snprintf(x4, sizeof(x4), "%.2f",
                 pow(ms / prev_ms, log(4.0) / log((double)sh->S / prev_S)));
      if (m == MODE_FRESH || m == MODE_HIER) {
        snprintf(ds, sizeof(ds), "%.4f", r.ds_imb);
        snprintf(worse, sizeof(worse), "%d", (int)r.worse);
      }
      if (m == MODE_FROM)
        snprintf(moved, sizeof(moved), "%.0f", r.moved);
      if (r.t_thr > 0)
        snprintf(thr, sizeof(thr), "%.3f", r.t_thr);
      char tm[24];
      snprintf(tm, sizeof(tm), "%s%.3f", r.done < L ? "~" : "", ms * L / 1e3);
      printf("%-15s %-6s %6d %10s %9.3f %6s %8.4f %8s %6s %8s %9s\n", label,
             mode_names[m], (int)r.done, tm, ms, x4, r.imb, ds, worse, moved,
             thr);
      fflush(stdout);
      prev_ms = ms;
      prev_S = sh->S;
      eplb_stats_cleanup(&st);
      if (m == MODE_SCEN)
        for (int k = 0; k < NSCEN; k++)
          eplb_stats_cleanup(&scen[k]);
      eplb_placement_cleanup(&cur);
    }
  }
  return 0;
}
