/* test_scenarios.c - plans of several scenarios (eplb_plan_scenarios):
 * one scenario is the plain plan byte for byte; several give valid maps
 * that balance each scenario at least as well as the plan of their mean;
 * weights, re-plans, hierarchical domains and the checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/eplb.h"

static uint64_t rng_state = 88172645463325252ULL;
static double rng_unit(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* K histograms of L layers x E experts: a shared skewed profile, each
 * scenario's own multiplicative drift (log-normal-ish, `spread`). */
static eplb_stats_t *make_scenarios(int32_t K, int32_t L, int32_t E,
                                    double spread) {
  eplb_stats_t *st = calloc((size_t)K, sizeof(*st));
  assert_non_null(st);
  double *base = malloc(sizeof(double) * (size_t)L * E);
  for (int32_t i = 0; i < L * E; i++)
    base[i] = 1000.0 / pow(1 + rng_unit() * 40, 1.1);
  for (int32_t k = 0; k < K; k++) {
    assert_int_equal(eplb_stats_init(&st[k], L, E, NULL), 0);
    for (int32_t i = 0; i < L * E; i++)
      st[k].load[i] = floor(base[i] * exp(spread * (2 * rng_unit() - 1)) *
                            (k + 1)); /* volumes differ: normalised away */
  }
  free(base);
  return st;
}

static void free_scenarios(eplb_stats_t *st, int32_t K) {
  for (int32_t k = 0; k < K; k++)
    eplb_stats_cleanup(&st[k]);
  free(st);
}

static eplb_plan_opts_t opts(int32_t S, int32_t G) {
  eplb_plan_opts_t o;
  eplb_plan_opts_default(&o);
  o.num_slots = S;
  o.num_gpus = G;
  return o;
}

/* Per-layer normalised weighted mean of the scenarios, as a histogram. */
static void mean_of(const eplb_stats_t *st, int32_t K, const double *w,
                    eplb_stats_t *out) {
  int32_t L = st[0].num_layers, E = st[0].num_experts;
  assert_int_equal(eplb_stats_init(out, L, E, NULL), 0);
  double wsum = 0;
  for (int32_t k = 0; k < K; k++)
    wsum += w ? w[k] : 1;
  for (int32_t k = 0; k < K; k++)
    for (int32_t l = 0; l < L; l++) {
      double t = 0;
      for (int32_t e = 0; e < E; e++)
        t += st[k].load[l * E + e];
      for (int32_t e = 0; t > 0 && e < E; e++)
        out->load[l * E + e] +=
            (w ? w[k] : 1) / wsum * st[k].load[l * E + e] / t;
    }
}

/* Weighted mean over scenarios of each one's imbalance in layer l. */
static double layer_objective(const eplb_stats_t *st, int32_t K,
                              const double *w, const eplb_placement_t *p,
                              int32_t l) {
  int32_t E = st[0].num_experts;
  double f = 0, wsum = 0;
  for (int32_t k = 0; k < K; k++) {
    double wk = w ? w[k] : 1;
    f += wk * eplb_layer_imbalance(st[k].load + (size_t)l * E, E,
                                   p->phy2log + (size_t)l * p->num_slots,
                                   p->num_slots, p->num_gpus);
    wsum += wk;
  }
  return f / wsum;
}

/* One scenario: exactly eplb_plan's map, for any weight. */
static void test_one_scenario_is_plain_plan(void **state) {
  (void)state;
  const int32_t shapes[][3] = {{64, 80, 16}, {256, 288, 36}, {32, 32, 8}};
  for (size_t i = 0; i < 3; i++) {
    int32_t E = shapes[i][0];
    eplb_stats_t *st = make_scenarios(1, 4, E, 0.5);
    eplb_plan_opts_t o = opts(shapes[i][1], shapes[i][2]);
    eplb_placement_t a, b;
    double w = 7.5;
    eplb_scenarios_t sc = {.num_scenarios = 1, .stats = st, .weights = &w};
    assert_int_equal(eplb_plan(st, &o, &a, NULL), 0);
    assert_int_equal(eplb_plan_scenarios(&sc, &o, &b, NULL), 0);
    assert_memory_equal(a.phy2log, b.phy2log,
                        sizeof(int32_t) * 4 * (size_t)a.num_slots);
    eplb_placement_cleanup(&a);
    eplb_placement_cleanup(&b);
    free_scenarios(st, 1);
  }
}

/* Several scenarios: a valid map (every expert placed, no GPU holding one
 * twice) whose objective is never above the balanced plan of the mean's,
 * and strictly below it on most layers; the same for any thread count. */
