/* plan/plan.c - the planner's entry points: a layer's dispatch to its
 * policy (deepseek.c, balanced.c, incremental.c), the layers shared out
 * among threads (pool.c), the warm-up.  Pure: no MPI, no I/O. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plan/internal.h"

/* Every load finite, >= 0 and at most 2^53; *zero (may be NULL) = all 0. */
static int check_loads(const double *load, int32_t E, int *zero,
                       eplb_error_t *err) {
  int z = 1;
  for (int32_t e = 0; e < E; e++) {
    if (!(load[e] >= 0.0 && load[e] <= EPLB_MAX_COUNT))
      return eplb_error_set(err, EPLB_ECOUNT,
                            "expert %d: load %g is negative, not finite or "
                            "above 2^53",
                            (int)e, load[e]);
    z = z && load[e] == 0.0;
  }
  if (zero)
    *zero = z;
  return 0;
}

/* eplb_plan_layer with opts already checked (eplb_plan checks them once
 * for all layers). */
static int plan_layer(const double *load, int32_t E,
                      const eplb_plan_opts_t *opts, int32_t *phy2log,
                      eplb_error_t *err) {
  int zero = 0;
  int rc = check_loads(load, E, &zero, err);
  if (rc)
    return rc;
  /* A layer that saw no traffic is planned as if every expert were equally
   * loaded: experts spread evenly. */
  double *uniform = NULL;
  if (zero) {
    uniform = malloc(sizeof(double) * (size_t)E);
    if (uniform == NULL)
      return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    for (int32_t e = 0; e < E; e++)
      uniform[e] = 1.0;
    load = uniform;
  }
  if (opts->policy == EPLB_POLICY_DEEPSEEK)
    rc = eplb__plan_deepseek(load, E, opts, phy2log, err);
  else if (opts->spill)
    rc = eplb__plan_spill(load, E, opts, phy2log, err);
  else
    rc = eplb__plan_balanced(load, E, opts, phy2log, err);
  free(uniform);
  return rc;
}

int eplb_plan_layer(const double *load, int32_t E, const eplb_plan_opts_t *opts,
                    int32_t *phy2log, eplb_error_t *err) {
  int rc = eplb_plan_check_opts(opts, E, err);
  return rc ? rc : plan_layer(load, E, opts, phy2log, err);
}

/* ---- layers in parallel -------------------------------------------- */

/* One layer of a whole-histogram plan: from scratch, or from the current
 * placement (current != NULL). */
static int plan_one_layer(const eplb_stats_t *stats,
                          const eplb_placement_t *current,
                          const eplb_plan_opts_t *opts, eplb_placement_t *out,
                          int32_t l, eplb_error_t *err) {
  int32_t E = stats->num_experts, S = opts->num_slots;
  const double *load = stats->load + (size_t)l * E;
  int32_t *phy2log = out->phy2log + (size_t)l * S;
  if (current == NULL) /* opts were checked once, by the caller */
    return plan_layer(load, E, opts, phy2log, err);
  int rc = check_loads(load, E, NULL, err);
  if (rc)
    return rc;
  return eplb__plan_incremental(load, E, opts, current->phy2log + (size_t)l * S,
                                phy2log, err);
}

/* ---- several scenarios ----------------------------------------------- */

/* Layer l of the scenarios, normalised: x[K * E] (only the scenarios with
 * traffic in the layer, *k of them) and their weights w[K], summing to 1;
 * m[E] their weighted mean.  Counts are checked on the way. */
static int scenario_layer(const eplb_scenarios_t *sc, int32_t l, double *x,
                          double *w, double *m, int32_t *k, eplb_error_t *err) {
  int32_t K = sc->num_scenarios, E = sc->stats[0].num_experts, n = 0;
  double wsum = 0;
  memset(m, 0, sizeof(double) * (size_t)E);
  for (int32_t i = 0; i < K; i++) {
    const double *load = sc->stats[i].load + (size_t)l * E;
    int zero = 0;
    int rc = check_loads(load, E, &zero, err);
    if (rc)
      return eplb_error_prefix(err, "scenario %d", (int)i);
    if (zero)
      continue;
    double total = 0;
    for (int32_t e = 0; e < E; e++)
      total += load[e];
    for (int32_t e = 0; e < E; e++)
      x[(size_t)n * E + e] = load[e] / total;
    w[n] = sc->weights ? sc->weights[i] : 1.0;
    wsum += w[n++];
  }
  for (int32_t i = 0; i < n; i++) {
    w[i] /= wsum;
    for (int32_t e = 0; e < E; e++)
      m[e] += w[i] * x[(size_t)i * E + e];
  }
  *k = n;
  return 0;
}

