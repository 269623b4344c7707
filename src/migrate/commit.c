/* migrate/commit.c - the "commit" stage: the two-phase commit of a
 * migration, and recovery after a crash (see eplb/migrate.h,
 * docs/shards.md).
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
#include <dirent.h>
#include <errno.h>
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
#include "util/fileio.h"

/* ---- the two-phase commit --------------------------------------------- */

/* Renames tmp over this rank's shard, durably. */
static int rename_own(const eplb_shard_set_t *set, const char *tmp,
                      eplb_error_t *err) {
  char path[4096];
  int rc = eplb_shard_path(set->dir, set->rank, path, sizeof(path), err);
  if (rc == 0 && rename(tmp, path) != 0)
    rc = eplb_error_set(err, EPLB_EIO, "renaming %s over %s failed: %s", tmp,
                        path, strerror(errno));
  if (rc == 0)
    eplb__fault_point("rename", set->rank, "after renaming its own shard");
  return rc ? rc : eplb__fsync_dir_of(path, err);
}

/* Applies this rank's redo journal to its shard, durably. */
static int apply_own(const eplb_shard_set_t *set, const char *redo,
                     uint64_t gen, int64_t records, int64_t *written,
                     eplb_error_t *err) {
  char path[4096];
  int rc = eplb_shard_path(set->dir, set->rank, path, sizeof(path), err);
  if (rc == 0)
    rc = eplb__redo_apply(redo, path, set->rank, gen, records, written, err);
  if (rc == 0)
    eplb__fault_point("rename", set->rank, "after applying its own journal");
  return rc;
}

/* Both commits: `path` is this rank's temporary shard (redo 0) or its redo
 * journal (redo 1). */
static int commit_any(eplb_shard_set_t *set, const char *path, int redo,
                      uint64_t gen, int64_t records, int local_rc,
                      int64_t *written, eplb_error_t *err) {
  eplb__watch_phase("commit");
  if (local_rc == 0)
    eplb__fault_point("commit", set->rank, "before the commit vote");
  int rc = eplb__agree(set->comm, local_rc, err);
  if (rc) {
    unlink(path); /* phase one failed somewhere: nobody renames */
    return rc;
  }
  if (set->rank == 0)
    rc = eplb__journal_write(set->dir, gen, set->size, err);
  /* From now on a journal may exist: a timeout must leave the temporary
   * shard or the redo journal in place for the roll forward. */
  char hint[4400];
  snprintf(hint, sizeof(hint),
           "a commit may be in progress: run `eplb-sync --recover --shards "
           "%s`, which completes or undoes it",
           set->dir);
  eplb__watch_on_abort(NULL, hint);
  rc = eplb__agree(set->comm, rc, err);
  if (rc) {
    unlink(path);
    return rc;
  }
  eplb__watch_phase(redo ? "apply" : "rename");
  rc = redo ? apply_own(set, path, gen, records, written, err)
            : rename_own(set, path, err);
  rc = eplb__agree(set->comm, rc, err);
  if (rc)
    return eplb_error_prefix(
        err,
        "commit of generation %" PRIu64 " interrupted "
        "(%s/%s kept): run the recovery (eplb-sync --recover "
        "--shards %s)",
        gen, set->dir, EPLB_JOURNAL_NAME, set->dir);
  if (set->rank == 0)
    rc = eplb__journal_remove(set->dir, err);
  rc = eplb__agree(set->comm, rc, err);
  if (rc == 0) { /* committed: a redo journal is debris now (every rank
                    agrees here: ranks in place and ranks that rewrote) */
    if (redo)
      unlink(path);
    rc = eplb__agree(set->comm, redo ? eplb__fsync_dir_of(path, err) : 0,
                     err);
  }
  return rc;
}

int eplb__commit(eplb_shard_set_t *set, const char *tmp, uint64_t gen,
                 int local_rc, eplb_error_t *err) {
  return commit_any(set, tmp, 0, gen, 0, local_rc, NULL, err);
}

int eplb__commit_redo(eplb_shard_set_t *set, const char *redo, uint64_t gen,
                      int64_t records, int local_rc, int64_t *written,
                      eplb_error_t *err) {
  return commit_any(set, redo, 1, gen, records, local_rc, written, err);
}

/* ---- recovery ---------------------------------------------------------- */

/* 1 if `name` is one of rank's temporary shards or redo journals. */
static int is_own_tmp(const char *name, int rank) {
  char prefix[64];
  int n = snprintf(prefix, sizeof(prefix), "shard_%05d.h5.gen", rank);
  size_t len = strlen(name);
  return strncmp(name, prefix, (size_t)n) == 0 &&
         ((len > (size_t)n + 4 && strcmp(name + len - 4, ".tmp") == 0) ||
          (len > (size_t)n + 5 && strcmp(name + len - 5, ".redo") == 0));
}

/* Removes rank's temporary shards except `keep` (a file name or NULL);
 * rank 0 also removes a journal's leftover temporary file.  Adds the
 * count to *removed. */
static int remove_tmps(const char *dir, int rank, const char *keep,
                       int64_t *removed, eplb_error_t *err) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return eplb_error_set(err, EPLB_EIO,
                          "%s: cannot list the shard directory: %s", dir,
                          strerror(errno));
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
      rc = eplb_error_set(err, EPLB_EIO, "%s: cannot remove: %s", path,
                          strerror(errno));
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
    rc = eplb_error_set(err, EPLB_ESHAPE,
                        "%s was written for %d ranks; run the "
                        "recovery with %d ranks",
                        eplb_shard_file(sh), eplb_shard_info(sh)->world_size,
                        eplb_shard_info(sh)->world_size);
  eplb_shard_close(sh);
  return rc;
}

