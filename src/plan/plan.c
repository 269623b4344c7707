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

/* Shared by the threads of one plan.  Layers are handed out one at a time
 * (their costs differ widely), and the error kept is the one of the lowest
 * failing layer, so what is reported does not depend on the thread count
 * or on timing. */
typedef struct {
  const eplb_stats_t *stats;
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
  eplb_error_t err;
  for (;;) {
    int32_t l = (int32_t)atomic_fetch_add(&job->next, 1);
    if (l >= job->stats->num_layers)
      break;
    pthread_mutex_lock(&job->lock);
    int skip = l > job->failed_layer; /* a lower layer failed already */
    pthread_mutex_unlock(&job->lock);
    if (skip)
      break;
    int rc =
        plan_one_layer(job->stats, job->current, job->opts, job->out, l, &err);
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
static int plan_layers(const eplb_stats_t *stats,
                       const eplb_placement_t *current,
                       const eplb_plan_opts_t *opts, eplb_placement_t *out,
                       eplb_error_t *err) {
  plan_job_t job = {.stats = stats,
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

int eplb_plan(const eplb_stats_t *stats, const eplb_plan_opts_t *opts,
              eplb_placement_t *out, eplb_error_t *err) {
  int rc = eplb_plan_check_opts(opts, stats->num_experts, err);
  if (rc)
    return rc;
  rc = eplb_placement_init(out, stats->num_layers, stats->num_experts,
                           opts->num_slots, opts->num_gpus, err);
  if (rc)
    return rc;
  memcpy(out->layer_ids, stats->layer_ids,
         sizeof(int32_t) * (size_t)stats->num_layers);
  rc = plan_layers(stats, NULL, opts, out, err);
  if (rc)
    eplb_placement_cleanup(out);
  return rc;
}

int eplb_plan_from(const eplb_stats_t *stats, const eplb_placement_t *current,
                   const eplb_plan_opts_t *opts, eplb_placement_t *out,
                   eplb_error_t *err) {
  if (current == NULL || opts->policy == EPLB_POLICY_DEEPSEEK)
    return eplb_plan(stats, opts, out, err);
  int rc = eplb_plan_check_opts(opts, stats->num_experts, err);
  if (rc)
    return rc;
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
  rc = eplb_placement_check(current, 0, "current map", err);
  if (rc)
    return rc;
  rc = eplb_placement_init(out, stats->num_layers, stats->num_experts,
                           opts->num_slots, opts->num_gpus, err);
  if (rc)
    return rc;
  memcpy(out->layer_ids, stats->layer_ids,
         sizeof(int32_t) * (size_t)stats->num_layers);
  rc = plan_layers(stats, current, opts, out, err);
  if (rc)
    eplb_placement_cleanup(out);
  return rc;
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
