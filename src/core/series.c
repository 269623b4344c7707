/* core/series.c - per-step statistics (eplb_series_t): the type, EMA
 * sums, and the backtest that chooses the EMA rate.  The readers are in
 * formats/series_read.c.  See eplb/series.h for why. */
#include "eplb/series.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int eplb_series_init(eplb_series_t *s, int32_t T, int32_t L, int32_t E,
                     eplb_error_t *err) {
  memset(s, 0, sizeof(*s));
  if (T < 1 || T > EPLB_MAX_STEPS || L < 1 || L > EPLB_MAX_LAYERS || E < 1 ||
      E > EPLB_MAX_EXPERTS)
    return eplb_error_set(err, EPLB_EARG,
                          "a series of %d steps x %d layers x %d experts is "
                          "outside 1..%d x 1..%d x 1..%d",
                          (int)T, (int)L, (int)E, EPLB_MAX_STEPS,
                          EPLB_MAX_LAYERS, EPLB_MAX_EXPERTS);
  size_t n = (size_t)T * (size_t)L * (size_t)E;
  if (n > (size_t)1 << 31)
    return eplb_error_set(err, EPLB_EARG,
                          "a series of %d x %d x %d values is too large "
                          "(2^31 at most); pass fewer steps",
                          (int)T, (int)L, (int)E);
  s->layer_ids = malloc(sizeof(int32_t) * (size_t)L);
  s->load = calloc(n, sizeof(double));
  if (s->layer_ids == NULL || s->load == NULL) {
    eplb_series_cleanup(s);
    return eplb_error_set(err, EPLB_ENOMEM,
                          "out of memory for a %zu-value series", n);
  }
  for (int32_t l = 0; l < L; l++)
    s->layer_ids[l] = l;
  s->num_steps = T;
  s->num_layers = L;
  s->num_experts = E;
  return 0;
}

void eplb_series_cleanup(eplb_series_t *s) {
  if (s == NULL)
    return;
  free(s->layer_ids);
  free(s->load);
  memset(s, 0, sizeof(*s));
}

/* EMA weights of T steps, rescaled to add up to T. */
static void ema_weights(int32_t T, double alpha, double *w) {
  double sum = 0;
  for (int32_t t = 0; t < T; t++) {
    w[t] = pow(1.0 - alpha, (double)(T - 1 - t));
    sum += w[t];
  }
  for (int32_t t = 0; t < T; t++)
    w[t] *= (double)T / sum;
}

