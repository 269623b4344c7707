/* test_online.c - when to rebalance: cumulative counters, smoothing,
 * thresholds, the per-round layer budget. */
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
static void fill(eplb_stats_t *st, int hot_layer, int hot_expert, double scale) {
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
  assert_int_equal(eplb_placement_copy(&before, eplb_online_current(on), NULL), 0);
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unchanged_cumulative),
      cmocka_unit_test(test_drift_moves_changed_layers_only),
      cmocka_unit_test(test_counter_restart_and_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
