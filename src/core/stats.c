/* stats.c - the histogram type (eplb_stats_t): life cycle, checks, sums.
 *
 * Readers of the many statistics formats live in formats/; they all end in
 * an eplb_stats_t built with the functions here. */
#include "eplb/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int eplb_stats_init(eplb_stats_t *s, int32_t num_layers, int32_t num_experts,
                    eplb_error_t *err) {
  memset(s, 0, sizeof(*s));
  if (num_layers < 1 || num_layers > EPLB_MAX_LAYERS)
    return eplb_error_set(err, EPLB_EARG,
                          "%d layers is outside the supported range 1..%d",
                          (int)num_layers, EPLB_MAX_LAYERS);
  if (num_experts < 1 || num_experts > EPLB_MAX_EXPERTS)
    return eplb_error_set(err, EPLB_EARG,
                          "%d experts is outside the supported range 1..%d",
                          (int)num_experts, EPLB_MAX_EXPERTS);
  s->layer_ids = malloc(sizeof(*s->layer_ids) * (size_t)num_layers);
  s->load = calloc((size_t)num_layers * (size_t)num_experts, sizeof(double));
  if (s->layer_ids == NULL || s->load == NULL) {
    eplb_stats_cleanup(s);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory for %d x %d loads",
                          (int)num_layers, (int)num_experts);
  }
  for (int32_t l = 0; l < num_layers; l++)
    s->layer_ids[l] = l;
  s->num_layers = num_layers;
  s->num_experts = num_experts;
  return 0;
}

void eplb_stats_cleanup(eplb_stats_t *s) {
  if (s == NULL)
    return;
  free(s->layer_ids);
  free(s->load);
  memset(s, 0, sizeof(*s));
}

int eplb_stats_copy(eplb_stats_t *dst, const eplb_stats_t *src,
                    eplb_error_t *err) {
  int rc = eplb_stats_init(dst, src->num_layers, src->num_experts, err);
  if (rc)
    return rc;
  memcpy(dst->layer_ids, src->layer_ids,
         sizeof(*dst->layer_ids) * (size_t)src->num_layers);
  memcpy(dst->load, src->load,
         sizeof(double) * (size_t)src->num_layers * (size_t)src->num_experts);
  dst->dense_rows = src->dense_rows;
  return 0;
}

int eplb_stats_add(eplb_stats_t *acc, const eplb_stats_t *other,
                   const char *acc_name, const char *other_name,
                   eplb_error_t *err) {
  if (acc->num_layers != other->num_layers ||
      acc->num_experts != other->num_experts)
    return eplb_error_set(
        err, EPLB_ESHAPE,
        "%s has %d layers x %d experts but %s has %d x %d; statistics to be "
        "summed must come from the same model",
        acc_name, (int)acc->num_layers, (int)acc->num_experts, other_name,
        (int)other->num_layers, (int)other->num_experts);
  for (int32_t l = 0; l < acc->num_layers; l++)
    if (acc->layer_ids[l] != other->layer_ids[l])
      return eplb_error_set(err, EPLB_ESHAPE,
                            "%s names layer %d where %s names layer %d (row "
                            "%d); statistics must list the same layers",
                            acc_name, (int)acc->layer_ids[l], other_name,
                            (int)other->layer_ids[l], (int)l);
  size_t n = (size_t)acc->num_layers * (size_t)acc->num_experts;
  for (size_t i = 0; i < n; i++) {
    double sum = acc->load[i] + other->load[i];
    /* Test the room left, not the rounded sum: 2^53 + 1 rounds to 2^53. */
    if (!(other->load[i] <= EPLB_MAX_COUNT - acc->load[i]))
      return eplb_error_set(
          err, EPLB_ECOUNT,
          "%s + %s: layer %d, expert %d: sum %.17g exceeds 2^53, the largest "
          "count eplb sums exactly; scale the counts down",
          acc_name, other_name,
          (int)acc->layer_ids[i / (size_t)acc->num_experts],
          (int)(i % (size_t)acc->num_experts), sum);
    acc->load[i] = sum;
  }
  acc->dense_rows = acc->dense_rows || other->dense_rows;
  return 0;
}

