/* shard.c - the per-rank HDF5 shards of expert weights: open and validate,
 * read a layer, write a layer, describe (see eplb/shard.h, docs/shards.md).
 *
 * Shards come from other writers (h5py, a framework's exporter), so the
 * reader takes them as they come: integer attributes of any integer type
 * (read through HDF5's conversion), strings fixed or variable length,
 * datasets contiguous or chunked, any integer or float element type, and
 * the opaque types eplb gives bfloat16 and float8 (h5/h5types.h).  The
 * weights themselves are never converted: rows are read and written with
 * the dataset's own file type, so a migration moves them byte for byte, and
 * the writer recreates each type exactly from its H5Tencode'd form.
 *
 * HDF5 prints its error stack by default; every entry point silences it
 * and turns a failure into one line that names the file and the
 * layer/dataset/attribute, and says what to do.  Each rank opens its own
 * file with the default (sec2) driver: no parallel HDF5 access is needed. */
#include "eplb/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eplb/stats.h"
#include "formats/safetensors.h"
#include "h5/h5types.h"
#include "h5/shard_writer.h"
#include "h5/shard_internal.h"
#include "h5/vfd.h"
#include "util/checksum.h"
#include "util/fileio.h"

struct eplb_shard_s {
  hid_t file;
  char *path;
  eplb_shard_info_t info;
  int32_t *layer_ids; /* [num_layers]: /layer_ids, or 0..L-1 */
  uint64_t *sums;     /* [L][P][D] at-rest checksums, or NULL */
  int nocheck;        /* eplb_shard_set_check(sh, 0) */
};

struct eplb_shard_writer_s {
  hid_t file;
  char *path;
  eplb_shard_info_t info;
  unsigned char *tmp; /* one dataset of one layer (put_layer only) */
  hid_t group;        /* the layer begun by begin_layer, or -1 */
  hid_t dsets[EPLB_SHARD_MAX_DATASETS];
  int32_t layer;       /* the layer begun by begin_layer */
  uint64_t *sums;      /* [L][P][D] at-rest checksums of the rows written */
  int64_t rows_left;   /* L * P rows not written yet */
  unsigned char *done; /* [L * P] 1 once a row is written */
};

static const char *const dtype_names[] = {
    "int8",  "uint8",  "int16",   "uint16",  "int32",   "uint32",
    "int64", "uint64", "float16", "float32", "float64", "other"};

const char *eplb_dtype_name(eplb_dtype_t t) {
  if ((int)t < 0 || t > EPLB_DTYPE_OTHER)
    return "other";
  return dtype_names[t];
}

int eplb_dtype_from_name(const char *name) {
  for (int i = 0; i < EPLB_DTYPE_OTHER; i++)
    if (name && strcmp(name, dtype_names[i]) == 0)
      return i;
  return -1;
}

/* Silences HDF5's automatic error stack printing (we report ourselves). */
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

int eplb_shard_path(const char *dir, int rank, char *buf, size_t size,
                    eplb_error_t *err) {
  int n = snprintf(buf, size, "%s/shard_%05d.h5", dir, rank);
  if (n < 0 || (size_t)n >= size)
    return eplb_error_set(err, EPLB_EARG,
                          "shard directory '%.200s' is too long; use a "
                          "shorter path",
                          dir);
  return 0;
}

/* ---- types -------------------------------------------------------- */

/* A new HDF5 type for a standard dtype (caller closes), or < 0. */
static hid_t dtype_h5(eplb_dtype_t t) {
  static const int st[] = {EPLB_ST_I8,  EPLB_ST_U8,  EPLB_ST_I16, EPLB_ST_U16,
                           EPLB_ST_I32, EPLB_ST_U32, EPLB_ST_I64, EPLB_ST_U64,
                           EPLB_ST_F16, EPLB_ST_F32, EPLB_ST_F64};
  if ((int)t < 0 || t >= EPLB_DTYPE_OTHER)
    return -1;
  return eplb__h5_type_for_st(st[t]);
}

/* Names a float type from its fields ("float16", "bfloat16", ...). */
static eplb_dtype_t float_kind(hid_t t, size_t size, char *name, size_t cap) {
  size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
  H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize);
  size_t bias = H5Tget_ebias(t);
  if (size == 2 && esize == 5 && msize == 10 && bias == 15 && spos == 15) {
    snprintf(name, cap, "float16");
    return EPLB_DTYPE_FLOAT16;
  }
  if (size == 2 && esize == 8 && msize == 7 && bias == 127 && spos == 15) {
    snprintf(name, cap, "bfloat16");
    return EPLB_DTYPE_OTHER;
  }
  if (size == 4 && esize == 8 && msize == 23 && spos == 31) {
    snprintf(name, cap, "float32");
    return EPLB_DTYPE_FLOAT32;
  }
  if (size == 8 && esize == 11 && msize == 52 && spos == 63) {
    snprintf(name, cap, "float64");
    return EPLB_DTYPE_FLOAT64;
  }
  snprintf(name, cap, "float%zu(e%zu,m%zu)", size * 8, esize, msize);
  return EPLB_DTYPE_OTHER;
}

/* Describes HDF5 type t into d (dtype, type_name, type_size, type_enc).
 * Only integer and float types are weights.  `what` names the dataset. */
static int describe_type(hid_t t, eplb_shard_dataset_t *d, const char *what,
                         eplb_error_t *err) {
  H5T_class_t cls = H5Tget_class(t);
  size_t size = H5Tget_size(t);
  const char *kind = eplb__h5_opaque_kind(t);
  if ((cls != H5T_INTEGER && cls != H5T_FLOAT && kind == NULL) || size == 0 ||
      size > 16)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s is neither a numeric (integer or float) dataset "
                          "nor one of the opaque types eplb knows (bfloat16, "
                          "float8_e4m3fn, float8_e5m2, float8_e8m0fnu, bool: "
                          "docs/shards.md); remove it or convert it",
                          what);
  int be = kind == NULL && H5Tget_order(t) == H5T_ORDER_BE;
  d->type_size = (int32_t)size;
  if (kind) {
    d->dtype = EPLB_DTYPE_OTHER;
    snprintf(d->type_name, sizeof(d->type_name), "%s", kind);
  } else if (cls == H5T_INTEGER) {
    int sign = H5Tget_sign(t) == H5T_SGN_2;
    snprintf(d->type_name, sizeof(d->type_name), "%sint%zu", sign ? "" : "u",
             size * 8);
    int k = size == 1 ? 0 : size == 2 ? 2 : size == 4 ? 4 : size == 8 ? 6 : -1;
    d->dtype = k < 0 ? EPLB_DTYPE_OTHER : (eplb_dtype_t)(k + !sign);
  } else {
    d->dtype = float_kind(t, size, d->type_name, sizeof(d->type_name));
  }
  if (be) {
    d->dtype = EPLB_DTYPE_OTHER;
    strncat(d->type_name, "be",
            sizeof(d->type_name) - strlen(d->type_name) - 1);
  }
  size_t n = 0;
  if (H5Tencode(t, NULL, &n) < 0 || n > EPLB_SHARD_TYPE_MAX ||
      H5Tencode(t, d->type_enc, &n) < 0)
    return eplb_error_set(err, EPLB_EHDF5, "%s: its type %s cannot be encoded",
                          what, d->type_name);
  d->type_len = (int32_t)n;
  return 0;
}

