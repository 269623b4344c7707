/* test_online.c - when to rebalance: cumulative counters, smoothing,
 * thresholds, the per-round layer budget, and the last K rounds' windows
 * as the scenarios of the decision (history). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "eplb/eplb.h"
#include "eplb/online.h"

#define L 4
#define E 32
#define S 40
#define G 8

/* Skewed, layer-dependent loads; `hot` moves the hot spot. */
static void fill(eplb_stats_t *st, int hot_layer, int hot_expert,
                 double scale) {
  for (int l = 0; l < L; l++)
    for (int e = 0; e < E; e++) {
      double v = 100 + 900.0 / (1 + ((e * 7 + l * 3) % E));
      if (l == hot_layer && e == hot_expert)
        v *= 8;
      st->load[l * E + e] += floor(v * scale);
    }
}

static eplb_online_t *make(double alpha, int32_t per_round) {
  eplb_placement_t cur;
  assert_int_equal(eplb_placement_init(&cur, L, E, S, G, NULL), 0);
  assert_int_equal(eplb_placement_contiguous(&cur, NULL), 0);
  eplb_online_opts_t o;
  eplb_online_opts_default(&o);
  o.plan.num_slots = S;
  o.plan.num_gpus = G;
  o.ema_alpha = alpha;
  o.layers_per_round = per_round;
  eplb_online_t *on;
  eplb_error_t err;
  assert_int_equal(eplb_online_create(&on, &o, &cur, &err), 0);
  eplb_placement_cleanup(&cur);
  return on;
}

static void test_unchanged_cumulative(void **state) {
  (void)state;
  eplb_online_t *on = make(0.5, 0);
  eplb_stats_t cum;
  assert_int_equal(eplb_stats_init(&cum, L, E, NULL), 0);
  fill(&cum, -1, 0, 1);
  int had;
  eplb_online_decision_t d;
  assert_int_equal(eplb_online_observe_cumulative(on, &cum, 1, &had, NULL), 0);
  assert_int_equal(had, 1);
  assert_int_equal(eplb_online_decide(on, &d, NULL), 0);
  assert_int_equal(d.rebalance, 1); /* contiguous placement is unbalanced */
  assert_true(d.imbalance_after < d.imbalance_before);
  assert_true(d.moves > 0);
  assert_int_equal(eplb_online_applied(on, &d.proposal, NULL), 0);
  eplb_online_decision_cleanup(&d);
  /* The same cumulative counters again: no new traffic, no rebalance. */
  assert_int_equal(eplb_online_observe_cumulative(on, &cum, 1, &had, NULL), 0);
  assert_int_equal(had, 0);
  assert_int_equal(eplb_online_decide(on, &d, NULL), 0);
  assert_int_equal(d.rebalance, 0);
  assert_int_equal(d.moves, 0);
  eplb_online_decision_cleanup(&d);
  /* More traffic of the same shape: still balanced, still no rebalance. */
  fill(&cum, -1, 0, 1);
  assert_int_equal(eplb_online_observe_cumulative(on, &cum, 1, &had, NULL), 0);
  assert_int_equal(had, 1);
  assert_int_equal(eplb_online_decide(on, &d, NULL), 0);
  assert_int_equal(d.rebalance, 0);
  eplb_online_decision_cleanup(&d);
  assert_int_equal(eplb_online_rounds(on), 2);
  eplb_stats_cleanup(&cum);
  eplb_online_destroy(on);
}

