/* eplb/shard.h - per-rank HDF5 shards of expert weights ("eplb shard,
 * version 1", see docs/shards.md), read and written one layer at a time.
 *
 * A shard `shard_<rank, 5 digits>.h5` holds, for each MoE layer l, the
 * group /layers/<l> with `expert_ids` (int32 [slots_per_rank]) and any
 * number of weight datasets whose first dimension is the slot.  eplb moves
 * whole rows (all datasets of a slot together) byte for byte, so it never
 * converts weights: a dataset keeps its HDF5 type, whatever it is.
 *
 * The HDF5 handles stay behind the opaque eplb_shard_t and
 * eplb_shard_writer_t; this header pulls in neither hdf5.h nor mpi.h (the
 * collective open and the migration are in eplb/migrate.h). */
#ifndef EPLB_SHARD_H
#define EPLB_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EPLB_SHARD_FORMAT "eplb-shard"
#define EPLB_SHARD_VERSION 1
#define EPLB_SHARD_MAX_DATASETS 64           /* weight datasets per layer */
#define EPLB_SHARD_MAX_DIMS 8                /* dimensions per dataset */
#define EPLB_SHARD_NAME_MAX 64               /* dataset name, with its NUL */
#define EPLB_SHARD_TYPE_MAX 96               /* H5Tencode'd type, bytes */
#define EPLB_SHARD_MAX_SLOTS 65536           /* slots per rank (1..) */
#define EPLB_SHARD_MAX_ROW_BYTES (1LL << 36) /* one slot's row set */

/* The numeric types eplb-shard creates (any integer or float type, and the
 * opaque bfloat16/float8 types of docs/shards.md, is read and moved;
 * EPLB_DTYPE_OTHER names the ones outside this list). */
typedef enum {
  EPLB_DTYPE_INT8 = 0,
  EPLB_DTYPE_UINT8,
  EPLB_DTYPE_INT16,
  EPLB_DTYPE_UINT16,
  EPLB_DTYPE_INT32,
  EPLB_DTYPE_UINT32,
  EPLB_DTYPE_INT64,
  EPLB_DTYPE_UINT64,
  EPLB_DTYPE_FLOAT16,
  EPLB_DTYPE_FLOAT32,
  EPLB_DTYPE_FLOAT64,
  EPLB_DTYPE_OTHER
} eplb_dtype_t;

/* "int8" ... "float64" ("other" for EPLB_DTYPE_OTHER); -1 if unknown. */
const char *eplb_dtype_name(eplb_dtype_t t);
int eplb_dtype_from_name(const char *name);

/* One weight dataset of a layer (the same in every layer of a shard). */
typedef struct eplb_shard_dataset_s {
  char name[EPLB_SHARD_NAME_MAX];
  eplb_dtype_t dtype; /* little-endian standard types, else OTHER */
  char type_name[32]; /* "float16", "int32be", "bfloat16", ... */
  int32_t type_size;  /* bytes per element */
  int32_t ndims;      /* 1..EPLB_SHARD_MAX_DIMS */
  int64_t dims[EPLB_SHARD_MAX_DIMS];           /* dims[0] = slots_per_rank */
  int64_t row_bytes;                           /* bytes of one slot's row */
  int32_t type_len;                            /* bytes used in type_enc */
  unsigned char type_enc[EPLB_SHARD_TYPE_MAX]; /* exact HDF5 type */
} eplb_shard_dataset_t;

/* What a shard is; zero-filled before filling, so two infos can be
 * compared byte for byte (eplb_shard_info_diff says how they differ). */
typedef struct eplb_shard_info_s {
  int32_t version; /* EPLB_SHARD_VERSION */
  int32_t rank, world_size, num_layers, slots_per_rank, num_datasets;
  uint64_t generation;
  int64_t row_bytes; /* sum of the datasets' row_bytes */
  eplb_shard_dataset_t datasets[EPLB_SHARD_MAX_DATASETS]; /* sorted by name */
} eplb_shard_info_t;

/* Writes "<what> shard_00003.h5" style text: the first way in which b
 * differs from a in the fields every shard of a job shares (version,
 * generation, world size, layers, slots, dataset names, types, shapes) into
 * buf, e.g. "dataset 'w1' is float32 [4, 16] where rank 0's is float16
 * [4, 16]".  Returns 1 if they differ, 0 if not (buf then ""). */
