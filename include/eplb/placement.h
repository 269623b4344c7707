/* eplb/placement.h - the one placement type: which expert sits in which slot.
 *
 * A placement is DeepSeek's phy2log: for each layer, S physical slots, slot s
 * belonging to GPU (rank) s / (S / G).  Every writer (expert map JSON,
 * TensorRT-LLM YAML, ...) consumes it and every map reader produces it.
 */
#ifndef EPLB_PLACEMENT_H
#define EPLB_PLACEMENT_H

#include <stdint.h>

#include "eplb/error.h"
#include "eplb/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Ranges of a placement's shape (and of the options that set it). */
#define EPLB_MIN_SLOTS 1
#define EPLB_MAX_SLOTS 1048576 /* 2^20 slots per layer */
#define EPLB_MIN_GPUS 1
#define EPLB_MAX_GPUS 65536

typedef struct eplb_placement_s {
  int32_t num_layers;  /* L */
  int32_t num_experts; /* E: logical experts per layer */
  int32_t num_slots;   /* S: physical slots per layer, S % G == 0 */
  int32_t num_gpus;    /* G: ranks/devices */
  int32_t *layer_ids;  /* [L] layer index as the statistics named it */
  int32_t *phy2log;    /* [L * S]: phy2log[l * S + s] = logical expert */
} eplb_placement_t;

/* Allocates an L x S placement (slots set to -1, layer ids 0..L-1).
 * Checks S % G == 0 and the ranges.  On failure *p is empty. */
int eplb_placement_init(eplb_placement_t *p, int32_t num_layers,
                        int32_t num_experts, int32_t num_slots,
                        int32_t num_gpus, eplb_error_t *err);
/* NULL-safe, idempotent. */
void eplb_placement_cleanup(eplb_placement_t *p);
int eplb_placement_copy(eplb_placement_t *dst, const eplb_placement_t *src,
                        eplb_error_t *err);

/* Checks every slot holds an expert in 0..E-1 and every expert has at least
 * one slot in every layer; with no_duplicates, also that no GPU holds one
 * expert twice (vllm-ascend rejects that).  `source` names the file. */
int eplb_placement_check(const eplb_placement_t *p, int no_duplicates,
                         const char *source, eplb_error_t *err);

/* The contiguous placement a model starts with: with R = S - E redundant
 * slots, slot s holds expert s for s < E, then experts 0.. again. */
int eplb_placement_contiguous(eplb_placement_t *p, eplb_error_t *err);

/* Multi-token-prediction (MTP) layers: DeepSeek-V3/R1 serve with one more
 * MoE layer after the last (model layer 61) that statistics rarely count,
 * and every consumer wants a row for it.  How such a layer is placed: */
typedef enum {
  EPLB_MTP_LAST = 0,   /* as the last MoE layer's plan */
  EPLB_MTP_TRIVIAL = 1 /* contiguous: expert e on GPU e / (slots per GPU) */
} eplb_mtp_rule_t;
#define EPLB_MAX_MTP_LAYERS 4

/* Appends n layers (0..EPLB_MAX_MTP_LAYERS) after the last, with ids last
 * id + 1, + 2, ..., placed by `rule`.  On failure *p is unchanged. */
int eplb_placement_append_layers(eplb_placement_t *p, int32_t n,
                                 eplb_mtp_rule_t rule, eplb_error_t *err);

/* Forgets the last n layers (0 <= n < layers). */
int eplb_placement_drop_last_layers(eplb_placement_t *p, int32_t n,
                                    eplb_error_t *err);

/* How many (layer, GPU) pairs hold one expert twice (or more); the first
 * one's layer (position), GPU and expert into *layer, *gpu, *expert (each
 * may be NULL, untouched when none).  -1 when out of memory. */
int64_t eplb_placement_duplicates(const eplb_placement_t *p, int32_t *layer,
                                  int32_t *gpu, int32_t *expert);

/* eplb_placement_init and eplb_placement_contiguous in one: *p (empty on
 * entry) becomes the contiguous L x S placement on G GPUs.  On failure *p
 * is empty. */
int eplb_placement_init_contiguous(eplb_placement_t *p, int32_t num_layers,
                                   int32_t num_experts, int32_t num_slots,
                                   int32_t num_gpus, eplb_error_t *err);

/* Checks that statistics s count the layers (same ids, same order) and the
 * experts of placement p, and that their counts are valid
 * (eplb_stats_check); `what` names the statistics in the message ("the
 * round", "observed counts"). */
int eplb_placement_check_stats(const eplb_placement_t *p, const eplb_stats_t *s,
                               const char *what, eplb_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_PLACEMENT_H */
