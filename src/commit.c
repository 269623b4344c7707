/* commit.c - the "commit" stage: the shards of a job as one agreed set,
 * the two-phase commit of a migration, and recovery after a crash (see
 * eplb/migrate.h, docs/shards.md).
 *
 * The on-disk rule: a directory of shards always holds ONE generation, or
 * a state that eplb_shards_recover brings back to one, never a torn file.
 * A migration writes every rank's new shard to
 * shard_<rank>.h5.gen<G+1>.tmp and fsyncs it (phase one); the ranks agree;
 * only when all succeeded does rank 0 write eplb_journal.json ("commit
 * G+1", atomically) and, after a second agreement, every rank renames its
 * temporary file over its shard (phase two); when all renamed, the journal
 * goes.  So:
 *   - no journal: no shard has been replaced; temporary files are debris
 *     and recovery removes them (roll back);
 *   - a journal: every new shard was durably written before any rename;
 *     recovery renames what is left (roll forward).
 * A crash anywhere leaves one of these two states. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eplb/migrate.h"
#include "eplb/stats.h"
#include "agree.h"
#include "fault.h"
#include "migrate_internal.h"
#include "util/fileio.h"

int eplb__shard_tmp_path(const char *dir, int rank, uint64_t gen, char *buf,
                         size_t size, eplb_error_t *err) {
  int n = snprintf(buf, size, "%s/shard_%05d.h5.gen%" PRIu64 ".tmp", dir, rank, gen);
  if (n < 0 || (size_t)n >= size)
    return eplb_error_set(err, EPLB_EARG, "shard directory '%.200s' is too long", dir);
  return 0;
}

/* ---- the journal ------------------------------------------------------ */

typedef struct {
  uint64_t gen;
  int32_t world_size;
} journal_t;

static int journal_path(const char *dir, char *buf, size_t size, eplb_error_t *err) {
  int n = snprintf(buf, size, "%s/%s", dir, EPLB_JOURNAL_NAME);
  if (n < 0 || (size_t)n >= size)
    return eplb_error_set(err, EPLB_EARG, "shard directory '%.200s' is too long", dir);
  return 0;
}

/* eplb_write_fn: the journal's JSON. */
static int write_journal_fn(FILE *f, const void *ctx, eplb_error_t *err) {
  const journal_t *j = ctx;
  if (fprintf(f, "{\"eplb_journal\": 1, \"state\": \"commit\", "
              "\"commit_generation\": %" PRIu64 ", \"world_size\": %d}\n",
              j->gen, (int)j->world_size) < 0)
    return eplb_error_set(err, EPLB_EIO, "writing the journal failed");
  return 0;
}

/* A non-negative integer member of the journal. */
static int journal_num(const cJSON *root, const char *key, double max, double *v) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > max ||
      x->valuedouble != (double)(uint64_t)x->valuedouble)
    return -1;
  *v = x->valuedouble;
  return 0;
}

/* Reads <dir>/eplb_journal.json if it exists (*exists 0 if not). */
static int read_journal(const char *dir, journal_t *j, int *exists, eplb_error_t *err) {
  char path[4096];
  *exists = 0;
  int rc = journal_path(dir, path, sizeof(path), err);
  if (rc || access(path, F_OK) != 0)
    return rc;
  *exists = 1;
  char *text = NULL;
  rc = eplb_read_file(path, &text, NULL, err);
  if (rc)
    return rc;
  cJSON *root = cJSON_Parse(text);
  double g = 0, w = 0, v = 0;
  if (root == NULL || journal_num(root, "eplb_journal", 1, &v) || v != 1 ||
      journal_num(root, "commit_generation", 9007199254740991.0, &g) ||
      journal_num(root, "world_size", 65536, &w) || w < 1)
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s is not an eplb commit journal (eplb_journal 1, "
                        "commit_generation, world_size); inspect the directory "
                        "by hand", path);
  j->gen = (uint64_t)g;
  j->world_size = (int32_t)w;
  cJSON_Delete(root);
  free(text);
  return rc;
}

