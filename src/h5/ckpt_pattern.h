/* h5/ckpt_pattern.h - tensor-name patterns of checkpoints and the role
 * (dataset) names of their suffixes (internal: not installed).  Pure
 * string work, no HDF5: the scan, the export and the verification share
 * it. */
#ifndef EPLB_H5_CKPT_PATTERN_H
#define EPLB_H5_CKPT_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/checkpoint.h"
#include "eplb/error.h"

#define EPLB_CKPT_SUFFIX_MAX 128 /* a suffix ("gate_proj.weight"), with NUL */

/* A parsed pattern: lit[0] N lit[1] M lit[2] {name}, where N, M are the
 * layer and the expert (layer_first) or the other way round.  Points into
 * the pattern text, which must outlive it. */
typedef struct {
  const char *lit[3];
  size_t len[3];
  int layer_first;
} eplb__pattern_t;

/* Parses pattern p ({layer} and {expert} once each, each followed by
 * text, {name} once at the end).  0 or EPLB_EARG naming the rule. */
int eplb__pattern_parse(const char *p, eplb__pattern_t *out, eplb_error_t *err);

/* 1 and the layer id (0..EPLB_MAX_LAYERS-1), the expert
 * (0..EPLB_MAX_EXPERTS-1) and the suffix (non-empty, points into name) if
 * `name` matches; else 0. */
int eplb__pattern_match(const eplb__pattern_t *pt, const char *name,
                        int32_t *layer, int32_t *expert, const char **suffix);

/* The name of (layer id, expert, suffix) into buf; -1 if it does not fit. */
int eplb__pattern_name(const eplb__pattern_t *pt, int32_t layer, int32_t expert,
                       const char *suffix, char *buf, size_t size);

/* The dataset a suffix becomes: "gate_proj.weight" -> "gate_proj",
 * "down_proj.weight_scale_inv" -> "down_proj_scale_inv", "x.input_scale"
 * -> "x_input_scale", other dots and slashes -> '_'; with `mixtral`, w1,
 * w2, w3 are named gate_proj, down_proj, up_proj.  -1 if it does not fit
 * in size bytes or would be "expert_ids". */
int eplb__role_name(const char *suffix, int mixtral, char *buf, size_t size);

#endif /* EPLB_H5_CKPT_PATTERN_H */
