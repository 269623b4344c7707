/* placement.c - the placement type (eplb_placement_t): life cycle, checks,
 * and the contiguous placement a model starts from.
 *
 * Writers and readers of map files live in formats/. */
#include "eplb/placement.h"

#include <stdlib.h>
#include <string.h>

#include "eplb/stats.h"

int eplb_placement_init(eplb_placement_t *p, int32_t num_layers,
                        int32_t num_experts, int32_t num_slots,
                        int32_t num_gpus, eplb_error_t *err) {
  memset(p, 0, sizeof(*p));
  if (num_layers < 1 || num_layers > EPLB_MAX_LAYERS)
    return eplb_error_set(err, EPLB_EARG, "%d layers is outside 1..%d",
                          (int)num_layers, EPLB_MAX_LAYERS);
  if (num_experts < 1 || num_experts > EPLB_MAX_EXPERTS)
    return eplb_error_set(err, EPLB_EARG, "%d experts is outside 1..%d",
                          (int)num_experts, EPLB_MAX_EXPERTS);
  if (num_slots < EPLB_MIN_SLOTS || num_slots > EPLB_MAX_SLOTS)
    return eplb_error_set(err, EPLB_EARG, "--num-slots %d is outside %d..%d",
                          (int)num_slots, EPLB_MIN_SLOTS, EPLB_MAX_SLOTS);
  if (num_gpus < EPLB_MIN_GPUS || num_gpus > EPLB_MAX_GPUS)
    return eplb_error_set(err, EPLB_EARG, "--num-gpus %d is outside %d..%d",
                          (int)num_gpus, EPLB_MIN_GPUS, EPLB_MAX_GPUS);
  if (num_slots % num_gpus != 0)
    return eplb_error_set(err, EPLB_EARG,
                          "--num-slots %d is not a multiple of --num-gpus %d; "
                          "every GPU must hold the same number of slots",
                          (int)num_slots, (int)num_gpus);
  size_t n = (size_t)num_layers * (size_t)num_slots;
  p->layer_ids = malloc(sizeof(*p->layer_ids) * (size_t)num_layers);
  p->phy2log = malloc(sizeof(*p->phy2log) * n);
  if (p->layer_ids == NULL || p->phy2log == NULL) {
    eplb_placement_cleanup(p);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory for %d x %d slots",
                          (int)num_layers, (int)num_slots);
  }
  for (int32_t l = 0; l < num_layers; l++)
    p->layer_ids[l] = l;
  for (size_t i = 0; i < n; i++)
    p->phy2log[i] = -1;
  p->num_layers = num_layers;
  p->num_experts = num_experts;
  p->num_slots = num_slots;
  p->num_gpus = num_gpus;
  return 0;
}

void eplb_placement_cleanup(eplb_placement_t *p) {
  if (p == NULL)
    return;
  free(p->layer_ids);
  free(p->phy2log);
  memset(p, 0, sizeof(*p));
}

int eplb_placement_copy(eplb_placement_t *dst, const eplb_placement_t *src,
                        eplb_error_t *err) {
  int rc = eplb_placement_init(dst, src->num_layers, src->num_experts,
                               src->num_slots, src->num_gpus, err);
  if (rc)
    return rc;
  memcpy(dst->layer_ids, src->layer_ids,
         sizeof(*dst->layer_ids) * (size_t)src->num_layers);
  memcpy(dst->phy2log, src->phy2log,
         sizeof(*dst->phy2log) * (size_t)src->num_layers *
             (size_t)src->num_slots);
  return 0;
}

