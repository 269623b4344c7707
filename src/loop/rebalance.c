/* rebalance.c - online rebalancing inside a job (eplb/rebalance.h).
 *
 * The collective half of online rebalancing; the decisions themselves are
 * the pure eplb/online.h, run on rank 0 only (one owner of the smoothed
 * loads, so no two ranks can decide differently).  Each step:
 *
 *   status + shape (allgather) -> sum of the counts observed since the last
 *   step (allreduce) -> rank 0: observe, decide -> one verified broadcast of
 *   the decision and the placement -> on a rebalance: pause hooks, agree,
 *   migrate the shards, resume hooks, agree, rank 0 writes the map.
 *
 * Counts are accumulated locally between steps (observe costs no
 * communication), so a trainer can feed every step and synchronise every N
 * steps.  Cumulative counters are turned into deltas per rank, which is
 * where they are known. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/migrate.h"
#include "eplb/rebalance.h"
#include "mpi/agree.h"
#include "sync/internal.h"
#include "util/checksum.h"

/* Flags of a round, carried from rank 0 in the plan broadcast. */
#define ROUND_TRAFFIC 1
#define ROUND_REBALANCE 2

struct eplb_rebalancer_s {
  MPI_Comm comm;
  int rank, size;
  eplb_rebalancer_opts_t opts;
  eplb_placement_t current;
  uint64_t generation;
  int64_t rounds;
  eplb_stats_t pending;  /* counts observed since the last step */
  eplb_stats_t sum;      /* the step's sum (allocated once) */
  eplb_stats_t prev_cum; /* last cumulative counters (cumulative mode) */
  int have_prev;
  int pending_rc; /* an observe failure, reported at the step */
  eplb_error_t pending_err;
  eplb__plan_buf_t buf;
  eplb_online_t *online; /* rank 0 only */
  eplb_shard_set_t set;  /* with shards_dir: the open shards */
  int have_set;
  uint64_t opts_key; /* compared across ranks at every agreement */
};

void eplb_rebalancer_opts_default(eplb_rebalancer_opts_t *opts) {
  memset(opts, 0, sizeof(*opts));
  eplb_online_opts_default(&opts->online);
  opts->output_format = EPLB_MAP_AUTO;
}

const eplb_placement_t *eplb_rebalancer_current(const eplb_rebalancer_t *r) {
  return &r->current;
}

uint64_t eplb_rebalancer_generation(const eplb_rebalancer_t *r) {
  return r->generation;
}

void eplb_rebalancer_destroy(eplb_rebalancer_t *r) {
  if (r == NULL)
    return;
  eplb_placement_cleanup(&r->current);
  eplb_stats_cleanup(&r->pending);
  eplb_stats_cleanup(&r->sum);
  eplb_stats_cleanup(&r->prev_cum);
  eplb__plan_buf_free(&r->buf);
  eplb_online_destroy(r->online);
  if (r->have_set)
    eplb_shards_close(&r->set);
  if (r->comm != MPI_COMM_NULL)
    MPI_Comm_free(&r->comm);
  free(r);
}

/* The options that steer the collectives, as one key (hooks and the
 * output path may differ: only rank 0 writes). */
static uint64_t rebalancer_opts_key(const eplb_rebalancer_opts_t *o) {
  const eplb_online_opts_t *on = &o->online;
  const double f[] = {on->ema_alpha,
                      on->threshold,
                      on->min_gain,
                      on->layers_per_round,
                      (double)o->generation,
                      o->output != NULL,
                      o->max_buffer_mb,
                      o->timeout_s,
                      on->history > 1 ? on->history : 1};
  uint64_t k = eplb__plan_opts_key(&on->plan, 0);
  k = eplb__checksum(f, sizeof(f), k);
  return eplb__string_key(o->shards_dir, k);
}

/* This rank's part of create: the placement, the buffers, rank 0's
 * balancer. */
