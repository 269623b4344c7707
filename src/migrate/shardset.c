/* migrate/shardset.c - the shards of a job as one agreed set: every rank
 * opens its own shard, the ranks check they belong to one job and one
 * generation, and gather the map the shards hold (eplb_shards_open, see
 * eplb/migrate.h).  Also how the migration gives up when the peers cannot
 * be told in an orderly way (eplb__migrate_abort). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eplb/migrate.h"
#include "migrate/internal.h"
#include "mpi/agree.h"
#include "mpi/fault.h"
#include "mpi/watchdog.h"

_Noreturn void eplb__migrate_abort(const eplb_shard_set_t *set, const char *tmp,
                                   const eplb_error_t *err) {
  /* Only this rank's own temporary shard can be removed here (the peers
   * are about to be killed); the recovery removes theirs.  No journal
   * exists before every rank finished its transfer, so no shard has been
   * replaced. */
  if (tmp != NULL)
    unlink(tmp);
  const char *dir = set->dir ? set->dir : "DIR";
  if (tmp != NULL)
    fprintf(stderr,
            "eplb: rank %d: error: %s; aborting the job (MPI_Abort: the "
            "peers' transfer buffers are in an unknown state); nothing was "
            "committed and the shards in %s are untouched: run `eplb-sync "
            "--recover --shards %s` to remove the temporary files, then retry "
            "(raise --timeout / timeout_s if the network is this slow)\n",
            set->rank, eplb_error_message(err), dir, dir);
  else
    fprintf(
        stderr,
        "eplb: rank %d: error: %s; aborting the job (MPI_Abort: the "
        "other ranks cannot be told in an orderly way); nothing was written "
        "to %s: fix the cause and retry\n",
        set->rank, eplb_error_message(err), dir);
  fflush(stderr);
  MPI_Abort(set->comm, 1);
  _exit(1);
}

void eplb_shards_close(eplb_shard_set_t *set) {
  if (set == NULL)
    return;
  eplb_shard_close(set->shard);
  eplb_placement_cleanup(&set->current);
  free(set->dir);
  if (set->comm != MPI_COMM_NULL && set->comm != 0)
    MPI_Comm_free(&set->comm);
  memset(set, 0, sizeof(*set));
  set->comm = MPI_COMM_NULL;
}

const eplb_shard_info_t *eplb_shards_info(const eplb_shard_set_t *set) {
  return eplb_shard_info(set->shard);
}

/* Rank 0: an interrupted commit's journal is an error. */
static int check_no_journal(const eplb_shard_set_t *set, eplb_error_t *err) {
  eplb__journal_t j;
  int exists = 0;
  int rc = eplb__journal_read(set->dir, &j, &exists, err);
  if (rc == 0 && exists)
    rc = eplb_error_set(
        err, EPLB_ESTATE,
        "%s/%s: an interrupted migration (commit of generation %" PRIu64
        ") left this journal; run the recovery first "
        "(eplb-sync --recover --shards %s)",
        set->dir, EPLB_JOURNAL_NAME, j.gen, set->dir);
  return rc;
}

/* Opens this rank's shard and checks it belongs to this rank and job. */
static int open_own(eplb_shard_set_t *set, int32_t num_experts,
                    eplb_error_t *err) {
  char path[4096];
  int rc = set->rank == 0 ? check_no_journal(set, err) : 0;
  if (rc == 0 && (num_experts < 0 || num_experts > EPLB_MAX_EXPERTS))
    rc = eplb_error_set(err, EPLB_EARG, "num_experts %d is outside 0..%d",
                        (int)num_experts, EPLB_MAX_EXPERTS);
  if (rc == 0)
    rc = eplb_shard_path(set->dir, set->rank, path, sizeof(path), err);
  if (rc == 0)
    rc = eplb_shard_open(path, &set->shard, err);
  if (rc)
    return rc;
  const eplb_shard_info_t *in = eplb_shard_info(set->shard);
  if (in->rank != set->rank)
    return eplb_error_set(err, EPLB_ESTATE,
                          "%s says rank %d; a shard must be "
                          "opened by its own rank (files renamed?)",
                          path, in->rank);
  if (in->world_size != set->size)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s was written for %d ranks but this "
                          "job has %d; run with %d ranks",
                          path, in->world_size, set->size, in->world_size);
  return 0;
}

/* Compares this rank's shard description with rank 0's. */
static int compare_with_root(eplb_shard_set_t *set, eplb_error_t *err) {
  eplb_shard_info_t *ref = malloc(sizeof(*ref));
  if (ref == NULL) /* cannot take part in the broadcast */
    eplb__migrate_abort(set, NULL,
                        &(eplb_error_t){EPLB_ENOMEM,
                                        "out of memory "
                                        "for the shard description"});
  if (set->rank == 0)
    *ref = *eplb_shard_info(set->shard);
  int rc = eplb__bcast(ref, (int)sizeof(*ref), MPI_BYTE, 0, set->comm,
                       "MPI_Bcast of rank 0's shard description", err);
  char why[600];
  if (rc == 0 &&
      eplb_shard_info_diff(ref, eplb_shard_info(set->shard), why, sizeof(why)))
    rc = eplb_error_set(err, EPLB_ESHAPE, "%s %s", eplb_shard_file(set->shard),
                        why);
  free(ref);
  return rc;
}

