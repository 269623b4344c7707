/* eplb/series.h - per-step statistics, and planning for the traffic that
 * follows them.
 *
 * A sum over a window throws away when the traffic happened.  With routing
 * that drifts, the last steps of a window predict the next window better
 * than its average: eplb weights steps by an exponential moving average
 * (EMA) whose rate it can choose itself by backtesting on the window (fit
 * on the first half, judge on the second), so it does not over-fit.
 */
#ifndef EPLB_SERIES_H
#define EPLB_SERIES_H

#include <stdint.h>

#include "eplb/error.h"
#include "eplb/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EPLB_MAX_STEPS 1000000

typedef struct eplb_series_s {
  int32_t num_steps;   /* T, 1..EPLB_MAX_STEPS */
  int32_t num_layers;  /* L */
  int32_t num_experts; /* E */
  int32_t *layer_ids;  /* [L], as the source named them */
  double *load;        /* [T * L * E]: load[(t * L + l) * E + e] */
  int dense_rows;      /* as in eplb_stats_t */
} eplb_series_t;

/* Allocates an all-zero T x L x E series.  On failure *s is empty. */
int eplb_series_init(eplb_series_t *s, int32_t num_steps, int32_t num_layers,
                     int32_t num_experts, eplb_error_t *err);
/* NULL-safe, idempotent. */
void eplb_series_cleanup(eplb_series_t *s);

/* Weighted sum of the steps into *out (which must be empty): step t gets
 * weight (1 - alpha)^(T - 1 - t), rescaled so the weights add up to T (the
 * result has the magnitude of a plain sum).  alpha 0 is the plain sum;
 * range 0..1 (exclusive of 1). */
int eplb_series_sum(const eplb_series_t *s, double alpha, eplb_stats_t *out,
                    eplb_error_t *err);

/* Chooses the EMA rate that best predicts later traffic: for each candidate
 * rate, the EMA of the first half of the window predicts every layer's
 * expert shares in the second half; the rate with the smallest squared
 * error wins (ties: the smaller rate).  A series of fewer than 4 steps gives
 * 0.  *alpha out. */
int eplb_series_choose_alpha(const eplb_series_t *s, double *alpha,
                             eplb_error_t *err);

/* Cuts the series into windows of `steps` consecutive steps (1..
 * EPLB_MAX_STEPS; the last window holds what is left) and sums each into
 * a histogram: *out (malloc'd, *num of them; the caller cleans each with
 * eplb_stats_cleanup and frees the array), each with the series' layer
 * ids.  The windows are scenarios of eplb_plan_scenarios (eplb-plan
 * --window). */
int eplb_series_windows(const eplb_series_t *s, int32_t steps,
                        eplb_stats_t **out, int32_t *num, eplb_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_SERIES_H */
