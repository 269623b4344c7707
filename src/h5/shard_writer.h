/* h5/shard_writer.h - what migrate/ and cli/ use of src/h5/ beyond
 * eplb/shard.h, without hdf5.h (internal): fault injection into a writer,
 * and the in-place commit's view of a shard (where each row lies in the
 * file, and the exact bytes HDF5 writes to bump the generation). */
#ifndef EPLB_H5_SHARD_WRITER_H
#define EPLB_H5_SHARD_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/shard.h"

enum {
  EPLB__WRITE_ENOSPC = 1, /* the write fails with ENOSPC */
  EPLB__WRITE_LOSE = 2    /* the write is dropped, success reported */
};

/* The next write of w's file - the first of eplb_shard_writer_finish's
 * flush when called just before it - fails or is lost, once (tests). */
void eplb__shard_writer_inject(eplb_shard_writer_t *w, int fault);

/* eplb_shard_writer_put_row with the rows' at-rest checksums known
 * (hashes[d] = XXH3-64 of pieces[d], checked by the caller), so that they
 * are not computed again. */
int eplb__shard_writer_put_row_hashed(eplb_shard_writer_t *w, int32_t slot,
                                      const unsigned char *const *pieces,
                                      const uint64_t *hashes,
                                      eplb_error_t *err);

/* ---- in place -------------------------------------------------------- */

/* Bytes at a file offset. */
typedef struct {
  int64_t off, len;
  unsigned char *data; /* malloc'd */
} eplb__rec_t;

typedef struct {
  eplb__rec_t *v;
  size_t n, cap;
  int failed; /* out of memory while capturing */
} eplb__recs_t;

void eplb__recs_free(eplb__recs_t *r);

/* Where a shard's rows lie in its file, for writing them in place:
 * dataset d of layer l starts at data[l * D + d] (row s at that +
 * s * row_bytes), expert_ids of layer l (int32 little-endian [P]) at
 * ids[l], the at-rest checksums ([L][P][D] uint64 little-endian) at sums.
 * Only when every one of them is contiguous, unfiltered and allocated. */
typedef struct {
  int64_t *data; /* [L * D] */
  int64_t *ids;  /* [L] */
  int64_t sums;
  int64_t file_size;
} eplb__layout_t;

void eplb__layout_free(eplb__layout_t *lay);

/* Fills *lay for sh.  0 (in place possible), 1 (not: why says why, e.g.
 * "dataset 'w' of layer 2 is chunked"), or an error. */
int eplb__shard_layout(eplb_shard_t *sh, eplb__layout_t *lay, char *why,
                       size_t cap, eplb_error_t *err);

/* The bytes HDF5 writes to set the root attribute `generation` of the
 * (closed) shard at `path` to gen, captured instead of written (h5/vfd.h),
 * into *out.  Every record lies inside the file (else EPLB_ESTATE: the
 * change would grow it). */
int eplb__shard_generation_recs(const char *path, uint64_t gen,
                                eplb__recs_t *out, eplb_error_t *err);

/* Bytes this process read from / wrote to shard files through HDF5 (eplb's
 * file driver) so far. */
void eplb__shard_io_totals(int64_t *bytes_read, int64_t *bytes_written);

#endif /* EPLB_H5_SHARD_WRITER_H */
