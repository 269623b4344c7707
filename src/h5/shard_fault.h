/* h5/shard_fault.h - fault injection into a shard writer, for the tests
 * that prove a lost write never becomes a committed weight (internal; no
 * hdf5.h, so that migrate/ and cli/ can use it). */
#ifndef EPLB_H5_SHARD_FAULT_H
#define EPLB_H5_SHARD_FAULT_H

#include "eplb/shard.h"

enum {
  EPLB__WRITE_ENOSPC = 1, /* the write fails with ENOSPC */
  EPLB__WRITE_LOSE = 2    /* the write is dropped, success reported */
};

/* The next write of w's file - the first of eplb_shard_writer_finish's
 * flush when called just before it - fails or is lost, once. */
void eplb__shard_writer_inject(eplb_shard_writer_t *w, int fault);

#endif /* EPLB_H5_SHARD_FAULT_H */
