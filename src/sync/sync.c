/* sync/sync.c - the driver of the multi-rank engine behind `eplb-sync`
 * and eplb_sync_run (eplb_sync_run_scenarios: the same for several
 * workloads at once, scenarios.c): one run of the pipeline
 *
 *   collect -> reduce -> plan (rank 0) -> distribute -> move -> commit
 *   (collect.c) (reduce.c) (root_plan.c) (distribute.c) (migrate/, --shards)
 *
 * and the write of the map and summary (write.c).  Each stage is its own
 * module so that the --watch loop and the in-process rebalancer (loop/)
 * can run them in their own order (sync/internal.h).  The rule that keeps
 * the engine from hanging: every stage starts with an agreement
 * (eplb__agree) on whether every rank is ready, and every failure after a
 * collective is identical on every rank, so no rank ever waits in a
 * collective that another rank has left. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/migrate.h"
#include "mpi/agree.h"
#include "mpi/fault.h"
#include "mpi/watchdog.h"
#include "sync/internal.h"
#include "util/checksum.h"

void eplb_sync_opts_default(eplb_sync_opts_t *opts) {
  memset(opts, 0, sizeof(*opts));
  eplb_plan_opts_default(&opts->plan);
  opts->output_format = EPLB_MAP_AUTO;
}

void eplb_sync_result_cleanup(eplb_sync_result_t *res) {
  if (res == NULL)
    return;
  eplb_placement_cleanup(&res->placement);
  eplb_migrate_result_cleanup(&res->migrate);
  free(res->dropped);
  for (int32_t k = 0; k < res->num_scenarios && res->scenario_names; k++)
    free(res->scenario_names[k]);
  free(res->scenario_names);
  free(res->scenario_weights);
  free(res->scenario_before);
  free(res->scenario_after);
  memset(res, 0, sizeof(*res));
}

/* What this rank brings to a run: one histogram (a plain run) or one per
 * scenario. */
typedef struct {
  const eplb_stats_t *local;  /* a plain run's counts (NULL: none) */
  const eplb_scenarios_t *sc; /* a scenario run's, or NULL: plain */
  const char *const *names;   /* the scenarios in messages, or NULL */
  const char *const *labels;  /* ... in the result, or NULL: names */
} input_t;

/* ---- the engine ------------------------------------------------------ */

/* Checks the options that do not depend on the data; identical on every
 * rank. */
static int check_opts(const eplb_sync_opts_t *opts, eplb_error_t *err) {
  if (opts->generation >= EPLB_MAX_GENERATION)
    return eplb_error_set(err, EPLB_EARG,
                          "generation %llu is out of range 0..%llu",
                          (unsigned long long)opts->generation,
                          (unsigned long long)(EPLB_MAX_GENERATION - 1));
  if (opts->mtp_layers < 0 || opts->mtp_layers > EPLB_MAX_MTP_LAYERS)
    return eplb_error_set(err, EPLB_EARG,
                          "mtp_layers %d is out of range 0..%d",
                          (int)opts->mtp_layers, EPLB_MAX_MTP_LAYERS);
  if (opts->mtp_from != EPLB_MTP_LAST && opts->mtp_from != EPLB_MTP_TRIVIAL)
    return eplb_error_set(err, EPLB_EARG,
                          "mtp_from %d is not EPLB_MTP_LAST or "
                          "EPLB_MTP_TRIVIAL",
                          (int)opts->mtp_from);
  return 0;
}

/* The options of a run that steer its collectives, as one key. */
static uint64_t sync_opts_key(const eplb_sync_opts_t *o) {
  const double f[] = {(double)o->generation, o->output != NULL,
                      o->summary != NULL,   o->max_buffer_mb,
                      o->timeout_s,         o->mtp_layers,
                      o->mtp_from,          o->allow_duplicates};
  uint64_t k = eplb__plan_opts_key(&o->plan, 0);
  k = eplb__checksum(f, sizeof(f), k);
  return eplb__string_key(o->shards_dir, k);
}

/* This rank's side of the first agreement: options, fault table, counts,
 * the copy that will be summed, and the plan buffer. */