static int create_local(eplb_rebalancer_t *r, const eplb_placement_t *current,
                        int32_t L, int32_t E, eplb_error_t *err) {
  const eplb_plan_opts_t *po = &r->opts.online.plan;
  int rc = 0;
  if (r->opts.max_buffer_mb < 0 ||
      r->opts.max_buffer_mb > EPLB_MIGRATE_MAX_BUFFER_MB)
    return eplb_error_set(err, EPLB_EARG, "max_buffer_mb %d is outside 0..%d",
                          (int)r->opts.max_buffer_mb,
                          EPLB_MIGRATE_MAX_BUFFER_MB);
  if (r->opts.timeout_s < 0 || r->opts.timeout_s > EPLB_MIGRATE_MAX_TIMEOUT_S)
    return eplb_error_set(err, EPLB_EARG, "timeout_s %d is outside 0..%d",
                          (int)r->opts.timeout_s, EPLB_MIGRATE_MAX_TIMEOUT_S);
  if (r->have_set) {
    /* The shards say where the experts are. */
    rc = current ? eplb_error_set(err, EPLB_EARG,
                                  "pass no current placement "
                                  "with shards_dir: the shards' map is it")
                 : eplb_placement_copy(&r->current, &r->set.current, err);
    if (rc == 0 && L > 0 && L != r->current.num_layers)
      rc = eplb_error_set(err, EPLB_ESHAPE,
                          "the shards in %s hold %d layers but the counts "
                          "have %d; give the statistics of this model",
                          r->opts.shards_dir, (int)r->current.num_layers,
                          (int)L);
    if (rc == 0 && (po->num_slots != r->current.num_slots ||
                    po->num_gpus != r->current.num_gpus))
      rc = eplb_error_set(err, EPLB_EARG,
                          "the options say %d slots on %d GPUs but the shards "
                          "in %s hold %d slots on %d ranks",
                          (int)po->num_slots, (int)po->num_gpus,
                          r->opts.shards_dir, (int)r->current.num_slots,
                          (int)r->current.num_gpus);
  } else if (current) {
    rc = eplb_placement_copy(&r->current, current, err);
  } else {
    rc = eplb_placement_init_contiguous(&r->current, L, E, po->num_slots,
                                        po->num_gpus, err);
  }
  if (rc == 0 && r->opts.layer_ids)
    memcpy(r->current.layer_ids, r->opts.layer_ids,
           sizeof(int32_t) * (size_t)r->current.num_layers);
  if (rc == 0)
    rc = eplb_plan_check_opts(po, r->current.num_experts, err);
  if (rc == 0)
    rc = eplb_placement_check(&r->current, 0, "the current placement", err);
  L = r->current.num_layers;
  E = r->current.num_experts;
  if (rc == 0)
    rc = eplb_stats_init(&r->pending, L, E, err);
  if (rc == 0)
    rc = eplb_stats_init(&r->sum, L, E, err);
  if (rc == 0) {
    memcpy(r->pending.layer_ids, r->current.layer_ids,
           sizeof(int32_t) * (size_t)L);
    memcpy(r->sum.layer_ids, r->current.layer_ids, sizeof(int32_t) * (size_t)L);
    rc = eplb__plan_buf_alloc(&r->buf, L, r->current.num_slots, err);
  }
  if (rc == 0 && r->rank == 0)
    rc = eplb_online_create(&r->online, &r->opts.online, &r->current, err);
  return rc;
}