static void test_drift_moves_changed_layers_only(void **state) {
  (void)state;
  eplb_online_t *on = make(1.0, 1);
  eplb_stats_t r;
  assert_int_equal(eplb_stats_init(&r, L, E, NULL), 0);
  fill(&r, -1, 0, 1);
  int had;
  eplb_online_decision_t d;
  /* Round 1: up to one layer per round, so it takes L rounds to settle. */
  for (int k = 0; k < L; k++) {
    assert_int_equal(eplb_online_observe(on, &r, &had, NULL), 0);
    assert_int_equal(eplb_online_decide(on, &d, NULL), 0);
    assert_true(d.layers_changed <= 1);
    assert_int_equal(eplb_online_applied(on, &d.proposal, NULL), 0);
    eplb_online_decision_cleanup(&d);
  }
  assert_int_equal(eplb_online_observe(on, &r, &had, NULL), 0);
  assert_int_equal(eplb_online_decide(on, &d, NULL), 0);
  assert_int_equal(d.rebalance, 0);
  eplb_online_decision_cleanup(&d);
  /* Drift in layer 2 only: one rebalance, of layer 2 only. */
  eplb_placement_t before;
  assert_int_equal(eplb_placement_copy(&before, eplb_online_current(on), NULL),
                   0);
  memset(r.load, 0, sizeof(double) * L * E);
  fill(&r, 2, 5, 1);
  assert_int_equal(eplb_online_observe(on, &r, &had, NULL), 0);
  assert_int_equal(eplb_online_decide(on, &d, NULL), 0);
  assert_int_equal(d.rebalance, 1);
  assert_int_equal(d.layers_changed, 1);
  for (int l = 0; l < L; l++) {
    int same = memcmp(before.phy2log + l * S, d.proposal.phy2log + l * S,
                      sizeof(int32_t) * S) == 0;
    assert_int_equal(same, l != 2);
  }
  eplb_online_decision_cleanup(&d);
  eplb_placement_cleanup(&before);
  eplb_stats_cleanup(&r);
  eplb_online_destroy(on);
}

static void test_counter_restart_and_errors(void **state) {
  (void)state;
  eplb_online_t *on = make(0.5, 0);
  eplb_stats_t cum, small;
  assert_int_equal(eplb_stats_init(&cum, L, E, NULL), 0);
  fill(&cum, -1, 0, 10);
  int had;
  assert_int_equal(eplb_online_observe_cumulative(on, &cum, 0, &had, NULL), 0);
  assert_int_equal(had, 0); /* baseline only */
  assert_null(eplb_online_smoothed(on));
  memset(cum.load, 0, sizeof(double) * L * E);
  fill(&cum, -1, 0, 1); /* lower than before: the trainer restarted */
  assert_int_equal(eplb_online_observe_cumulative(on, &cum, 0, &had, NULL), 0);
  assert_int_equal(had, 1);
  assert_true(eplb_online_smoothed(on)->load[0] == cum.load[0]);
  /* Wrong shape and bad counts are errors that name the problem. */
  eplb_error_t err;
  assert_int_equal(eplb_stats_init(&small, L, E / 2, NULL), 0);
  assert_int_equal(eplb_online_observe(on, &small, &had, &err), EPLB_ESHAPE);
  assert_non_null(strstr(err.msg, "16 experts"));
  cum.load[3] = -1;
  assert_int_equal(eplb_online_observe(on, &cum, &had, &err), EPLB_ECOUNT);
  eplb_stats_cleanup(&small);
  eplb_stats_cleanup(&cum);
  eplb_online_destroy(on);
  /* Options out of range. */
  eplb_placement_t cur;
  assert_int_equal(eplb_placement_init(&cur, L, E, S, G, NULL), 0);
  assert_int_equal(eplb_placement_contiguous(&cur, NULL), 0);
  eplb_online_opts_t o;
  eplb_online_opts_default(&o);
  o.plan.num_slots = S;
  o.plan.num_gpus = G;
  o.ema_alpha = 0;
  assert_int_equal(eplb_online_create(&on, &o, &cur, &err), EPLB_EARG);
  assert_non_null(strstr(err.msg, "--ema-alpha"));
  o.ema_alpha = 0.5;
  o.layers_per_round = -1;
  assert_int_equal(eplb_online_create(&on, &o, &cur, &err), EPLB_EARG);
  o.layers_per_round = 0;
  o.plan.num_slots = 48;
  assert_int_equal(eplb_online_create(&on, &o, &cur, &err), EPLB_ESHAPE);
  assert_null(on);
  eplb_placement_cleanup(&cur);
  eplb_online_destroy(NULL);
}