/* Rank 0: writes the journal atomically. */
static int write_journal(const char *dir, uint64_t gen, int size, eplb_error_t *err) {
  char path[4096];
  journal_t j = {gen, size};
  int rc = journal_path(dir, path, sizeof(path), err);
  return rc ? rc : eplb_write_atomic(path, write_journal_fn, &j, err);
}

/* Rank 0: removes the journal and makes that durable. */
static int remove_journal(const char *dir, eplb_error_t *err) {
  char path[4096];
  int rc = journal_path(dir, path, sizeof(path), err);
  if (rc == 0 && unlink(path) != 0 && errno != ENOENT)
    rc = eplb_error_set(err, EPLB_EIO, "%s: cannot remove the journal: %s", path,
                        strerror(errno));
  return rc ? rc : eplb_fsync_dir_of(path, err);
}

/* ---- the two-phase commit --------------------------------------------- */

/* Renames tmp over this rank's shard, durably. */
static int rename_own(const eplb_shard_set_t *set, const char *tmp, eplb_error_t *err) {
  char path[4096];
  int rc = eplb_shard_path(set->dir, set->rank, path, sizeof(path), err);
  if (rc == 0 && rename(tmp, path) != 0)
    rc = eplb_error_set(err, EPLB_EIO, "renaming %s over %s failed: %s", tmp, path,
                        strerror(errno));
  if (rc == 0)
    eplb__fault_crash_point("rename", set->rank);
  return rc ? rc : eplb_fsync_dir_of(path, err);
}

int eplb__commit(eplb_shard_set_t *set, const char *tmp, uint64_t gen,
                 int local_rc, eplb_error_t *err) {
  if (local_rc == 0)
    eplb__fault_crash_point("commit", set->rank);
  int rc = eplb__agree(set->comm, local_rc, err);
  if (rc) {
    unlink(tmp); /* phase one failed somewhere: nobody renames */
    return rc;
  }
  if (set->rank == 0)
    rc = write_journal(set->dir, gen, set->size, err);
  rc = eplb__agree(set->comm, rc, err);
  if (rc) {
    unlink(tmp);
    return rc;
  }
  rc = rename_own(set, tmp, err);
  rc = eplb__agree(set->comm, rc, err);
  if (rc)
    return eplb_error_prefix(err, "commit of generation %" PRIu64 " interrupted "
                             "(%s/%s kept): run the recovery (eplb-sync --recover "
                             "--shards %s)", gen, set->dir, EPLB_JOURNAL_NAME, set->dir);
  if (set->rank == 0)
    rc = remove_journal(set->dir, err);
  return eplb__agree(set->comm, rc, err);
}

/* ---- opening the shards of a job --------------------------------------- */

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
  journal_t j;
  int exists = 0;
  int rc = read_journal(set->dir, &j, &exists, err);
  if (rc == 0 && exists)
    rc = eplb_error_set(err, EPLB_ESTATE,
                        "%s/%s: an interrupted migration (commit of generation %"
                        PRIu64 ") left this journal; run the recovery first "
                        "(eplb-sync --recover --shards %s)", set->dir,
                        EPLB_JOURNAL_NAME, j.gen, set->dir);
  return rc;
}

/* Opens this rank's shard and checks it belongs to this rank and job. */
static int open_own(eplb_shard_set_t *set, int32_t num_experts, eplb_error_t *err) {
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
    return eplb_error_set(err, EPLB_ESTATE, "%s says rank %d; a shard must be "
                          "opened by its own rank (files renamed?)", path, in->rank);
  if (in->world_size != set->size)
    return eplb_error_set(err, EPLB_ESHAPE, "%s was written for %d ranks but this "
                          "job has %d; run with %d ranks", path, in->world_size,
                          set->size, in->world_size);
  return 0;
}