static int prepare(const eplb_stats_t *local, const eplb_sync_opts_t *opts,
                   const char *name, eplb_stats_t *sum, eplb__plan_buf_t *buf,
                   eplb_error_t *err) {
  int rc = check_opts(opts, err);
  if (rc == 0)
    rc = eplb__fault_load(err);
  if (rc == 0)
    rc = eplb__sync_check_local(local, name, err);
  if (rc == 0)
    rc = eplb_stats_copy(sum, local, err);
  /* With shards the slots are known once the shards are open. */
  if (rc == 0 && opts->shards_dir == NULL)
    rc =
        eplb__plan_buf_alloc(buf, local->num_layers + opts->mtp_layers,
                             opts->plan.num_slots, err);
  return rc;
}

/* The same for a scenario run: every scenario checked and copied, the
 * allreduce buffer, the result's scenario fields and a plan buffer with
 * room for their metrics. */
static int prepare_scenarios(const input_t *in, const eplb_sync_opts_t *opts,
                             eplb__scenarios_t *scen, eplb__plan_buf_t *buf,
                             eplb_sync_result_t *res, eplb_error_t *err) {
  int rc = check_opts(opts, err);
  if (rc == 0)
    rc = eplb__fault_load(err);
  if (rc == 0)
    rc = eplb__scenarios_prepare(scen, in->sc, in->names, in->labels, res, err);
  if (rc == 0 && opts->shards_dir == NULL)
    rc = eplb__plan_buf_alloc_scenarios(
        buf, scen->stats[0].num_layers + opts->mtp_layers, opts->plan.num_slots,
        scen->num, err);
  return rc;
}

/* Fits the open shards to the summed statistics and the options: the
 * shards' map becomes the current placement (row l = the statistics'
 * layer l; with MTP layers, the shards hold them after the statistics'
 * layers and `trim` is the current placement without them), their
 * generation the current one, and their shape the slots and GPUs unless
 * the options name them.  Identical on every rank. */
static int fit_shards(eplb_shard_set_t *set, const eplb_stats_t *sum,
                      eplb_sync_opts_t *o, eplb_placement_t *trim,
                      eplb_error_t *err) {
  eplb_placement_t *c = &set->current;
  int32_t L = sum->num_layers, n = o->mtp_layers;
  if (c->num_layers != L + n)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "the shards in %s hold %d layers but the summed "
                          "statistics have %d MoE layers%s%.0d%s; give the "
                          "statistics of the model these shards belong to%s",
                          o->shards_dir, (int)c->num_layers, (int)L,
                          n ? " and --mtp-layers asks for " : "", (int)n,
                          n ? " more" : "",
                          n ? " (or shards made with the MTP layers)" : "");
  if (o->plan.num_slots == 0)
    o->plan.num_slots = c->num_slots;
  if (o->plan.num_gpus == 0)
    o->plan.num_gpus = c->num_gpus;
  if (o->plan.num_slots != c->num_slots || o->plan.num_gpus != c->num_gpus)
    return eplb_error_set(err, EPLB_EARG,
                          "--num-slots %d --num-gpus %d, but the shards in %s "
                          "hold %d slots on %d ranks; leave them out with "
                          "--shards or run one rank per shard",
                          (int)o->plan.num_slots, (int)o->plan.num_gpus,
                          o->shards_dir, (int)c->num_slots, (int)c->num_gpus);
  /* Named as the plan will name them: the statistics' ids, then the MTP
   * layers' as eplb_placement_append_layers numbers them. */
  memcpy(c->layer_ids, sum->layer_ids, sizeof(int32_t) * (size_t)L);
  for (int32_t i = 0; i < n; i++)
    c->layer_ids[L + i] = sum->layer_ids[L - 1] + 1 + i;
  o->current = c;
  if (n > 0) {
    int rc = eplb_placement_copy(trim, c, err);
    if (rc == 0)
      rc = eplb_placement_drop_last_layers(trim, n, err);
    if (rc)
      return rc;
    o->current = trim;
  }
  o->current_map = NULL;
  o->generation = eplb_shards_info(set)->generation;
  if (o->generation >= EPLB_MAX_GENERATION)
    return eplb_error_set(err, EPLB_ESTATE,
                          "the shards' generation %llu is "
                          "too large to move on",
                          (unsigned long long)o->generation);
  return 0;
}