/* Roll forward for one rank: tmp (generation gen) over the shard, or the
 * shard already at gen. */
static int roll_forward(const char *dir, int rank, uint64_t gen,
                        const char *tmp, eplb_recover_result_t *res,
                        eplb_error_t *err) {
  char path[4096], redo[4096];
  eplb_shard_t *sh = NULL;
  int rc = eplb_shard_path(dir, rank, path, sizeof(path), err);
  if (rc == 0)
    rc = eplb__shard_redo_path(dir, rank, gen, redo, sizeof(redo), err);
  /* An in-place commit: the redo journal (checked whole first) is applied
   * again, whatever part of it reached the shard before the crash. */
  if (rc == 0 && access(redo, F_OK) == 0) {
    rc = eplb__redo_check(redo, rank, gen, NULL, NULL, NULL, NULL, err);
    if (rc == 0)
      rc = eplb__redo_apply(redo, path, rank, gen, 0, NULL, err);
    if (rc == 0)
      res->replayed++;
  }
  int have_tmp = rc == 0 && access(tmp, F_OK) == 0;
  if (rc == 0)
    rc = eplb_shard_open(have_tmp ? tmp : path, &sh, err);
  if (rc == 0 && (eplb_shard_info(sh)->generation != gen ||
                  eplb_shard_info(sh)->rank != rank))
    rc = eplb_error_set(err, EPLB_ESTATE,
                        "%s has generation %" PRIu64
                        " (rank %d) but the journal "
                        "commits generation %" PRIu64 "%s; the directory was "
                        "changed by hand: restore it from a backup",
                        have_tmp ? tmp : path, eplb_shard_info(sh)->generation,
                        eplb_shard_info(sh)->rank, gen,
                        have_tmp ? "" : " and its temporary file is gone");
  eplb_shard_close(sh);
  if (rc == 0 && have_tmp) {
    if (rename(tmp, path) != 0)
      rc = eplb_error_set(err, EPLB_EIO, "renaming %s over %s failed: %s", tmp,
                          path, strerror(errno));
    else
      res->renamed++;
  }
  return rc ? rc : eplb__fsync_dir_of(path, err);
}

/* This rank's part of the recovery. */
static int recover_own(const char *dir, int rank, int size,
                       const eplb__journal_t *j, int have_journal,
                       eplb_recover_result_t *res, eplb_error_t *err) {
  char tmp[4096];
  const char *keep = NULL;
  int rc = eplb__shard_tmp_path(dir, rank, j->gen, tmp, sizeof(tmp), err);
  if (rc == 0 && have_journal) {
    keep = strrchr(tmp, '/') + 1;
    rc = roll_forward(dir, rank, j->gen, tmp, res, err);
  }
  if (rc == 0)
    rc = remove_tmps(dir, rank, keep, &res->removed, err);
  (void)size;
  return rc;
}

/* Rank 0 reads the journal; every rank gets {exists, gen, world_size}. */
static int share_journal(MPI_Comm c, int rank, const char *dir,
                         eplb__journal_t *j, int *exists, eplb_error_t *err) {
  int rc = rank == 0 ? eplb__journal_read(dir, j, exists, err) : 0;
  rc = eplb__agree(c, rc, err);
  uint64_t v[3] = {(uint64_t)*exists, j->gen, (uint64_t)j->world_size};
  if (rc == 0)
    rc = eplb__bcast(v, 3, MPI_UINT64_T, 0, c, "MPI_Bcast of the journal", err);
  *exists = (int)v[0];
  j->gen = v[1];
  j->world_size = (int32_t)v[2];
  return rc;
}

/* The recovery after the communicator exists. */
static int recover_comm(MPI_Comm c, const char *dir, eplb_recover_result_t *res,
                        eplb_error_t *err) {
  int rank = 0, size = 0, exists = 0;
  eplb__journal_t j = {0, 0};
  MPI_Comm_rank(c, &rank);
  MPI_Comm_size(c, &size);
  int rc = share_journal(c, rank, dir, &j, &exists, err);
  if (rc)
    return rc;
  char tmp[4096];
  rc = eplb__shard_tmp_path(dir, rank, j.gen, tmp, sizeof(tmp), err);
  if (rc == 0 && exists && j.world_size != size)
    rc = eplb_error_set(err, EPLB_ESHAPE,
                        "the journal in %s is for %d ranks; run "
                        "the recovery with %d ranks",
                        dir, (int)j.world_size, (int)j.world_size);
  if (rc == 0)
    rc = own_world_size(dir, rank, exists ? tmp : NULL, size, err);
  rc = eplb__agree(c, rc, err); /* nothing changed yet */
  if (rc == 0)
    rc =
        eplb__agree(c, recover_own(dir, rank, size, &j, exists, res, err), err);
  if (rc == 0 && exists && rank == 0)
    rc = eplb__journal_remove(dir, err);
  if (exists)
    rc = eplb__agree(c, rc, err);
  int64_t mine[3] = {res->renamed, res->removed, res->replayed};
  int64_t sum[3] = {0, 0, 0};
  if (rc == 0)
    rc = eplb__allreduce(mine, sum, 3, MPI_INT64_T, MPI_SUM, c,
                         "MPI_Allreduce of the recovery counts", err);
  res->renamed = sum[0];
  res->removed = sum[1];
  res->replayed = sum[2];
  res->rolled_forward = exists;
  res->rolled_back = !exists && sum[1] > 0;
  return rc;
}

int eplb_shards_recover(MPI_Comm comm, const char *dir,
                        eplb_recover_result_t *res, eplb_error_t *err) {
  memset(res, 0, sizeof(*res));
  MPI_Comm c = MPI_COMM_NULL;
  int rc = eplb__dup_comm(comm, &c, err);
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
