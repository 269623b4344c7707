/* eplb/metrics.h - how unbalanced a placement is, in the metrics people
 * compare (see FORMATS.md / docs/metrics.md).
 *
 * A GPU's load is the sum over its slots of (expert load / replicas of that
 * expert): tokens of a replicated expert are assumed split evenly over its
 * replicas, as DeepSeek, SGLang, vLLM and TensorRT-LLM assume.
 */
#ifndef EPLB_METRICS_H
#define EPLB_METRICS_H

#include <stdint.h>

#include "eplb/error.h"
#include "eplb/placement.h"
#include "eplb/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills gpu_load[G] for one layer.  Returns EPLB_EMAP if a slot holds an
 * expert outside 0..E-1 (an expert with no slot simply carries no load). */
int eplb_gpu_loads(const double *load, int32_t num_experts,
                   const int32_t *phy2log, int32_t num_slots, int32_t num_gpus,
                   double *gpu_load, eplb_error_t *err);

/* Imbalance ratio of one layer: max / mean - 1 over GPUs (TensorRT-LLM's
 * metric); 0 for an all-zero layer.  Returns a negative value if the map is
 * invalid. */
double eplb_layer_imbalance(const double *load, int32_t num_experts,
                            const int32_t *phy2log, int32_t num_slots,
                            int32_t num_gpus);

/* A lower bound on the imbalance any placement of S slots on G GPUs (no GPU
 * holding an expert twice) can reach on this layer.  m is the smallest
 * possible largest load per replica (replicating the hottest first, at most
 * one replica per GPU); the GPU holding that replica also fills its other
 * S/G - 1 slots with distinct experts, so it carries at least m plus the
 * S/G - 1 smallest loads (each divided by the most replicas an expert can
 * have).  floor = max(0, that * G / total - 1); 0 for an all-zero layer.
 * Without the second term this is the "hottest expert" floor
 * max(0, m * G / total - 1), which no placement with S = E reaches when a
 * GPU holds more than one slot. */
double eplb_layer_floor(const double *load, int32_t num_experts,
                        int32_t num_slots, int32_t num_gpus);

typedef struct eplb_balance_s {
  double imbalance;     /* mean over layers of max/mean - 1 */
  double balancedness;  /* mean over layers of mean/max (DeepSeek, SGLang) */
  double floor;         /* mean over layers of eplb_layer_floor */
  double max_imbalance; /* worst layer */
  int32_t worst_layer;  /* its index in the placement */
} eplb_balance_t;

/* Fraction of the tokens of a layer served away from their expert group's
 * home node, the node that serves most of the group's load (tokens of a
 * replicated expert split evenly over its replicas).  GPUs are grouped into
 * num_nodes nodes of G / num_nodes, experts into num_groups groups of
 * E / num_groups.  0 for an idle layer; negative for bad arguments. */
double eplb_layer_cross_node(const double *load, int32_t num_experts,
                             const int32_t *phy2log, int32_t num_slots,
                             int32_t num_gpus, int32_t num_nodes,
                             int32_t num_groups);

/* Summarises a placement against statistics of the same shape (L, E). */
int eplb_balance(const eplb_stats_t *stats, const eplb_placement_t *p,
                 eplb_balance_t *out, eplb_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_METRICS_H */