/* Opens the shards (collective, agreed inside), fits them, and allocates
 * the plan buffer now that the slots are known (agreed). */
static int open_shards(MPI_Comm comm, const eplb_stats_t *sum,
                       int32_t num_scenarios, eplb_sync_opts_t *o,
                       eplb_shard_set_t *set, eplb_placement_t *trim,
                       eplb__plan_buf_t *buf, eplb_error_t *err) {
  int rc = eplb_shards_open(comm, o->shards_dir, sum->num_experts, set, err);
  if (rc)
    return rc;
  rc = fit_shards(set, sum, o, trim, err); /* the same on every rank */
  if (rc == 0)
    rc = eplb__agree(comm,
                     eplb__plan_buf_alloc_scenarios(buf,
                                                    sum->num_layers +
                                                        o->mtp_layers,
                                                    o->plan.num_slots,
                                                    num_scenarios, err),
                     err);
  return rc;
}

/* 1 when two placements of the same shape put the same experts in the
 * same slots. */
static int same_slots(const eplb_placement_t *a, const eplb_placement_t *b) {
  return a->num_layers == b->num_layers && a->num_slots == b->num_slots &&
         memcmp(a->phy2log, b->phy2log,
                sizeof(int32_t) * (size_t)a->num_layers *
                    (size_t)a->num_slots) == 0;
}

/* Moves the weights to the agreed plan and commits (collective). */
static int migrate_shards(eplb_shard_set_t *set, const eplb_sync_opts_t *o,
                          eplb_sync_result_t *res, eplb_error_t *err) {
  eplb_migrate_opts_t mo;
  eplb_migrate_opts_default(&mo);
  if (o->max_buffer_mb)
    mo.max_buffer_mb = o->max_buffer_mb;
  if (o->timeout_s)
    mo.timeout_s = o->timeout_s;
  mo.num_nodes = o->plan.num_nodes;
  mo.quiet = o->quiet;
  int rc = eplb_migrate(set, &res->placement, &mo, &res->migrate, err);
  if (rc)
    return rc;
  res->migrated = 1;
  res->seconds[EPLB_PHASE_TRANSFER] = res->migrate.seconds_read +
                                      res->migrate.seconds_transfer +
                                      res->migrate.seconds_write;
  res->seconds[EPLB_PHASE_COMMIT] = res->migrate.seconds_commit;
  return 0;
}

/* One run's state on this rank. */
typedef struct {
  MPI_Comm comm;
  int rank;
  eplb_sync_opts_t o; /* the shards may fill in slots and map */
  const input_t *in;
  eplb_stats_t sum;       /* a plain run's counts, summed */
  eplb__scenarios_t scen; /* a scenario run's, summed */
  eplb_placement_t plan;
  eplb__plan_buf_t buf;
  eplb_shard_set_t set;
  eplb_placement_t trim; /* the shards' map without its MTP layers */
} engine_t;

/* The summed histogram whose shape the later stages go by. */
static const eplb_stats_t *summed(const engine_t *e) {
  return e->in->sc ? &e->scen.stats[0] : &e->sum;
}

/* Collect and reduce: this rank's counts prepared (local_rc says whether
 * it got them), one allgather of status and shape, one allreduce. */