/* Reads this rank's expert ids of every layer into ids[L * P], checked
 * against num_experts (0: only >= 0). */
static int read_own_ids(eplb_shard_set_t *set, int32_t num_experts,
                        int32_t *ids, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(set->shard);
  int32_t P = in->slots_per_rank;
  for (int32_t l = 0; l < in->num_layers; l++) {
    int rc =
        eplb_shard_read_ids(set->shard, l, ids + (size_t)l * (size_t)P, err);
    if (rc)
      return rc;
    for (int32_t j = 0; j < P; j++) {
      int32_t e = ids[(size_t)l * (size_t)P + (size_t)j];
      if (e < 0 || e >= (num_experts > 0 ? num_experts : EPLB_MAX_EXPERTS))
        return eplb_error_set(
            err, EPLB_EMAP,
            "%s: /layers/%d/expert_ids[%d] = %d is outside "
            "0..%d; fix the shard or the number of experts",
            eplb_shard_file(set->shard), (int)l, (int)j, (int)e,
            (num_experts > 0 ? num_experts : EPLB_MAX_EXPERTS) - 1);
    }
  }
  return 0;
}

/* Gathers every rank's ids into set->current (agreed before). */
static int gather_map(eplb_shard_set_t *set, int32_t num_experts,
                      const int32_t *mine, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(set->shard);
  int32_t L = in->num_layers, P = in->slots_per_rank, R = set->size;
  size_t n = (size_t)L * (size_t)P;
  int32_t *all = malloc(sizeof(int32_t) * n * (size_t)R);
  if (all == NULL)
    eplb__migrate_abort(set, NULL,
                        &(eplb_error_t){EPLB_ENOMEM, "out of memory "
                                                     "for the map"});
  int rc = eplb__allgather(mine, (int)n, MPI_INT32_T, all, (int)n, MPI_INT32_T,
                           set->comm, "MPI_Allgather of the expert ids", err);
  int32_t mx = -1;
  for (size_t i = 0; rc == 0 && i < n * (size_t)R; i++)
    mx = all[i] > mx ? all[i] : mx;
  if (rc == 0)
    rc = eplb_placement_init(&set->current, L,
                             num_experts > 0 ? num_experts : mx + 1, R * P, R,
                             err);
  for (int32_t r = 0; rc == 0 && r < R; r++)
    for (int32_t l = 0; l < L; l++)
      memcpy(set->current.phy2log + (size_t)l * (size_t)(R * P) +
                 (size_t)r * (size_t)P,
             all + (size_t)r * n + (size_t)l * (size_t)P,
             sizeof(int32_t) * (size_t)P);
  free(all);
  if (rc == 0) {
    char what[4200];
    snprintf(what, sizeof(what), "the shards in %s", set->dir);
    rc = eplb_placement_check(&set->current, 0, what, err);
  }
  return rc;
}

/* The agreed steps of eplb_shards_open after the communicator exists. */
static int open_agreed(eplb_shard_set_t *set, int32_t num_experts,
                       eplb_error_t *err) {
  int rc = eplb__fault_load(err);
  if (rc == 0)
    rc = open_own(set, num_experts, err);
  rc = eplb__agree(set->comm, rc, err);
  if (rc == 0)
    rc = eplb__agree(set->comm, compare_with_root(set, err), err);
  if (rc)
    return rc;
  const eplb_shard_info_t *in = eplb_shard_info(set->shard);
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)in->num_layers *
                        (size_t)in->slots_per_rank);
  rc = ids ? read_own_ids(set, num_experts, ids, err)
           : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  rc = eplb__agree(set->comm, rc, err);
  if (rc == 0)
    rc = gather_map(set, num_experts, ids, err);
  free(ids);
  return rc;
}

int eplb_shards_open(MPI_Comm comm, const char *dir, int32_t num_experts,
                     eplb_shard_set_t *set, eplb_error_t *err) {
  memset(set, 0, sizeof(*set));
  set->comm = MPI_COMM_NULL;
  int rc = eplb__dup_comm(comm, &set->comm, err);
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Comm_rank(set->comm, &set->rank), "MPI_Comm_rank",
                         err);
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Comm_size(set->comm, &set->size), "MPI_Comm_size",
                         err);
  if (rc == 0 && (set->dir = strdup(dir ? dir : "")) == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc == 0)
    rc = open_agreed(set, num_experts, err);
  if (rc) {
    eplb_error_prefix(err, "shards in %s", dir ? dir : "(null)");
    eplb_shards_close(set);
  }
  return rc;
}
