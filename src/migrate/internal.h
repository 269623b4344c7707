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

/* journal.c: "<dir>/shard_%05d.h5.gen<gen>.redo", a rank's redo journal
 * of an in-place commit. */
int eplb__shard_redo_path(const char *dir, int rank, uint64_t gen, char *buf,
                          size_t size, eplb_error_t *err);

/* redo.c: a rank's redo journal (the bytes an in-place commit writes into
 * its shard).  open, add records, finish (footer, fsync, fsync of the
 * directory); abort removes the file, free only forgets it. */
typedef struct {
  int fd;
  char *path;
  unsigned char *buf; /* records gathered into large writes */
  size_t used;
  uint64_t records, chain;
  int64_t bytes; /* record bytes */
  int64_t disk;  /* bytes written to the file */
} eplb__redo_t;

int eplb__redo_open(eplb__redo_t *r, const char *path, int rank, uint64_t gen,
                    eplb_error_t *err);
/* hash: XXH3-64 of data (for a row, its new at-rest checksum). */
int eplb__redo_add(eplb__redo_t *r, int64_t off, const void *data, size_t len,
                   uint64_t hash, eplb_error_t *err);
int eplb__redo_finish(eplb__redo_t *r, eplb_error_t *err);
void eplb__redo_abort(eplb__redo_t *r);
void eplb__redo_free(eplb__redo_t *r);

/* Tests (EPLB_FAULT=lose-write): flips a byte of the first record's bytes
 * in the finished journal at path, as a write the disk lost would. */
void eplb__redo_lose(const char *path);

/* Called for every record of a check, once its bytes proved right. */
typedef int (*eplb__redo_visit_fn)(void *ctx, int64_t off, int64_t len,
                                   uint64_t hash, eplb_error_t *err);

/* Reads the journal at path back from the disk and proves it whole: the
 * header names rank and gen, every record's bytes hash to its header, the
 * footer closes them.  Adds the bytes read to *bytes_read (or NULL).
 * *bad_off (or NULL): the shard offset of the record whose bytes do not
 * hash to its header (EPLB_ECHECKSUM), else -1. */
int eplb__redo_check(const char *path, int rank, uint64_t gen,
                     eplb__redo_visit_fn visit, void *ctx, int64_t *bytes_read,
                     int64_t *bad_off, eplb_error_t *err);

/* Writes every record of the journal at path into `shard` (pwrite), then
 * fsyncs it; `records` places the "apply" fault point (half of them).
 * Check first: apply trusts the journal. */
int eplb__redo_apply(const char *path, const char *shard, int rank,
                     uint64_t gen, int64_t records, int64_t *bytes_written,
                     eplb_error_t *err);

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

/* commit.c: the same for an in-place commit: `redo` is this rank's redo
 * journal (written, fsynced and checked when local_rc is 0), with
 * `records` records.  After the journal, each rank applies its redo
 * journal to its shard (crash points "apply", halfway, and "rename",
 * after its own apply) instead of renaming; when all applied, the
 * journal goes, then the redo journals.  *written: the shard bytes the
 * apply wrote. */
int eplb__commit_redo(eplb_shard_set_t *set, const char *redo, uint64_t gen,
                      int64_t records, int local_rc, int64_t *written,
                      eplb_error_t *err);

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