static int gather(engine_t *e, int local_rc, eplb_sync_result_t *res,
                  eplb_error_t *err) {
  const input_t *in = e->in;
  const char *name = e->o.stats_name ? e->o.stats_name : "counts in memory";
  const eplb_stats_t *local = in->local;
  eplb_stats_t first; /* a scenario run's shape: scenario 0's */
  int dense = 0;
  double t0 = MPI_Wtime();
  if (local_rc == 0)
    local_rc = in->sc
                   ? prepare_scenarios(in, &e->o, &e->scen, &e->buf, res, err)
                   : prepare(local, &e->o, name, &e->sum, &e->buf, err);
  uint64_t key = sync_opts_key(&e->o);
  if (in->sc && local_rc == 0) {
    first = e->scen.stats[0];
    for (int32_t k = 1; k < e->scen.num; k++)
      first.dense_rows |= e->scen.stats[k].dense_rows;
    local = &first;
    name = in->names && in->names[0] ? in->names[0] : "scenario 0";
    key = eplb__scenarios_key(&e->scen, key);
  }
  eplb__watch_phase("shape");
  eplb__fault_point("shape", e->rank, "before agreeing on the shapes");
  int rc = eplb__reduce_agree_shape(e->comm, local_rc, local, name, key, &dense,
                                    err);
  double t1 = MPI_Wtime();
  res->seconds[EPLB_PHASE_SHAPE] = t1 - t0;
  if (rc)
    return rc;
  eplb__watch_phase("reduce");
  eplb__fault_point("reduce", e->rank, "before the sum");
  rc = in->sc ? eplb__reduce_scenarios(e->comm, &e->scen, dense, &res->dropped,
                                       &res->num_dropped, err)
              : eplb__reduce_sum(e->comm, &e->sum, dense, &res->dropped,
                                 &res->num_dropped, err);
  res->seconds[EPLB_PHASE_REDUCE] = MPI_Wtime() - t1;
  return rc;
}

/* Plan (rank 0), distribute and verify, move the shards, write. */
static int plan_and_apply(engine_t *e, eplb_sync_result_t *res, double t_start,
                          eplb_error_t *err) {
  const eplb_stats_t *sum = summed(e);
  eplb_sync_opts_t *o = &e->o;
  int rc = 0;
  if (o->shards_dir)
    rc = open_shards(e->comm, sum, e->scen.num, o, &e->set, &e->trim, &e->buf,
                     err);
  /* The options against the summed shape: identical on every rank. */
  if (rc == 0)
    rc = eplb_plan_check_opts(&o->plan, sum->num_experts, err);
  if (rc)
    return rc;
  double t2 = MPI_Wtime();

  eplb__watch_phase("plan");
  eplb__fault_point("plan", e->rank, "before planning");
  res->generation = o->generation + 1;
  int root_rc = 0;
  if (e->rank == 0)
    root_rc = e->in->sc ? eplb__sync_plan_root_scenarios(&e->scen, o, &e->plan,
                                                         res, err)
                        : eplb__sync_plan_root(sum, o, &e->plan, res, err);
  double t3 = MPI_Wtime();
  res->seconds[EPLB_PHASE_PLAN] = t3 - t2;

  eplb__watch_phase("distribute");
  eplb__fault_point("distribute", e->rank, "before the plan's broadcast");
  rc = eplb__sync_distribute(e->comm, root_rc, &e->buf, &e->plan, res, NULL,
                             err);
  if (rc == 0 && e->in->sc)
    eplb__scenarios_means(res);
  /* A plan equal to where the experts are moves nothing: the shards keep
   * their generation instead of being rewritten as a new one. */
  if (rc == 0 && o->shards_dir && same_slots(&e->set.current, &res->placement))
    res->generation = o->generation;
  else if (rc == 0 && o->shards_dir)
    rc = migrate_shards(&e->set, o, res, err);
  if (rc == 0) {
    double t4 = MPI_Wtime();
    /* The summary's total is up to the write; the printed one includes it. */
    res->seconds[EPLB_PHASE_TOTAL] = t4 - t_start;
    rc = eplb__sync_write(e->comm, o, res, NULL, err);
    res->seconds[EPLB_PHASE_WRITE] = MPI_Wtime() - t4;
  }
  return rc;
}

/* The engine after the local counts are in hand (local_rc says whether
 * this rank got them).  On the success path: one allgather (status and
 * shape), one allreduce, one broadcast, one allgather (checksums), one
 * agreement after writing. */