int eplb_placement_check(const eplb_placement_t *p, int no_duplicates,
                         const char *source, eplb_error_t *err) {
  int32_t E = p->num_experts, S = p->num_slots, per = S / p->num_gpus;
  int32_t *seen = malloc(sizeof(int32_t) * (size_t)E);
  if (seen == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  int rc = 0;
  for (int32_t l = 0; l < p->num_layers && rc == 0; l++) {
    const int32_t *row = p->phy2log + (size_t)l * (size_t)S;
    /* seen[e] = last GPU that held e + 1 (slots are visited GPU by GPU). */
    memset(seen, 0, sizeof(int32_t) * (size_t)E);
    for (int32_t s = 0; s < S && rc == 0; s++) {
      int32_t e = row[s], g = s / per;
      if (e < 0 || e >= E)
        rc = eplb_error_set(err, EPLB_EMAP,
                            "%s: layer %d, slot %d (device %d): expert %d is "
                            "outside 0..%d",
                            source, (int)p->layer_ids[l], (int)s, (int)g,
                            (int)e, (int)E - 1);
      else if (no_duplicates && seen[e] == g + 1)
        rc = eplb_error_set(err, EPLB_EMAP,
                            "%s: layer %d, device %d holds expert %d twice; a "
                            "device may hold each expert once",
                            source, (int)p->layer_ids[l], (int)g, (int)e);
      else
        seen[e] = g + 1;
    }
    for (int32_t e = 0; e < E && rc == 0; e++)
      if (seen[e] == 0)
        rc = eplb_error_set(err, EPLB_EMAP,
                            "%s: layer %d: expert %d has no slot; every expert "
                            "needs at least one",
                            source, (int)p->layer_ids[l], (int)e);
  }
  free(seen);
  return rc;
}

int eplb_placement_contiguous(eplb_placement_t *p, eplb_error_t *err) {
  if (p->num_slots < p->num_experts)
    return eplb_error_set(err, EPLB_EARG, "%d slots cannot hold %d experts",
                          (int)p->num_slots, (int)p->num_experts);
  for (int32_t l = 0; l < p->num_layers; l++)
    for (int32_t s = 0; s < p->num_slots; s++)
      p->phy2log[(size_t)l * (size_t)p->num_slots + (size_t)s] =
          s % p->num_experts;
  return 0;
}

int eplb_placement_init_contiguous(eplb_placement_t *p, int32_t num_layers,
                                   int32_t num_experts, int32_t num_slots,
                                   int32_t num_gpus, eplb_error_t *err) {
  int rc =
      eplb_placement_init(p, num_layers, num_experts, num_slots, num_gpus, err);
  if (rc == 0 && (rc = eplb_placement_contiguous(p, err)) != 0)
    eplb_placement_cleanup(p);
  return rc;
}

int eplb_placement_check_stats(const eplb_placement_t *p, const eplb_stats_t *s,
                               const char *what, eplb_error_t *err) {
  if (s->num_layers != p->num_layers || s->num_experts != p->num_experts)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s have %d layers x %d experts but the placement "
                          "has %d x %d",
                          what, (int)s->num_layers, (int)s->num_experts,
                          (int)p->num_layers, (int)p->num_experts);
  for (int32_t l = 0; l < s->num_layers; l++)
    if (s->layer_ids[l] != p->layer_ids[l])
      return eplb_error_set(err, EPLB_ESHAPE,
                            "%s name other layers than the placement (row %d "
                            "is layer %d, the placement's %d)",
                            what, (int)l, (int)s->layer_ids[l],
                            (int)p->layer_ids[l]);
  return eplb_stats_check(s, what, err);
}

int eplb_placement_append_layers(eplb_placement_t *p, int32_t n,
                                 eplb_mtp_rule_t rule, eplb_error_t *err) {
  if (n < 0 || n > EPLB_MAX_MTP_LAYERS)
    return eplb_error_set(err, EPLB_EARG, "--mtp-layers %d is outside 0..%d",
                          (int)n, EPLB_MAX_MTP_LAYERS);
  if (rule != EPLB_MTP_LAST && rule != EPLB_MTP_TRIVIAL)
    return eplb_error_set(err, EPLB_EARG, "unknown MTP placement rule %d",
                          (int)rule);
  if (n == 0)
    return 0;
  int32_t L = p->num_layers, S = p->num_slots;
  if (L < 1)
    return eplb_error_set(err, EPLB_EARG,
                          "an empty placement has no last layer to follow");
  if ((int64_t)L + n > EPLB_MAX_LAYERS)
    return eplb_error_set(err, EPLB_EARG,
                          "%d layers and %d MTP layers exceed %d layers",
                          (int)L, (int)n, EPLB_MAX_LAYERS);
  int32_t *ids = realloc(p->layer_ids, sizeof(int32_t) * (size_t)(L + n));
  if (ids)
    p->layer_ids = ids;
  int32_t *slots =
      realloc(p->phy2log, sizeof(int32_t) * (size_t)(L + n) * (size_t)S);
  if (slots)
    p->phy2log = slots;
  if (!ids || !slots)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t i = 0; i < n; i++) {
    int32_t *row = p->phy2log + (size_t)(L + i) * (size_t)S;
    p->layer_ids[L + i] = p->layer_ids[L - 1] + 1 + i;
    if (rule == EPLB_MTP_LAST)
      memcpy(row, p->phy2log + (size_t)(L - 1) * (size_t)S,
             sizeof(int32_t) * (size_t)S);
    else
      for (int32_t s = 0; s < S; s++)
        row[s] = s % p->num_experts;
  }
  p->num_layers = L + n;
  return 0;
}

int eplb_placement_drop_last_layers(eplb_placement_t *p, int32_t n,
                                    eplb_error_t *err) {
  if (n < 0 || n >= p->num_layers)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "cannot drop %d of the placement's %d layers",
                          (int)n, (int)p->num_layers);
  p->num_layers -= n;
  return 0;
}

int64_t eplb_placement_duplicates(const eplb_placement_t *p, int32_t *layer,
                                  int32_t *gpu, int32_t *expert) {
  int32_t S = p->num_slots, G = p->num_gpus, per = S / G;
  int64_t *stamp = calloc((size_t)p->num_experts, sizeof(int64_t));
  if (stamp == NULL)
    return -1;
  int64_t found = 0, mark = 0;
  for (int32_t l = 0; l < p->num_layers; l++)
    for (int32_t g = 0; g < G; g++) {
      const int32_t *row = p->phy2log + (size_t)l * S + (size_t)g * per;
      mark++;
      int dup = 0;
      for (int32_t j = 0; j < per; j++) {
        int32_t e = row[j];
        if (e < 0 || e >= p->num_experts)
          continue;
        if (stamp[e] == mark && !dup) {
          if (found == 0) {
            if (layer)
              *layer = l;
            if (gpu)
              *gpu = g;
            if (expert)
              *expert = e;
          }
          found++;
          dup = 1;
        }
        stamp[e] = mark;
      }
    }
  free(stamp);
  return found;
}