int eplb_rebalancer_create(MPI_Comm comm, const eplb_rebalancer_opts_t *opts,
                           const eplb_placement_t *current, int32_t num_layers,
                           int32_t num_experts, eplb_rebalancer_t **out,
                           eplb_error_t *err) {
  *out = NULL;
  eplb_rebalancer_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  r->comm = MPI_COMM_NULL;
  int rc = eplb__dup_comm(comm, &r->comm, err);
  if (rc) {
    eplb_rebalancer_destroy(r);
    return rc;
  }
  MPI_Comm_rank(r->comm, &r->rank);
  MPI_Comm_size(r->comm, &r->size);
  if (opts)
    r->opts = *opts;
  else
    eplb_rebalancer_opts_default(&r->opts);
  r->generation = r->opts.generation;
  r->opts_key = rebalancer_opts_key(&r->opts);
  /* Before anything collective that options steer (opening shards): every
   * rank must have the same options, or some would open shards and the
   * others wait for them. */
  int dense = 0;
  rc = eplb__reduce_agree_shape(r->comm, 0, NULL, "options", r->opts_key,
                                &dense, err);
  if (rc) {
    eplb_rebalancer_destroy(r);
    return rc;
  }
  if (r->opts.shards_dir) {
    /* Collective and agreed inside; the shards' shape fills in what the
     * options leave at 0. */
    int32_t E = current ? current->num_experts : num_experts;
    rc = eplb_shards_open(r->comm, r->opts.shards_dir, E, &r->set, err);
    if (rc) {
      eplb_rebalancer_destroy(r);
      return rc;
    }
    r->have_set = 1;
    r->generation = eplb_shards_info(&r->set)->generation;
    if (r->opts.online.plan.num_slots == 0)
      r->opts.online.plan.num_slots = r->set.current.num_slots;
    if (r->opts.online.plan.num_gpus == 0)
      r->opts.online.plan.num_gpus = r->set.current.num_gpus;
  }
  rc = create_local(r, current, num_layers, num_experts, err);
  rc = eplb__agree(r->comm, rc, err);
  if (rc) {
    eplb_rebalancer_destroy(r);
    return rc;
  }
  *out = r;
  return 0;
}

/* ---- observe (local) ------------------------------------------------- */

/* pending += what is new in cumulative counters c (all of c after a
 * reset: a counter that went down). */
static int add_cumulative(eplb_rebalancer_t *r, const eplb_stats_t *c,
                          eplb_error_t *err) {
  size_t n = (size_t)c->num_layers * (size_t)c->num_experts;
  int reset = !r->have_prev;
  for (size_t i = 0; i < n && !reset; i++)
    reset = c->load[i] < r->prev_cum.load[i];
  for (size_t i = 0; i < n; i++) {
    double d = reset ? c->load[i] : c->load[i] - r->prev_cum.load[i];
    if (!(d <= EPLB_MAX_COUNT - r->pending.load[i]))
      return eplb_error_set(err, EPLB_ECOUNT,
                            "counts observed since the last step exceed 2^53 "
                            "(layer %d expert %d); step more often",
                            (int)c->layer_ids[i / (size_t)c->num_experts],
                            (int)(i % (size_t)c->num_experts));
    r->pending.load[i] += d;
  }
  if (!r->have_prev) {
    int rc = eplb_stats_copy(&r->prev_cum, c, err);
    if (rc)
      return rc;
    r->have_prev = 1;
  } else {
    memcpy(r->prev_cum.load, c->load, sizeof(double) * n);
  }
  return 0;
}

int eplb_rebalancer_observe(eplb_rebalancer_t *r, const eplb_stats_t *counts,
                            int cumulative, eplb_error_t *err) {
  int rc =
      eplb_placement_check_stats(&r->current, counts, "observed counts", err);
  if (rc == 0 && cumulative)
    rc = add_cumulative(r, counts, err);
  else if (rc == 0)
    rc = eplb_stats_add(&r->pending, counts, "counts since the last step",
                        "observed counts", err);
  if (rc && r->pending_rc == 0) {
    /* Kept for the next step, which every rank must still reach. */
    r->pending_rc = rc;
    r->pending_err = err ? *err : (eplb_error_t){rc, ""};
  }
  return rc;
}

int eplb_rebalancer_observe_failed(eplb_rebalancer_t *r,
                                   const eplb_error_t *failure) {
  if (r == NULL || failure == NULL || failure->code >= 0)
    return EPLB_EARG;
  if (r->pending_rc == 0) {
    r->pending_rc = failure->code;
    r->pending_err = *failure;
    r->pending_err.msg[EPLB_ERROR_MSG_MAX - 1] = '\0';
  }
  return 0;
}