/* Fills d's shape from dataspace s; dims[0] must be P (if P > 0). */
static int describe_shape(hid_t s, eplb_shard_dataset_t *d, int32_t P,
                          const char *what, eplb_error_t *err) {
  hsize_t dims[EPLB_SHARD_MAX_DIMS];
  int nd = H5Sget_simple_extent_ndims(s);
  if (nd < 1 || nd > EPLB_SHARD_MAX_DIMS)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s has %d dimensions; a weight dataset needs 1..%d, "
                          "the first being the slot",
                          what, nd, EPLB_SHARD_MAX_DIMS);
  H5Sget_simple_extent_dims(s, dims, NULL);
  if (P > 0 && dims[0] != (hsize_t)P)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s has %llu rows but expert_ids has %d slots; the "
                          "first dimension of every dataset is the slot",
                          what, (unsigned long long)dims[0], (int)P);
  d->ndims = nd;
  int64_t row = d->type_size;
  for (int i = 0; i < nd; i++) {
    d->dims[i] = (int64_t)dims[i];
    if (i > 0 && dims[i] > 0 &&
        row > EPLB_SHARD_MAX_ROW_BYTES / (int64_t)dims[i])
      return eplb_error_set(err, EPLB_ESHAPE,
                            "%s: one slot's row exceeds %lld bytes", what,
                            (long long)EPLB_SHARD_MAX_ROW_BYTES);
    if (i > 0)
      row *= (int64_t)dims[i];
  }
  d->row_bytes = row;
  return 0;
}

/* ---- attributes --------------------------------------------------- */

/* Reads integer attribute `name` of the root as int64 (any integer type). */
static int attr_int(hid_t f, const char *path, const char *name, int64_t *v,
                    eplb_error_t *err) {
  if (H5Aexists(f, name) <= 0)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: root attribute '%s' is missing; is this an eplb "
                          "shard (docs/shards.md)?",
                          path, name);
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  hid_t t = a >= 0 ? H5Aget_type(a) : -1;
  hid_t s = a >= 0 ? H5Aget_space(a) : -1;
  int rc = 0;
  if (t < 0 || H5Tget_class(t) != H5T_INTEGER ||
      H5Sget_simple_extent_npoints(s) != 1)
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: root attribute '%s' is not a single integer", path,
                        name);
  else if (H5Aread(a, H5T_NATIVE_INT64, v) < 0)
    rc = eplb_error_set(err, EPLB_EHDF5, "%s: cannot read root attribute '%s'",
                        path, name);
  if (s >= 0)
    H5Sclose(s);
  if (t >= 0)
    H5Tclose(t);
  if (a >= 0)
    H5Aclose(a);
  return rc;
}

/* 1 when attribute a holds exactly one value (a scalar or one-element
 * dataspace): H5Aread writes all of them, so anything else would overrun a
 * buffer of one. */
static int single_value(hid_t a) {
  hid_t sp = H5Aget_space(a);
  int one = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1;
  if (sp >= 0)
    H5Sclose(sp);
  return one;
}

/* Reads root string attribute `name` into buf; the errors name it. */
static int attr_str(hid_t f, const char *path, const char *name, char *buf,
                    size_t cap, eplb_error_t *err) {
  int rc = eplb__h5_attr_str(f, name, buf, cap);
  if (rc == -1)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: root attribute '%s' is missing; is this an eplb "
                          "shard (docs/shards.md)?",
                          path, name);
  if (rc == -2)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: root attribute '%s' is not a single string",
                          path, name);
  if (rc)
    return eplb_error_set(err, EPLB_EHDF5, "%s: cannot read attribute '%s'",
                          path, name);
  return 0;
}

/* Reads and range-checks the root attributes into info. */
static int read_root(hid_t f, const char *path, eplb_shard_info_t *info,
                     eplb_error_t *err) {
  char fmt[64];
  int64_t ver = 0, rank = 0, ws = 0, nl = 0;
  int rc = attr_str(f, path, "eplb_format", fmt, sizeof(fmt), err);
  if (rc == 0 && strcmp(fmt, EPLB_SHARD_FORMAT) != 0)
    rc = eplb_error_set(err, EPLB_EPARSE, "%s: eplb_format is '%s', not '%s'",
                        path, fmt, EPLB_SHARD_FORMAT);
  if (rc == 0)
    rc = attr_int(f, path, "eplb_version", &ver, err);
  if (rc == 0 && ver != EPLB_SHARD_VERSION)
    rc =
        eplb_error_set(err, EPLB_EPARSE,
                       "%s: shard format version %lld; this eplb reads version "
                       "%d only: rewrite the shard with a matching eplb",
                       path, (long long)ver, EPLB_SHARD_VERSION);
  if (rc == 0) {
    hid_t a = H5Aexists(f, "generation") > 0
                  ? H5Aopen(f, "generation", H5P_DEFAULT)
                  : -1;
    if (a < 0 || !single_value(a) ||
        H5Aread(a, H5T_NATIVE_UINT64, &info->generation) < 0)
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "%s: root attribute 'generation' (uint64) is missing "
                          "or unreadable",
                          path);
    if (a >= 0)
      H5Aclose(a);
  }
  if (rc == 0)
    rc = attr_int(f, path, "rank", &rank, err);
  if (rc == 0)
    rc = attr_int(f, path, "world_size", &ws, err);
  if (rc == 0)
    rc = attr_int(f, path, "num_layers", &nl, err);
  if (rc == 0 && (ws < 1 || ws > 65536 || rank < 0 || rank >= ws))
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: rank %lld / world_size %lld out of range (world "
                        "size 1..65536, rank 0..world_size-1)",
                        path, (long long)rank, (long long)ws);
  if (rc == 0 && (nl < 1 || nl > EPLB_MAX_LAYERS))
    rc = eplb_error_set(err, EPLB_EPARSE, "%s: num_layers %lld outside 1..%d",
                        path, (long long)nl, EPLB_MAX_LAYERS);
  info->version = (int32_t)ver;
  info->rank = (int32_t)rank;
  info->world_size = (int32_t)ws;
  info->num_layers = (int32_t)nl;
  return rc;
}

/* ---- layers ------------------------------------------------------- */

typedef struct {
  eplb_shard_info_t *info;
  int over;
} names_ctx_t;

/* H5Literate callback: collects the names of a layer group's members. */
static herr_t collect_name(hid_t g, const char *name, const H5L_info_t *li,
                           void *op) {
  (void)g;
  (void)li;
  names_ctx_t *c = op;
  if (strcmp(name, "expert_ids") == 0)
    return 0;
  if (c->info->num_datasets >= EPLB_SHARD_MAX_DATASETS ||
      strlen(name) >= EPLB_SHARD_NAME_MAX) {
    c->over = 1;
    return 1;
  }
  snprintf(c->info->datasets[c->info->num_datasets++].name, EPLB_SHARD_NAME_MAX,
           "%s", name);
  return 0;
}

/* Opens group /layers/<l>.  Returns the group or < 0 with err set. */
static hid_t open_layer(hid_t f, const char *path, int32_t l,
                        eplb_error_t *err) {
  char g[64];
  snprintf(g, sizeof(g), "/layers/%d", (int)l);
  hid_t id = H5Lexists(f, "/layers", H5P_DEFAULT) > 0 &&
                     H5Lexists(f, g, H5P_DEFAULT) > 0
                 ? H5Gopen2(f, g, H5P_DEFAULT)
                 : -1;
  if (id < 0)
    eplb_error_set(err, EPLB_EPARSE,
                   "%s: group %s is missing; every layer 0..num_layers-1 "
                   "needs one",
                   path, g);
  return id;
}