int eplb_shard_info_diff(const eplb_shard_info_t *a, const eplb_shard_info_t *b,
                         char *buf, size_t size);

/* "<dir>/shard_%05d.h5" into buf.  EPLB_EARG if it does not fit. */
int eplb_shard_path(const char *dir, int rank, char *buf, size_t size,
                    eplb_error_t *err);

/* ---- reading ------------------------------------------------------ */

typedef struct eplb_shard_s eplb_shard_t;

/* Opens `path` read-only and validates it: format and version attributes,
 * integer attributes in range (any integer type), every layer group with
 * expert_ids int32-convertible [P] and the same datasets (numeric, first
 * dimension P) in every layer.  HDF5's own error printing is silenced;
 * failures are one line naming the file and the layer/dataset/attribute.
 * On success *out (close with eplb_shard_close). */
int eplb_shard_open(const char *path, eplb_shard_t **out, eplb_error_t *err);
/* NULL-safe. */
void eplb_shard_close(eplb_shard_t *sh);
/* Borrowed; valid until eplb_shard_close. */
const eplb_shard_info_t *eplb_shard_info(const eplb_shard_t *sh);
const char *eplb_shard_file(const eplb_shard_t *sh);

/* The model's layer id of each layer l = 0..num_layers-1: the shard's
 * optional /layer_ids (eplb-shard import keeps the checkpoint's, e.g.
 * DeepSeek-V3's MoE layers 3..60), else 0..L-1.  Borrowed. */
const int32_t *eplb_shard_layer_ids(const eplb_shard_t *sh);

/* Reads layer `layer`'s expert ids into ids[slots_per_rank]. */
int eplb_shard_read_ids(eplb_shard_t *sh, int32_t layer, int32_t *ids,
                        eplb_error_t *err);
/* Reads layer `layer`'s rows, raw bytes in the file's own types: slot s's
 * row set (datasets in info order, packed) goes to buf + s * stride
 * (stride >= info->row_bytes). */
int eplb_shard_read_rows(eplb_shard_t *sh, int32_t layer, void *buf,
                         size_t stride, eplb_error_t *err);

/* Reads layer `layer`'s rows with no staging copy: dataset d's row of
 * slot s goes to buf + s * stride + offsets[d]; stride and every
 * offsets[d] must be multiples of that dataset's element size (EPLB_EARG
 * otherwise); bytes between rows are left as they were. */
int eplb_shard_read_layer(eplb_shard_t *sh, int32_t layer, void *buf,
                          size_t stride, const size_t *offsets,
                          eplb_error_t *err);

/* Reads dataset d (info order) of layer `layer`, raw bytes in the file's
 * own type, into buf[slots_per_rank * datasets[d].row_bytes]. */
int eplb_shard_read_dataset(eplb_shard_t *sh, int32_t layer, int32_t d,
                            void *buf, eplb_error_t *err);

/* Reads one row, raw bytes in the file's own type: dataset d (info
 * order) of slot `slot` in layer `layer`, into buf[datasets[d].row_bytes]. */
int eplb_shard_read_row(eplb_shard_t *sh, int32_t layer, int32_t d,
                        int32_t slot, void *buf, eplb_error_t *err);

/* ---- at-rest checksums ---------------------------------------------- */

/* The at-rest checksum of a row: XXH3-64 (seed 0) of its bytes. */
uint64_t eplb_shard_row_checksum(const void *row, size_t len);

/* The shard's at-rest checksums, [num_layers][slots_per_rank]
 * [num_datasets] (datasets in info order), or NULL if it carries none (an
 * older eplb's or another writer's shard: docs/shards.md).  Borrowed.
 * When present, every read above compares each row it returns with its
 * checksum and fails with EPLB_ECHECKSUM naming the file, rank, layer,
 * slot and dataset. */
const uint64_t *eplb_shard_checksums(const eplb_shard_t *sh);

/* on = 0: the reads above return rows without comparing them with the
 * at-rest checksums (a verifier that compares the content first, and the
 * checksums itself after); on = 1 (the default): they compare. */
