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

/* shard_sums.c: the at-rest checksums.  Reads /eplb_checksums of file
 * into *sums ([L][P][D], malloc'd; NULL and 0 when the shard has none;
 * an unknown hash or shape is EPLB_EPARSE). */
int eplb__sums_read(hid_t file, const char *path, const eplb_shard_info_t *in,
                    uint64_t **sums, eplb_error_t *err);
/* Writes /eplb_checksums (0, or -1 on an HDF5 failure). */
int eplb__sums_write(hid_t file, const eplb_shard_info_t *in,
                     const uint64_t *sums);
/* Compares row (layer l, slot s, dataset d) with its checksum (sums NULL:
 * nothing to compare); EPLB_ECHECKSUM naming file, rank, layer, slot and
 * dataset. */
int eplb__sums_check(const char *path, const eplb_shard_info_t *in,
                     const uint64_t *sums, int32_t l, int32_t s, int32_t d,
                     const void *row, eplb_error_t *err);

/* Reads string attribute `name` of object obj - fixed or variable
 * length, ASCII or UTF-8, exactly one value - into buf (truncated to cap).
 * 0, or -1 missing, -2 not a single string, -3 unreadable. */
int eplb__h5_attr_str(hid_t obj, const char *name, char *buf, size_t cap);

/* Writes scalar attribute `name` on obj, of HDF5 type ft from memory type
 * mt; every call checked (a failed close is a lost write).  0 or -1. */
int eplb__h5_put_attr(hid_t obj, const char *name, hid_t ft, hid_t mt,
                      const void *v);

/* Writes string attribute `name` = v on obj (fixed length, ASCII, as
 * eplb_format is).  0 or -1. */
int eplb__h5_put_str(hid_t obj, const char *name, const char *v);

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