/* Checks /layers/<l>/expert_ids: integer, 1-D; sets or checks *P. */
static int check_ids(hid_t g, const char *path, int32_t l, int32_t *P,
                     eplb_error_t *err) {
  hid_t d = H5Lexists(g, "expert_ids", H5P_DEFAULT) > 0
                ? H5Dopen2(g, "expert_ids", H5P_DEFAULT)
                : -1;
  if (d < 0)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: /layers/%d/expert_ids is missing", path, (int)l);
  hid_t t = H5Dget_type(d), s = H5Dget_space(d);
  hsize_t n = 0;
  int rc = 0;
  if (H5Tget_class(t) != H5T_INTEGER || H5Sget_simple_extent_ndims(s) != 1)
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: /layers/%d/expert_ids must be a 1-D integer "
                        "dataset [slots_per_rank]",
                        path, (int)l);
  if (rc == 0) {
    H5Sget_simple_extent_dims(s, &n, NULL);
    if (n < 1 || n > EPLB_SHARD_MAX_SLOTS)
      rc = eplb_error_set(
          err, EPLB_ESHAPE,
          "%s: /layers/%d/expert_ids has %llu slots; 1..%d allowed", path,
          (int)l, (unsigned long long)n, EPLB_SHARD_MAX_SLOTS);
    else if (*P > 0 && (int32_t)n != *P)
      rc = eplb_error_set(
          err, EPLB_ESHAPE,
          "%s: /layers/%d/expert_ids has %llu slots where layer 0 "
          "has %d",
          path, (int)l, (unsigned long long)n, (int)*P);
    else
      *P = (int32_t)n;
  }
  H5Sclose(s);
  H5Tclose(t);
  H5Dclose(d);
  return rc;
}

/* Describes dataset `name` of group g (layer l) into out. */
static int describe_dataset(hid_t g, const char *path, int32_t l,
                            const char *name, int32_t P,
                            eplb_shard_dataset_t *out, eplb_error_t *err) {
  char what[512];
  snprintf(what, sizeof(what), "%.300s: /layers/%d/%s", path, (int)l, name);
  memset(out, 0, sizeof(*out));
  snprintf(out->name, sizeof(out->name), "%s", name);
  H5O_info_t oi;
  if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0 ||
      oi.type != H5O_TYPE_DATASET)
    return eplb_error_set(
        err, EPLB_EPARSE,
        "%s is missing or not a dataset (every layer must hold "
        "the same datasets)",
        what);
  hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
  if (d < 0)
    return eplb_error_set(err, EPLB_EHDF5, "%s cannot be opened", what);
  hid_t t = H5Dget_type(d), s = H5Dget_space(d);
  int rc = describe_type(t, out, what, err);
  if (rc == 0)
    rc = describe_shape(s, out, P, what, err);
  H5Sclose(s);
  H5Tclose(t);
  H5Dclose(d);
  return rc;
}

/* Validates layer l against layer 0's datasets (l == 0: records them). */
static int check_layer(hid_t f, const char *path, int32_t l,
                       eplb_shard_info_t *info, eplb_error_t *err) {
  hid_t g = open_layer(f, path, l, err);
  if (g < 0)
    return EPLB_EPARSE;
  int rc = check_ids(g, path, l, &info->slots_per_rank, err);
  eplb_shard_info_t *names = NULL;
  if (rc == 0 && (names = calloc(1, sizeof(*names))) == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  names_ctx_t c = {names, 0};
  hsize_t idx = 0;
  if (rc == 0 &&
      (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, &c) < 0 ||
       c.over))
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: /layers/%d has more than %d datasets or a name "
                        "longer than %d bytes",
                        path, (int)l, EPLB_SHARD_MAX_DATASETS,
                        EPLB_SHARD_NAME_MAX - 1);
  if (rc == 0 && l > 0 && names->num_datasets != info->num_datasets)
    rc = eplb_error_set(err, EPLB_ESHAPE,
                        "%s: /layers/%d holds %d weight datasets where layer 0 "
                        "holds %d; every layer needs the same datasets",
                        path, (int)l, names->num_datasets, info->num_datasets);
  for (int32_t d = 0; rc == 0 && d < names->num_datasets; d++) {
    eplb_shard_dataset_t one;
    const char *nm = l == 0 ? names->datasets[d].name : info->datasets[d].name;
    rc = describe_dataset(g, path, l, nm, info->slots_per_rank, &one, err);
    if (rc == 0 && l == 0)
      info->datasets[d] = one;
    else if (rc == 0 && memcmp(&one, &info->datasets[d], sizeof(one)) != 0)
      rc = eplb_error_set(err, EPLB_ESHAPE,
                          "%s: /layers/%d/%s differs in type or shape from "
                          "/layers/0/%s; every layer needs the same datasets",
                          path, (int)l, nm, nm);
  }
  if (rc == 0 && l == 0)
    info->num_datasets = names->num_datasets;
  free(names);
  H5Gclose(g);
  return rc;
}

/* Sums the datasets' row bytes into info->row_bytes (overflow checked). */
static int sum_rows(const char *path, eplb_shard_info_t *info,
                    eplb_error_t *err) {
  int64_t sum = 0;
  for (int32_t d = 0; d < info->num_datasets; d++) {
    sum += info->datasets[d].row_bytes;
    if (sum > EPLB_SHARD_MAX_ROW_BYTES)
      return eplb_error_set(err, EPLB_ESHAPE,
                            "%s: one slot's rows exceed %lld bytes", path,
                            (long long)EPLB_SHARD_MAX_ROW_BYTES);
  }
  info->row_bytes = sum;
  return 0;
}

/* Checks layer ids: strictly increasing, in 0..EPLB_MAX_LAYERS-1. */
static int check_layer_ids(const char *path, const int64_t *v, int32_t n,
                           eplb_error_t *err) {
  for (int32_t l = 0; l < n; l++)
    if (v[l] < 0 || v[l] >= EPLB_MAX_LAYERS || (l > 0 && v[l] <= v[l - 1]))
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: /layer_ids[%d] = %lld; layer ids are "
                            "strictly increasing, in 0..%d",
                            path, (int)l, (long long)v[l], EPLB_MAX_LAYERS - 1);
  return 0;
}

/* Reads the optional /layer_ids (integer [num_layers]) into sh->layer_ids;
 * without it the layers are 0..L-1. */
static int read_layer_ids(eplb_shard_t *sh, eplb_error_t *err) {
  int32_t L = sh->info.num_layers;
  int64_t *v = calloc((size_t)L, sizeof(*v));
  if (v == NULL || (sh->layer_ids = calloc((size_t)L, sizeof(int32_t))) == NULL)
    return free(v), eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t l = 0; l < L; l++)
    v[l] = l;
  int rc = 0;
  if (H5Lexists(sh->file, "layer_ids", H5P_DEFAULT) > 0) {
    hid_t d = H5Dopen2(sh->file, "layer_ids", H5P_DEFAULT);
    hid_t t = d >= 0 ? H5Dget_type(d) : -1, sp = d >= 0 ? H5Dget_space(d) : -1;
    hsize_t n = 0;
    if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1)
      H5Sget_simple_extent_dims(sp, &n, NULL);
    if (t < 0 || H5Tget_class(t) != H5T_INTEGER || n != (hsize_t)L ||
        H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "%s: /layer_ids must be an integer dataset "
                          "[num_layers = %d]",
                          sh->path, (int)L);
    if (sp >= 0)
      H5Sclose(sp);
    if (t >= 0)
      H5Tclose(t);
    if (d >= 0)
      H5Dclose(d);
  }
  if (rc == 0)
    rc = check_layer_ids(sh->path, v, L, err);
  for (int32_t l = 0; rc == 0 && l < L; l++)
    sh->layer_ids[l] = (int32_t)v[l];
  free(v);
  return rc;
}

/* Reads and validates everything but the weights. */
static int read_info(eplb_shard_t *sh, eplb_error_t *err) {
  int rc = read_root(sh->file, sh->path, &sh->info, err);
  for (int32_t l = 0; rc == 0 && l < sh->info.num_layers; l++)
    rc = check_layer(sh->file, sh->path, l, &sh->info, err);
  if (rc == 0)
    rc = sum_rows(sh->path, &sh->info, err);
  if (rc == 0)
    rc = read_layer_ids(sh, err);
  if (rc == 0)
    rc = eplb__sums_read(sh->file, sh->path, &sh->info, &sh->sums, err);
  return rc;
}