/* ---- history: the last K rounds' windows ---------------------------- */

/* 2 GPUs, 4 experts, one layer: experts 0, 1 on GPU 0 and 2, 3 on GPU 1.
 * Round A loads experts 0 and 1, round B experts 2 and 3: their mean is
 * perfectly balanced on this placement, each round on its own is not (all
 * of it on one GPU).  Only the windows show it; a placement that pairs a
 * hot expert of A with one of B on each GPU balances both. */
static eplb_online_t *make_pairs(int32_t history, double alpha) {
  eplb_placement_t cur;
  assert_int_equal(eplb_placement_init(&cur, 1, 4, 4, 2, NULL), 0);
  assert_int_equal(eplb_placement_contiguous(&cur, NULL), 0);
  eplb_online_opts_t o;
  eplb_online_opts_default(&o);
  assert_int_equal(o.history, 1);
  o.plan.num_slots = 4;
  o.plan.num_gpus = 2;
  o.ema_alpha = alpha;
  o.history = history;
  eplb_online_t *on;
  eplb_error_t err;
  assert_int_equal(eplb_online_create(&on, &o, &cur, &err), 0);
  eplb_placement_cleanup(&cur);
  return on;
}

static void observe_pair(eplb_online_t *on, double a0, double a1, double a2,
                         double a3) {
  eplb_stats_t st;
  int had = 0;
  assert_int_equal(eplb_stats_init(&st, 1, 4, NULL), 0);
  st.load[0] = a0, st.load[1] = a1, st.load[2] = a2, st.load[3] = a3;
  assert_int_equal(eplb_online_observe(on, &st, &had, NULL), 0);
  assert_int_equal(had, 1);
  eplb_stats_cleanup(&st);
}

static void test_history_sees_what_the_mean_hides(void **state) {
  (void)state;
  eplb_online_decision_t d;
  /* history 1, EMA 0.5: the smoothed load is 5, 5, 5, 5: balanced. */
  eplb_online_t *on = make_pairs(1, 0.5);
  observe_pair(on, 10, 10, 0, 0);
  observe_pair(on, 0, 0, 10, 10);
  assert_int_equal(eplb_online_decide(on, &d, NULL), 0);
  assert_int_equal(d.rebalance, 0);
  assert_true(fabs(d.imbalance_before) < 1e-12);
  assert_int_equal(eplb_online_windows(on).num_scenarios, 0);
  eplb_online_decision_cleanup(&d);
  eplb_online_destroy(on);
  /* history 2: each window has all of its load on one GPU (imbalance 1);
   * the re-plan pairs the experts across the rounds: 0 on both. */
  on = make_pairs(2, 0.5);
  observe_pair(on, 10, 10, 0, 0);
  observe_pair(on, 0, 0, 10, 10);
  assert_int_equal(eplb_online_windows(on).num_scenarios, 2);
  assert_int_equal(eplb_online_decide(on, &d, NULL), 0);
  assert_int_equal(d.rebalance, 1);
  assert_true(fabs(d.imbalance_before - 1.0) < 1e-12);
  assert_true(fabs(d.imbalance_after) < 1e-12);
  assert_int_equal(d.layers_changed, 1);
  const int32_t *p = d.proposal.phy2log;
  /* GPU 0 holds one of {0, 1} and one of {2, 3}. */
  assert_true((p[0] < 2) != (p[1] < 2));
  eplb_online_decision_cleanup(&d);
  eplb_online_destroy(on);
}

/* Per layer, the mean over the windows with traffic in it of each one's
 * imbalance under p; what the decision reports. */
