/* reduce.c - the reduce stage: every rank's histogram, summed.
 *
 * Two steps, each a collective that every rank reaches.  First the shape:
 * rank 0 broadcasts its (layers, experts, layer-id checksum, source name)
 * and every rank compares its own, so a rank that counted another model or
 * another layer set is named with both files, instead of a sum that mixes
 * layers.  Then MPI_Allreduce of the counts as doubles: counts are integers
 * and every partial sum of non-negative counts is at most the total, so a
 * total of at most 2^53 (EPLB_MAX_COUNT) is exact whatever order the
 * reduction adds in, and every rank holds the same sum. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "sync_internal.h"
#include "util/checksum.h"

/* What rank 0 broadcasts about its statistics. */
typedef struct {
  int32_t num_layers, num_experts, dense, pad;
  uint64_t ids_checksum;
  int32_t first_id, last_id;
  char name[512];
} shape_t;

/* The shape of `local` (NULL or unread: zeros). */
static void shape_of(const eplb_stats_t *local, const char *name, shape_t *s) {
  memset(s, 0, sizeof(*s));
  snprintf(s->name, sizeof(s->name), "%s", name ? name : "counts in memory");
  if (local == NULL || local->num_layers <= 0)
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
static int compare_shape(const shape_t *mine, const shape_t *root,
                         eplb_error_t *err) {
  if (mine->num_layers != root->num_layers ||
      mine->num_experts != root->num_experts)
    return eplb_error_set(
        err, EPLB_ESHAPE,
        "%s has %d layers x %d experts but rank 0's %s has %d x %d; every "
        "rank must count the same MoE layers and experts",
        mine->name, (int)mine->num_layers, (int)mine->num_experts, root->name,
        (int)root->num_layers, (int)root->num_experts);
  if (mine->ids_checksum != root->ids_checksum)
    return eplb_error_set(
        err, EPLB_ESHAPE,
        "%s names layers %d..%d but rank 0's %s names layers %d..%d (the "
        "layer ids differ); every rank must count the same layers",
        mine->name, (int)mine->first_id, (int)mine->last_id, root->name,
        (int)root->first_id, (int)root->last_id);
  return 0;
}

int eplb__reduce_agree_shape(MPI_Comm comm, int local_rc,
                             const eplb_stats_t *local, const char *name,
                             int *any_dense, eplb_error_t *err) {
  int rc = eplb__agree(comm, local_rc, err);
  if (rc)
    return rc;
  int rank = 0;
  shape_t mine, root;
  shape_of(local, name, &mine);
  root = mine;
  rc = eplb__mpi_check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank", err);
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Bcast(&root, (int)sizeof(root), MPI_BYTE, 0, comm),
                         "MPI_Bcast of rank 0's shape", err);
  if (rc)
    return rc; /* an MPI failure: the runtime fails every rank */
  int dense = mine.dense;
  rc = eplb__mpi_check(MPI_Allreduce(MPI_IN_PLACE, &dense, 1, MPI_INT, MPI_MAX,
                                     comm),
                       "MPI_Allreduce of the dense-row flags", err);
  if (rc)
    return rc;
  *any_dense = dense;
  return eplb__agree(comm, compare_shape(&mine, &root, err), err);
}

/* Checks every sum; identical on every rank (the sums are). */
static int check_sums(const eplb_stats_t *sum, eplb_error_t *err) {
  size_t n = (size_t)sum->num_layers * (size_t)sum->num_experts;
  for (size_t i = 0; i < n; i++)
    if (!(sum->load[i] <= EPLB_MAX_COUNT))
      return eplb_error_set(
          err, EPLB_ECOUNT,
          "the summed count of layer %d expert %d over all ranks is %.17g, "
          "above 2^53 where sums stop being exact; reset the counters more "
          "often or scale them down",
          (int)sum->layer_ids[i / (size_t)sum->num_experts],
          (int)(i % (size_t)sum->num_experts), sum->load[i]);
  return 0;
}

/* The ids of the all-zero layers (before they are dropped). */
static int zero_ids(const eplb_stats_t *st, int32_t **ids, int32_t *n,
                    eplb_error_t *err) {
  *n = 0;
  *ids = malloc(sizeof(int32_t) * (size_t)st->num_layers);
  if (*ids == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory listing layers");
  for (int32_t l = 0; l < st->num_layers; l++) {
    const double *row = st->load + (size_t)l * (size_t)st->num_experts;
    int32_t e = 0;
    while (e < st->num_experts && row[e] == 0.0)
      e++;
    if (e == st->num_experts)
      (*ids)[(*n)++] = st->layer_ids[l];
  }
  return 0;
}

int eplb__reduce_sum(MPI_Comm comm, const eplb_stats_t *local, int drop_dense,
                     eplb_stats_t *sum, int32_t **dropped,
                     int32_t *num_dropped, eplb_error_t *err) {
  *dropped = NULL;
  *num_dropped = 0;
  int rc = eplb_stats_copy(sum, local, err);
  /* A local failure here (out of memory) must not leave the others in the
   * Allreduce: agree first. */
  rc = eplb__agree(comm, rc, err);
  if (rc) {
    eplb_stats_cleanup(sum);
    return rc;
  }
  size_t n = (size_t)sum->num_layers * (size_t)sum->num_experts;
  rc = eplb__mpi_check(MPI_Allreduce(MPI_IN_PLACE, sum->load, (int)n,
                                     MPI_DOUBLE, MPI_SUM, comm),
                       "MPI_Allreduce of the counts", err);
  if (rc == 0)
    rc = check_sums(sum, err);
  if (rc == 0 && drop_dense) {
    rc = zero_ids(sum, dropped, num_dropped, err);
    if (rc == 0 && *num_dropped > 0)
      rc = eplb_stats_drop_zero_layers(sum, NULL, err);
  }
  if (rc) {
    eplb_stats_cleanup(sum);
    free(*dropped);
    *dropped = NULL;
    *num_dropped = 0;
  }
  return rc;
}
