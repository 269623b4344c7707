/* h5/shard_internal.h - what the other files of src/h5/ (the checkpoint
 * import and export) need of a shard beyond eplb/shard.h: the HDF5 file
 * handles, to read and write the metadata groups that are theirs
 * (/checkpoint), and an info built from HDF5 types rather than from the
 * eplb_dtype_t list (bfloat16, float8).  Internal: not installed. */
#ifndef EPLB_H5_SHARD_INTERNAL_H
#define EPLB_H5_SHARD_INTERNAL_H

#include <hdf5.h>

#include "eplb/shard.h"

/* The open file of a shard / of a writer (borrowed). */
hid_t eplb__shard_hid(const eplb_shard_t *sh);
hid_t eplb__shard_writer_hid(const eplb_shard_writer_t *w);

/* Reads string attribute `name` of object obj - fixed or variable
 * length, ASCII or UTF-8, exactly one value - into buf (truncated to cap).
 * 0, or -1 missing, -2 not a single string, -3 unreadable. */
int eplb__h5_attr_str(hid_t obj, const char *name, char *buf, size_t cap);

/* eplb_shard_info_make with the datasets' HDF5 types given (not closed):
 * any type eplb_shard_open accepts. */
int eplb__shard_info_from_types(eplb_shard_info_t *info, int32_t world_size,
                                int32_t num_layers, int32_t slots_per_rank,
                                uint64_t generation, int32_t num_datasets,
                                const char *const *names, const hid_t *types,
                                const int32_t *nd,
                                const int64_t (*rowdims)[EPLB_SHARD_MAX_DIMS],
                                eplb_error_t *err);

#endif /* EPLB_H5_SHARD_INTERNAL_H */
