/* reduce.c - the reduce stage: every rank's histogram, summed.
 *
 * Two steps, each a collective that every rank reaches.  First status and
 * shape in one allgather: every rank learns whether every rank read its
 * counts and whether every (layers, experts, layer-id checksum) equals rank
 * 0's, so a rank that counted another model or another layer set is named
 * with both files instead of producing a sum that mixes layers.  The same
 * allgather compares a key of the options that steer the collectives: a
 * rank called with other options (slots, shards, output...) would take
 * another path through them and leave the others waiting.  Only when
 * something is wrong do more collectives follow (to gather the messages).  Then
 * MPI_Allreduce of the counts as doubles: counts are integers and every partial
 * sum of non-negative counts is at most the total, so a total of at most 2^53
 * (EPLB_MAX_COUNT) is exact whatever order the reduction adds in, and every
 * rank holds the same sum. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/agree.h"
#include "mpi/watchdog.h"
#include "sync/internal.h"
#include "util/checksum.h"

/* What every rank tells every other about its statistics, in one
 * allgather: its status and its shape. */
typedef struct {
  int32_t rc, num_layers, num_experts, dense;
  uint64_t ids_checksum;
  int32_t first_id, last_id;
  uint64_t opts_key; /* the options every rank must share */
} shape_t;

/* The shape of `local` (NULL or unread: zeros). */
static void shape_of(int rc, const eplb_stats_t *local, uint64_t opts_key,
                     shape_t *s) {
  memset(s, 0, sizeof(*s));
  s->rc = rc;
  s->opts_key = opts_key;
  if (rc != 0 || local == NULL || local->num_layers <= 0)
    return;
  s->num_layers = local->num_layers;
  s->num_experts = local->num_experts;
  s->dense = local->dense_rows ? 1 : 0;
  s->ids_checksum = eplb__checksum(
      local->layer_ids, sizeof(int32_t) * (size_t)local->num_layers, 0);
  s->first_id = local->layer_ids[0];
  s->last_id = local->layer_ids[local->num_layers - 1];
}

/* Compares this rank's shape with rank 0's; the error says what to do. */
static int compare_shape(const shape_t *mine, const char *name,
                         const shape_t *root, const char *root_name,
                         eplb_error_t *err) {
  if (mine->opts_key != root->opts_key)
    return eplb_error_set(
        err, EPLB_EARG,
        "its options differ from rank 0's (planner options, generation, "
        "output, summary, shards or migration settings); every rank must "
        "pass the same options");
  if (mine->num_layers != root->num_layers ||
      mine->num_experts != root->num_experts)
    return eplb_error_set(
        err, EPLB_ESHAPE,
        "%s has %d layers x %d experts but rank 0's %s has %d x %d; every "
        "rank must count the same MoE layers and experts",
        name, (int)mine->num_layers, (int)mine->num_experts, root_name,
        (int)root->num_layers, (int)root->num_experts);
  if (mine->ids_checksum != root->ids_checksum)
    return eplb_error_set(
        err, EPLB_ESHAPE,
        "%s names layers %d..%d but rank 0's %s names layers %d..%d (the "
        "layer ids differ); every rank must count the same layers",
        name, (int)mine->first_id, (int)mine->last_id, root_name,
        (int)root->first_id, (int)root->last_id);
  return 0;
}

/* The slow path, taken by every rank when the allgather showed a shape
 * that differs: rank 0's source name is broadcast so each differing rank
 * can name both files, then the ranks agree on the messages. */
static int shape_mismatch(MPI_Comm comm, const shape_t *all, int rank,
                          const char *name, eplb_error_t *err) {
  char root_name[512];
  snprintf(root_name, sizeof(root_name), "%s", name);
  int rc = eplb__bcast(root_name, (int)sizeof(root_name), MPI_CHAR, 0, comm,
                       "MPI_Bcast of rank 0's statistics name", err);
  if (rc)
    return rc;
  root_name[sizeof(root_name) - 1] = '\0';
  return eplb__agree(
      comm, compare_shape(&all[rank], name, &all[0], root_name, err), err);
}

int eplb__reduce_agree_shape(MPI_Comm comm, int local_rc,
                             const eplb_stats_t *local, const char *name,
                             uint64_t opts_key, int *any_dense,
                             eplb_error_t *err) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  shape_t mine;
  shape_of(local_rc, local, opts_key, &mine);
  shape_t *all = malloc(sizeof(shape_t) * (size_t)size);
  if (all == NULL) {
    /* Cannot take part in the allgather: abort rather than let others
     * wait in it. */
    fprintf(stderr,
            "eplb: rank %d: out of memory agreeing on shapes; "
            "aborting\n",
            rank);
    MPI_Abort(comm, 1);
    return EPLB_ENOMEM;
  }
  /* One collective on the success path: status and shape together. */
  int rc = eplb__allgather(&mine, (int)sizeof(mine), MPI_BYTE, all,
                           (int)sizeof(mine), MPI_BYTE, comm,
                           "MPI_Allgather of statistics shapes", err);
  int failed = 0, differs = 0, dense = 0;
  for (int r = 0; rc == 0 && r < size; r++) {
    failed |= all[r].rc != 0;
    differs |= all[r].num_layers != all[0].num_layers ||
               all[r].num_experts != all[0].num_experts ||
               all[r].ids_checksum != all[0].ids_checksum ||
               all[r].opts_key != all[0].opts_key;
    dense |= all[r].dense;
  }
  /* Every rank saw the same table, so every rank takes the same branch. */
  if (rc == 0 && failed)
    rc = eplb__agree(comm, local_rc, err);
  else if (rc == 0 && differs)
    rc = shape_mismatch(comm, all, rank, name, err);
  *any_dense = dense;
  free(all);
  return rc;
}