/* ---- step (collective) ----------------------------------------------- */

/* Rank 0: observe the sum, decide, and set the plan to broadcast. */
static int decide_root(eplb_rebalancer_t *r, eplb_placement_t *plan,
                       eplb_sync_result_t *res, int64_t aux[2],
                       eplb_error_t *err) {
  int had = 0;
  eplb_online_decision_t dec;
  memset(&dec, 0, sizeof(dec));
  int rc = eplb_online_observe(r->online, &r->sum, &had, err);
  aux[0] = had ? ROUND_TRAFFIC : 0;
  aux[1] = 0;
  if (rc == 0 && had)
    rc = eplb_online_decide(r->online, &dec, err);
  if (rc == 0 && had && dec.rebalance) {
    *plan = dec.proposal;
    memset(&dec.proposal, 0, sizeof(dec.proposal));
    aux[0] |= ROUND_REBALANCE;
    aux[1] = dec.layers_changed;
    res->moves = dec.moves;
    res->generation = r->generation + 1;
  } else if (rc == 0) {
    rc = eplb_placement_copy(plan, &r->current, err);
    res->moves = 0;
    res->generation = r->generation;
  }
  if (rc == 0) {
    res->imbalance_before = had ? dec.imbalance_before : 0;
    res->imbalance_after =
        had ? (dec.rebalance ? dec.imbalance_after : dec.imbalance_before) : 0;
  }
  eplb_online_decision_cleanup(&dec);
  return rc;
}

/* Runs a hook on every rank and agrees on the result. */
static int run_hook(eplb_rebalancer_t *r, eplb_rebalance_hook_t hook,
                    const eplb_placement_t *p, const char *what,
                    eplb_error_t *err) {
  int rc = 0;
  if (hook) {
    rc = hook(r->opts.hook_ctx, p, err);
    if (rc)
      eplb_error_prefix(err, "%s hook", what);
  }
  return eplb__agree(r->comm, rc, err);
}

/* Applies an agreed new placement: hooks, migration, map. */
static int apply(eplb_rebalancer_t *r, eplb_sync_result_t *res,
                 eplb_round_t *round, eplb_error_t *err) {
  int rc = run_hook(r, r->opts.pause, &res->placement, "pause", err);
  if (rc)
    return rc;
  if (r->have_set) {
    eplb_migrate_opts_t mo;
    eplb_migrate_result_t mres;
    memset(&mres, 0, sizeof(mres));
    eplb_migrate_opts_default(&mo);
    if (r->opts.max_buffer_mb)
      mo.max_buffer_mb = r->opts.max_buffer_mb;
    if (r->opts.timeout_s)
      mo.timeout_s = r->opts.timeout_s;
    mo.num_nodes = r->opts.online.plan.num_nodes;
    mo.quiet = r->opts.quiet;
    /* The shards hold the map with their own layer ids; migrate compares
     * shapes and slots only. */
    rc = eplb_migrate(&r->set, &res->placement, &mo, &mres, err);
    round->bytes_moved = mres.bytes_moved;
    eplb_migrate_result_cleanup(&mres);
  }
  if (rc) {
    /* The weights are where they were: let the consumer go on. */
    eplb_error_t ignored = {0};
    run_hook(r, r->opts.resume, &r->current, "resume", &ignored);
    return rc;
  }
  eplb_placement_cleanup(&r->current);
  r->current = res->placement;
  memset(&res->placement, 0, sizeof(res->placement));
  r->generation = res->generation;
  if (r->rank == 0)
    rc = eplb_online_applied(r->online, &r->current, err);
  rc = eplb__agree(r->comm, rc, err);
  if (rc == 0)
    rc = run_hook(r, r->opts.resume, &r->current, "resume", err);
  if (rc == 0 && r->opts.output) {
    int wrc = r->rank == 0 ? eplb_placement_write(&r->current, r->opts.output,
                                                  r->opts.output_format, err)
                           : 0;
    rc = eplb__agree(r->comm, wrc, err);
  }
  return rc;
}

