/* plan/online.c - when to rebalance while training or serving runs (see
 * eplb/online.h).  Pure: counts in, a decision and a proposal out.
 *
 * Two views of the traffic: the smoothed load (EMA over rounds), the one
 * load a history of 1 decides on; or, with history K > 1, the last K
 * rounds' windows kept apart as scenarios, so the decision and the
 * re-plan see how the traffic moves between rounds instead of one blend
 * of it (a placement balanced for each window is balanced for any mix of
 * them; docs/planner.md "Scenarios"). */
#include "eplb/online.h"

#include <stdlib.h>
#include <string.h>

#include "eplb/metrics.h"

struct eplb_online_s {
  eplb_online_opts_t opts;
  eplb_placement_t current;
  eplb_stats_t smoothed; /* EMA of the rounds; valid when have_smoothed */
  int have_smoothed;
  eplb_stats_t last_cum; /* previous cumulative counters; valid when have_cum */
  int have_cum;
  int64_t rounds;
  eplb_stats_t *windows; /* [history] the last rounds with traffic, oldest
                            first; num_windows of them hold one */
  int32_t num_windows;
};

void eplb_online_opts_default(eplb_online_opts_t *opts) {
  memset(opts, 0, sizeof(*opts));
  eplb_plan_opts_default(&opts->plan);
  opts->ema_alpha = 0.5;
  opts->threshold = 0.1;
  opts->min_gain = 0.02;
  opts->layers_per_round = 0;
  opts->history = 1;
}

/* history as the decision reads it: 0 is 1. */
static int32_t history_of(const eplb_online_opts_t *o) {
  return o->history > 1 ? o->history : 1;
}

static int check_opts(const eplb_online_opts_t *o, eplb_error_t *err) {
  if (!(o->ema_alpha > 0 && o->ema_alpha <= 1))
    return eplb_error_set(err, EPLB_EARG, "--ema-alpha %g is outside (0, 1]",
                          o->ema_alpha);
  if (!(o->threshold >= 0 && o->threshold <= 100))
    return eplb_error_set(err, EPLB_EARG, "--threshold %g is outside 0..100",
                          o->threshold);
  if (!(o->min_gain >= 0 && o->min_gain <= 100))
    return eplb_error_set(err, EPLB_EARG, "--min-gain %g is outside 0..100",
                          o->min_gain);
  if (o->layers_per_round < 0 || o->layers_per_round > EPLB_MAX_LAYERS)
    return eplb_error_set(err, EPLB_EARG,
                          "--layers-per-round %d is outside 0..%d (0: all)",
                          (int)o->layers_per_round, EPLB_MAX_LAYERS);
  if (o->history < 0 || o->history > EPLB_MAX_SCENARIOS)
    return eplb_error_set(err, EPLB_EARG, "--history %d is outside 1..%d",
                          (int)o->history, EPLB_MAX_SCENARIOS);
  return 0;
}