static double windows_objective(eplb_scenarios_t w, const eplb_placement_t *p) {
  double total = 0;
  for (int l = 0; l < p->num_layers; l++) {
    double sum = 0;
    int n = 0;
    for (int k = 0; k < w.num_scenarios; k++) {
      const double *x = w.stats[k].load + (size_t)l * p->num_experts;
      double t = 0;
      for (int e = 0; e < p->num_experts; e++)
        t += x[e];
      if (t == 0)
        continue;
      sum += eplb_layer_imbalance(x, p->num_experts,
                                  p->phy2log + (size_t)l * p->num_slots,
                                  p->num_slots, p->num_gpus);
      n++;
    }
    total += n ? sum / n : 0;
  }
  return total / p->num_layers;
}

static void test_history_objective_and_plan(void **state) {
  (void)state;
  /* Three rounds with history 2: the windows are the last two, oldest
   * first; the decision weighs their mean imbalance and proposes, for the
   * layers it moves, the plan balancing both windows
   * (eplb_plan_scenarios_from). */
  eplb_placement_t cur;
  assert_int_equal(eplb_placement_init(&cur, L, E, S, G, NULL), 0);
  assert_int_equal(eplb_placement_contiguous(&cur, NULL), 0);
  eplb_online_opts_t o;
  eplb_online_opts_default(&o);
  o.plan.num_slots = S;
  o.plan.num_gpus = G;
  o.history = 2;
  o.threshold = 0;
  o.min_gain = 0;
  eplb_online_t *on;
  assert_int_equal(eplb_online_create(&on, &o, &cur, NULL), 0);
  eplb_stats_t r[3];
  int had;
  for (int k = 0; k < 3; k++) {
    assert_int_equal(eplb_stats_init(&r[k], L, E, NULL), 0);
    fill(&r[k], k, 5 + 9 * k, 1 + k);
    if (k == 2) /* a layer idle in the last window: left out of its mean */
      memset(r[k].load + E, 0, sizeof(double) * E);
    assert_int_equal(eplb_online_observe(on, &r[k], &had, NULL), 0);
  }
  eplb_scenarios_t w = eplb_online_windows(on);
  assert_int_equal(w.num_scenarios, 2);
  assert_memory_equal(w.stats[0].load, r[1].load, sizeof(double) * L * E);
  assert_memory_equal(w.stats[1].load, r[2].load, sizeof(double) * L * E);
  eplb_online_decision_t d;
  assert_int_equal(eplb_online_decide(on, &d, NULL), 0);
  assert_true(fabs(d.imbalance_before - windows_objective(w, &cur)) < 1e-12);
  assert_true(fabs(d.imbalance_after - windows_objective(w, &d.proposal)) <
              1e-12);
  assert_true(d.imbalance_after < d.imbalance_before);
  eplb_placement_t plan;
  eplb_scenarios_t two = {2, r + 1, NULL};
  assert_int_equal(eplb_plan_scenarios_from(&two, &cur, &o.plan, &plan, NULL),
                   0);
  for (int l = 0; l < L; l++) {
    const int32_t *a = d.proposal.phy2log + l * S, *b = plan.phy2log + l * S,
                  *c = cur.phy2log + l * S;
    /* Every layer is the plan's or kept. */
    assert_true(memcmp(a, b, sizeof(int32_t) * S) == 0 ||
                memcmp(a, c, sizeof(int32_t) * S) == 0);
  }
  assert_true(d.layers_changed > 0);
  eplb_placement_cleanup(&plan);
  eplb_online_decision_cleanup(&d);
  for (int k = 0; k < 3; k++)
    eplb_stats_cleanup(&r[k]);
  eplb_placement_cleanup(&cur);
  eplb_online_destroy(on);
}

