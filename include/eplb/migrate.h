/* eplb/migrate.h - moving expert weights between the per-rank HDF5 shards
 * when the placement changes: open and agree, schedule, transfer, commit,
 * recover (docs/shards.md).
 *
 *   eplb_shards_open      collective: every rank opens its shard, the ranks
 *                         agree that all shards match (a rank that differs
 *                         is named) and build the current map from the
 *                         union of their expert_ids;
 *   eplb_schedule_build   pure: which rows move where, the minimum network
 *                         traffic, identical on every rank;
 *   eplb_migrate          collective: non-blocking transfer in bounded
 *                         batches with per-row checksums, then a two-phase
 *                         commit (redo journals of the rows that change,
 *                         or whole temporary shards; fsync, read back,
 *                         agreement, journal, apply or rename): all
 *                         shards move to generation G + 1 or none does;
 *   eplb_shards_recover   collective: after a crash, one generation again
 *                         (roll forward when the journal says so, else back).
 *
 * This header includes mpi.h and so is not part of eplb/eplb.h. */
#ifndef EPLB_MIGRATE_H
#define EPLB_MIGRATE_H

#include <mpi.h>
#include <stdint.h>

#include "eplb/error.h"
#include "eplb/placement.h"
#include "eplb/shard.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EPLB_JOURNAL_NAME "eplb_journal.json"
#define EPLB_MIGRATE_DEFAULT_BUFFER_MB 256
#define EPLB_MIGRATE_MIN_BUFFER_MB 1
#define EPLB_MIGRATE_MAX_BUFFER_MB 65536
#define EPLB_MIGRATE_DEFAULT_TIMEOUT_S 600
#define EPLB_MIGRATE_MIN_TIMEOUT_S 1
#define EPLB_MIGRATE_MAX_TIMEOUT_S 86400

/* ---- the shards of a job ------------------------------------------- */

typedef struct eplb_shard_set_s {
  MPI_Comm comm; /* duplicate of the caller's, MPI_ERRORS_RETURN */
  int rank, size;
  char *dir;
  eplb_shard_t *shard;      /* this rank's shard, open read-only */
  eplb_placement_t current; /* the union of every shard's expert_ids:
                               L layers x size * slots_per_rank slots on
                               `size` GPUs; identical on every rank */
} eplb_shard_set_t;

/* Collective over comm.  Every rank opens <dir>/shard_<rank>.h5; the ranks
 * agree that every shard opened, that each says its own rank and this
 * job's size as world_size, and that all match rank 0's in format version,
 * generation, layers, slots per rank, dataset names, types and shapes (a
 * differing rank is named: "rank 3: ... dataset 'w1' is float32 [4, 16]
 * where rank 0's is float16 [4, 16]").  A journal left by an interrupted
 * commit is an error (run eplb_shards_recover).  The union of the
 * expert_ids must be a valid map with num_experts experts (0: inferred as
 * the largest id + 1); an id outside 0..num_experts-1 names its rank.
 * Nothing is written.  On success *set (eplb_shards_close), else *set is
 * empty and every rank returns the same code. */
int eplb_shards_open(MPI_Comm comm, const char *dir, int32_t num_experts,
                     eplb_shard_set_t *set, eplb_error_t *err);
/* Local; NULL-safe, idempotent (frees the duplicated communicator). */
void eplb_shards_close(eplb_shard_set_t *set);
/* This rank's shard description (borrowed). */
const eplb_shard_info_t *eplb_shards_info(const eplb_shard_set_t *set);

/* ---- the transfer schedule (pure) ------------------------------------ */

typedef enum {
  EPLB_SLOT_KEEP = 0, /* same expert as before: untouched */
  EPLB_SLOT_LOCAL,    /* copied from the rank's old slot `source` */
  EPLB_SLOT_RECV,     /* received over the network */
  EPLB_SLOT_DUP       /* copied from the new slot `source` that received it */
} eplb_slot_action_t;

