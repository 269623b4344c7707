/* test_stats.c - the histogram type: sums stay exact or fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "eplb/eplb.h"

/* 2^53 + 1 rounds to 2^53 in a double: the check must look at the room
 * left, not at the rounded sum. */
static void test_add_refuses_inexact_sum(void **state) {
  (void)state;
  eplb_stats_t a = {0}, b = {0};
  eplb_error_t err = {0};
  assert_int_equal(eplb_stats_init(&a, 1, 2, NULL), 0);
  assert_int_equal(eplb_stats_init(&b, 1, 2, NULL), 0);
  a.load[1] = EPLB_MAX_COUNT;
  b.load[1] = 1;
  assert_int_equal(eplb_stats_add(&a, &b, "a.json", "b.json", &err), EPLB_ECOUNT);
  assert_non_null(strstr(err.msg, "a.json + b.json"));
  assert_non_null(strstr(err.msg, "expert 1"));
  /* Up to 2^53 exactly is fine. */
  a.load[1] = EPLB_MAX_COUNT - 1;
  assert_int_equal(eplb_stats_add(&a, &b, "a.json", "b.json", &err), 0);
  assert_true(a.load[1] == EPLB_MAX_COUNT);
  eplb_stats_cleanup(&a);
  eplb_stats_cleanup(&b);
}

static void test_add_names_shapes(void **state) {
  (void)state;
  eplb_stats_t a = {0}, b = {0};
  eplb_error_t err = {0};
  eplb_stats_init(&a, 2, 4, NULL);
  eplb_stats_init(&b, 2, 8, NULL);
  assert_int_equal(eplb_stats_add(&a, &b, "x", "y", &err), EPLB_ESHAPE);
  assert_non_null(strstr(err.msg, "x has 2 layers x 4 experts but y has 2 x 8"));
  eplb_stats_cleanup(&b);
  eplb_stats_init(&b, 2, 4, NULL);
  b.layer_ids[1] = 7;
  assert_int_equal(eplb_stats_add(&a, &b, "x", "y", &err), EPLB_ESHAPE);
  assert_non_null(strstr(err.msg, "layer 7"));
  eplb_stats_cleanup(&a);
  eplb_stats_cleanup(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_refuses_inexact_sum),
      cmocka_unit_test(test_add_names_shapes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