static void test_history_one_is_today(void **state) {
  (void)state;
  /* history 0 (a zeroed struct) and 1 decide exactly as before: on the
   * smoothed load with eplb_plan_from. */
  for (int h = 0; h <= 1; h++) {
    eplb_online_t *on = NULL;
    eplb_placement_t cur;
    assert_int_equal(eplb_placement_init(&cur, L, E, S, G, NULL), 0);
    assert_int_equal(eplb_placement_contiguous(&cur, NULL), 0);
    eplb_online_opts_t o;
    eplb_online_opts_default(&o);
    o.plan.num_slots = S;
    o.plan.num_gpus = G;
    o.history = h;
    o.threshold = 0;
    o.min_gain = 0;
    assert_int_equal(eplb_online_create(&on, &o, &cur, NULL), 0);
    eplb_stats_t st;
    int had;
    assert_int_equal(eplb_stats_init(&st, L, E, NULL), 0);
    fill(&st, 1, 3, 1);
    assert_int_equal(eplb_online_observe(on, &st, &had, NULL), 0);
    fill(&st, 2, 7, 1);
    assert_int_equal(eplb_online_observe(on, &st, &had, NULL), 0);
    assert_int_equal(eplb_online_windows(on).num_scenarios, 0);
    eplb_online_decision_t d;
    assert_int_equal(eplb_online_decide(on, &d, NULL), 0);
    eplb_placement_t plan;
    assert_int_equal(
        eplb_plan_from(eplb_online_smoothed(on), &cur, &o.plan, &plan, NULL),
        0);
    eplb_balance_t b;
    assert_int_equal(
        eplb_balance(eplb_online_smoothed(on), &d.proposal, &b, NULL), 0);
    assert_true(fabs(b.imbalance - d.imbalance_after) < 1e-12);
    for (int l = 0; l < L; l++)
      assert_true(memcmp(d.proposal.phy2log + l * S, plan.phy2log + l * S,
                         sizeof(int32_t) * S) == 0 ||
                  memcmp(d.proposal.phy2log + l * S, cur.phy2log + l * S,
                         sizeof(int32_t) * S) == 0);
    eplb_placement_cleanup(&plan);
    eplb_online_decision_cleanup(&d);
    eplb_stats_cleanup(&st);
    eplb_placement_cleanup(&cur);
    eplb_online_destroy(on);
  }
}

static void test_history_range(void **state) {
  (void)state;
  eplb_placement_t cur;
  assert_int_equal(eplb_placement_init(&cur, 1, 4, 4, 2, NULL), 0);
  assert_int_equal(eplb_placement_contiguous(&cur, NULL), 0);
  eplb_online_opts_t o;
  eplb_online_opts_default(&o);
  o.plan.num_slots = 4;
  o.plan.num_gpus = 2;
  eplb_online_t *on = NULL;
  eplb_error_t err;
  int32_t bad[] = {-1, EPLB_MAX_SCENARIOS + 1};
  for (int i = 0; i < 2; i++) {
    o.history = bad[i];
    assert_int_equal(eplb_online_create(&on, &o, &cur, &err), EPLB_EARG);
    assert_non_null(strstr(err.msg, "--history"));
    assert_null(on);
  }
  /* The most windows kept: the oldest goes first. */
  o.history = EPLB_MAX_SCENARIOS;
  assert_int_equal(eplb_online_create(&on, &o, &cur, &err), 0);
  for (int k = 0; k < EPLB_MAX_SCENARIOS + 3; k++)
    observe_pair(on, k + 1, 1, 1, 1);
  eplb_scenarios_t w = eplb_online_windows(on);
  assert_int_equal(w.num_scenarios, EPLB_MAX_SCENARIOS);
  assert_true(w.stats[0].load[0] == 4);
  assert_true(w.stats[EPLB_MAX_SCENARIOS - 1].load[0] ==
              EPLB_MAX_SCENARIOS + 3);
  eplb_online_destroy(on);
  eplb_placement_cleanup(&cur);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unchanged_cumulative),
      cmocka_unit_test(test_drift_moves_changed_layers_only),
      cmocka_unit_test(test_counter_restart_and_errors),
      cmocka_unit_test(test_history_sees_what_the_mean_hides),
      cmocka_unit_test(test_history_objective_and_plan),
      cmocka_unit_test(test_history_one_is_today),
      cmocka_unit_test(test_history_range),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
