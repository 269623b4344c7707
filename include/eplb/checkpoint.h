/* eplb/checkpoint.h - Hugging Face safetensors checkpoints in and out of the
 * per-rank HDF5 shards (eplb-shard import / export / verify --checkpoint;
 * docs/shards.md).
 *
 * import reads a checkpoint directory (model.safetensors.index.json and
 * the files it names, or *.safetensors), finds the expert tensors by their
 * names (DeepSeek-V3/R1 and Qwen2/3-MoE, Mixtral, or a pattern), and
 * writes one shard per rank holding, for every MoE layer and slot, the
 * weights of the expert a map puts there, each role (gate_proj, up_proj,
 * down_proj, the FP8 scales, ...) a dataset, every dtype byte for byte.
 * export writes them back as safetensors: one file per rank (the slots a
 * serving engine loads), or a checkpoint of the logical experts again.
 * verify proves every slot holds the checkpoint's bytes of its expert.
 * Memory stays bounded: tensors stream one expert at a time.
 *
 * Needs HDF5 (libeplb), not MPI. */
#ifndef EPLB_CHECKPOINT_H
#define EPLB_CHECKPOINT_H

#include <stdint.h>

#include "eplb/error.h"
#include "eplb/placement.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EPLB_CKPT_MAX_RANKS 4096
#define EPLB_CKPT_PATTERN_MAX 256 /* a pattern, with its NUL */
#define EPLB_CKPT_LIST_MAX 256    /* the layer lists of a result */
#define EPLB_CKPT_MIN_FILE_MB 1
#define EPLB_CKPT_MAX_FILE_MB (1L << 20) /* 1 TiB */
#define EPLB_CKPT_DEFAULT_FILE_MB 5000   /* Hugging Face's 5 GB */

/* The built-in families' patterns. */
#define EPLB_CKPT_PATTERN_DEEPSEEK                                             \
  "model.layers.{layer}.mlp.experts.{expert}.{name}"
#define EPLB_CKPT_PATTERN_MIXTRAL                                              \
  "model.layers.{layer}.block_sparse_moe.experts.{expert}.{name}"

typedef struct {
  const char *checkpoint; /* the checkpoint directory */
  const char *dir;        /* the shard directory (made if missing) */
  int32_t ranks;          /* 1..EPLB_CKPT_MAX_RANKS */
  /* Without a placement: the contiguous one with slots_per_rank slots
   * (1..EPLB_SHARD_MAX_SLOTS, ranks x slots >= the experts).  With one:
   * its layers are the imported MoE layers in order, its num_gpus is
   * `ranks` (or 1: regrouped), slots_per_rank is ignored. */
  int32_t slots_per_rank;
  const eplb_placement_t *placement;
  const char *placement_name; /* for messages ("--map FILE") */
  /* NULL: DeepSeek/Qwen, then Mixtral; else a pattern with {layer},
   * {expert} and, at its end, {name}. */
  const char *pattern;
  int32_t layer_min, layer_max; /* model layer ids kept; -1: no bound */
} eplb_ckpt_import_opts_t;

/* ranks 0, slots_per_rank 0, no placement, no pattern, every layer. */
void eplb_ckpt_import_opts_default(eplb_ckpt_import_opts_t *o);

typedef struct {
  char family[32]; /* "deepseek/qwen", "mixtral" or "pattern" */
  char pattern[EPLB_CKPT_PATTERN_MAX];
  int32_t num_files, num_layers, num_experts, num_datasets, slots_per_rank;
  int32_t first_layer_id, last_layer_id;
  int64_t bytes_per_expert;
  uint64_t bytes_read, bytes_written; /* weights, not HDF5 overhead */
  /* Left out: layers with an MLP and no experts ("0-2"), MoE layers
   * outside layer_min..layer_max, shared-expert tensors (and the layers
   * holding them), every other tensor (attention, norms, routers, ...). */
  char dense_layers[EPLB_CKPT_LIST_MAX];
  char skipped_layers[EPLB_CKPT_LIST_MAX];
  int64_t shared_tensors, other_tensors;
  int32_t shared_layers;
  double seconds;
} eplb_ckpt_import_result_t;

/* Imports; every shard is written to a temporary file and fsynced, and
 * only when all are written are they renamed into place: a failure
 * leaves the directory as it was.  Refuses a directory holding a
 * migration journal or shards of a larger job. */
int eplb_ckpt_import(const eplb_ckpt_import_opts_t *o,
                     eplb_ckpt_import_result_t *res, eplb_error_t *err);

typedef struct {
  const char *dir; /* the shards */
  const char *out; /* the output directory (made if missing) */
  /* 0: rank_<r, 5 digits>.safetensors per rank: each of its slots'
   * tensors named with the slot (rank x slots_per_rank + s) in place of
   * the expert, and __metadata__ saying which logical expert each slot
   * holds.  1: model-<k>-of-<n>.safetensors + model.safetensors.index.json
   * with one copy of every logical expert, named as in the checkpoint. */
  int logical;
  int64_t max_file_mb; /* logical: EPLB_CKPT_MIN/MAX_FILE_MB per file */
} eplb_ckpt_export_opts_t;

/* Not logical, EPLB_CKPT_DEFAULT_FILE_MB. */
void eplb_ckpt_export_opts_default(eplb_ckpt_export_opts_t *o);

typedef struct {
  int32_t files;
  int64_t tensors;
  uint64_t bytes; /* tensor bytes written */
  double seconds;
} eplb_ckpt_export_result_t;

/* Exports; every file is written atomically (temporary file, fsync,
 * rename), the index last. */
int eplb_ckpt_export(const eplb_ckpt_export_opts_t *o,
                     eplb_ckpt_export_result_t *res, eplb_error_t *err);

typedef struct {
  int32_t ranks, num_layers, slots_per_rank, num_experts;
  int64_t tensors; /* slot tensors compared */
  uint64_t bytes;
  double seconds;
} eplb_ckpt_verify_result_t;

/* Checks that the shards of `dir` agree (rank, world size, layers,
 * datasets), that their expert ids place every expert, and that every
 * slot's bytes equal the checkpoint's tensor of the expert it holds (the
 * tensor named by the shards' /checkpoint pattern, layer ids and
 * suffixes).  EPLB_ECHECKSUM names the rank, layer, slot, dataset and
 * tensor of the first difference. */
int eplb_ckpt_verify(const char *dir, const char *checkpoint,
                     eplb_ckpt_verify_result_t *res, eplb_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_CHECKPOINT_H */
