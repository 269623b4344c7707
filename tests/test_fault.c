/* test_fault.c - the EPLB_FAULT parser: valid faults are found, malformed
 * ones are errors (a typo must not make a fault test pass silently). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/fault.h"

/* Sets EPLB_FAULT (NULL: unsets) and forgets the parsed table. */
static void set_fault(const char *v) {
  if (v)
    setenv("EPLB_FAULT", v, 1);
  else
    unsetenv("EPLB_FAULT");
  eplb__fault_reset();
}

static void test_unset_is_inert(void **state) {
  (void)state;
  set_fault(NULL);
  assert_int_equal(eplb__fault_load(NULL), 0);
  for (int r = 0; r < 8; r++) {
    assert_int_equal(eplb__fault_corrupt_plan(r), 0);
    assert_int_equal(eplb__fault_crash_here("transfer", r), 0);
  }
}

static void test_corrupt_list(void **state) {
  (void)state;
  set_fault("corrupt-plan:3,5");
  assert_int_equal(eplb__fault_load(NULL), 0);
  assert_int_equal(eplb__fault_corrupt_plan(3), 1);
  assert_int_equal(eplb__fault_corrupt_plan(5), 1);
  assert_int_equal(eplb__fault_corrupt_plan(4), 0);
  assert_int_equal(eplb__fault_crash_here("commit", 3), 0);
}

static void test_several_faults(void **state) {
  (void)state;
  set_fault("crash:commit:2;corrupt-plan:0;crash:rename:7");
  assert_int_equal(eplb__fault_load(NULL), 0);
  assert_int_equal(eplb__fault_crash_here("commit", 2), 1);
  assert_int_equal(eplb__fault_crash_here("commit", 7), 0);
  assert_int_equal(eplb__fault_crash_here("rename", 7), 1);
  assert_int_equal(eplb__fault_crash_here("transfer", 2), 0);
  assert_int_equal(eplb__fault_corrupt_plan(0), 1);
}

static void test_hang(void **state) {
  (void)state;
  set_fault("hang:transfer:3;crash:commit:1");
  assert_int_equal(eplb__fault_load(NULL), 0);
  assert_int_equal(eplb__fault_hang_here("transfer", 3), 1);
  assert_int_equal(eplb__fault_hang_here("transfer", 1), 0);
  assert_int_equal(eplb__fault_hang_here("commit", 3), 0);
  /* a hang is not a crash, and the other way round */
  assert_int_equal(eplb__fault_crash_here("transfer", 3), 0);
  assert_int_equal(eplb__fault_hang_here("commit", 1), 0);
  /* a rank the fault does not name returns at once */
  eplb__fault_hang_point("transfer", 2, "test");
  set_fault(NULL);
  assert_int_equal(eplb__fault_hang_here("transfer", 3), 0);
}

/* Every phase of the pipeline has a hang and a crash point; write faults
 * name a rank. */
static void test_every_phase(void **state) {
  (void)state;
  const char *ph[] = {"read", "shape", "reduce", "plan", "distribute",
                      "verify", "transfer", "commit", "rename"};
  for (size_t i = 0; i < sizeof(ph) / sizeof(ph[0]); i++) {
    char spec[64];
    snprintf(spec, sizeof(spec), "hang:%s:2;crash:%s:1", ph[i], ph[i]);
    set_fault(spec);
    assert_int_equal(eplb__fault_load(NULL), 0);
    assert_int_equal(eplb__fault_hang_here(ph[i], 2), 1);
    assert_int_equal(eplb__fault_hang_here(ph[i], 1), 0);
    assert_int_equal(eplb__fault_crash_here(ph[i], 1), 1);
    assert_int_equal(eplb__fault_crash_here(ph[(i + 1) % 9], 1), 0);
  }
  set_fault("enospc:3;lose-write:0");
  assert_int_equal(eplb__fault_write(3), 1);
  assert_int_equal(eplb__fault_write(0), 2);
  assert_int_equal(eplb__fault_write(1), 0);
  set_fault("corrupt-row:2;lose-write:1");
  assert_int_equal(eplb__fault_corrupt_row(2), 1);
  assert_int_equal(eplb__fault_corrupt_row(1), 0);
  assert_int_equal(eplb__fault_write(2), 0); /* not a write fault */
  assert_int_equal(eplb__fault_write(1), 2);
  set_fault(NULL);
}

static void test_malformed(void **state) {
  (void)state;
  const char *bad[] = {"corrupt-plan:", "corrupt-plan:3,,5", "corrupt-plan:x",
                       "crash:transfer", "crash:explode:1", "crash:commit:-1",
                       "crash", "boom:1", "corrupt-plan:1;", ";", "hang:transfer",
                       "hang:transfer:", "hang:explode:1", "hang:1", "hang:transfer:x",
                       "enospc:", "enospc:x", "lose-write:-1", "crash:journal:",
                       "corrupt-row:", "corrupt-row:1,2", "corrupt-row:x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    eplb_error_t err = {0};
    set_fault(bad[i]);
    assert_int_equal(eplb__fault_load(&err), EPLB_EARG);
    assert_non_null(strstr(err.msg, "EPLB_FAULT"));
    /* A malformed table injects nothing. */
    assert_int_equal(eplb__fault_corrupt_plan(1), 0);
    assert_int_equal(eplb__fault_corrupt_row(1), 0);
  }
  set_fault(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unset_is_inert),
      cmocka_unit_test(test_corrupt_list),
      cmocka_unit_test(test_several_faults),
      cmocka_unit_test(test_hang),
      cmocka_unit_test(test_every_phase),
      cmocka_unit_test(test_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