static void test_robust_beats_plan_of_mean(void **state) {
  (void)state;
  int32_t K = 4, L = 8, E = 128, S = 144, G = 18;
  eplb_stats_t *st = make_scenarios(K, L, E, 1.0);
  eplb_plan_opts_t o = opts(S, G);
  eplb_scenarios_t sc = {.num_scenarios = K, .stats = st};
  eplb_placement_t rob, mean_plan, rob4;
  eplb_stats_t mean;
  mean_of(st, K, NULL, &mean);
  assert_int_equal(eplb_plan_scenarios(&sc, &o, &rob, NULL), 0);
  assert_int_equal(eplb_plan(&mean, &o, &mean_plan, NULL), 0);
  assert_int_equal(eplb_placement_check(&rob, 1, "robust", NULL), 0);
  int better = 0;
  for (int32_t l = 0; l < L; l++) {
    double fr = layer_objective(st, K, NULL, &rob, l);
    double fm = layer_objective(st, K, NULL, &mean_plan, l);
    assert_true(fr <= fm + 1e-12);
    better += fr < fm - 1e-9;
  }
  assert_true(better >= L / 2);
  o.threads = 4;
  assert_int_equal(eplb_plan_scenarios(&sc, &o, &rob4, NULL), 0);
  assert_memory_equal(rob.phy2log, rob4.phy2log,
                      sizeof(int32_t) * (size_t)L * S);
  eplb_placement_cleanup(&rob);
  eplb_placement_cleanup(&rob4);
  eplb_placement_cleanup(&mean_plan);
  eplb_stats_cleanup(&mean);
  free_scenarios(st, K);
}

/* A scenario weighted up is balanced better than with equal weights. */
static void test_weights_steer(void **state) {
  (void)state;
  int32_t K = 3, L = 6, E = 96, S = 112, G = 16;
  eplb_stats_t *st = make_scenarios(K, L, E, 1.2);
  eplb_plan_opts_t o = opts(S, G);
  double w[3] = {50, 1, 1};
  eplb_scenarios_t eq = {.num_scenarios = K, .stats = st};
  eplb_scenarios_t heavy = {.num_scenarios = K, .stats = st, .weights = w};
  eplb_placement_t pe, ph;
  assert_int_equal(eplb_plan_scenarios(&eq, &o, &pe, NULL), 0);
  assert_int_equal(eplb_plan_scenarios(&heavy, &o, &ph, NULL), 0);
  eplb_balance_t be, bh;
  assert_int_equal(eplb_balance(&st[0], &pe, &be, NULL), 0);
  assert_int_equal(eplb_balance(&st[0], &ph, &bh, NULL), 0);
  assert_true(bh.imbalance < be.imbalance);
  eplb_placement_cleanup(&pe);
  eplb_placement_cleanup(&ph);
  free_scenarios(st, K);
}

/* Hierarchical: every expert of a group stays on the node its group was
 * packed to (the robust swaps stay inside a node). */
static void test_hierarchical_keeps_nodes(void **state) {
  (void)state;
  int32_t K = 3, L = 4, E = 64, S = 96, G = 16, N = 4, NG = 8;
  eplb_stats_t *st = make_scenarios(K, L, E, 1.0);
  eplb_plan_opts_t o = opts(S, G);
  o.num_nodes = N;
  o.num_groups = NG;
  eplb_scenarios_t sc = {.num_scenarios = K, .stats = st};
  eplb_placement_t p;
  assert_int_equal(eplb_plan_scenarios(&sc, &o, &p, NULL), 0);
  assert_int_equal(eplb_placement_check(&p, 1, "hier", NULL), 0);
  int32_t spn = S / N, gsize = E / NG;
  for (int32_t l = 0; l < L; l++) {
    int32_t node_of_group[8];
    for (int32_t q = 0; q < NG; q++)
      node_of_group[q] = -1;
    for (int32_t s = 0; s < S; s++) {
      int32_t q = p.phy2log[l * S + s] / gsize, n = s / spn;
      if (node_of_group[q] < 0)
        node_of_group[q] = n;
      assert_int_equal(node_of_group[q], n);
    }
  }
  eplb_placement_cleanup(&p);
  free_scenarios(st, K);
}

/* Re-plans: a current map balanced on every scenario within the keep
 * threshold is kept; max_moves holds per layer. */