typedef struct eplb_xfer_s {
  int32_t layer, expert;
  int32_t src_rank, src_slot; /* slot in the sender's old shard */
  int32_t dst_rank, dst_slot; /* slot in the receiver's new shard */
} eplb_xfer_t;

typedef struct eplb_schedule_s {
  int32_t num_layers, num_ranks, slots_per_rank;
  int64_t num_xfers;    /* network receives: the minimum the plan needs */
  eplb_xfer_t *xfers;   /* by layer, then dst_rank, then dst_slot */
  int64_t *layer_start; /* [L + 1]: layer l's xfers start at layer_start[l] */
  int8_t *action;       /* [L * S]: eplb_slot_action_t of each new slot */
  int32_t *source;      /* [L * S]: local slot for LOCAL/DUP, else -1 */
  int64_t local_copies; /* LOCAL + DUP slots */
  int64_t kept;         /* KEEP slots */
} eplb_schedule_t;

/* From the old and the new placement (same layers, slots and GPUs; every
 * expert of `next` held somewhere in `old`): an unchanged slot is kept; an
 * expert the rank already holds is copied locally; a rank receives each
 * expert at most once per layer, further slots copy it; the sender is the
 * least-loaded holder (sends so far in the layer; ties rotate by receiver
 * and expert), on the receiver's node when num_nodes > 1 (node = rank /
 * (ranks / num_nodes)) and a holder is there.  Deterministic: the same on
 * every rank.  *out freed with eplb_schedule_cleanup. */
int eplb_schedule_build(const eplb_placement_t *old,
                        const eplb_placement_t *next, int32_t num_nodes,
                        eplb_schedule_t *out, eplb_error_t *err);
/* NULL-safe, idempotent. */
void eplb_schedule_cleanup(eplb_schedule_t *s);

/* ---- migration ------------------------------------------------------- */

/* Progress (rank 0, at most ~4 times a second and after the last layer). */
typedef void (*eplb_migrate_progress_fn)(void *ctx, int32_t layers_done,
                                         int32_t num_layers, int64_t bytes,
                                         double seconds);

typedef struct eplb_migrate_opts_s {
  int32_t max_buffer_mb; /* bytes in flight per rank per batch, MiB,
                            1..65536 (default 256; a batch holds at least one
                            row set) */
  int32_t timeout_s;     /* give up waiting for a batch, or for the other
                            ranks before a layer or the commit, after this
                            long, 1..86400 s (default 600): the job is
                            aborted (docs/shards.md, "Timeouts") */
  int32_t num_nodes;     /* 1..ranks, ranks % nodes == 0 (default 1) */
  int quiet;             /* 1: rank 0 prints no progress to stderr */
  eplb_migrate_progress_fn progress; /* or NULL */
  void *progress_ctx;
  int32_t commit; /* EPLB_COMMIT_AUTO (default): in place when the rows
                     that change are at most half the shard's and the
                     shard allows it, else a rewrite; _IN_PLACE: in place
                     whenever the shard allows it; _REWRITE: always a new
                     shard (docs/shards.md, "Commit") */
} eplb_migrate_opts_t;

#define EPLB_COMMIT_AUTO 0
#define EPLB_COMMIT_IN_PLACE 1
#define EPLB_COMMIT_REWRITE 2

void eplb_migrate_opts_default(eplb_migrate_opts_t *opts);