void eplb_shard_set_check(eplb_shard_t *sh, int on);

/* Reads every row of the shard at `path` (checking the checksums it has);
 * if it has none and out != NULL, writes a copy of it with them to `out`
 * (fsynced; removed on failure), for the caller to rename over `path`.
 * *had: 1 if the shard had checksums already (nothing written). */
int eplb_shard_checksum_file(const char *path, const char *out, int *had,
                             eplb_error_t *err);

/* ---- writing ------------------------------------------------------ */

typedef struct eplb_shard_writer_s eplb_shard_writer_t;

/* Creates `path` (truncating it) with info's root attributes (version,
 * generation, rank, world_size, num_layers) and the datasets' types and
 * shapes; layers are then written in any order with
 * eplb_shard_writer_put_layer, and eplb_shard_writer_finish closes it. */
int eplb_shard_writer_create(const char *path, const eplb_shard_info_t *info,
                             eplb_shard_writer_t **out, eplb_error_t *err);
/* Writes /layers/<layer>: ids[P] and the rows (same packing as
 * eplb_shard_read_rows). */
int eplb_shard_writer_put_layer(eplb_shard_writer_t *w, int32_t layer,
                                const int32_t *ids, const void *buf,
                                size_t stride, eplb_error_t *err);
/* Row by row instead (no layer-sized buffer): begin_layer creates
 * /layers/<layer> with ids[P] and every dataset, unfilled; then put_row
 * writes each slot exactly once, pieces[d] pointing at that slot's row of
 * dataset d.  Slots never written are undefined. */
int eplb_shard_writer_begin_layer(eplb_shard_writer_t *w, int32_t layer,
                                  const int32_t *ids, eplb_error_t *err);
int eplb_shard_writer_put_row(eplb_shard_writer_t *w, int32_t slot,
                              const unsigned char *const *pieces,
                              eplb_error_t *err);
/* Writes /layer_ids: the model's layer id of each layer (int32
 * [num_layers], strictly increasing, 0..EPLB_MAX_LAYERS-1). */
int eplb_shard_writer_put_layer_ids(eplb_shard_writer_t *w, const int32_t *ids,
                                    eplb_error_t *err);
/* Copies into the new shard what `from` holds besides the format's own
 * objects: every root attribute other than eplb_format, eplb_version,
 * generation, rank, world_size and num_layers, and every root object other
 * than /layers (/layer_ids, /checkpoint, a user's own).  A migration calls
 * it, so metadata travels with the weights. */
int eplb_shard_writer_copy_extras(eplb_shard_writer_t *w,
                                  const eplb_shard_t *from, eplb_error_t *err);
/* Writes what HDF5 buffered, closes the file and, with do_fsync, fsyncs
 * it.  On any failure (a write at the flush, the close, the fsync) the
 * file is removed: a shard that was not fully written never stays.  Frees
 * w either way. */
int eplb_shard_writer_finish(eplb_shard_writer_t *w, int do_fsync,
                             eplb_error_t *err);
/* Closes and removes the file (a failed write leaves nothing).  NULL-safe. */
void eplb_shard_writer_abort(eplb_shard_writer_t *w);

/* ---- deterministic test content (eplb-shard create / verify) ------- */

/* Fills row[0 .. info->row_bytes) with the content of `expert` in layer
 * `layer`: every byte a function of (layer, expert, dataset, byte index),
 * so a verifier can prove each row belongs to the expert its id names. */
void eplb_shard_fill_row(const eplb_shard_info_t *info, int32_t layer,
                         int32_t expert, unsigned char *row);

/* Builds an info for eplb-shard create: `num_datasets` datasets named
 * names[d] with types types[d] and per-slot shapes rowdims[d][0..nd[d])
 * (the slot dimension P is prepended).  Checks every range. */
int eplb_shard_info_make(eplb_shard_info_t *info, int32_t world_size,
                         int32_t num_layers, int32_t slots_per_rank,
                         uint64_t generation, int32_t num_datasets,
                         const char *const *names, const eplb_dtype_t *types,
                         const int32_t *nd,
                         const int64_t (*rowdims)[EPLB_SHARD_MAX_DIMS],
                         eplb_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_SHARD_H */
