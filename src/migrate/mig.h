/* migrate/mig.h - the state of one migration, shared by move.c (the
 * transfer, the rewrite of a shard) and inplace.c (the in-place commit
 * through a redo journal).  Internal. */
#ifndef EPLB_MIGRATE_MIG_H
#define EPLB_MIGRATE_MIG_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/migrate.h"
#include "h5/shard_writer.h"
#include "migrate/internal.h"

/* What one migration carries from layer to layer.  A row set is the slot's
 * row of every dataset; in memory and in a message it takes `stride`
 * bytes: dataset d's row at off[d] (16-byte aligned, so HDF5 can read
 * straight into place), then at toff the XXH3-64 of each dataset's row
 * (8 bytes each: the row's at-rest checksum, which the receiver writes
 * as the new one and the proof from disk before the vote checks). */
typedef struct {
  eplb_shard_set_t *set;
  const eplb_schedule_t *sched;
  const eplb_migrate_opts_t *opts;
  eplb_shard_writer_t *w;
  int32_t P, D, tag_layers; /* tag = (layer % tag_layers) * P + dst_slot */
  size_t row, msg, stride;  /* row set bytes; message = stride bytes */
  size_t off[EPLB_SHARD_MAX_DATASETS], rb[EPLB_SHARD_MAX_DATASETS], toff;
  unsigned char *old;     /* [P * stride] this rank's old layer */
  unsigned char *staging; /* [staging_rows * stride] received row sets */
  size_t staging_rows;
  int32_t *batch;       /* [num_xfers] batch of each transfer */
  int32_t *num_batches; /* [L] */
  MPI_Request *req;
  int *req_peer;                /* [max requests] the peer of each request */
  const char *tmp;              /* this rank's temporary shard */
  int64_t *recv_xfer;           /* [staging_rows] transfer of each receive */
  int32_t *dup_head, *dup_next; /* [P] DUP slots listed by their source */
  int32_t layer;                /* the layer being written */
  int inplace;                  /* this rank commits in place (inplace.c) */
  int fd;                       /* in place: the shard, for pread */
  unsigned char *need;          /* in place: [P] old slots read in a layer */
  eplb__layout_t lay;           /* in place: where its rows lie */
  eplb__redo_t redo;            /* in place: the redo journal */
  eplb__recs_t gen_recs;        /* in place: the generation's bytes */
  const uint64_t *oldsums;      /* [L * P * D] the old shard's, or NULL */
  uint64_t *newsums;            /* [L * P * D] the new shard's at-rest
                                   checksums (what the read-back expects) */
  int64_t disk_read, disk_written, io_read0, io_written0;
  int carry;                    /* a local failure in this layer (rows are
                                   then no longer written, MPI goes on) */
  double t_read, t_xfer, t_write, t_commit;
  double t_verify; /* proving the output from the disk (in t_write) */
  int corrupted;   /* tests: EPLB_FAULT=corrupt-row flipped a byte */
  int64_t bytes_done;
  double last_progress, t0;
} mig_t;


/* proof.c: the rank that sent row (layer l, new slot) of this rank (the
 * sender of the slot a DUP copies), or -1 for a kept or local row. */
int32_t eplb__row_sender(const mig_t *m, int32_t l, int32_t slot);

/* proof.c: EPLB_ECHECKSUM for row (l, slot, dataset d) of `file` (holding
 * `expert`) read back not matching its expected checksum: for a received
 * row, the checksum its sender computed (corrupted in transit, or a lost
 * write), else a lost write. */
int eplb__row_mismatch(const mig_t *m, const char *file, int32_t l,
                       int32_t slot, int32_t d, int32_t expert,
                       eplb_error_t *err);

/* inplace.c.  Decides whether this rank commits in place (its shard's
 * rows, ids and checksums are contiguous and it has checksums), and if so
 * opens its redo journal at `path`.  0 either way (m->inplace says), or an
 * error. */
int eplb__inplace_setup(mig_t *m, const char *path, uint64_t gen,
                        eplb_error_t *err);

/* inplace.c: reads the old rows layer l needs (the rows this rank sends
 * and the sources of its local copies, nothing else), checking each
 * against its at-rest checksum, into m->old with their checksums in the
 * trailers; asks the kernel to read the next layer's ahead. */
int eplb__inplace_read(mig_t *m, int32_t l, eplb_error_t *err);

/* inplace.c: journals row (layer m->layer, slot) of every dataset: the
 * new bytes at their place in the shard, hashes[d] each. */
int eplb__inplace_row(mig_t *m, int32_t slot,
                      const unsigned char *const *pieces,
                      const uint64_t *hashes, eplb_error_t *err);

/* inplace.c: after the last layer: the ids of the layers that change, the
 * checksums of the slots that change and the generation (next, gen) go
 * into the journal; it is finished (fsynced) and read back whole from the
 * disk.  Local. */
int eplb__inplace_finish(mig_t *m, const eplb_placement_t *next,
                         uint64_t gen, eplb_error_t *err);

void eplb__inplace_free(mig_t *m);

#endif /* EPLB_MIGRATE_MIG_H */