int eplb_shard_open(const char *path, eplb_shard_t **out, eplb_error_t *err) {
  *out = NULL;
  h5_quiet();
  /* A FIFO would block H5Fopen forever: refuse what is not a file. */
  if (access(path, R_OK) != 0)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot read the shard: %s", path,
                          strerror(errno));
  if (eplb__check_regular(path, err) != 0)
    return EPLB_EIO;
  eplb_shard_t *sh = calloc(1, sizeof(*sh));
  if (sh == NULL || (sh->path = strdup(path)) == NULL) {
    free(sh);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  hid_t fapl = eplb__vfd_fapl(0);
  sh->file = fapl >= 0 ? H5Fopen(path, H5F_ACC_RDONLY, fapl) : -1;
  if (fapl >= 0)
    H5Pclose(fapl);
  int rc = 0;
  if (sh->file < 0)
    rc = eplb_error_set(
        err, EPLB_EPARSE,
        "%s: not a readable HDF5 file (truncated or corrupted?); "
        "restore it or run the recovery",
        path);
  else
    rc = read_info(sh, err);
  if (rc) {
    eplb_shard_close(sh);
    return rc;
  }
  *out = sh;
  return 0;
}

void eplb_shard_close(eplb_shard_t *sh) {
  if (sh == NULL)
    return;
  if (sh->file >= 0)
    H5Fclose(sh->file);
  free(sh->layer_ids);
  free(sh->sums);
  free(sh->path);
  free(sh);
}

const eplb_shard_info_t *eplb_shard_info(const eplb_shard_t *sh) {
  return &sh->info;
}
const char *eplb_shard_file(const eplb_shard_t *sh) { return sh->path; }
const int32_t *eplb_shard_layer_ids(const eplb_shard_t *sh) {
  return sh->layer_ids;
}
const uint64_t *eplb_shard_checksums(const eplb_shard_t *sh) {
  return sh->sums;
}
void eplb_shard_set_check(eplb_shard_t *sh, int on) { sh->nocheck = !on; }

/* Checks the P rows of dataset d of layer l, row s at buf + s * stride,
 * against the at-rest checksums (if the shard has them). */
static int check_rows(const eplb_shard_t *sh, int32_t l, int32_t d,
                      const unsigned char *buf, size_t stride,
                      eplb_error_t *err) {
  for (int32_t s = 0; sh->sums && !sh->nocheck && s < sh->info.slots_per_rank;
       s++) {
    int rc = eplb__sums_check(sh->path, &sh->info, sh->sums, l, s, d,
                              buf + (size_t)s * stride, err);
    if (rc)
      return rc;
  }
  return 0;
}
hid_t eplb__shard_hid(const eplb_shard_t *sh) { return sh->file; }

int eplb_shard_read_ids(eplb_shard_t *sh, int32_t layer, int32_t *ids,
                        eplb_error_t *err) {
  char name[64];
  snprintf(name, sizeof(name), "/layers/%d/expert_ids", (int)layer);
  h5_quiet();
  hid_t d = H5Dopen2(sh->file, name, H5P_DEFAULT);
  if (d < 0 ||
      H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids) < 0) {
    if (d >= 0)
      H5Dclose(d);
    return eplb_error_set(err, EPLB_EHDF5,
                          "%s: cannot read %s (corrupted file?)", sh->path,
                          name);
  }
  H5Dclose(d);
  return 0;
}

/* Reads dataset `name` raw (its own file type) into tmp. */
static int read_raw(hid_t f, const char *path, const char *name, void *tmp,
                    eplb_error_t *err) {
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t t = d >= 0 ? H5Dget_type(d) : -1;
  int rc = 0;
  if (t < 0 || H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0)
    rc = eplb_error_set(err, EPLB_EHDF5,
                        "%s: cannot read %s (truncated or corrupted file?)",
                        path, name);
  if (t >= 0)
    H5Tclose(t);
  if (d >= 0)
    H5Dclose(d);
  return rc;
}

/* Reads dataset `name` raw into buf, row s at buf + s * stride + off,
 * through a strided memory selection (no staging copy). */
static int read_strided(eplb_shard_t *sh, const eplb_shard_dataset_t *ds,
                        const char *name, unsigned char *buf, size_t stride,
                        size_t off, eplb_error_t *err) {
  hsize_t t = (hsize_t)ds->type_size, P = (hsize_t)sh->info.slots_per_rank;
  hsize_t total = P * (hsize_t)stride / t, start = off / t, step = stride / t,
          count = P, block = (hsize_t)ds->row_bytes / t;
  hid_t d = H5Dopen2(sh->file, name, H5P_DEFAULT);
  hid_t ft = d >= 0 ? H5Dget_type(d) : -1;
  hid_t ms = H5Screate_simple(1, &total, NULL);
  int rc = 0;
  if (ft < 0 || ms < 0 ||
      H5Sselect_hyperslab(ms, H5S_SELECT_SET, &start, &step, &count, &block) <
          0 ||
      H5Dread(d, ft, ms, H5S_ALL, H5P_DEFAULT, buf) < 0)
    rc = eplb_error_set(err, EPLB_EHDF5,
                        "%s: cannot read %s (truncated or corrupted file?)",
                        sh->path, name);
  if (ms >= 0)
    H5Sclose(ms);
  if (ft >= 0)
    H5Tclose(ft);
  if (d >= 0)
    H5Dclose(d);
  return rc;
}

int eplb_shard_read_layer(eplb_shard_t *sh, int32_t layer, void *buf,
                          size_t stride, const size_t *offsets,
                          eplb_error_t *err) {
  const eplb_shard_info_t *in = &sh->info;
  h5_quiet();
  for (int32_t d = 0; d < in->num_datasets; d++) {
    const eplb_shard_dataset_t *ds = &in->datasets[d];
    size_t t = (size_t)ds->type_size;
    if (stride % t || offsets[d] % t ||
        offsets[d] + (size_t)ds->row_bytes > stride)
      return eplb_error_set(
          err, EPLB_EARG,
          "read_layer: dataset '%s' at offset %zu, stride %zu: "
          "both must be multiples of its %zu-byte elements",
          ds->name, offsets[d], stride, t);
    char name[128];
    snprintf(name, sizeof(name), "/layers/%d/%s", (int)layer, ds->name);
    int rc = read_strided(sh, ds, name, buf, stride, offsets[d], err);
    if (rc == 0)
      rc = check_rows(sh, layer, d, (unsigned char *)buf + offsets[d], stride,
                      err);
    if (rc)
      return rc;
  }
  return 0;
}

int eplb_shard_read_dataset(eplb_shard_t *sh, int32_t layer, int32_t d,
                            void *buf, eplb_error_t *err) {
  char name[128];
  h5_quiet();
  if (d < 0 || d >= sh->info.num_datasets)
    return eplb_error_set(err, EPLB_EARG, "%s: no dataset %d", sh->path,
                          (int)d);
  snprintf(name, sizeof(name), "/layers/%d/%s", (int)layer,
           sh->info.datasets[d].name);
  int rc = read_raw(sh->file, sh->path, name, buf, err);
  return rc ? rc
            : check_rows(sh, layer, d, buf,
                         (size_t)sh->info.datasets[d].row_bytes, err);
}

