/* watch.c - `eplb-sync --watch`: rebalance beside a running job.
 *
 * Rounds of: wait (interval, trigger file or stop), every rank re-reads its
 * statistics (cumulative counters: MindSpeed-RL rewrites its JSON on every
 * forward pass), then one eplb_rebalancer_step.  The waiting is rank 0's:
 * it decides when a round starts and tells the others with a non-blocking
 * broadcast they poll with short sleeps, so idle ranks do not spin a CPU
 * between rounds (they share cores with the training job).
 *
 * A file caught half-written fails to parse; that is normal for a file a
 * trainer rewrites in place, so such a round is skipped on every rank and
 * the files are read again next round.  A shape that changes or an option
 * out of range is not transient: it ends the loop on every rank. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "eplb/rebalance.h"
#include "mpi/agree.h"
#include "sync/internal.h"
#include "util/fileio.h"

void eplb_watch_opts_default(eplb_watch_opts_t *opts) {
  memset(opts, 0, sizeof(*opts));
  eplb_rebalancer_opts_default(&opts->rb);
  opts->interval_s = 60;
}

static int check_watch_opts(const eplb_watch_opts_t *o, eplb_error_t *err) {
  if (!(o->interval_s >= 0.01 && o->interval_s <= 86400))
    return eplb_error_set(
        err, EPLB_EARG, "--interval %g is outside 0.01..86400", o->interval_s);
  if (o->max_rounds < 0 || o->max_rounds > EPLB_WATCH_MAX_ROUNDS)
    return eplb_error_set(err, EPLB_EARG,
                          "--max-rounds %lld is outside 0..%lld",
                          (long long)o->max_rounds, EPLB_WATCH_MAX_ROUNDS);
  return 0;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int stopping(const eplb_watch_opts_t *o) {
  return o->stop != NULL && *o->stop != 0;
}

/* Rank 0: 1 when the next round should start now, 0 to stop, -1 to keep
 * waiting. */
static int root_ready(const eplb_watch_opts_t *o, int64_t k, double since) {
  if (stopping(o) || (o->max_rounds > 0 && k >= o->max_rounds))
    return 0;
  if (k == 0 || MPI_Wtime() - since >= o->interval_s)
    return 1;
  if (o->trigger && access(o->trigger, F_OK) == 0) {
    unlink(o->trigger); /* consumed: one round per trigger */
    return 1;
  }
  return -1;
}

/* Every rank learns whether round k starts (1) or the loop ends (0). */
static int wait_round(MPI_Comm comm, int rank, const eplb_watch_opts_t *o,
                      int64_t k, double since, int *go, eplb_error_t *err) {
  int ready = -1;
  if (rank == 0)
    while ((ready = root_ready(o, k, since)) < 0)
      sleep_s(0.05);
  *go = ready;
  MPI_Request req;
  int rc = eplb__mpi_check(MPI_Ibcast(go, 1, MPI_INT, 0, comm, &req),
                           "MPI_Ibcast of the round start", err);
  int done = 0;
  while (rc == 0 && !done) {
    rc = eplb__mpi_check(MPI_Test(&req, &done, MPI_STATUS_IGNORE),
                         "MPI_Test of the round start", err);
    if (rc == 0 && !done)
      sleep_s(0.01);
  }
  return rc;
}

/* The summary rank 0 rewrites after every round. */
typedef struct {
  cJSON *root, *history;
  int64_t rounds, rebalances, skipped;
} summary_t;

static void summary_add(summary_t *s, const eplb_round_t *x) {
  cJSON *j = cJSON_CreateObject();
  if (j == NULL)
    return;
  cJSON_AddNumberToObject(j, "round", (double)x->round);
  cJSON_AddBoolToObject(j, "had_traffic", x->had_traffic);
  cJSON_AddBoolToObject(j, "rebalanced", x->rebalanced);
  cJSON_AddNumberToObject(j, "generation", (double)x->generation);
  cJSON_AddNumberToObject(j, "imbalance_before", x->imbalance_before);
  cJSON_AddNumberToObject(j, "imbalance_after", x->imbalance_after);
  cJSON_AddNumberToObject(j, "layers_moved", x->layers_changed);
  cJSON_AddNumberToObject(j, "replicas_moved", (double)x->moves);
  cJSON_AddNumberToObject(j, "bytes_moved", (double)x->bytes_moved);
  cJSON_AddNumberToObject(j, "seconds", x->seconds);
  cJSON_AddItemToArray(s->history, j);
}

/* Rank 0 rewrites the summary (atomically). */
static int summary_write(summary_t *s, const char *path, uint64_t generation,
                         int ranks, eplb_error_t *err) {
  cJSON *r = s->root;
  cJSON_DeleteItemFromObject(r, "rounds");
  cJSON_DeleteItemFromObject(r, "rebalances");
  cJSON_DeleteItemFromObject(r, "skipped_rounds");
  cJSON_DeleteItemFromObject(r, "generation");
  cJSON_DeleteItemFromObject(r, "ranks");
  cJSON_AddNumberToObject(r, "rounds", (double)s->rounds);
  cJSON_AddNumberToObject(r, "rebalances", (double)s->rebalances);
  cJSON_AddNumberToObject(r, "skipped_rounds", (double)s->skipped);
  cJSON_AddNumberToObject(r, "generation", (double)generation);
  cJSON_AddNumberToObject(r, "ranks", ranks);
  char *text = cJSON_Print(r);
  int rc = text
               ? eplb__write_atomic(path, eplb__write_text, text, err)
               : eplb_error_set(err, EPLB_ENOMEM, "out of memory for %s", path);
  cJSON_free(text);
  return rc;
}