int eplb_series_sum(const eplb_series_t *s, double alpha, eplb_stats_t *out,
                    eplb_error_t *err) {
  if (!(alpha >= 0 && alpha < 1))
    return eplb_error_set(err, EPLB_EARG,
                          "--ema-alpha %g is outside 0..1 "
                          "(1 excluded)",
                          alpha);
  int rc = eplb_stats_init(out, s->num_layers, s->num_experts, err);
  if (rc)
    return rc;
  double *w = malloc(sizeof(double) * (size_t)s->num_steps);
  if (w == NULL) {
    eplb_stats_cleanup(out);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  ema_weights(s->num_steps, alpha, w);
  size_t n = (size_t)s->num_layers * (size_t)s->num_experts;
  /* Each addition is checked before it is made: the rounded sum of
   * 2^53 - 1 and 2 is 2^53, which a check after the sum would accept.
   * (With alpha = 0 every weight is 1 and the terms are integers, so
   * EPLB_MAX_COUNT - sum is exact.) */
  for (int32_t t = 0; t < s->num_steps; t++)
    for (size_t i = 0; i < n; i++) {
      double x = w[t] * s->load[(size_t)t * n + i];
      if (!(x <= EPLB_MAX_COUNT - out->load[i])) {
        free(w);
        eplb_stats_cleanup(out);
        return eplb_error_set(
            err, EPLB_ECOUNT,
            "the series sums above 2^53 (layer %d, expert %d); scale the "
            "counts down",
            (int)s->layer_ids[i / (size_t)s->num_experts],
            (int)(i % (size_t)s->num_experts));
      }
      out->load[i] += x;
    }
  memcpy(out->layer_ids, s->layer_ids, sizeof(int32_t) * (size_t)s->num_layers);
  out->dense_rows = s->dense_rows;
  free(w);
  return 0;
}

int eplb_series_choose_alpha(const eplb_series_t *s, double *alpha,
                             eplb_error_t *err) {
  static const double cand[] = {0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5};
  const int nc = (int)(sizeof(cand) / sizeof(cand[0]));
  *alpha = 0;
  int32_t T = s->num_steps, half = T / 2, L = s->num_layers, E = s->num_experts;
  if (T < 4)
    return 0;
  double *w = malloc(sizeof(double) * (size_t)half);
  double *pred = malloc(sizeof(double) * (size_t)E);
  double *act = malloc(sizeof(double) * (size_t)E);
  if (!w || !pred || !act) {
    free(w);
    free(pred);
    free(act);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  double best = -1;
  for (int c = 0; c < nc; c++) {
    ema_weights(half, cand[c], w);
    double sse = 0;
    for (int32_t l = 0; l < L; l++) {
      double ps = 0, as = 0;
      for (int32_t e = 0; e < E; e++) {
        pred[e] = act[e] = 0;
        for (int32_t t = 0; t < half; t++)
          pred[e] += w[t] * s->load[((size_t)t * L + l) * E + e];
        for (int32_t t = half; t < T; t++)
          act[e] += s->load[((size_t)t * L + l) * E + e];
        ps += pred[e];
        as += act[e];
      }
      if (ps <= 0 || as <= 0)
        continue; /* an idle layer says nothing about the rate */
      for (int32_t e = 0; e < E; e++) { /* compare shares, not volumes */
        double d = pred[e] / ps - act[e] / as;
        sse += d * d;
      }
    }
    if (best < 0 || sse < best) {
      best = sse;
      *alpha = cand[c];
    }
  }
  free(w);
  free(pred);
  free(act);
  return 0;
}

int eplb_series_windows(const eplb_series_t *s, int32_t steps,
                        eplb_stats_t **out, int32_t *num, eplb_error_t *err) {
  *out = NULL;
  *num = 0;
  if (steps < 1 || steps > EPLB_MAX_STEPS)
    return eplb_error_set(err, EPLB_EARG, "--window %d is outside 1..%d",
                          (int)steps, EPLB_MAX_STEPS);
  int32_t T = s->num_steps, L = s->num_layers, E = s->num_experts;
  int32_t n = (T + steps - 1) / steps;
  eplb_stats_t *w = calloc((size_t)n, sizeof(*w));
  if (w == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory for %d windows",
                          (int)n);
  size_t cell = (size_t)L * (size_t)E;
  int rc = 0;
  for (int32_t i = 0; i < n && rc == 0; i++) {
    rc = eplb_stats_init(&w[i], L, E, err);
    if (rc)
      break;
    memcpy(w[i].layer_ids, s->layer_ids, sizeof(int32_t) * (size_t)L);
    w[i].dense_rows = s->dense_rows;
    int32_t end = (i + 1) * steps < T ? (i + 1) * steps : T;
    for (int32_t t = i * steps; t < end; t++)
      for (size_t c = 0; c < cell; c++)
        w[i].load[c] += s->load[(size_t)t * cell + c];
    for (size_t c = 0; c < cell && rc == 0; c++)
      if (w[i].load[c] > EPLB_MAX_COUNT)
        rc = eplb_error_set(err, EPLB_ECOUNT,
                            "window %d (steps %d..%d) sums above 2^53; "
                            "use a smaller --window or scale the counts",
                            (int)i, (int)(i * steps), (int)(end - 1));
  }
  if (rc) {
    for (int32_t i = 0; i < n; i++)
      eplb_stats_cleanup(&w[i]);
    free(w);
    return rc;
  }
  *out = w;
  *num = n;
  return 0;
}