int eplb_shard_read_row(eplb_shard_t *sh, int32_t layer, int32_t d,
                        int32_t slot, void *buf, eplb_error_t *err) {
  const eplb_shard_info_t *in = &sh->info;
  h5_quiet();
  if (layer < 0 || layer >= in->num_layers || d < 0 || d >= in->num_datasets ||
      slot < 0 || slot >= in->slots_per_rank)
    return eplb_error_set(err, EPLB_EARG,
                          "%s: no layer %d / dataset %d / slot %d", sh->path,
                          (int)layer, (int)d, (int)slot);
  const eplb_shard_dataset_t *ds = &in->datasets[d];
  char name[128];
  snprintf(name, sizeof(name), "/layers/%d/%s", (int)layer, ds->name);
  hsize_t start[EPLB_SHARD_MAX_DIMS] = {0}, count[EPLB_SHARD_MAX_DIMS];
  start[0] = (hsize_t)slot;
  count[0] = 1;
  for (int i = 1; i < ds->ndims; i++)
    count[i] = (hsize_t)ds->dims[i];
  hsize_t n = (hsize_t)(ds->row_bytes / ds->type_size);
  hid_t id = H5Dopen2(sh->file, name, H5P_DEFAULT);
  hid_t t = id >= 0 ? H5Dget_type(id) : -1,
        fs = id >= 0 ? H5Dget_space(id) : -1;
  hid_t ms = H5Screate_simple(1, &n, NULL);
  int ok =
      t >= 0 && fs >= 0 && ms >= 0 &&
      H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
      (n == 0 || H5Dread(id, t, ms, fs, H5P_DEFAULT, buf) >= 0);
  if (ms >= 0)
    H5Sclose(ms);
  if (fs >= 0)
    H5Sclose(fs);
  if (t >= 0)
    H5Tclose(t);
  if (id >= 0)
    H5Dclose(id);
  if (!ok)
    return eplb_error_set(err, EPLB_EHDF5,
                          "%s: cannot read slot %d of %s (truncated or "
                          "corrupted file?)",
                          sh->path, (int)slot, name);
  return eplb__sums_check(sh->path, in, sh->nocheck ? NULL : sh->sums, layer,
                          slot, d, buf, err);
}

/* The largest dataset of a layer, in bytes. */
static size_t max_dataset_bytes(const eplb_shard_info_t *info) {
  size_t m = 0;
  for (int32_t d = 0; d < info->num_datasets; d++) {
    size_t b =
        (size_t)info->datasets[d].row_bytes * (size_t)info->slots_per_rank;
    m = b > m ? b : m;
  }
  return m ? m : 1;
}

int eplb_shard_read_rows(eplb_shard_t *sh, int32_t layer, void *buf,
                         size_t stride, eplb_error_t *err) {
  const eplb_shard_info_t *in = &sh->info;
  h5_quiet();
  unsigned char *tmp = malloc(max_dataset_bytes(in));
  if (tmp == NULL)
    return eplb_error_set(err, EPLB_ENOMEM,
                          "%s: out of memory reading layer %d", sh->path,
                          (int)layer);
  int rc = 0;
  size_t off = 0;
  for (int32_t d = 0; rc == 0 && d < in->num_datasets; d++) {
    char name[128];
    size_t rb = (size_t)in->datasets[d].row_bytes;
    snprintf(name, sizeof(name), "/layers/%d/%s", (int)layer,
             in->datasets[d].name);
    rc = read_raw(sh->file, sh->path, name, tmp, err);
    if (rc == 0)
      rc = check_rows(sh, layer, d, tmp, rb, err);
    for (int32_t s = 0; rc == 0 && s < in->slots_per_rank; s++)
      memcpy((unsigned char *)buf + (size_t)s * stride + off,
             tmp + (size_t)s * rb, rb);
    off += rb;
  }
  free(tmp);
  return rc;
}

/* ---- writing ------------------------------------------------------ */

/* The root attributes of a new shard. */
static int put_root(hid_t f, const eplb_shard_info_t *in) {
  int32_t ver = EPLB_SHARD_VERSION;
  int rc = eplb__h5_put_str(f, "eplb_format", EPLB_SHARD_FORMAT);
  if (rc == 0)
    rc = eplb__h5_put_attr(f, "eplb_version", H5T_STD_I32LE, H5T_NATIVE_INT32,
                           &ver);
  if (rc == 0)
    rc = eplb__h5_put_attr(f, "generation", H5T_STD_U64LE, H5T_NATIVE_UINT64,
                           &in->generation);
  if (rc == 0)
    rc = eplb__h5_put_attr(f, "rank", H5T_STD_I32LE, H5T_NATIVE_INT32,
                           &in->rank);
  if (rc == 0)
    rc = eplb__h5_put_attr(f, "world_size", H5T_STD_I32LE, H5T_NATIVE_INT32,
                           &in->world_size);
  if (rc == 0)
    rc = eplb__h5_put_attr(f, "num_layers", H5T_STD_I32LE, H5T_NATIVE_INT32,
                           &in->num_layers);
  if (rc == 0) {
    hid_t g = H5Gcreate2(f, "/layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc = g < 0 || H5Gclose(g) < 0 ? -1 : 0;
  }
  return rc;
}

int eplb_shard_writer_create(const char *path, const eplb_shard_info_t *info,
                             eplb_shard_writer_t **out, eplb_error_t *err) {
  *out = NULL;
  h5_quiet();
  eplb_shard_writer_t *w = calloc(1, sizeof(*w));
  if (w == NULL || (w->path = strdup(path)) == NULL) {
    free(w);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory creating %s", path);
  }
  w->info = *info;
  w->group = -1;
  size_t rows = (size_t)info->num_layers * (size_t)info->slots_per_rank;
  w->rows_left = (int64_t)rows;
  w->sums = calloc(rows * (size_t)(info->num_datasets ? info->num_datasets : 1),
                   sizeof(uint64_t));
  w->done = calloc(rows, 1);
  if (w->sums == NULL || w->done == NULL) {
    free(w->sums);
    free(w->done);
    free(w->path);
    free(w);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory creating %s", path);
  }
  for (int32_t d = 0; d < EPLB_SHARD_MAX_DATASETS; d++)
    w->dsets[d] = -1;
  /* Through eplb's driver (h5/vfd.h: a lost file can still be closed);
   * objects of 64 KiB and more (weight datasets) start on 4 KiB pages, so
   * that rows are written page-aligned (docs/shards.md). */
  hid_t fapl = eplb__vfd_fapl(1);
  w->file = fapl >= 0 ? H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : -1;
  if (fapl >= 0)
    H5Pclose(fapl);
  if (w->file < 0 || put_root(w->file, info) < 0) {
    int rc = eplb_error_set(err, EPLB_EIO,
                            "%s: cannot create the shard (directory missing, "
                            "read-only or full?)",
                            path);
    eplb_shard_writer_abort(w);
    return rc;
  }
  *out = w;
  return 0;
}

/* Writes one dataset (type from its encoding) of group g from w->tmp. */
static int put_dataset(eplb_shard_writer_t *w, hid_t g, int32_t d) {
  const eplb_shard_dataset_t *ds = &w->info.datasets[d];
  hsize_t dims[EPLB_SHARD_MAX_DIMS];
  for (int i = 0; i < ds->ndims; i++)
    dims[i] = (hsize_t)ds->dims[i];
  hid_t t = H5Tdecode(ds->type_enc);
  hid_t s = H5Screate_simple(ds->ndims, dims, NULL);
  hid_t id = t >= 0 && s >= 0 ? H5Dcreate2(g, ds->name, t, s, H5P_DEFAULT,
                                           H5P_DEFAULT, H5P_DEFAULT)
                              : -1;
  int ok =
      id >= 0 && H5Dwrite(id, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->tmp) >= 0;
  /* HDF5 keeps small raw data in its sieve buffer and writes it here: a
   * failed close is a lost write. */
  if (id >= 0 && H5Dclose(id) < 0)
    ok = 0;
  if (s >= 0)
    H5Sclose(s);
  if (t >= 0)
    H5Tclose(t);
  return ok ? 0 : -1;
}

/* Writes expert_ids[P] into group g. */
static int put_ids(hid_t g, int32_t P, const int32_t *ids) {
  hsize_t n = (hsize_t)P;
  hid_t s = H5Screate_simple(1, &n, NULL);
  hid_t d = s >= 0 ? H5Dcreate2(g, "expert_ids", H5T_STD_I32LE, s, H5P_DEFAULT,
                                H5P_DEFAULT, H5P_DEFAULT)
                   : -1;
  int ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL,
                              H5P_DEFAULT, ids) >= 0;
  if (d >= 0 && H5Dclose(d) < 0)
    ok = 0;
  if (s >= 0)
    H5Sclose(s);
  return ok ? 0 : -1;
}