static int run_engine(MPI_Comm comm, int local_rc, const input_t *in,
                      const eplb_sync_opts_t *opts, eplb_sync_result_t *res,
                      double t_start, eplb_error_t *err) {
  engine_t e;
  memset(&e, 0, sizeof(e));
  e.comm = comm;
  e.o = *opts;
  e.in = in;
  e.set.comm = MPI_COMM_NULL;
  MPI_Comm_rank(comm, &e.rank);
  int rc = gather(&e, local_rc, res, err);
  if (rc == 0)
    rc = plan_and_apply(&e, res, t_start, err);
  eplb_shards_close(&e.set);
  eplb_stats_cleanup(&e.sum);
  eplb__scenarios_free(&e.scen);
  eplb_placement_cleanup(&e.plan);
  eplb_placement_cleanup(&e.trim);
  eplb__plan_buf_free(&e.buf);
  return rc;
}

/* Shared tail of the entry points: dup, run, free, print.  t_read is the
 * time the file wrappers spent reading (0 for counts in memory). */
static int run_with(MPI_Comm comm, int local_rc, const input_t *in,
                    const eplb_sync_opts_t *opts, eplb_sync_result_t *res,
                    double t_start, double t_read, eplb_error_t *err) {
  MPI_Comm c = MPI_COMM_NULL;
  res->seconds[EPLB_PHASE_READ] = t_read;
  /* Every collective of the run waits at most timeout_s (watchdog.h). */
  int old_timeout = eplb__watch_timeout(opts->timeout_s);
  int rc = eplb__dup_comm(comm, &c, err);
  if (rc == 0)
    rc = run_engine(c, local_rc, in, opts, res, t_start, err);
  eplb__watch_timeout(old_timeout);
  if (c != MPI_COMM_NULL)
    MPI_Comm_free(&c);
  if (rc) {
    eplb_sync_result_cleanup(res);
    return rc;
  }
  res->seconds[EPLB_PHASE_TOTAL] = MPI_Wtime() - t_start;
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0 && !opts->quiet)
    eplb__sync_print_summary(opts, res);
  return 0;
}

int eplb_sync_run(MPI_Comm comm, const eplb_stats_t *local,
                  const eplb_sync_opts_t *opts, eplb_sync_result_t *res,
                  eplb_error_t *err) {
  double t = MPI_Wtime();
  memset(res, 0, sizeof(*res));
  eplb_sync_opts_t o;
  if (opts)
    o = *opts;
  else
    eplb_sync_opts_default(&o);
  /* A NULL opts on one rank is that rank's error, agreed like any other. */
  int local_rc =
      opts ? 0 : eplb_error_set(err, EPLB_EARG, "eplb_sync_run: opts is NULL");
  input_t in = {.local = local};
  return run_with(comm, local_rc, &in, &o, res, t, 0, err);
}

int eplb_sync_run_files(MPI_Comm comm, const char *const *patterns,
                        int num_patterns, eplb_stats_format_t format,
                        const eplb_sync_opts_t *opts, eplb_sync_result_t *res,
                        eplb_error_t *err) {
  double t = MPI_Wtime();
  memset(res, 0, sizeof(*res));
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  eplb__watch_phase("read");
  eplb__fault_point("read", rank, "before reading the statistics");
  char name[4096] = "";
  eplb_stats_t local = {0};
  eplb_sync_opts_t o;
  if (opts)
    o = *opts;
  else
    eplb_sync_opts_default(&o);
  int local_rc =
      eplb__sync_read_local(patterns, num_patterns, rank, format, o.output,
                            o.summary, &local, name, sizeof(name), err);
  if (num_patterns > 1)
    strncat(name, " (+ more files)", sizeof(name) - strlen(name) - 1);
  o.stats_name = name;
  double t_read = MPI_Wtime() - t;
  input_t in = {.local = local_rc ? NULL : &local};
  int rc = run_with(comm, local_rc, &in, &o, res, t, t_read, err);
  eplb_stats_cleanup(&local);
  return rc;
}