static void test_replan(void **state) {
  (void)state;
  int32_t K = 3, L = 5, E = 64, S = 80, G = 16;
  eplb_stats_t *st = make_scenarios(K, L, E, 1.0);
  eplb_plan_opts_t o = opts(S, G);
  eplb_scenarios_t sc = {.num_scenarios = K, .stats = st};
  eplb_placement_t fresh, again, cur, lim;
  assert_int_equal(eplb_plan_scenarios(&sc, &o, &fresh, NULL), 0);
  o.keep_threshold = 100; /* everything is balanced enough: kept */
  assert_int_equal(eplb_plan_scenarios_from(&sc, &fresh, &o, &again, NULL), 0);
  assert_memory_equal(fresh.phy2log, again.phy2log,
                      sizeof(int32_t) * (size_t)L * S);
  o.keep_threshold = 0;
  o.max_moves = 3;
  assert_int_equal(eplb_placement_init_contiguous(&cur, L, E, S, G, NULL), 0);
  assert_int_equal(eplb_plan_scenarios_from(&sc, &cur, &o, &lim, NULL), 0);
  assert_int_equal(eplb_placement_check(&lim, 0, "re-plan", NULL), 0);
  for (int32_t l = 0; l < L; l++) {
    eplb_placement_t a = cur, b = lim;
    a.num_layers = b.num_layers = 1;
    a.phy2log = cur.phy2log + (size_t)l * S;
    b.phy2log = lim.phy2log + (size_t)l * S;
    assert_true(eplb_placement_moves(&a, &b) <= 3);
  }
  eplb_placement_cleanup(&fresh);
  eplb_placement_cleanup(&again);
  eplb_placement_cleanup(&cur);
  eplb_placement_cleanup(&lim);
  free_scenarios(st, K);
}

/* A layer without traffic in one scenario plans the others; without
 * traffic anywhere it is spread evenly. */
static void test_idle_layers(void **state) {
  (void)state;
  int32_t K = 2, L = 3, E = 32, S = 40, G = 8;
  eplb_stats_t *st = make_scenarios(K, L, E, 1.0);
  memset(st[0].load, 0, sizeof(double) * E); /* layer 0 idle in scenario 0 */
  memset(st[0].load + 2 * E, 0, sizeof(double) * E);
  memset(st[1].load + 2 * E, 0, sizeof(double) * E); /* layer 2: no one */
  eplb_plan_opts_t o = opts(S, G);
  eplb_scenarios_t sc = {.num_scenarios = K, .stats = st};
  eplb_placement_t p;
  assert_int_equal(eplb_plan_scenarios(&sc, &o, &p, NULL), 0);
  assert_int_equal(eplb_placement_check(&p, 1, "idle", NULL), 0);
  eplb_placement_cleanup(&p);
  free_scenarios(st, K);
}

/* The checks: counts, shapes, weights, K; the message names the
 * scenario. */
static void test_checks(void **state) {
  (void)state;
  int32_t K = 2, L = 2, E = 16, S = 16, G = 4;
  eplb_stats_t *st = make_scenarios(K, L, E, 0.5);
  eplb_plan_opts_t o = opts(S, G);
  eplb_placement_t p;
  eplb_error_t err;
  eplb_scenarios_t sc = {.num_scenarios = 0, .stats = st};
  assert_int_equal(eplb_plan_scenarios(&sc, &o, &p, &err), EPLB_EARG);
  double w[2] = {1, 0};
  sc = (eplb_scenarios_t){.num_scenarios = 2, .stats = st, .weights = w};
  assert_int_equal(eplb_plan_scenarios(&sc, &o, &p, &err), EPLB_EARG);
  assert_non_null(strstr(eplb_error_message(&err), "scenario 1"));
  w[1] = NAN;
  assert_int_equal(eplb_plan_scenarios(&sc, &o, &p, &err), EPLB_EARG);
  sc.weights = NULL;
  st[1].load[3] = -1;
  assert_int_equal(eplb_plan_scenarios(&sc, &o, &p, &err), EPLB_ECOUNT);
  assert_non_null(strstr(eplb_error_message(&err), "scenario 1"));
  st[1].load[3] = 1;
  st[1].layer_ids[1] = 9;
  assert_int_equal(eplb_plan_scenarios(&sc, &o, &p, &err), EPLB_ESHAPE);
  free_scenarios(st, K);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_scenario_is_plain_plan),
      cmocka_unit_test(test_robust_beats_plan_of_mean),
      cmocka_unit_test(test_weights_steer),
      cmocka_unit_test(test_hierarchical_keeps_nodes),
      cmocka_unit_test(test_replan),
      cmocka_unit_test(test_idle_layers),
      cmocka_unit_test(test_checks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