/* Layer l of a scenario plan, into phy2log (from current[S] when not
 * NULL): the plan of the weighted mean, then (balanced policy, two
 * scenarios or more with traffic) the robust search.  Scratch from ar. */
static int plan_scenario_layer_a(const eplb_scenarios_t *sc,
                                 const int32_t *current,
                                 const eplb_plan_opts_t *opts, int32_t l,
                                 int32_t *phy2log, double *x, double *w,
                                 double *m, eplb__arena_t *ar,
                                 eplb_error_t *err) {
  int32_t E = sc->stats[0].num_experts, S = opts->num_slots, G = opts->num_gpus,
          k = 0;
  int rc = scenario_layer(sc, l, x, w, m, &k, err);
  if (rc)
    return rc;
  eplb__scenario_layer_t layer = {.K = k, .E = E, .x = x, .w = w};
  int robust = k > 1 && opts->policy == EPLB_POLICY_BALANCED;
  if (current == NULL) {
    rc = plan_layer(m, E, opts, phy2log, err);
    if (rc == 0 && robust) {
      int32_t dom = eplb_plan_is_hierarchical(opts) ? G / opts->num_nodes : G;
      rc =
          eplb__robust_search(&layer, S, G, dom, NULL, 0, -1, phy2log, ar, err);
    }
    return rc;
  }
  if (robust && eplb__scenario_objective(&layer, current, S, G) * G - 1 <=
                    opts->keep_threshold) {
    memcpy(phy2log, current, sizeof(int32_t) * (size_t)S);
    return 0; /* balanced enough on every scenario: kept */
  }
  rc = eplb__plan_incremental(m, E, opts, current, phy2log, err);
  if (rc == 0 && robust)
    rc = eplb__robust_search(&layer, S, G, G, current, opts->move_cost / G,
                             opts->max_moves, phy2log, ar, err);
  return rc;
}