/* Checks every sum; identical on every rank (the sums are). */
static int check_sums(const eplb_stats_t *sum, eplb_error_t *err) {
  size_t n = (size_t)sum->num_layers * (size_t)sum->num_experts;
  for (size_t i = 0; i < n; i++)
    /* Strict: a true sum of 2^53 + 1 rounds to 2^53, so 2^53 itself may
     * already be inexact. */
    if (!(sum->load[i] < EPLB_MAX_COUNT))
      return eplb_error_set(
          err, EPLB_ECOUNT,
          "the summed count of layer %d expert %d over all ranks is %.17g, "
          "above 2^53 where sums stop being exact; reset the counters more "
          "often or scale them down",
          (int)sum->layer_ids[i / (size_t)sum->num_experts],
          (int)(i % (size_t)sum->num_experts), sum->load[i]);
  return 0;
}

int eplb__reduce_sum(MPI_Comm comm, eplb_stats_t *sum, int drop_dense,
                     int32_t **dropped, int32_t *num_dropped,
                     eplb_error_t *err) {
  *dropped = NULL;
  *num_dropped = 0;
  size_t n = (size_t)sum->num_layers * (size_t)sum->num_experts;
  int rc = eplb__allreduce(MPI_IN_PLACE, sum->load, (int)n, MPI_DOUBLE,
                           MPI_SUM, comm, "MPI_Allreduce of the counts", err);
  if (rc == 0)
    rc = check_sums(sum, err);
  if (rc == 0 && drop_dense) {
    rc = eplb_stats_zero_layer_ids(sum, dropped, num_dropped, err);
    if (rc == 0 && *num_dropped > 0)
      rc = eplb_stats_drop_zero_layers(sum, NULL, err);
  }
  if (rc) {
    free(*dropped);
    *dropped = NULL;
    *num_dropped = 0;
  }
  return rc;
}

int eplb__reduce_scenarios(MPI_Comm comm, eplb__scenarios_t *s, int drop_dense,
                           int32_t **dropped, int32_t *num_dropped,
                           eplb_error_t *err) {
  *dropped = NULL;
  *num_dropped = 0;
  size_t n = (size_t)s->stats[0].num_layers * (size_t)s->stats[0].num_experts;
  for (int32_t k = 0; k < s->num; k++)
    memcpy(s->pack + (size_t)k * n, s->stats[k].load, sizeof(double) * n);
  /* One collective for every scenario: K x L x E counts (prepared below
   * INT_MAX), so K scenarios cost one latency, not K. */
  int rc = eplb__allreduce(MPI_IN_PLACE, s->pack, (int)(n * (size_t)s->num),
                           MPI_DOUBLE, MPI_SUM, comm,
                           "MPI_Allreduce of the scenarios' counts", err);
  for (int32_t k = 0; rc == 0 && k < s->num; k++) {
    memcpy(s->stats[k].load, s->pack + (size_t)k * n, sizeof(double) * n);
    rc = check_sums(&s->stats[k], err);
    if (rc)
      eplb_error_prefix(err, "scenario %d", (int)k);
  }
  /* A layer idle in every scenario is dropped from all (SGLang pads dense
   * layers with zero rows); one with traffic anywhere stays. */
  if (rc == 0 && drop_dense)
    rc = eplb_stats_drop_idle_layers(s->stats, s->num, dropped, num_dropped,
                                     err);
  return rc;
}

uint64_t eplb__plan_opts_key(const eplb_plan_opts_t *o, uint64_t seed) {
  /* Field by field: the struct's padding is not guaranteed to be zero. */
  const double f[] = {o->num_slots,  o->num_gpus,       o->num_nodes,
                      o->num_groups, (double)o->policy, o->max_moves,
                      o->move_cost,  o->keep_threshold, o->spill,
                      o->spill_cost};
  return eplb__checksum(f, sizeof(f), seed);
}

uint64_t eplb__string_key(const char *s, uint64_t seed) {
  return s ? eplb__checksum(s, strlen(s) + 1, seed)
           : eplb__checksum("", 0, seed ^ 0x6e756c6cULL);
}