int eplb_sync_run_scenarios(MPI_Comm comm, const eplb_scenarios_t *local,
                            const char *const *names,
                            const eplb_sync_opts_t *opts,
                            eplb_sync_result_t *res, eplb_error_t *err) {
  double t = MPI_Wtime();
  memset(res, 0, sizeof(*res));
  eplb_sync_opts_t o;
  if (opts)
    o = *opts;
  else
    eplb_sync_opts_default(&o);
  int local_rc = opts ? 0
                      : eplb_error_set(err, EPLB_EARG,
                                       "eplb_sync_run_scenarios: opts is NULL");
  /* NULL scenarios are this rank's error, found when they are prepared. */
  eplb_scenarios_t none = {0, NULL, NULL};
  input_t in = {.sc = local ? local : &none, .names = names};
  return run_with(comm, local_rc, &in, &o, res, t, 0, err);
}

/* The files' side of eplb_sync_run_scenario_files: this rank's scenarios
 * read into stats[K] (names: their first files, for messages). */
static int read_scenario_files(const eplb_sync_scenario_t *sc, int32_t K,
                               int rank, eplb_stats_format_t format,
                               const eplb_sync_opts_t *o, eplb_stats_t *stats,
                               char (*names)[4096], eplb_error_t *err) {
  if (sc == NULL || K < 1 || K > EPLB_MAX_SCENARIOS)
    return eplb_error_set(err, EPLB_EARG, "%d scenarios: give 1..%d",
                          sc ? (int)K : 0, EPLB_MAX_SCENARIOS);
  for (int32_t k = 0; k < K; k++)
    if (sc[k].patterns == NULL || sc[k].num_patterns < 1)
      return eplb_error_set(err, EPLB_EARG, "scenario %d names no files",
                            (int)k);
  int rc = eplb__sync_read_scenarios(sc, K, rank, format, o->output, o->summary,
                                     stats, names, err);
  for (int32_t k = 0; rc == 0 && k < K; k++)
    if (sc[k].num_patterns > 1)
      strncat(names[k], " (+ more files)",
              sizeof(names[k]) - strlen(names[k]) - 1);
  return rc;
}

int eplb_sync_run_scenario_files(MPI_Comm comm,
                                 const eplb_sync_scenario_t *scenarios,
                                 int32_t num_scenarios,
                                 eplb_stats_format_t format,
                                 const eplb_sync_opts_t *opts,
                                 eplb_sync_result_t *res, eplb_error_t *err) {
  double t = MPI_Wtime();
  memset(res, 0, sizeof(*res));
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  eplb__watch_phase("read");
  eplb__fault_point("read", rank, "before reading the statistics");
  eplb_sync_opts_t o;
  if (opts)
    o = *opts;
  else
    eplb_sync_opts_default(&o);
  int32_t K = num_scenarios > 0 && num_scenarios <= EPLB_MAX_SCENARIOS
                  ? num_scenarios
                  : 1;
  eplb_stats_t *stats = calloc((size_t)K, sizeof(*stats));
  double *w = calloc((size_t)K, sizeof(*w));
  char(*names)[4096] = calloc((size_t)K, sizeof(*names));
  const char **np = calloc((size_t)K, sizeof(*np));
  const char **labels = calloc((size_t)K, sizeof(*labels));
  int local_rc = stats && w && names && np && labels
                     ? read_scenario_files(scenarios, num_scenarios, rank,
                                           format, &o, stats, names, err)
                     : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t k = 0; local_rc == 0 && k < K; k++) {
    w[k] = scenarios[k].weight == 0 ? 1.0 : scenarios[k].weight;
    np[k] = names[k];
    labels[k] =
        scenarios[k].name ? scenarios[k].name : scenarios[k].patterns[0];
  }
  eplb_scenarios_t sc = {K, stats, w};
  input_t in = {.sc = &sc, .names = np, .labels = labels};
  double t_read = MPI_Wtime() - t;
  int rc = run_with(comm, local_rc, &in, &o, res, t, t_read, err);
  for (int32_t k = 0; stats && local_rc == 0 && k < K; k++)
    eplb_stats_cleanup(&stats[k]);
  free(stats);
  free(w);
  free(names);
  free(np);
  free(labels);
  return rc;
}