static int plan_scenario_layer(const eplb_scenarios_t *sc,
                               const eplb_placement_t *current,
                               const eplb_plan_opts_t *opts,
                               eplb_placement_t *out, int32_t l,
                               eplb_error_t *err) {
  int32_t K = sc->num_scenarios, E = sc->stats[0].num_experts,
          S = opts->num_slots;
  double *x = malloc(sizeof(double) * ((size_t)K * E + K + E));
  if (x == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  eplb__arena_t ar;
  eplb__arena_init(&ar, NULL, 0);
  int rc = plan_scenario_layer_a(
      sc, current ? current->phy2log + (size_t)l * S : NULL, opts, l,
      out->phy2log + (size_t)l * S, x, x + (size_t)K * E, x + (size_t)K * E + K,
      &ar, err);
  eplb__arena_done(&ar);
  free(x);
  return rc;
}

/* Shared by the threads of one plan.  Layers are handed out one at a time
 * (their costs differ widely), and the error kept is the one of the lowest
 * failing layer, so what is reported does not depend on the thread count
 * or on timing. */
typedef struct {
  const eplb_scenarios_t *sc; /* one scenario: the plain plan of it */
  const eplb_placement_t *current;
  const eplb_plan_opts_t *opts;
  eplb_placement_t *out;
  atomic_int next;
  pthread_mutex_t lock;
  int32_t failed_layer; /* num_layers: none */
  int rc;
  eplb_error_t err;
} plan_job_t;

static void *plan_worker(void *arg) {
  plan_job_t *job = arg;
  const eplb_scenarios_t *sc = job->sc;
  eplb_error_t err;
  for (;;) {
    int32_t l = (int32_t)atomic_fetch_add(&job->next, 1);
    if (l >= sc->stats[0].num_layers)
      break;
    pthread_mutex_lock(&job->lock);
    int skip = l > job->failed_layer; /* a lower layer failed already */
    pthread_mutex_unlock(&job->lock);
    if (skip)
      break;
    int rc = sc->num_scenarios == 1
                 ? plan_one_layer(sc->stats, job->current, job->opts, job->out,
                                  l, &err)
                 : plan_scenario_layer(sc, job->current, job->opts, job->out, l,
                                       &err);
    if (rc) {
      pthread_mutex_lock(&job->lock);
      if (l < job->failed_layer) {
        job->failed_layer = l;
        job->rc = rc;
        job->err = err;
      }
      pthread_mutex_unlock(&job->lock);
    }
  }
  return NULL;
}

/* Threads to use for L layers. */
static int32_t plan_threads(const eplb_plan_opts_t *opts, int32_t L) {
  int32_t t = opts->threads;
  if (t == 0) {
    int32_t n = eplb__usable_cpus();
    t = n > EPLB_MAX_PLAN_THREADS ? EPLB_MAX_PLAN_THREADS : n;
  }
  return t < L ? t : L;
}

/* Plans every layer into out (initialised by the caller), on
 * plan_threads() threads; the calling thread is one of them.  A thread
 * that cannot be started leaves its share to the others. */
static int plan_layers(const eplb_scenarios_t *sc,
                       const eplb_placement_t *current,
                       const eplb_plan_opts_t *opts, eplb_placement_t *out,
                       eplb_error_t *err) {
  const eplb_stats_t *stats = sc->stats;
  plan_job_t job = {.sc = sc,
                    .current = current,
                    .opts = opts,
                    .out = out,
                    .failed_layer = stats->num_layers,
                    .rc = 0};
  atomic_init(&job.next, 0);
  pthread_mutex_init(&job.lock, NULL);
  eplb__pool_run(plan_threads(opts, stats->num_layers) - 1, plan_worker, &job);
  pthread_mutex_destroy(&job.lock);
  if (job.rc) {
    if (err)
      *err = job.err;
    eplb_error_prefix(err, "layer %d", (int)stats->layer_ids[job.failed_layer]);
  }
  return job.rc;
}

/* A worker's first plan pays for page faults on its stack, its malloc
 * arena and the planner's code (on a virtual machine each costs about as
 * much as a layer's plan: docs/planner.md): a worker started ahead plans
 * one made-up layer of the DeepSeek-V3 shape before the real plan comes. */
static void warm_layer(void) {
  enum { E = 256, S = 288, G = 36 };
  /* Grow this thread's malloc arena past what a layer of any path
   * (refinement, the DeepSeek comparison) takes at its peak, so the real
   * layers do not fault it in; below glibc's trim threshold, it stays. */
  size_t grow = 96 << 10;
  volatile char *touch = malloc(grow);
  if (touch != NULL) {
    for (size_t i = 0; i < grow; i += 4096)
      touch[i] = 1;
    free((void *)touch);
  }
  double load[E];
  int32_t phy2log[S];
  for (int32_t e = 0; e < E; e++)
    load[e] = 1000.0 / (1 + e % 97) + e;
  eplb_plan_opts_t o;
  eplb_plan_opts_default(&o);
  o.num_slots = S;
  o.num_gpus = G;
  plan_layer(load, E, &o, phy2log, NULL);
}

int eplb_plan_warm_up(int32_t threads, eplb_error_t *err) {
  int rc = eplb__plan_check_threads(threads, err);
  if (rc)
    return rc;
  eplb_plan_opts_t o;
  eplb_plan_opts_default(&o);
  o.threads = threads;
  int32_t nt = plan_threads(&o, EPLB_MAX_PLAN_THREADS);
  if (nt > 1)
    eplb__pool_warm_up(nt - 1, warm_layer);
  return 0;
}

/* *out, initialised for the plan of sc's layers. */
static int init_out(const eplb_scenarios_t *sc, const eplb_plan_opts_t *opts,
                    eplb_placement_t *out, eplb_error_t *err) {
  const eplb_stats_t *st = sc->stats;
  int rc = eplb_placement_init(out, st->num_layers, st->num_experts,
                               opts->num_slots, opts->num_gpus, err);
  if (rc == 0)
    memcpy(out->layer_ids, st->layer_ids,
           sizeof(int32_t) * (size_t)st->num_layers);
  return rc;
}

/* The plan of sc (from current when not NULL), options checked. */
static int plan_checked(const eplb_scenarios_t *sc,
                        const eplb_placement_t *current,
                        const eplb_plan_opts_t *opts, eplb_placement_t *out,
                        eplb_error_t *err) {
  int rc = init_out(sc, opts, out, err);
  if (rc == 0 && (rc = plan_layers(sc, current, opts, out, err)) != 0)
    eplb_placement_cleanup(out);
  return rc;
}

int eplb_plan(const eplb_stats_t *stats, const eplb_plan_opts_t *opts,
              eplb_placement_t *out, eplb_error_t *err) {
  int rc = eplb_plan_check_opts(opts, stats->num_experts, err);
  eplb_scenarios_t one = {.num_scenarios = 1, .stats = stats};
  return rc ? rc : plan_checked(&one, NULL, opts, out, err);
}

/* The current placement fits the statistics and the options. */
static int check_current(const eplb_stats_t *stats,
                         const eplb_placement_t *current,
                         const eplb_plan_opts_t *opts, eplb_error_t *err) {
  if (eplb_plan_is_hierarchical(opts))
    return eplb_error_set(err, EPLB_EARG,
                          "re-planning from a current map is global only: "
                          "drop --num-nodes/--num-groups or the current map");
  if (current->num_layers != stats->num_layers ||
      current->num_experts != stats->num_experts ||
      current->num_slots != opts->num_slots ||
      current->num_gpus != opts->num_gpus)
    return eplb_error_set(
        err, EPLB_ESHAPE,
        "the current map has %d layers, %d experts, %d slots on %d GPUs but "
        "the statistics and options say %d, %d, %d on %d; pass the map the "
        "experts are in now",
        (int)current->num_layers, (int)current->num_experts,
        (int)current->num_slots, (int)current->num_gpus, (int)stats->num_layers,
        (int)stats->num_experts, (int)opts->num_slots, (int)opts->num_gpus);
  return eplb_placement_check(current, 0, "current map", err);
}

int eplb_plan_from(const eplb_stats_t *stats, const eplb_placement_t *current,
                   const eplb_plan_opts_t *opts, eplb_placement_t *out,
                   eplb_error_t *err) {
  if (current == NULL || opts->policy == EPLB_POLICY_DEEPSEEK)
    return eplb_plan(stats, opts, out, err);
  int rc = eplb_plan_check_opts(opts, stats->num_experts, err);
  if (rc == 0)
    rc = check_current(stats, current, opts, err);
  eplb_scenarios_t one = {.num_scenarios = 1, .stats = stats};
  return rc ? rc : plan_checked(&one, current, opts, out, err);
}

int eplb_scenarios_check(const eplb_scenarios_t *sc, eplb_error_t *err) {
  if (sc == NULL || sc->stats == NULL || sc->num_scenarios < 1 ||
      sc->num_scenarios > EPLB_MAX_SCENARIOS)
    return eplb_error_set(err, EPLB_EARG, "%d scenarios: give 1..%d histograms",
                          sc && sc->stats ? (int)sc->num_scenarios : 0,
                          EPLB_MAX_SCENARIOS);
  const eplb_stats_t *s0 = &sc->stats[0];
  for (int32_t k = 0; k < sc->num_scenarios; k++) {
    const eplb_stats_t *s = &sc->stats[k];
    if (s->load == NULL || s->num_layers != s0->num_layers ||
        s->num_experts != s0->num_experts ||
        memcmp(s->layer_ids, s0->layer_ids,
               sizeof(int32_t) * (size_t)s0->num_layers) != 0)
      return eplb_error_set(err, EPLB_ESHAPE,
                            "scenario %d has %d layers x %d experts, scenario "
                            "0 %d x %d (or other layer ids); every scenario "
                            "must count the same layers of one model",
                            (int)k, (int)s->num_layers, (int)s->num_experts,
                            (int)s0->num_layers, (int)s0->num_experts);
    double wk = sc->weights ? sc->weights[k] : 1.0;
    if (!(wk >= EPLB_MIN_SCENARIO_WEIGHT && wk <= EPLB_MAX_SCENARIO_WEIGHT))
      return eplb_error_set(
          err, EPLB_EARG, "scenario %d: weight %g is outside %g..%g", (int)k,
          wk, EPLB_MIN_SCENARIO_WEIGHT, EPLB_MAX_SCENARIO_WEIGHT);
  }
  return 0;
}

int eplb_plan_scenarios(const eplb_scenarios_t *sc,
                        const eplb_plan_opts_t *opts, eplb_placement_t *out,
                        eplb_error_t *err) {
  int rc = eplb_scenarios_check(sc, err);
  if (rc == 0)
    rc = eplb_plan_check_opts(opts, sc->stats[0].num_experts, err);
  return rc ? rc : plan_checked(sc, NULL, opts, out, err);
}

int eplb_plan_scenarios_from(const eplb_scenarios_t *sc,
                             const eplb_placement_t *current,
                             const eplb_plan_opts_t *opts,
                             eplb_placement_t *out, eplb_error_t *err) {
  if (current == NULL || opts->policy == EPLB_POLICY_DEEPSEEK)
    return eplb_plan_scenarios(sc, opts, out, err);
  int rc = eplb_scenarios_check(sc, err);
  if (rc == 0)
    rc = eplb_plan_check_opts(opts, sc->stats[0].num_experts, err);
  if (rc == 0)
    rc = check_current(sc->stats, current, opts, err);
  return rc ? rc : plan_checked(sc, current, opts, out, err);
}

int64_t eplb_placement_moves(const eplb_placement_t *from,
                             const eplb_placement_t *to) {
  if (from->num_layers != to->num_layers || from->num_slots != to->num_slots ||
      from->num_gpus != to->num_gpus)
    return -1;
  int64_t moves = 0;
  for (int32_t l = 0; l < from->num_layers; l++)
    moves += eplb__count_moves(from->phy2log + (size_t)l * from->num_slots,
                               to->phy2log + (size_t)l * to->num_slots,
                               from->num_slots, from->num_gpus);
  return moves;
}