/* Compares this rank's shard description with rank 0's. */
static int compare_with_root(eplb_shard_set_t *set, eplb_error_t *err) {
  eplb_shard_info_t *ref = malloc(sizeof(*ref));
  if (ref == NULL) /* cannot take part in the broadcast */
    eplb__migrate_abort(set, NULL, &(eplb_error_t){EPLB_ENOMEM, "out of memory "
                                                    "for the shard description"});
  if (set->rank == 0)
    *ref = *eplb_shard_info(set->shard);
  int rc = eplb__mpi_check(MPI_Bcast(ref, (int)sizeof(*ref), MPI_BYTE, 0, set->comm),
                           "MPI_Bcast of rank 0's shard description", err);
  char why[600];
  if (rc == 0 && eplb_shard_info_diff(ref, eplb_shard_info(set->shard), why, sizeof(why)))
    rc = eplb_error_set(err, EPLB_ESHAPE, "%s %s", eplb_shard_file(set->shard), why);
  free(ref);
  return rc;
}

/* Reads this rank's expert ids of every layer into ids[L * P], checked
 * against num_experts (0: only >= 0). */
static int read_own_ids(eplb_shard_set_t *set, int32_t num_experts, int32_t *ids,
                        eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(set->shard);
  int32_t P = in->slots_per_rank;
  for (int32_t l = 0; l < in->num_layers; l++) {
    int rc = eplb_shard_read_ids(set->shard, l, ids + (size_t)l * (size_t)P, err);
    if (rc)
      return rc;
    for (int32_t j = 0; j < P; j++) {
      int32_t e = ids[(size_t)l * (size_t)P + (size_t)j];
      if (e < 0 || e >= (num_experts > 0 ? num_experts : EPLB_MAX_EXPERTS))
        return eplb_error_set(err, EPLB_EMAP,
                              "%s: /layers/%d/expert_ids[%d] = %d is outside "
                              "0..%d; fix the shard or the number of experts",
                              eplb_shard_file(set->shard), (int)l, (int)j, (int)e,
                              (num_experts > 0 ? num_experts : EPLB_MAX_EXPERTS) - 1);
    }
  }
  return 0;
}

/* Gathers every rank's ids into set->current (agreed before). */
static int gather_map(eplb_shard_set_t *set, int32_t num_experts, const int32_t *mine,
                      eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(set->shard);
  int32_t L = in->num_layers, P = in->slots_per_rank, R = set->size;
  size_t n = (size_t)L * (size_t)P;
  int32_t *all = malloc(sizeof(int32_t) * n * (size_t)R);
  if (all == NULL)
    eplb__migrate_abort(set, NULL, &(eplb_error_t){EPLB_ENOMEM, "out of memory "
                                                    "for the map"});
  int rc = eplb__mpi_check(MPI_Allgather(mine, (int)n, MPI_INT32_T, all, (int)n,
                                         MPI_INT32_T, set->comm),
                           "MPI_Allgather of the expert ids", err);
  int32_t mx = -1;
  for (size_t i = 0; rc == 0 && i < n * (size_t)R; i++)
    mx = all[i] > mx ? all[i] : mx;
  if (rc == 0)
    rc = eplb_placement_init(&set->current, L, num_experts > 0 ? num_experts : mx + 1,
                             R * P, R, err);
  for (int32_t r = 0; rc == 0 && r < R; r++)
    for (int32_t l = 0; l < L; l++)
      memcpy(set->current.phy2log + (size_t)l * (size_t)(R * P) + (size_t)r * (size_t)P,
             all + (size_t)r * n + (size_t)l * (size_t)P, sizeof(int32_t) * (size_t)P);
  free(all);
  if (rc == 0) {
    char what[4200];
    snprintf(what, sizeof(what), "the shards in %s", set->dir);
    rc = eplb_placement_check(&set->current, 0, what, err);
  }
  return rc;
}

/* The agreed steps of eplb_shards_open after the communicator exists. */
static int open_agreed(eplb_shard_set_t *set, int32_t num_experts, eplb_error_t *err) {
  int rc = eplb__fault_load(err);
  if (rc == 0)
    rc = open_own(set, num_experts, err);
  rc = eplb__agree(set->comm, rc, err);
  if (rc == 0)
    rc = eplb__agree(set->comm, compare_with_root(set, err), err);
  if (rc)
    return rc;
  const eplb_shard_info_t *in = eplb_shard_info(set->shard);
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)in->num_layers * (size_t)in->slots_per_rank);
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
  int rc = eplb__mpi_check(MPI_Comm_dup(comm, &set->comm), "MPI_Comm_dup", err);
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Comm_set_errhandler(set->comm, MPI_ERRORS_RETURN),
                         "MPI_Comm_set_errhandler", err);
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Comm_rank(set->comm, &set->rank), "MPI_Comm_rank", err);
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Comm_size(set->comm, &set->size), "MPI_Comm_size", err);
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

