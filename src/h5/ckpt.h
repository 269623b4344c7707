/* h5/ckpt.h - what the checkpoint import, export and verification share
 * (internal: not installed): the catalogue of a Hugging Face checkpoint's
 * expert tensors (ckpt_scan.c), the names of tensors (patterns), the
 * /checkpoint metadata of a shard (ckpt_meta.c) and file helpers
 * (ckpt_io.c).
 *
 * A checkpoint names the tensor of role `name` of expert e in layer l by a
 * pattern such as "model.layers.{layer}.mlp.experts.{expert}.{name}"; the
 * suffix {name} ("gate_proj.weight", "w1.weight",
 * "down_proj.weight_scale_inv") becomes a shard dataset named after its
 * role ("gate_proj", "down_proj_scale_inv"). */
#ifndef EPLB_H5_CKPT_H
#define EPLB_H5_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/checkpoint.h"
#include "eplb/shard.h"
#include "formats/safetensors.h"
#include "h5/ckpt_pattern.h"
#include "util/strmap.h"

/* Where one expert tensor's bytes are. */
typedef struct {
  int32_t file; /* index into eplb__ckpt_t.files */
  uint64_t offset, nbytes;
} eplb__ckpt_ref_t;

/* One role: the same suffix, dtype and shape in every expert. */
typedef struct {
  char suffix[EPLB_CKPT_SUFFIX_MAX]; /* "gate_proj.weight" */
  char name[EPLB_SHARD_NAME_MAX];    /* the dataset: "gate_proj" */
  int32_t dtype;                     /* eplb__st_dtype_t */
  int32_t ndims;
  int64_t shape[EPLB_ST_MAX_DIMS];
  uint64_t nbytes;
} eplb__ckpt_role_t;

/* One checkpoint file, open for pread. */
typedef struct {
  char *path;
  int fd;
} eplb__ckpt_file_t;

/* The expert tensors of a checkpoint.  roles are sorted by dataset name
 * (the order of a shard's datasets), so role r is dataset r. */
typedef struct {
  char family[32];
  char pattern[EPLB_CKPT_PATTERN_MAX];
  int32_t num_files;
  eplb__ckpt_file_t *files;
  int32_t num_layers, num_experts, num_roles;
  int32_t *layer_ids; /* [num_layers], increasing */
  eplb__ckpt_role_t roles[EPLB_SHARD_MAX_DATASETS];
  eplb__ckpt_ref_t *refs; /* [layer][expert][role] */
  int64_t num_tensors;    /* every tensor of the checkpoint */
  /* what was left out */
  char dense[EPLB_CKPT_LIST_MAX];   /* "0-2": layers with an MLP, no experts */
  char skipped[EPLB_CKPT_LIST_MAX]; /* MoE layers outside the layer range */
  int64_t shared_tensors, other_tensors;
  int32_t shared_layers;
} eplb__ckpt_t;

/* ---- the files and their headers (ckpt_files.c) -------------------- */

typedef struct {
  eplb__st_header_t *heads; /* [num_files] */
  eplb__strmap_t index;     /* tensor -> file, with an index */
  int has_index;
} eplb__ckpt_files_t;

/* Finds the files of checkpoint directory `dir` (its index's, or every
 * *.safetensors), opens them into c->files and parses their headers into
 * fs; checks the index against the headers (or, without one, that no
 * name is in two files). */
int eplb__ckpt_files_read(const char *dir, eplb__ckpt_t *c,
                          eplb__ckpt_files_t *fs, eplb_error_t *err);
/* 1 if tensor k of file i belongs to the checkpoint (the index's copy). */
int eplb__ckpt_files_taken(const eplb__ckpt_files_t *fs, int32_t i, int32_t k);
/* NULL-safe, idempotent (the files stay open in c). */
void eplb__ckpt_files_free(eplb__ckpt_files_t *fs, int32_t num_files);

/* ---- the catalogue (ckpt_scan.c) ------------------------------------ */

/* Reads the checkpoint directory `dir`: model.safetensors.index.json and
 * the files it names, or every *.safetensors file; every header is parsed
 * (formats/safetensors.c) and the files stay open.  pattern NULL: the
 * built-in families.  Layer ids outside layer_min..layer_max (-1: no
 * bound) are left out.  Every expert tensor of every kept layer must be
 * there once, with its role's dtype and shape. */
int eplb__ckpt_scan(const char *dir, const char *pattern, int32_t layer_min,
                    int32_t layer_max, eplb__ckpt_t *out, eplb_error_t *err);
/* NULL-safe, idempotent. */
void eplb__ckpt_free(eplb__ckpt_t *c);

/* ---- the /checkpoint group of a shard (ckpt_meta.c) ---------------- */

/* What a shard says of the checkpoint it came from. */
typedef struct {
  int present; /* 0: no /checkpoint: defaults (docs/shards.md) */
  char family[32];
  char pattern[EPLB_CKPT_PATTERN_MAX];
  int32_t num_experts;                                        /* 0 if unknown */
  char suffix[EPLB_SHARD_MAX_DATASETS][EPLB_CKPT_SUFFIX_MAX]; /* info order */
} eplb__ckpt_meta_t;

/* Writes /checkpoint (family, pattern, num_experts, source, and
 * /checkpoint/tensors: dataset name -> suffix) into a new shard. */
int eplb__ckpt_meta_write(eplb_shard_writer_t *w, const eplb__ckpt_t *c,
                          const char *source, eplb_error_t *err);
/* Reads /checkpoint of shard sh; without one, the defaults: the
 * DeepSeek/Qwen pattern and each dataset's own name as its suffix. */
int eplb__ckpt_meta_read(eplb_shard_t *sh, eplb__ckpt_meta_t *m,
                         eplb_error_t *err);

/* Opens shard r of dir: it must say rank r and, if ref, agree with ref
 * (rank 0's info).  Messages start with "rank r". */
int eplb__ckpt_shard_open(const char *dir, int32_t r,
                          const eplb_shard_info_t *ref, eplb_shard_t **out,
                          eplb_error_t *err);
/* The safetensors dtype of dataset ds of shard `path` (EPLB_EPARSE if its
 * HDF5 type has none: big-endian, padded, ...). */
int eplb__ckpt_dataset_st(const char *path, const eplb_shard_dataset_t *ds,
                          int32_t *st, eplb_error_t *err);

/* ---- file helpers (ckpt_io.c) -------------------------------------- */

/* pread / pwrite of exactly n bytes at off; EPLB_EIO naming path. */
int eplb__ckpt_pread(int fd, const char *path, void *buf, size_t n,
                     uint64_t off, eplb_error_t *err);
int eplb__ckpt_pwrite(int fd, const char *path, const void *buf, size_t n,
                      uint64_t off, eplb_error_t *err);
/* Makes directory `dir` if it is missing (one level). */
int eplb__ckpt_mkdir(const char *dir, const char *what, eplb_error_t *err);
/* "<path>.tmp.<pid>" into buf. */
int eplb__ckpt_tmp_path(const char *path, char *buf, size_t size,
                        eplb_error_t *err);
/* Closes fd after fsync and renames tmp over path (then fsyncs the
 * directory); on failure removes tmp.  fd is closed either way. */
int eplb__ckpt_commit_file(int fd, const char *tmp, const char *path,
                           eplb_error_t *err);
/* Raises the soft limit of open files to the hard one; returns the limit. */
long eplb__ckpt_raise_nofile(void);
/* Seconds on a monotonic clock (the results' timings). */
double eplb__ckpt_now(void);

#endif /* EPLB_H5_CKPT_H */