typedef struct eplb_migrate_result_s {
  uint64_t generation; /* the committed generation (old + 1) */
  int32_t num_ranks;
  int64_t experts_received; /* row sets received over MPI, all ranks */
  int64_t bytes_moved;      /* their weight bytes (no checksums) */
  int64_t local_copies;     /* slots filled from the rank's own rows */
  int64_t slots_kept;       /* slots left as they were */
  int64_t *bytes_sent;      /* [num_ranks] weight bytes each rank sent */
  int64_t *bytes_received;  /* [num_ranks] weight bytes each rank received */
  double seconds_read, seconds_transfer, seconds_write, seconds_commit;
  double seconds_total;  /* slowest rank's, for each; write = the rows,
                            closing and fsyncing the temporary shard;
                            transfer = the network phase without the
                            writes (received rows are not hashed there) */
  double seconds_verify; /* slowest rank's proof of its output from the
                            disk before the vote (part of seconds_write):
                            every byte it wrote read back and hashed
                            against the checksums it expects, a received
                            row's being its sender's */
  double bandwidth_mbs;  /* bytes_moved / seconds_transfer, MB/s */
  int64_t disk_bytes_read;    /* bytes read from the shard files, all
                                 ranks (what the file system was asked for:
                                 the page cache may serve some) */
  int64_t disk_bytes_written; /* bytes written to the shard directory, all
                                 ranks: redo journals and what applying
                                 them rewrote in place, or whole new shards */
  int32_t ranks_in_place;     /* ranks that committed in place (a redo
                                 journal); the others rewrote their shard */
} eplb_migrate_result_t;

/* NULL-safe, idempotent. */
void eplb_migrate_result_cleanup(eplb_migrate_result_t *res);

/* Collective over set->comm: moves the weights from set->current to `next`
 * (same shape; every expert of next held now) and commits generation G + 1:
 *   1. the ranks agree on `next` (checksums compared: a divergent copy
 *      names its ranks) and build the schedule;
 *   2. layer by layer: read the old rows the rank needs (at-rest checksums
 *      checked), local copies, network transfer in batches of at most
 *      max_buffer_mb per rank (receives posted before sends, one message
 *      per row set with its rows' checksums, written as the received
 *      rows' new at-rest checksums without hashing them again), and
 *      write what changes: in place, a redo journal of the changed rows,
 *      ids, checksums and generation (shard_<rank>.h5.gen<G+1>.redo);
 *      else the whole new shard (shard_<rank>.h5.gen<G+1>.tmp) - see
 *      opts->commit;
 *   3. fsync, read the output back from the disk and check it (every
 *      byte written hashed once: a received row against its sender's
 *      checksums, so a row corrupted in transit fails here), agree;
 *      rank 0 writes eplb_journal.json ("commit G+1"); every rank applies
 *      its redo journal to its shard or renames its temporary file over
 *      it; the journal is removed, then the redo journals.
 * A failure before step 3's agreement removes every temporary file and
 * leaves the shards as they were (same code on every rank, failing rank
 * named).  A failure or crash after it leaves the journal: run
 * eplb_shards_recover.  A timeout or an MPI failure during the transfer
 * aborts the job (MPI_Abort) after one line on stderr naming the rank,
 * the layer and the peers waited for: the shards are untouched, and
 * eplb_shards_recover removes the temporary files left behind.  On success set
 * holds the new shards and set->current == next; *res is filled
 * (eplb_migrate_result_cleanup). */
int eplb_migrate(eplb_shard_set_t *set, const eplb_placement_t *next,
                 const eplb_migrate_opts_t *opts, eplb_migrate_result_t *res,
                 eplb_error_t *err);

/* ---- recovery -------------------------------------------------------- */

typedef struct eplb_recover_result_s {
  uint64_t generation; /* the one generation every shard now has */
  int rolled_forward;  /* 1: journal found, commit completed */
  int rolled_back;     /* 1: temporary files of an unfinished commit
                          removed */
  int64_t renamed;     /* temporary shards renamed (all ranks) */
  int64_t removed;     /* temporary files removed (all ranks) */
  int64_t replayed;    /* redo journals of an in-place commit applied
                          again (all ranks) */
} eplb_recover_result_t;

/* Collective over comm, whose size must be the shards' world_size.  With
 * a journal saying "commit G+1": every rank renames its
 * shard_<rank>.h5.gen<G+1>.tmp over its shard (a rank whose shard already
 * has G+1 is done), then the journal is removed.  Without one: every
 * temporary file is removed.  Then the shards are opened as
 * eplb_shards_open does: one generation everywhere, or an error. */
int eplb_shards_recover(MPI_Comm comm, const char *dir,
                        eplb_recover_result_t *res, eplb_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_MIGRATE_H */