/* ---- recovery ---------------------------------------------------------- */

/* 1 if `name` is one of rank's temporary shards. */
static int is_own_tmp(const char *name, int rank) {
  char prefix[64];
  int n = snprintf(prefix, sizeof(prefix), "shard_%05d.h5.gen", rank);
  size_t len = strlen(name);
  return strncmp(name, prefix, (size_t)n) == 0 && len > (size_t)n + 4 &&
         strcmp(name + len - 4, ".tmp") == 0;
}

/* Removes rank's temporary shards except `keep` (a file name or NULL);
 * rank 0 also removes a journal's leftover temporary file.  Adds the
 * count to *removed. */
static int remove_tmps(const char *dir, int rank, const char *keep,
                       int64_t *removed, eplb_error_t *err) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot list the shard directory: %s",
                          dir, strerror(errno));
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    int journal_tmp = rank == 0 && strncmp(e->d_name, EPLB_JOURNAL_NAME ".tmp.",
                                           strlen(EPLB_JOURNAL_NAME) + 5) == 0;
    if ((!is_own_tmp(e->d_name, rank) && !journal_tmp) ||
        (keep && strcmp(e->d_name, keep) == 0))
      continue;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    if (unlink(path) != 0)
      rc = eplb_error_set(err, EPLB_EIO, "%s: cannot remove: %s", path, strerror(errno));
    else
      (*removed)++;
  }
  closedir(d);
  return rc;
}

/* Checks that this rank's shard (or, failing that, its temporary file
 * `tmp`, NULL for none) was written for `size` ranks. */
static int own_world_size(const char *dir, int rank, const char *tmp, int size,
                          eplb_error_t *err) {
  char path[4096];
  eplb_shard_t *sh = NULL;
  int rc = eplb_shard_path(dir, rank, path, sizeof(path), err);
  if (rc == 0)
    rc = eplb_shard_open(path, &sh, err);
  if (rc && tmp && eplb_shard_open(tmp, &sh, NULL) == 0)
    rc = 0;
  if (rc == 0 && eplb_shard_info(sh)->world_size != size)
    rc = eplb_error_set(err, EPLB_ESHAPE, "%s was written for %d ranks; run the "
                        "recovery with %d ranks", eplb_shard_file(sh),
                        eplb_shard_info(sh)->world_size, eplb_shard_info(sh)->world_size);
  eplb_shard_close(sh);
  return rc;
}

/* Roll forward for one rank: tmp (generation gen) over the shard, or the
 * shard already at gen. */
static int roll_forward(const char *dir, int rank, uint64_t gen, const char *tmp,
                        int64_t *renamed, eplb_error_t *err) {
  char path[4096];
  eplb_shard_t *sh = NULL;
  int rc = eplb_shard_path(dir, rank, path, sizeof(path), err);
  int have_tmp = access(tmp, F_OK) == 0;
  if (rc == 0)
    rc = eplb_shard_open(have_tmp ? tmp : path, &sh, err);
  if (rc == 0 && (eplb_shard_info(sh)->generation != gen || eplb_shard_info(sh)->rank != rank))
    rc = eplb_error_set(err, EPLB_ESTATE,
                        "%s has generation %" PRIu64 " (rank %d) but the journal "
                        "commits generation %" PRIu64 "%s; the directory was "
                        "changed by hand: restore it from a backup",
                        have_tmp ? tmp : path, eplb_shard_info(sh)->generation,
                        eplb_shard_info(sh)->rank, gen,
                        have_tmp ? "" : " and its temporary file is gone");
  eplb_shard_close(sh);
  if (rc == 0 && have_tmp) {
    if (rename(tmp, path) != 0)
      rc = eplb_error_set(err, EPLB_EIO, "renaming %s over %s failed: %s", tmp, path,
                          strerror(errno));
    else
      (*renamed)++;
  }
  return rc ? rc : eplb_fsync_dir_of(path, err);
}

