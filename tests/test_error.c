/* test_error.c - the error model: codes, names, messages, context. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "eplb/eplb.h"

static void test_names_and_messages(void **state) {
  (void)state;
  assert_string_equal(eplb_err_name(0), "EPLB_OK");
  assert_string_equal(eplb_err_name(EPLB_EPARSE), "EPLB_EPARSE");
  assert_string_equal(eplb_err_name(EPLB_EDIVERGED), "EPLB_EDIVERGED");
  assert_string_equal(eplb_err_name(12345), "EPLB_EUNKNOWN");
  assert_string_equal(eplb_strerror(EPLB_ENOMEM), "out of memory");
  assert_string_equal(eplb_strerror(-999), "unknown error");
  /* Every code is negative and has a distinct name. */
  int codes[] = {
#define CODE_(name, val, msg) EPLB_E##name,
      EPLB_ERRNO_MAP(CODE_)
#undef CODE_
  };
  size_t n = sizeof(codes) / sizeof(codes[0]);
  for (size_t i = 0; i < n; i++) {
    assert_true(codes[i] < 0);
    for (size_t j = i + 1; j < n; j++) {
      assert_int_not_equal(codes[i], codes[j]);
      assert_string_not_equal(eplb_err_name(codes[i]), eplb_err_name(codes[j]));
    }
  }
}

static void test_set_and_prefix(void **state) {
  (void)state;
  eplb_error_t err;
  eplb_error_clear(&err);
  assert_int_equal(err.code, 0);
  assert_string_equal(eplb_error_message(&err), "success");
  int rc = eplb_error_set(&err, EPLB_ECOUNT, "layer %d, expert %d: count %d\nis negative", 3, 17, -5);
  assert_int_equal(rc, EPLB_ECOUNT);
  assert_int_equal(err.code, EPLB_ECOUNT);
  /* one line: the newline became a space */
  assert_string_equal(err.msg, "layer 3, expert 17: count -5 is negative");
  assert_int_equal(eplb_error_prefix(&err, "%s", "stats.json"), EPLB_ECOUNT);
  assert_string_equal(err.msg, "stats.json: layer 3, expert 17: count -5 is negative");
  /* NULL err is allowed everywhere. */
  assert_int_equal(eplb_error_set(NULL, EPLB_EIO, "x"), EPLB_EIO);
  assert_int_equal(eplb_error_prefix(NULL, "x"), 0);
  eplb_error_clear(NULL);
  /* an over-long message is truncated, not overflowed */
  char big[4096];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  eplb_error_set(&err, EPLB_EIO, "%s", big);
  assert_int_equal(strlen(err.msg), EPLB_ERROR_MSG_MAX - 1);
}

static void test_version(void **state) {
  (void)state;
  const char *v = eplb_version();
  assert_non_null(v);
  int a, b, c;
  assert_int_equal(sscanf(v, "%d.%d.%d", &a, &b, &c), 3);
  assert_int_equal(a, EPLB_VERSION_MAJOR);
  assert_int_equal(b, EPLB_VERSION_MINOR);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names_and_messages),
      cmocka_unit_test(test_set_and_prefix),
      cmocka_unit_test(test_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