int eplb_stats_check(const eplb_stats_t *s, const char *source,
                     eplb_error_t *err) {
  size_t n = (size_t)s->num_layers * (size_t)s->num_experts;
  for (size_t i = 0; i < n; i++) {
    double v = s->load[i];
    if (isfinite(v) && v >= 0.0 && v <= EPLB_MAX_COUNT)
      continue;
    const char *why = !isfinite(v) ? "is not finite"
                      : v < 0.0    ? "is negative"
                                   : "exceeds 2^53";
    return eplb_error_set(err, EPLB_ECOUNT,
                          "%s: layer %d, expert %d: count %g %s; counts must "
                          "be finite, non-negative and at most 2^53",
                          source, (int)s->layer_ids[i / (size_t)s->num_experts],
                          (int)(i % (size_t)s->num_experts), v, why);
  }
  return 0;
}

int eplb_stats_drop_zero_layers(eplb_stats_t *s, int32_t *dropped,
                                eplb_error_t *err) {
  int32_t E = s->num_experts, kept = 0;
  for (int32_t l = 0; l < s->num_layers; l++) {
    const double *row = s->load + (size_t)l * (size_t)E;
    int zero = 1;
    for (int32_t e = 0; e < E && zero; e++)
      zero = row[e] == 0.0;
    if (zero)
      continue;
    if (kept != l) {
      memmove(s->load + (size_t)kept * (size_t)E, row,
              sizeof(double) * (size_t)E);
      s->layer_ids[kept] = s->layer_ids[l];
    }
    kept++;
  }
  if (dropped)
    *dropped = s->num_layers - kept;
  if (kept == 0)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "every layer's counts are zero: there is no MoE "
                          "traffic to plan for; check the statistics window");
  s->num_layers = kept;
  return 0;
}

int eplb_stats_zero_layer_ids(const eplb_stats_t *s, int32_t **ids, int32_t *n,
                              eplb_error_t *err) {
  *ids = NULL;
  *n = 0;
  for (int32_t l = 0; l < s->num_layers; l++) {
    const double *row = s->load + (size_t)l * (size_t)s->num_experts;
    int32_t e = 0;
    while (e < s->num_experts && row[e] == 0.0)
      e++;
    if (e < s->num_experts)
      continue;
    if (*ids == NULL) {
      *ids = malloc(sizeof(int32_t) * (size_t)s->num_layers);
      if (*ids == NULL)
        return eplb_error_set(err, EPLB_ENOMEM, "out of memory listing layers");
    }
    (*ids)[(*n)++] = s->layer_ids[l];
  }
  return 0;
}

int eplb_stats_drop_idle_layers(eplb_stats_t *s, int32_t num, int32_t **ids,
                                int32_t *num_dropped, eplb_error_t *err) {
  *ids = NULL;
  *num_dropped = 0;
  int32_t L = s[0].num_layers, E = s[0].num_experts, kept = 0;
  int32_t *gone = malloc(sizeof(int32_t) * (size_t)L);
  if (gone == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory listing layers");
  for (int32_t l = 0; l < L; l++) {
    int idle = 1;
    for (int32_t k = 0; k < num && idle; k++) {
      const double *row = s[k].load + (size_t)l * (size_t)E;
      for (int32_t e = 0; e < E && idle; e++)
        idle = row[e] == 0.0;
    }
    if (idle) {
      gone[(*num_dropped)++] = s[0].layer_ids[l];
      continue;
    }
    for (int32_t k = 0; k < num && kept != l; k++) {
      memmove(s[k].load + (size_t)kept * (size_t)E,
              s[k].load + (size_t)l * (size_t)E, sizeof(double) * (size_t)E);
      s[k].layer_ids[kept] = s[k].layer_ids[l];
    }
    kept++;
  }
  if (kept == 0) {
    free(gone);
    *num_dropped = 0;
    return eplb_error_set(err, EPLB_ESHAPE,
                          "every layer's counts are zero: there is no MoE "
                          "traffic to plan for; check the statistics window");
  }
  for (int32_t k = 0; k < num; k++)
    s[k].num_layers = kept;
  if (*num_dropped > 0)
    *ids = gone;
  else
    free(gone);
  return 0;
}