/* One line on rank 0 per round (with history > 1 the imbalance is the
 * mean over the windows the decision weighed, which the line says). */
static void log_round(const eplb_rebalancer_t *r, const eplb_round_t *x) {
  if (r->rank != 0 || r->opts.quiet)
    return;
  const eplb_online_opts_t *o = &r->opts.online;
  char over[64] = "";
  if (o->history > 1 && x->had_traffic) {
    int n = (int)eplb_online_windows(r->online).num_scenarios;
    snprintf(over, sizeof(over), " (mean over %d window%s)", n,
             n == 1 ? "" : "s");
  }
  if (!x->had_traffic)
    printf("eplb: round %lld: no new traffic; generation %llu kept\n",
           (long long)x->round, (unsigned long long)x->generation);
  else if (x->rebalanced)
    printf("eplb: round %lld: imbalance %.4f -> %.4f%s, rebalanced to "
           "generation %llu: %d layers, %lld replicas moved, %.2f MB, "
           "%.3f s\n",
           (long long)x->round, x->imbalance_before, x->imbalance_after, over,
           (unsigned long long)x->generation, (int)x->layers_changed,
           (long long)x->moves, (double)x->bytes_moved / 1e6, x->seconds);
  else if (x->imbalance_before <= o->threshold)
    printf("eplb: round %lld: imbalance %.4f%s <= threshold %.4f; "
           "generation %llu kept\n",
           (long long)x->round, x->imbalance_before, over, o->threshold,
           (unsigned long long)x->generation);
  else
    printf("eplb: round %lld: imbalance %.4f%s, no plan gains %.4f; "
           "generation %llu kept\n",
           (long long)x->round, x->imbalance_before, over, o->min_gain,
           (unsigned long long)x->generation);
  fflush(stdout);
}

int eplb_rebalancer_step(eplb_rebalancer_t *r, eplb_round_t *round,
                         eplb_error_t *err) {
  memset(round, 0, sizeof(*round));
  double t0 = MPI_Wtime();
  int local = r->pending_rc, dense = 0;
  if (local && err)
    *err = r->pending_err;
  r->pending_rc = 0;
  int rc = eplb__reduce_agree_shape(
      r->comm, local, &r->pending, "counts observed", r->opts_key, &dense, err);
  if (rc)
    return rc;
  memcpy(r->sum.load, r->pending.load,
         sizeof(double) * (size_t)r->pending.num_layers *
             (size_t)r->pending.num_experts);
  int32_t *dropped = NULL, nd = 0;
  rc = eplb__reduce_sum(r->comm, &r->sum, 0, &dropped, &nd, err);
  free(dropped);
  if (rc)
    return rc;
  memset(r->pending.load, 0,
         sizeof(double) * (size_t)r->pending.num_layers *
             (size_t)r->pending.num_experts);

  eplb_sync_result_t res;
  memset(&res, 0, sizeof(res));
  eplb_placement_t plan = {0};
  int64_t aux[2] = {0, 0};
  int root_rc = r->rank == 0 ? decide_root(r, &plan, &res, aux, err) : 0;
  rc = eplb__sync_distribute(r->comm, root_rc, &r->buf, &plan, &res, aux, err);
  if (rc)
    return rc;
  round->round = ++r->rounds;
  round->had_traffic = (aux[0] & ROUND_TRAFFIC) != 0;
  round->imbalance_before = res.imbalance_before;
  round->imbalance_after = res.imbalance_after;
  if (aux[0] & ROUND_REBALANCE) {
    round->layers_changed = (int32_t)aux[1];
    round->moves = res.moves;
    rc = apply(r, &res, round, err);
    round->rebalanced = rc == 0;
  }
  round->generation = r->generation;
  round->seconds = MPI_Wtime() - t0;
  eplb_sync_result_cleanup(&res);
  if (rc == 0)
    log_round(r, round);
  return rc;
}
