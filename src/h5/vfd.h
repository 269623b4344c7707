/* h5/vfd.h - eplb's own HDF5 file driver for the shards it reads and
 * writes (internal: not installed).
 *
 * A plain POSIX driver (pread/pwrite on one descriptor, like HDF5's sec2)
 * with three things sec2 cannot give:
 *   - a file whose write failed can still be closed: HDF5 1.10 crashes at
 *     exit (or in MPI_Finalize) when a file close fails, so once eplb knows
 *     the file is lost it tells the driver to discard every later write
 *     and truncate; the close then succeeds and the file is removed;
 *   - the bytes read from and written to the disk, per file and per
 *     process, for the migration's summary;
 *   - fault injection: the next write of a file fails with ENOSPC once (a
 *     disk that is full for a moment) or is lost, so that tests can prove
 *     a lost write never becomes a committed weight. */
#ifndef EPLB_H5_VFD_H
#define EPLB_H5_VFD_H

#include <hdf5.h>
#include <stdint.h>

#include "h5/shard_writer.h"

/* A new file access property list using the driver (caller closes), or
 * < 0.  align: objects of 64 KiB and more start on 4 KiB pages. */
hid_t eplb__vfd_fapl(int align);

/* From now on every write and truncate of `file` (opened through the
 * driver) succeeds without touching the disk: the file is lost, and must
 * be closed and removed.  No-op for other files. */
void eplb__vfd_discard(hid_t file);

/* Fault injection (tests): the next write to `file` fails with ENOSPC
 * (EPLB__WRITE_ENOSPC), or is dropped while reporting success
 * (EPLB__WRITE_LOSE: a lost write, as an unchecked close loses one),
 * once. */
void eplb__vfd_inject(hid_t file, int fault);

/* Capture (the in-place commit, h5/shard_inplace.c): while a capture is
 * active, a file the driver opens is never written: each write is kept
 * in `recs` instead (offset, bytes), and reads see the file with those
 * writes laid over it, so HDF5 works as if it had written them.  The
 * caller then owns the exact bytes an HDF5 change makes (to journal them
 * and apply them later, without HDF5).  One capture at a time. */
void eplb__vfd_capture(eplb__recs_t *recs);

/* Bytes this process read from / wrote to files of the driver so far. */
void eplb__vfd_totals(int64_t *bytes_read, int64_t *bytes_written);

#endif /* EPLB_H5_VFD_H */
