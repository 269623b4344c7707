/* eplb/stats.h - the one histogram type: tokens routed per layer per expert.
 *
 * Every statistics reader (MindSpeed-RL, SGLang, TensorRT-LLM, MindIE ...)
 * produces an eplb_stats_t; the planner, the reducer and the report consume
 * it.  Loads are doubles so that integer counts (exact up to 2^53, far
 * beyond any real window) and smoothed loads share one type; every reader
 * rejects negative, non-finite and over-2^53 values so that a sum across
 * files or ranks stays exact.
 */
#ifndef EPLB_STATS_H
#define EPLB_STATS_H

#include <stdint.h>

#include "eplb/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest count a reader accepts, and largest sum eplb_stats_add allows:
 * 2^53, the largest integer a double holds exactly. */
#define EPLB_MAX_COUNT 9007199254740992.0
/* Ranges of the histogram's shape. */
#define EPLB_MAX_LAYERS 4096
#define EPLB_MAX_EXPERTS 65536

typedef struct eplb_stats_s {
  int32_t num_layers;  /* L, 1..EPLB_MAX_LAYERS */
  int32_t num_experts; /* E, 1..EPLB_MAX_EXPERTS */
  int32_t *layer_ids;  /* [L] layer index as the source named it
                          (SGLang: hidden-layer row; MindSpeed: its key) */
  double *load;        /* [L * E], row-major: load[l * E + e] */
  int dense_rows;      /* 1 when the source pads dense layers with all-zero
                          rows (SGLang): callers drop them, see
                          eplb_stats_drop_zero_layers() */
} eplb_stats_t;

/* Allocates an all-zero L x E histogram with layer_ids 0..L-1.
 * On failure *s is left empty (safe to cleanup). */
int eplb_stats_init(eplb_stats_t *s, int32_t num_layers, int32_t num_experts,
                    eplb_error_t *err);

/* Frees what eplb_stats_init or a reader allocated; NULL-safe and
 * idempotent (leaves *s zeroed). */
void eplb_stats_cleanup(eplb_stats_t *s);

/* Deep copy.  *dst must be empty or cleaned up. */
int eplb_stats_copy(eplb_stats_t *dst, const eplb_stats_t *src,
                    eplb_error_t *err);

/* acc += other.  Shapes (L, E, layer ids) must agree: the error names both
 * sources (acc_name, other_name).  A sum above EPLB_MAX_COUNT is EPLB_ECOUNT.
 */
int eplb_stats_add(eplb_stats_t *acc, const eplb_stats_t *other,
                   const char *acc_name, const char *other_name,
                   eplb_error_t *err);

/* Checks every load is finite, >= 0 and <= EPLB_MAX_COUNT; the error names
 * `source`, the layer and the expert. */
int eplb_stats_check(const eplb_stats_t *s, const char *source,
                     eplb_error_t *err);

/* Removes the layers whose loads are all zero (dense layers in SGLang's
 * dumps).  *dropped (may be NULL) receives how many went.  Removing every
 * layer is EPLB_ESHAPE: there is nothing to plan. */
int eplb_stats_drop_zero_layers(eplb_stats_t *s, int32_t *dropped,
                                eplb_error_t *err);

/* The ids of the layers whose loads are all zero (before
 * eplb_stats_drop_zero_layers drops them, for a message that names them):
 * *ids malloc'd (caller frees; NULL when none), *n their number. */
int eplb_stats_zero_layer_ids(const eplb_stats_t *s, int32_t **ids, int32_t *n,
                              eplb_error_t *err);

/* Removes from each of the `num` histograms s[] (one shape, one set of
 * layer ids) the layers whose counts are zero in every one of them (dense
 * layers in SGLang's dumps); a layer with traffic in any of them stays in
 * all.  *ids (malloc'd, NULL when none; the caller frees) and
 * *num_dropped: the ids removed.  Removing every layer is EPLB_ESHAPE. */
int eplb_stats_drop_idle_layers(eplb_stats_t *s, int32_t num, int32_t **ids,
                                int32_t *num_dropped, eplb_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_STATS_H */