/* This rank's part of the recovery. */
static int recover_own(const char *dir, int rank, int size, const journal_t *j,
                       int have_journal, eplb_recover_result_t *res, eplb_error_t *err) {
  char tmp[4096];
  const char *keep = NULL;
  int rc = eplb__shard_tmp_path(dir, rank, j->gen, tmp, sizeof(tmp), err);
  if (rc == 0 && have_journal) {
    keep = strrchr(tmp, '/') + 1;
    rc = roll_forward(dir, rank, j->gen, tmp, &res->renamed, err);
  }
  if (rc == 0)
    rc = remove_tmps(dir, rank, keep, &res->removed, err);
  (void)size;
  return rc;
}

/* Rank 0 reads the journal; every rank gets {exists, gen, world_size}. */
static int share_journal(MPI_Comm c, int rank, const char *dir, journal_t *j,
                         int *exists, eplb_error_t *err) {
  int rc = rank == 0 ? read_journal(dir, j, exists, err) : 0;
  rc = eplb__agree(c, rc, err);
  uint64_t v[3] = {(uint64_t)*exists, j->gen, (uint64_t)j->world_size};
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Bcast(v, 3, MPI_UINT64_T, 0, c), "MPI_Bcast of the journal", err);
  *exists = (int)v[0];
  j->gen = v[1];
  j->world_size = (int32_t)v[2];
  return rc;
}

/* The recovery after the communicator exists. */
static int recover_comm(MPI_Comm c, const char *dir, eplb_recover_result_t *res,
                        eplb_error_t *err) {
  int rank = 0, size = 0, exists = 0;
  journal_t j = {0, 0};
  MPI_Comm_rank(c, &rank);
  MPI_Comm_size(c, &size);
  int rc = share_journal(c, rank, dir, &j, &exists, err);
  if (rc)
    return rc;
  char tmp[4096];
  rc = eplb__shard_tmp_path(dir, rank, j.gen, tmp, sizeof(tmp), err);
  if (rc == 0 && exists && j.world_size != size)
    rc = eplb_error_set(err, EPLB_ESHAPE, "the journal in %s is for %d ranks; run "
                        "the recovery with %d ranks", dir, (int)j.world_size,
                        (int)j.world_size);
  if (rc == 0)
    rc = own_world_size(dir, rank, exists ? tmp : NULL, size, err);
  rc = eplb__agree(c, rc, err); /* nothing changed yet */
  if (rc == 0)
    rc = eplb__agree(c, recover_own(dir, rank, size, &j, exists, res, err), err);
  if (rc == 0 && exists && rank == 0)
    rc = remove_journal(dir, err);
  if (exists)
    rc = eplb__agree(c, rc, err);
  int64_t mine[2] = {res->renamed, res->removed}, sum[2] = {0, 0};
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Allreduce(mine, sum, 2, MPI_INT64_T, MPI_SUM, c),
                         "MPI_Allreduce of the recovery counts", err);
  res->renamed = sum[0];
  res->removed = sum[1];
  res->rolled_forward = exists;
  res->rolled_back = !exists && sum[1] > 0;
  return rc;
}

int eplb_shards_recover(MPI_Comm comm, const char *dir, eplb_recover_result_t *res,
                        eplb_error_t *err) {
  memset(res, 0, sizeof(*res));
  MPI_Comm c = MPI_COMM_NULL;
  int rc = eplb__mpi_check(MPI_Comm_dup(comm, &c), "MPI_Comm_dup", err);
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN),
                         "MPI_Comm_set_errhandler", err);
  if (rc == 0)
    rc = recover_comm(c, dir, res, err);
  if (rc == 0) { /* one generation everywhere, or an error */
    eplb_shard_set_t set;
    rc = eplb_shards_open(c, dir, 0, &set, err);
    if (rc == 0)
      res->generation = eplb_shard_info(set.shard)->generation;
    eplb_shards_close(&set);
  } else {
    eplb_error_prefix(err, "recovery of %s", dir);
  }
  if (c != MPI_COMM_NULL)
    MPI_Comm_free(&c);
  return rc;
}
