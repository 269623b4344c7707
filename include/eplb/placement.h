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

typedef struct eplb_placement_s {
  int32_t num_layers;  /* L */
  int32_t num_experts; /* E: logical experts per layer */
  int32_t num_slots;   /* S: physical slots per layer, S % G == 0 */
  int32_t num_gpus;    /* G: ranks/devices */
  int32_t *layer_ids;  /* [L] layer index as the statistics named it */
  int32_t *phy2log;    /* [L * S]: phy2log[l * S + s] = logical expert */
} eplb_placement_t;

typedef enum {
  EPLB_MAP_AUTO = 0,
  EPLB_MAP_EXPERT_MAP, /* MindSpeed-RL / vllm-ascend expert map JSON */
  EPLB_MAP_TRTLLM_YAML, /* TensorRT-LLM moe_load_balancer.yaml */
  EPLB_MAP_SGLANG,      /* SGLang {"physical_to_logical_map": [rows][S]} */
  EPLB_MAP_DEEPSEEK     /* DeepSeek EPLB {"phy2log", "log2phy", "logcnt"} */
} eplb_map_format_t;

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

/* Writes the placement atomically (temporary file, fsync, rename), after
 * checking it (EPLB_EMAP: nothing written).  EPLB_MAP_AUTO picks
 * trtllm-yaml for a path ending in .yaml/.yml, else expert-map.  Expert
 * map layer_id = the layer's position 0..L-1 (MoE layer index); YAML keys =
 * layer_ids (must be distinct and >= 0). */
int eplb_placement_write(const eplb_placement_t *p, const char *path,
                         eplb_map_format_t format, eplb_error_t *err);

/* Reads an expert map (format detected with EPLB_MAP_AUTO: JSON if the file
 * starts with '{').  E = largest expert id + 1; the result passes
 * eplb_placement_check (duplicates on a GPU allowed).  Expert map JSON: G =
 * device_count, layer ids from layer_id.  TensorRT-LLM YAML: layers sorted
 * by key (the layer ids); the file does not say G, so num_gpus is 1 and the
 * caller regroups: checks num_slots % G == 0 and sets num_gpus = G. */
int eplb_placement_read(eplb_placement_t *out, const char *path,
                        eplb_map_format_t format, eplb_error_t *err);

/* SGLang's rows are hidden layers 0..max(layer_ids): a row the placement
 * does not hold (a dense layer) is written as the contiguous placement.
 * SGLang and DeepSeek maps are read with num_gpus = 1 (the files do not say
 * G; the caller regroups) and layer ids 0..L-1; EPLB_MAP_AUTO reads them
 * when the JSON has "physical_to_logical_map" or "phy2log". */

/* Reads the map at `path` as the placement of the layers `stats` counts
 * (the current placement to re-plan from, or the map to report on).  Maps
 * number layers their own way, so: a map with a row per hidden layer
 * (SGLang, more rows than the statistics) is cut to the statistics' layer
 * ids; a map that does not say G (TensorRT-LLM YAML, SGLang, DeepSeek) is
 * regrouped onto num_gpus; then row l is named as the statistics' layer l
 * and E is the statistics'.  The layers must match, and so must num_slots
 * and num_gpus when they are > 0; `what` names the option in messages
 * ("--current-map").  The result passes eplb_placement_check (every
 * expert placed).  *out must be empty and stays empty on failure. */
int eplb_placement_read_for(eplb_placement_t *out, const char *path,
                            const eplb_stats_t *stats, int32_t num_slots,
                            int32_t num_gpus, const char *what,
                            eplb_error_t *err);

/* The format eplb_placement_write picks for EPLB_MAP_AUTO: TensorRT-LLM
 * YAML for a .yaml/.yml path, else the expert map JSON. */
eplb_map_format_t eplb_map_format_for_path(const char *path);

/* "expert-map", "trtllm-yaml", "sglang", "deepseek" ("auto" for reading);
 * -1 if unknown. */
int eplb_map_format_from_name(const char *name);
const char *eplb_map_format_name(eplb_map_format_t format);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_PLACEMENT_H */