int eplb_online_create(eplb_online_t **out, const eplb_online_opts_t *opts,
                       const eplb_placement_t *current, eplb_error_t *err) {
  *out = NULL;
  int rc = check_opts(opts, err);
  if (rc == 0)
    rc = eplb_plan_check_opts(&opts->plan, current->num_experts, err);
  if (rc == 0 && (current->num_slots != opts->plan.num_slots ||
                  current->num_gpus != opts->plan.num_gpus))
    rc = eplb_error_set(err, EPLB_ESHAPE,
                        "the current placement has %d slots on %d GPUs but "
                        "the options say %d on %d",
                        (int)current->num_slots, (int)current->num_gpus,
                        (int)opts->plan.num_slots, (int)opts->plan.num_gpus);
  if (rc)
    return rc;
  eplb_online_t *o = calloc(1, sizeof(*o));
  if (o == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  o->opts = *opts;
  rc = eplb_placement_copy(&o->current, current, err);
  if (rc == 0 && history_of(opts) > 1) {
    o->windows = calloc((size_t)history_of(opts), sizeof(eplb_stats_t));
    if (o->windows == NULL)
      rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  if (rc) {
    eplb_placement_cleanup(&o->current);
    free(o);
    return rc;
  }
  *out = o;
  return 0;
}

void eplb_online_destroy(eplb_online_t *o) {
  if (o == NULL)
    return;
  eplb_placement_cleanup(&o->current);
  eplb_stats_cleanup(&o->smoothed);
  eplb_stats_cleanup(&o->last_cum);
  for (int32_t k = 0; k < o->num_windows; k++)
    eplb_stats_cleanup(&o->windows[k]);
  free(o->windows);
  free(o);
}

/* Keeps `round` as the newest window (the oldest goes when all
 * `history` are held; its arrays are reused). */
static int push_window(eplb_online_t *o, const eplb_stats_t *round,
                       eplb_error_t *err) {
  int32_t K = history_of(&o->opts);
  size_t n = (size_t)round->num_layers * (size_t)round->num_experts;
  if (o->num_windows < K) {
    int rc = eplb_stats_copy(&o->windows[o->num_windows], round, err);
    if (rc == 0)
      o->num_windows++;
    return rc;
  }
  eplb_stats_t oldest = o->windows[0];
  memmove(o->windows, o->windows + 1, sizeof(eplb_stats_t) * (size_t)(K - 1));
  memcpy(oldest.load, round->load, sizeof(double) * n);
  o->windows[K - 1] = oldest;
  return 0;
}

int eplb_online_observe(eplb_online_t *o, const eplb_stats_t *round,
                        int *had_traffic, eplb_error_t *err) {
  *had_traffic = 0;
  int rc =
      eplb_placement_check_stats(&o->current, round, "the round's counts", err);
  if (rc)
    return rc;
  size_t n = (size_t)round->num_layers * (size_t)round->num_experts;
  size_t i = 0;
  while (i < n && round->load[i] == 0)
    i++;
  if (i == n)
    return 0; /* no new traffic: nothing changes */
  if (history_of(&o->opts) > 1) {
    rc = push_window(o, round, err);
    if (rc)
      return rc;
  }
  *had_traffic = 1;
  o->rounds++;
  if (!o->have_smoothed) {
    rc = eplb_stats_copy(&o->smoothed, round, err);
    o->have_smoothed = rc == 0;
    return rc;
  }
  double a = o->opts.ema_alpha;
  for (i = 0; i < n; i++)
    o->smoothed.load[i] = (1 - a) * o->smoothed.load[i] + a * round->load[i];
  return 0;
}

int eplb_online_observe_cumulative(eplb_online_t *o, const eplb_stats_t *cum,
                                   int first_is_round, int *had_traffic,
                                   eplb_error_t *err) {
  *had_traffic = 0;
  int rc =
      eplb_placement_check_stats(&o->current, cum, "the round's counts", err);
  if (rc)
    return rc;
  if (!o->have_cum) {
    rc = eplb_stats_copy(&o->last_cum, cum, err);
    if (rc)
      return rc;
    o->have_cum = 1;
    return first_is_round ? eplb_online_observe(o, cum, had_traffic, err) : 0;
  }
  eplb_stats_t delta;
  rc = eplb_stats_copy(&delta, cum, err);
  if (rc)
    return rc;
  size_t n = (size_t)cum->num_layers * (size_t)cum->num_experts;
  int restarted = 0;
  for (size_t i = 0; i < n && !restarted; i++)
    restarted = cum->load[i] < o->last_cum.load[i];
  if (!restarted) /* else the counters restarted: the values are the round */
    for (size_t i = 0; i < n; i++)
      delta.load[i] = cum->load[i] - o->last_cum.load[i];
  memcpy(o->last_cum.load, cum->load, sizeof(double) * n);
  rc = eplb_online_observe(o, &delta, had_traffic, err);
  eplb_stats_cleanup(&delta);
  return rc;
}

/* Layer l's imbalance under p over the windows: the mean, over the
 * windows with traffic in the layer, of each one's (the objective of
 * eplb_plan_scenarios with equal weights); 0 when none has traffic. */
static double windows_imbalance(const eplb_online_t *o,
                                const eplb_placement_t *p, int32_t l) {
  int32_t E = p->num_experts, S = p->num_slots, n = 0;
  double sum = 0;
  for (int32_t k = 0; k < o->num_windows; k++) {
    const double *x = o->windows[k].load + (size_t)l * E;
    int32_t e = 0;
    while (e < E && x[e] == 0)
      e++;
    if (e == E)
      continue; /* no traffic in this layer in this window */
    sum +=
        eplb_layer_imbalance(x, E, p->phy2log + (size_t)l * S, S, p->num_gpus);
    n++;
  }
  return n ? sum / n : 0;
}

/* Mean imbalance of p on the smoothed loads (history > 1: over the
 * windows), and per layer into imb[L]. */
static double layer_imbalances(const eplb_online_t *o,
                               const eplb_placement_t *p, double *imb) {
  int32_t E = p->num_experts, S = p->num_slots;
  int windows = history_of(&o->opts) > 1;
  double sum = 0;
  for (int32_t l = 0; l < p->num_layers; l++) {
    imb[l] = windows ? windows_imbalance(o, p, l)
                     : eplb_layer_imbalance(o->smoothed.load + (size_t)l * E, E,
                                            p->phy2log + (size_t)l * S, S,
                                            p->num_gpus);
    sum += imb[l];
  }
  return sum / p->num_layers;
}

/* The migration-aware re-plan the decision picks layers from: of the
 * smoothed loads, or of every window at once. */
static int replan(const eplb_online_t *o, eplb_placement_t *cand,
                  eplb_error_t *err) {
  if (history_of(&o->opts) == 1)
    return eplb_plan_from(&o->smoothed, &o->current, &o->opts.plan, cand, err);
  eplb_scenarios_t sc = eplb_online_windows(o);
  return eplb_plan_scenarios_from(&sc, &o->current, &o->opts.plan, cand, err);
}

int eplb_online_decide(eplb_online_t *o, eplb_online_decision_t *dec,
                       eplb_error_t *err) {
  memset(dec, 0, sizeof(*dec));
  int rc = eplb_placement_copy(&dec->proposal, &o->current, err);
  if (rc || !o->have_smoothed)
    return rc; /* no traffic seen yet: nothing to decide */
  int32_t L = o->current.num_layers, S = o->current.num_slots;
  double *cur = malloc(sizeof(double) * (size_t)L);
  double *neu = malloc(sizeof(double) * (size_t)L);
  int32_t *order = malloc(sizeof(int32_t) * (size_t)L);
  eplb_placement_t cand = {0};
  if (!cur || !neu || !order) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    goto done;
  }
  dec->imbalance_before = layer_imbalances(o, &o->current, cur);
  dec->imbalance_after = dec->imbalance_before;
  rc = replan(o, &cand, err);
  if (rc)
    goto done;
  layer_imbalances(o, &cand, neu);
  /* Eligible layers, worst (most unbalanced now) first; ties: lower index. */
  int32_t n = 0;
  for (int32_t l = 0; l < L; l++) {
    if (!(cur[l] > o->opts.threshold && cur[l] - neu[l] >= o->opts.min_gain))
      continue;
    int32_t j = n++;
    while (j > 0 && cur[order[j - 1]] < cur[l]) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = l;
  }
  if (o->opts.layers_per_round > 0 && n > o->opts.layers_per_round)
    n = o->opts.layers_per_round;
  for (int32_t k = 0; k < n; k++) {
    int32_t l = order[k];
    memcpy(dec->proposal.phy2log + (size_t)l * S, cand.phy2log + (size_t)l * S,
           sizeof(int32_t) * (size_t)S);
  }
  dec->layers_changed = n;
  dec->rebalance = n > 0;
  dec->moves = eplb_placement_moves(&o->current, &dec->proposal);
  dec->imbalance_after = layer_imbalances(o, &dec->proposal, neu);
done:
  eplb_placement_cleanup(&cand);
  free(cur);
  free(neu);
  free(order);
  if (rc)
    eplb_placement_cleanup(&dec->proposal);
  return rc;
}

void eplb_online_decision_cleanup(eplb_online_decision_t *dec) {
  if (dec == NULL)
    return;
  eplb_placement_cleanup(&dec->proposal);
  memset(dec, 0, sizeof(*dec));
}

int eplb_online_applied(eplb_online_t *o, const eplb_placement_t *applied,
                        eplb_error_t *err) {
  if (applied->num_layers != o->current.num_layers ||
      applied->num_experts != o->current.num_experts ||
      applied->num_slots != o->current.num_slots ||
      applied->num_gpus != o->current.num_gpus)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "the applied placement's shape differs from the "
                          "current one");
  int rc = eplb_placement_check(applied, 0, "applied placement", err);
  if (rc)
    return rc;
  memcpy(o->current.phy2log, applied->phy2log,
         sizeof(int32_t) * (size_t)applied->num_layers *
             (size_t)applied->num_slots);
  return 0;
}

const eplb_placement_t *eplb_online_current(const eplb_online_t *o) {
  return &o->current;
}
const eplb_stats_t *eplb_online_smoothed(const eplb_online_t *o) {
  return o->have_smoothed ? &o->smoothed : NULL;
}
int64_t eplb_online_rounds(const eplb_online_t *o) { return o->rounds; }

eplb_scenarios_t eplb_online_windows(const eplb_online_t *o) {
  eplb_scenarios_t sc = {o->num_windows, o->windows, NULL};
  return sc;
}