typedef struct {
  MPI_Comm comm;
  int rank, size;
  const char *const *patterns;
  int num_patterns;
  eplb_stats_format_t format;
  const eplb_watch_opts_t *opts;
  eplb_rebalancer_t *rb;
  summary_t sum;
} loop_t;

/* The first readable round: the ranks agree on the files' shapes (a rank
 * that differs is named with both files), then the rebalancer starts from
 * --current-map or the contiguous placement (or the shards'), naming the
 * layers as the statistics do.  Later rounds' shapes are checked by
 * eplb_rebalancer_observe. */
static int create(loop_t *w, const eplb_stats_t *st, const char *name,
                  eplb_error_t *err) {
  int dense = 0;
  int rc = eplb__reduce_agree_shape(w->comm, 0, st, name, 0, &dense, err);
  if (rc)
    return rc;
  eplb_rebalancer_opts_t rb = w->opts->rb;
  rb.layer_ids = st->layer_ids;
  eplb_placement_t start = {0};
  if (w->opts->current_map && !rb.shards_dir) {
    const eplb_plan_opts_t *po = &rb.online.plan;
    rc = eplb__agree(w->comm,
                     eplb_placement_read_for(&start, w->opts->current_map, st,
                                             po->num_slots, po->num_gpus,
                                             "--current-map", err),
                     err);
  }
  if (rc == 0)
    rc = eplb_rebalancer_create(w->comm, &rb, start.phy2log ? &start : NULL,
                                st->num_layers, st->num_experts, &w->rb, err);
  eplb_placement_cleanup(&start);
  return rc;
}

/* One round after the go.  *skipped = 1 when some rank's file could not
 * be read (retried next round). */
static int one_round(loop_t *w, int *skipped, eplb_error_t *err) {
  char name[4096] = "";
  eplb_stats_t st = {0};
  *skipped = 0;
  int rc = eplb__sync_read_local(
      w->patterns, w->num_patterns, w->rank, w->format, w->opts->rb.output,
      w->opts->summary, &st, name, sizeof(name), err);
  rc = eplb__agree(w->comm, rc, err);
  if (rc == EPLB_EIO || rc == EPLB_EPARSE) {
    if (w->rank == 0 && !w->opts->rb.quiet) {
      printf("eplb: round skipped, statistics will be read again: %s\n",
             err->msg);
      fflush(stdout);
    }
    *skipped = 1;
    eplb_stats_cleanup(&st);
    return 0;
  }
  if (rc == 0 && w->rb == NULL)
    rc = create(w, &st, name, err);
  eplb_round_t round;
  if (rc == 0) {
    /* A failure (another shape) is kept and agreed at the step. */
    if (eplb_rebalancer_observe(w->rb, &st, 1, err) != 0)
      eplb_error_prefix(err, "%s", name);
    rc = eplb_rebalancer_step(w->rb, &round, err);
  }
  if (rc == 0 && w->rank == 0) {
    w->sum.rebalances += round.rebalanced;
    summary_add(&w->sum, &round);
  }
  eplb_stats_cleanup(&st);
  return rc;
}

int eplb_watch_run(MPI_Comm comm, const char *const *patterns, int num_patterns,
                   eplb_stats_format_t format, const eplb_watch_opts_t *opts,
                   eplb_error_t *err) {
  loop_t w;
  memset(&w, 0, sizeof(w));
  w.patterns = patterns;
  w.num_patterns = num_patterns;
  w.format = format;
  w.opts = opts;
  int rc = eplb__dup_comm(comm, &w.comm, err);
  if (rc)
    return rc;
  MPI_Comm_rank(w.comm, &w.rank);
  MPI_Comm_size(w.comm, &w.size);
  w.sum.root = cJSON_CreateObject();
  w.sum.history = cJSON_CreateArray();
  int lrc = check_watch_opts(opts, err);
  if (lrc == 0 && (w.sum.root == NULL || w.sum.history == NULL))
    lrc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  rc = eplb__agree(w.comm, lrc, err);
  if (rc == 0) {
    cJSON_AddStringToObject(w.sum.root, "program", "eplb-sync --watch");
    if (opts->rb.online.history > 1) /* the decision's windows */
      cJSON_AddNumberToObject(w.sum.root, "history_windows",
                              opts->rb.online.history);
    cJSON_AddItemToObject(w.sum.root, "history", w.sum.history);
  } else {
    cJSON_Delete(w.sum.history);
  }
  double since = MPI_Wtime();
  for (int64_t k = 0; rc == 0; k++) {
    int go = 0, skipped = 0;
    rc = wait_round(w.comm, w.rank, opts, k, since, &go, err);
    if (rc || !go)
      break;
    since = MPI_Wtime();
    rc = one_round(&w, &skipped, err);
    w.sum.skipped += skipped;
    w.sum.rounds += !skipped;
    if (rc == 0 && opts->summary) {
      uint64_t g =
          w.rb ? eplb_rebalancer_generation(w.rb) : opts->rb.generation;
      int src = w.rank == 0
                    ? summary_write(&w.sum, opts->summary, g, w.size, err)
                    : 0;
      rc = eplb__agree(w.comm, src, err);
    }
  }
  if (rc == 0 && w.rank == 0 && !opts->rb.quiet) {
    printf("eplb: watch ended after %lld rounds, %lld rebalances, %lld "
           "skipped\n",
           (long long)w.sum.rounds, (long long)w.sum.rebalances,
           (long long)w.sum.skipped);
    fflush(stdout);
  }
  eplb_rebalancer_destroy(w.rb);
  cJSON_Delete(w.sum.root);
  MPI_Comm_free(&w.comm);
  return rc;
}