/* Records the at-rest checksum of row (layer, slot, dataset d) of the
 * new shard; the last dataset of a row counts the row as written. */
static void note_row(eplb_shard_writer_t *w, int32_t layer, int32_t slot,
                     int32_t d, const void *row, const uint64_t *known) {
  const eplb_shard_info_t *in = &w->info;
  size_t r = (size_t)layer * (size_t)in->slots_per_rank + (size_t)slot;
  if (layer < 0 || layer >= in->num_layers || slot < 0 ||
      slot >= in->slots_per_rank)
    return;
  w->sums[r * (size_t)in->num_datasets + (size_t)d] =
      known ? *known
            : eplb_shard_row_checksum(row, (size_t)in->datasets[d].row_bytes);
  if (d == in->num_datasets - 1 && !w->done[r]) {
    w->done[r] = 1;
    w->rows_left--;
  }
}

int eplb_shard_writer_put_layer(eplb_shard_writer_t *w, int32_t layer,
                                const int32_t *ids, const void *buf,
                                size_t stride, eplb_error_t *err) {
  const eplb_shard_info_t *in = &w->info;
  char name[64];
  snprintf(name, sizeof(name), "/layers/%d", (int)layer);
  h5_quiet();
  if (w->tmp == NULL && (w->tmp = malloc(max_dataset_bytes(in))) == NULL)
    return eplb_error_set(err, EPLB_ENOMEM,
                          "%s: out of memory writing layer %d", w->path,
                          (int)layer);
  hid_t g = H5Gcreate2(w->file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int rc = g < 0 || put_ids(g, in->slots_per_rank, ids) < 0 ? -1 : 0;
  size_t off = 0;
  for (int32_t d = 0; rc == 0 && d < in->num_datasets; d++) {
    size_t rb = (size_t)in->datasets[d].row_bytes;
    for (int32_t s = 0; s < in->slots_per_rank; s++) {
      const unsigned char *row =
          (const unsigned char *)buf + (size_t)s * stride + off;
      memcpy(w->tmp + (size_t)s * rb, row, rb);
      note_row(w, layer, s, d, row, NULL);
    }
    rc = put_dataset(w, g, d);
    off += rb;
  }
  if (g >= 0 && H5Gclose(g) < 0)
    rc = -1;
  if (rc)
    return eplb_error_set(err, EPLB_EIO,
                          "%s: cannot write layer %d (disk full or read-only?)",
                          w->path, (int)layer);
  return 0;
}

/* Closes the layer begun by eplb_shard_writer_begin_layer, if any.
 * Returns -1 if a close failed: HDF5 writes what it buffered there, so a
 * failed close is a lost write. */
static int end_layer(eplb_shard_writer_t *w) {
  int rc = 0;
  for (int32_t d = 0; d < w->info.num_datasets; d++)
    if (w->dsets[d] >= 0 && H5Dclose(w->dsets[d]) < 0)
      rc = -1;
  for (int32_t d = 0; d < EPLB_SHARD_MAX_DATASETS; d++)
    w->dsets[d] = -1;
  if (w->group >= 0 && H5Gclose(w->group) < 0)
    rc = -1;
  w->group = -1;
  return rc;
}

/* Creates dataset d of the current layer, storage left unfilled (every
 * row is written once by put_row). */
static hid_t create_empty(eplb_shard_writer_t *w, int32_t d) {
  const eplb_shard_dataset_t *ds = &w->info.datasets[d];
  hsize_t dims[EPLB_SHARD_MAX_DIMS];
  for (int i = 0; i < ds->ndims; i++)
    dims[i] = (hsize_t)ds->dims[i];
  hid_t t = H5Tdecode(ds->type_enc);
  hid_t s = H5Screate_simple(ds->ndims, dims, NULL);
  hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
  hid_t id = -1;
  if (t >= 0 && s >= 0 && pl >= 0 &&
      H5Pset_fill_time(pl, H5D_FILL_TIME_NEVER) >= 0)
    id = H5Dcreate2(w->group, ds->name, t, s, H5P_DEFAULT, pl, H5P_DEFAULT);
  if (pl >= 0)
    H5Pclose(pl);
  if (s >= 0)
    H5Sclose(s);
  if (t >= 0)
    H5Tclose(t);
  return id;
}

int eplb_shard_writer_begin_layer(eplb_shard_writer_t *w, int32_t layer,
                                  const int32_t *ids, eplb_error_t *err) {
  char name[64];
  snprintf(name, sizeof(name), "/layers/%d", (int)layer);
  h5_quiet();
  int rc = end_layer(w) < 0;
  w->layer = layer;
  if (rc == 0)
    w->group = H5Gcreate2(w->file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  rc = rc || w->group < 0 || put_ids(w->group, w->info.slots_per_rank, ids) < 0;
  for (int32_t d = 0; rc == 0 && d < w->info.num_datasets; d++)
    rc = (w->dsets[d] = create_empty(w, d)) < 0;
  if (rc)
    return eplb_error_set(
        err, EPLB_EIO, "%s: cannot create layer %d (disk full or read-only?)",
        w->path, (int)layer);
  return 0;
}

/* Writes one row (slot) of dataset d of the current layer from row. */
static int put_one_row(eplb_shard_writer_t *w, int32_t d, int32_t slot,
                       const void *row) {
  const eplb_shard_dataset_t *ds = &w->info.datasets[d];
  hsize_t start[EPLB_SHARD_MAX_DIMS] = {0}, count[EPLB_SHARD_MAX_DIMS];
  count[0] = 1;
  start[0] = (hsize_t)slot;
  for (int i = 1; i < ds->ndims; i++)
    count[i] = (hsize_t)ds->dims[i];
  hsize_t n = (hsize_t)(ds->row_bytes / ds->type_size);
  hid_t fs = H5Dget_space(w->dsets[d]);
  hid_t ms = H5Screate_simple(1, &n, NULL);
  hid_t t = H5Dget_type(w->dsets[d]);
  int ok =
      fs >= 0 && ms >= 0 && t >= 0 &&
      H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
      H5Dwrite(w->dsets[d], t, ms, fs, H5P_DEFAULT, row) >= 0;
  if (t >= 0)
    H5Tclose(t);
  if (ms >= 0)
    H5Sclose(ms);
  if (fs >= 0)
    H5Sclose(fs);
  return ok ? 0 : -1;
}

int eplb_shard_writer_put_row(eplb_shard_writer_t *w, int32_t slot,
                              const unsigned char *const *pieces,
                              eplb_error_t *err) {
  return eplb__shard_writer_put_row_hashed(w, slot, pieces, NULL, err);
}

int eplb__shard_writer_put_row_hashed(eplb_shard_writer_t *w, int32_t slot,
                                      const unsigned char *const *pieces,
                                      const uint64_t *hashes,
                                      eplb_error_t *err) {
  h5_quiet();
  for (int32_t d = 0; d < w->info.num_datasets; d++) {
    if (w->group < 0 || put_one_row(w, d, slot, pieces[d]) < 0)
      return eplb_error_set(err, EPLB_EIO,
                            "%s: cannot write slot %d of dataset '%s' (disk "
                            "full or read-only?)",
                            w->path, (int)slot, w->info.datasets[d].name);
    note_row(w, w->layer, slot, d, pieces[d], hashes ? &hashes[d] : NULL);
  }
  return 0;
}

/* fsyncs the file at path. */
static int fsync_path(const char *path, eplb_error_t *err) {
  int fd = open(path, O_RDONLY);
  if (fd < 0 || fsync(fd) != 0) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    return eplb_error_set(err, EPLB_EIO, "%s: fsync failed: %s", path,
                          strerror(e));
  }
  close(fd);
  return 0;
}

/* A write that failed leaves HDF5 holding dirty data it cannot write, and
 * a file close that fails leaves HDF5 (1.10) with a half-destroyed file
 * that its exit handler (or MPI_Finalize, for parallel HDF5) closes again
 * and crashes on.  The file is lost anyway, so eplb's driver is told to
 * discard every later write: the close then succeeds, and the file is
 * removed by name. */
static void neutralise(hid_t file) { eplb__vfd_discard(file); }

int eplb_shard_writer_finish(eplb_shard_writer_t *w, int do_fsync,
                             eplb_error_t *err) {
  h5_quiet();
  /* The at-rest checksums, when every row was written (a shard with rows
   * left unwritten has nothing to vouch for); then everything HDF5
   * buffered is written, before the close, so that a failure is seen
   * while the file can still be closed safely. */
  int bad = end_layer(w) < 0;
  if (!bad && w->rows_left == 0 && w->info.num_datasets > 0)
    bad = eplb__sums_write(w->file, &w->info, w->sums) < 0;
  if (!bad)
    bad = H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0;
  if (bad)
    neutralise(w->file);
  if (H5Fclose(w->file) < 0)
    bad = 1;
  w->file = -1;
  int rc = 0;
  if (bad) {
    rc = eplb_error_set(err, EPLB_EIO,
                        "%s: writing the shard failed when HDF5 flushed its "
                        "buffers (disk full or read-only?); the file was "
                        "removed",
                        w->path);
    unlink(w->path);
  } else if (do_fsync) {
    rc = fsync_path(w->path, err);
    if (rc)
      unlink(w->path);
  }
  free(w->tmp);
  free(w->sums);
  free(w->done);
  free(w->path);
  free(w);
  return rc;
}

void eplb_shard_writer_abort(eplb_shard_writer_t *w) {
  if (w == NULL)
    return;
  h5_quiet();
  neutralise(w->file);
  end_layer(w);
  if (w->file >= 0)
    H5Fclose(w->file);
  unlink(w->path);
  free(w->tmp);
  free(w->sums);
  free(w->done);
  free(w->path);
  free(w);
}

hid_t eplb__shard_writer_hid(const eplb_shard_writer_t *w) { return w->file; }

void eplb__shard_writer_inject(eplb_shard_writer_t *w, int fault) {
  eplb__vfd_inject(w->file, fault);
}

int eplb_shard_writer_put_layer_ids(eplb_shard_writer_t *w, const int32_t *ids,
                                    eplb_error_t *err) {
  int32_t L = w->info.num_layers;
  int64_t *v = malloc(sizeof(*v) * (size_t)L);
  if (v == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t l = 0; l < L; l++)
    v[l] = ids[l];
  int rc = check_layer_ids(w->path, v, L, err);
  free(v);
  if (rc)
    return rc;
  h5_quiet();
  hsize_t n = (hsize_t)L;
  hid_t sp = H5Screate_simple(1, &n, NULL);
  hid_t d = sp >= 0 ? H5Dcreate2(w->file, "layer_ids", H5T_STD_I32LE, sp,
                                 H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
                    : -1;
  int ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL,
                              H5P_DEFAULT, ids) >= 0;
  if (d >= 0 && H5Dclose(d) < 0)
    ok = 0;
  if (sp >= 0)
    H5Sclose(sp);
  if (!ok)
    return eplb_error_set(err, EPLB_EIO,
                          "%s: cannot write /layer_ids (disk full?)", w->path);
  return 0;
}

/* The root attributes the format itself writes (put_root). */
static int own_attr(const char *name) {
  static const char *const own[] = {"eplb_format", "eplb_version",
                                    "generation",  "rank",
                                    "world_size",  "num_layers"};
  for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
    if (strcmp(name, own[i]) == 0)
      return 1;
  return 0;
}

/* Copies attribute `name` of object src to dst, in its own type (a
 * variable-length value is read into memory HDF5 allocates, then freed). */
static int copy_attr(hid_t src, hid_t dst, const char *name) {
  hid_t a = H5Aopen(src, name, H5P_DEFAULT);
  hid_t t = a >= 0 ? H5Aget_type(a) : -1, sp = a >= 0 ? H5Aget_space(a) : -1;
  hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  size_t sz = t >= 0 ? H5Tget_size(t) : 0;
  void *buf = n >= 0 && sz > 0 ? calloc((size_t)n + 1, sz) : NULL;
  int ok = buf != NULL && H5Aread(a, t, buf) >= 0;
  hid_t b = ok ? H5Acreate2(dst, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
  ok = ok && b >= 0 && H5Awrite(b, t, buf) >= 0;
  if (buf && (H5Tdetect_class(t, H5T_VLEN) > 0 || H5Tis_variable_str(t) > 0))
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(t, sp, H5P_DEFAULT, buf);
#else
    H5Dvlen_reclaim(t, sp, H5P_DEFAULT, buf);
#endif
  free(buf);
  if (b >= 0 && H5Aclose(b) < 0)
    ok = 0;
  if (sp >= 0)
    H5Sclose(sp);
  if (t >= 0)
    H5Tclose(t);
  if (a >= 0)
    H5Aclose(a);
  return ok ? 0 : -1;
}

/* H5Aiterate2 callback: copies the root attributes that are not the
 * format's own into the file op points to. */
static herr_t copy_root_attr(hid_t loc, const char *name, const H5A_info_t *ai,
                             void *op) {
  (void)ai;
  if (own_attr(name))
    return 0;
  return copy_attr(loc, *(hid_t *)op, name) ? -1 : 0;
}

/* H5Literate2 callback: copies the root objects other than /layers
 * (hard links only) into the file op points to. */
static herr_t copy_root_obj(hid_t loc, const char *name, const H5L_info_t *li,
                            void *op) {
  /* /layers and /eplb_checksums are the new shard's own */
  if (li->type != H5L_TYPE_HARD || strcmp(name, "layers") == 0 ||
      strcmp(name, "eplb_checksums") == 0)
    return 0;
  return H5Ocopy(loc, name, *(hid_t *)op, name, H5P_DEFAULT, H5P_DEFAULT) < 0
             ? -1
             : 0;
}

int eplb_shard_writer_copy_extras(eplb_shard_writer_t *w,
                                  const eplb_shard_t *from, eplb_error_t *err) {
  h5_quiet();
  hsize_t i = 0;
  hid_t dst = w->file;
  int rc = H5Aiterate2(from->file, H5_INDEX_NAME, H5_ITER_INC, &i,
                       copy_root_attr, &dst) < 0;
  i = 0;
  if (rc == 0)
    rc = H5Literate(from->file, H5_INDEX_NAME, H5_ITER_INC, &i, copy_root_obj,
                    &dst) < 0;
  if (rc)
    return eplb_error_set(err, EPLB_EIO,
                          "%s: cannot copy the metadata of %s (root attributes "
                          "and objects besides /layers; disk full?)",
                          w->path, from->path);
  return 0;
}

/* ---- info ---------------------------------------------------------- */

/* "[4, 16]" into buf. */
static void shape_str(const eplb_shard_dataset_t *d, char *buf, size_t cap) {
  size_t u = 0;
  buf[0] = '\0';
  for (int i = 0; i < d->ndims && u + 24 < cap; i++)
    u += (size_t)snprintf(buf + u, cap - u, "%s%lld", i ? ", " : "[",
                          (long long)d->dims[i]);
  snprintf(buf + u, cap - u, "]");
}

/* Compares the dataset lists of a and b. */
static int datasets_diff(const eplb_shard_info_t *a, const eplb_shard_info_t *b,
                         char *buf, size_t size) {
  if (a->num_datasets != b->num_datasets)
    return snprintf(buf, size,
                    "has %d weight datasets per layer where rank "
                    "%d's has %d",
                    b->num_datasets, a->rank, a->num_datasets),
           1;
  for (int32_t d = 0; d < a->num_datasets; d++) {
    const eplb_shard_dataset_t *x = &a->datasets[d], *y = &b->datasets[d];
    char sx[160], sy[160];
    shape_str(x, sx, sizeof(sx));
    shape_str(y, sy, sizeof(sy));
    if (strcmp(x->name, y->name) != 0)
      return snprintf(buf, size, "has dataset '%s' where rank %d's has '%s'",
                      y->name, a->rank, x->name),
             1;
    if (x->type_len != y->type_len ||
        memcmp(x->type_enc, y->type_enc, (size_t)x->type_len) ||
        x->ndims != y->ndims || memcmp(x->dims, y->dims, sizeof(x->dims)))
      return snprintf(buf, size,
                      "dataset '%s' is %s %s where rank %d's is %s %s", y->name,
                      y->type_name, sy, a->rank, x->type_name, sx),
             1;
  }
  return 0;
}

int eplb_shard_info_diff(const eplb_shard_info_t *a, const eplb_shard_info_t *b,
                         char *buf, size_t size) {
  buf[0] = '\0';
  if (a->version != b->version)
    return snprintf(buf, size, "has format version %d where rank %d's has %d",
                    b->version, a->rank, a->version),
           1;
  if (a->generation != b->generation)
    return snprintf(buf, size,
                    "has generation %" PRIu64 " where rank %d's has %" PRIu64
                    " (an interrupted migration? run the recovery)",
                    b->generation, a->rank, a->generation),
           1;
  if (a->world_size != b->world_size)
    return snprintf(buf, size, "says world_size %d where rank %d's says %d",
                    b->world_size, a->rank, a->world_size),
           1;
  if (a->num_layers != b->num_layers)
    return snprintf(buf, size, "has %d layers where rank %d's has %d",
                    b->num_layers, a->rank, a->num_layers),
           1;
  if (a->slots_per_rank != b->slots_per_rank)
    return snprintf(buf, size, "has %d slots per layer where rank %d's has %d",
                    b->slots_per_rank, a->rank, a->slots_per_rank),
           1;
  return datasets_diff(a, b, buf, size);
}

/* Fills dataset ds of a new info: name, type t (described), shape
 * [P, rowdims...]; checks the name and the ranges. */
static int make_dataset(eplb_shard_dataset_t *ds, int32_t P, const char *name,
                        hid_t t, int32_t nd, const int64_t *rowdims,
                        eplb_error_t *err) {
  if (strlen(name) == 0 || strlen(name) >= EPLB_SHARD_NAME_MAX ||
      strchr(name, '/') || strcmp(name, "expert_ids") == 0 || nd < 0 ||
      nd >= EPLB_SHARD_MAX_DIMS)
    return eplb_error_set(
        err, EPLB_EARG,
        "dataset '%s': names are 1..%d bytes without '/', not "
        "expert_ids; at most %d dimensions per row",
        name, EPLB_SHARD_NAME_MAX - 1, EPLB_SHARD_MAX_DIMS - 1);
  snprintf(ds->name, sizeof(ds->name), "%s", name);
  if (t < 0)
    return eplb_error_set(err, EPLB_EARG, "dataset '%s': unknown type", name);
  int rc = describe_type(t, ds, name, err);
  if (rc)
    return rc;
  ds->ndims = nd + 1;
  ds->dims[0] = P;
  ds->row_bytes = ds->type_size;
  for (int32_t i = 0; i < nd; i++) {
    if (rowdims[i] < 1 || ds->row_bytes > EPLB_SHARD_MAX_ROW_BYTES / rowdims[i])
      return eplb_error_set(
          err, EPLB_EARG,
          "dataset '%s': dimensions must be >= 1 and a row at "
          "most %lld bytes",
          name, (long long)EPLB_SHARD_MAX_ROW_BYTES);
    ds->dims[i + 1] = rowdims[i];
    ds->row_bytes *= rowdims[i];
  }
  return 0;
}

int eplb__shard_info_from_types(eplb_shard_info_t *info, int32_t world_size,
                                int32_t num_layers, int32_t slots_per_rank,
                                uint64_t generation, int32_t num_datasets,
                                const char *const *names, const hid_t *types,
                                const int32_t *nd,
                                const int64_t (*rowdims)[EPLB_SHARD_MAX_DIMS],
                                eplb_error_t *err) {
  memset(info, 0, sizeof(*info));
  h5_quiet();
  if (world_size < 1 || world_size > 65536 || num_layers < 1 ||
      num_layers > EPLB_MAX_LAYERS || slots_per_rank < 1 ||
      slots_per_rank > EPLB_SHARD_MAX_SLOTS || num_datasets < 0 ||
      num_datasets > EPLB_SHARD_MAX_DATASETS)
    return eplb_error_set(
        err, EPLB_EARG,
        "shard shape out of range: ranks 1..65536, layers 1..%d, "
        "slots per rank 1..%d, datasets 0..%d",
        EPLB_MAX_LAYERS, EPLB_SHARD_MAX_SLOTS, EPLB_SHARD_MAX_DATASETS);
  info->version = EPLB_SHARD_VERSION;
  info->world_size = world_size;
  info->num_layers = num_layers;
  info->slots_per_rank = slots_per_rank;
  info->generation = generation;
  info->num_datasets = num_datasets;
  for (int32_t d = 0; d < num_datasets; d++) {
    for (int32_t e = 0; e < d; e++)
      if (strcmp(names[e], names[d]) == 0)
        return eplb_error_set(err, EPLB_EARG, "dataset '%s' given twice",
                              names[d]);
    int rc = make_dataset(&info->datasets[d], slots_per_rank, names[d],
                          types[d], nd[d], rowdims[d], err);
    if (rc)
      return rc;
  }
  /* Sorted by name, as the reader lists them (H5_INDEX_NAME order). */
  for (int32_t i = 1; i < num_datasets; i++)
    for (int32_t j = i; j > 0 && strcmp(info->datasets[j - 1].name,
                                        info->datasets[j].name) > 0;
         j--) {
      eplb_shard_dataset_t x = info->datasets[j];
      info->datasets[j] = info->datasets[j - 1];
      info->datasets[j - 1] = x;
    }
  return sum_rows("shard", info, err);
}

int eplb_shard_info_make(eplb_shard_info_t *info, int32_t world_size,
                         int32_t num_layers, int32_t slots_per_rank,
                         uint64_t generation, int32_t num_datasets,
                         const char *const *names, const eplb_dtype_t *types,
                         const int32_t *nd,
                         const int64_t (*rowdims)[EPLB_SHARD_MAX_DIMS],
                         eplb_error_t *err) {
  hid_t t[EPLB_SHARD_MAX_DATASETS];
  int32_t n = num_datasets < 0                         ? 0
              : num_datasets > EPLB_SHARD_MAX_DATASETS ? EPLB_SHARD_MAX_DATASETS
                                                       : num_datasets;
  h5_quiet();
  for (int32_t d = 0; d < n; d++)
    t[d] = dtype_h5(types[d]);
  int rc = eplb__shard_info_from_types(info, world_size, num_layers,
                                       slots_per_rank, generation, num_datasets,
                                       names, t, nd, rowdims, err);
  for (int32_t d = 0; d < n; d++)
    if (t[d] >= 0)
      H5Tclose(t[d]);
  return rc;
}

/* ---- deterministic content ----------------------------------------- */

void eplb_shard_fill_row(const eplb_shard_info_t *info, int32_t layer,
                         int32_t expert, unsigned char *row) {
  size_t off = 0;
  for (int32_t d = 0; d < info->num_datasets; d++) {
    size_t rb = (size_t)info->datasets[d].row_bytes;
    uint64_t seed =
        eplb__mix64(((uint64_t)(uint32_t)layer << 40) ^
                    ((uint64_t)(uint32_t)expert << 8) ^ (uint64_t)d);
    for (size_t i = 0; i < rb; i += 8) {
      uint64_t v = eplb__mix64(seed + i);
      size_t n = rb - i < 8 ? rb - i : 8;
      for (size_t k = 0; k < n; k++)
        row[off + i + k] = (unsigned char)(v >> (8 * k));
    }
    off += rb;
  }
}
