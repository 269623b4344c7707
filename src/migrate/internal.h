/* migrate/internal.h - what the files of the migration share inside
 * libeplb: shardset.c (the collective open, the abort), journal.c (the
 * journal and the temporary shards), commit.c (two-phase commit,
 * recovery), move.c (the transfer). */
#ifndef EPLB_MIGRATE_INTERNAL_H
#define EPLB_MIGRATE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/migrate.h"

/* journal.c: "<dir>/shard_%05d.h5.gen<gen>.tmp" into buf (EPLB_EARG if
 * too long). */
int eplb__shard_tmp_path(const char *dir, int rank, uint64_t gen, char *buf,
                         size_t size, eplb_error_t *err);

/* journal.c: the commit journal, <dir>/eplb_journal.json. */
typedef struct {
  uint64_t gen;       /* the generation being committed */
  int32_t world_size; /* ranks of the job that commits it */
} eplb__journal_t;

/* Reads the journal if it exists (*exists 0 if not); a file that is not
 * a journal is EPLB_EPARSE. */
int eplb__journal_read(const char *dir, eplb__journal_t *j, int *exists,
                       eplb_error_t *err);

/* Rank 0: writes "commit gen" for `size` ranks, atomically. */
int eplb__journal_write(const char *dir, uint64_t gen, int size,
                        eplb_error_t *err);

/* Rank 0: removes the journal and makes that durable. */
int eplb__journal_remove(const char *dir, eplb_error_t *err);

/* commit.c: phase two of a migration, collective over set->comm.  `local_rc` is
 * this rank's result so far (its temporary shard `tmp` written and fsynced when
 * 0).  Agrees; on failure every rank removes its tmp and returns the agreed
 * error.  Else rank 0 writes the journal "commit gen", the ranks agree,
 * each renames tmp over its shard, fsyncs the directory, agrees, and rank 0
 * removes the journal.  Crash points: "commit" (before the first
 * agreement), "rename" (after this rank's rename). */
int eplb__commit(eplb_shard_set_t *set, const char *tmp, uint64_t gen,
                 int local_rc, eplb_error_t *err);

/* shardset.c: for failures where the peers cannot be told in an orderly way (an
 * MPI failure or a timeout in the middle of a transfer batch: the peers'
 * buffers are then in an unknown state; out of memory before a
 * collective): removes `tmp` (this rank's temporary shard, or NULL),
 * prints one line "eplb: rank <r>: error: <msg>; aborting the job (...)"
 * saying that the shards are untouched and what to run, and calls
 * MPI_Abort(set->comm, 1).  Never returns. */
_Noreturn void eplb__migrate_abort(const eplb_shard_set_t *set, const char *tmp,
                                   const eplb_error_t *err);

#endif /* EPLB_MIGRATE_INTERNAL_H */
