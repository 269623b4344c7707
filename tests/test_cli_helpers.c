/* test_cli_helpers.c - the option helpers every eplb program uses
 * (src/cli/cli.c): strict integer and number parsing with messages that
 * name the option, the value and the range; exit codes for library errors;
 * the monotonic clock.  stderr is captured to check the messages. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

/* Captures what the code under test writes to stderr. */
static char captured[4096];
static int saved_fd = -1;
static FILE *capture_file;

static void capture_start(void) {
  fflush(stderr);
  capture_file = tmpfile();
  assert_non_null(capture_file);
  saved_fd = dup(fileno(stderr));
  assert_true(saved_fd >= 0);
  assert_true(dup2(fileno(capture_file), fileno(stderr)) >= 0);
}

static const char *capture_end(void) {
  fflush(stderr);
  assert_true(dup2(saved_fd, fileno(stderr)) >= 0);
  close(saved_fd);
  rewind(capture_file);
  size_t n = fread(captured, 1, sizeof(captured) - 1, capture_file);
  captured[n] = '\0';
  fclose(capture_file);
  return captured;
}

static void assert_has(const char *text, const char *needle) {
  if (strstr(text, needle) == NULL)
    fail_msg("\"%s\" lacks \"%s\"", text, needle);
}

static void test_parse_int_good(void **state) {
  (void)state;
  int32_t v = 0;
  assert_int_equal(eplb_cli_parse_int("p", "--n", "12", 1, 100, &v), 0);
  assert_int_equal(v, 12);
  assert_int_equal(eplb_cli_parse_int("p", "--n", "-1", -1, 100, &v), 0);
  assert_int_equal(v, -1);
  assert_int_equal(eplb_cli_parse_int("p", "--n", "100", 1, 100, &v), 0);
  assert_int_equal(v, 100);
  assert_int_equal(eplb_cli_parse_int("p", "--n", "2147483647", 0, INT32_MAX, &v), 0);
  assert_int_equal(v, INT32_MAX);
}

/* Each bad value: EPLB_EARG, *out untouched, and one line on stderr that
 * names the program, the option, the value and the range. */
static void test_parse_int_bad(void **state) {
  (void)state;
  const char *bad[] = {"", " 5", "5 ", "abc", "12abc", "1.5", "0x10", "0",
                       "101", "-3", "99999999999999999999999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int32_t v = 77;
    capture_start();
    int rc = eplb_cli_parse_int("eplb-x", "--num-slots", bad[i], 1, 100, &v);
    const char *msg = capture_end();
    assert_int_equal(rc, EPLB_EARG);
    assert_int_equal(v, 77);
    assert_has(msg, "eplb-x: error: --num-slots ");
    assert_has(msg, bad[i]);
    assert_has(msg, "1..100");
    assert_has(msg, "(see eplb-x --help)\n");
    assert_ptr_equal(strchr(msg, '\n'), msg + strlen(msg) - 1);
  }
}

static void test_parse_double(void **state) {
  (void)state;
  double d = 0;
  assert_int_equal(eplb_cli_parse_double("p", "--c", "0.5", 0, 1, &d), 0);
  assert_true(d == 0.5);
  assert_int_equal(eplb_cli_parse_double("p", "--c", "1e-3", 0, 1, &d), 0);
  assert_true(d == 1e-3);
  const char *bad[] = {"", "nan", "inf", "-inf", "1e999", "0.5x", " 1", "2", "-0.1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    d = 42;
    capture_start();
    int rc = eplb_cli_parse_double("p", "--move-cost", bad[i], 0, 1, &d);
    const char *msg = capture_end();
    assert_int_equal(rc, EPLB_EARG);
    assert_true(d == 42);
    assert_has(msg, "p: error: --move-cost ");
    assert_has(msg, "0..1");
  }
}

static void test_report_exit_codes(void **state) {
  (void)state;
  eplb_error_t err;
  eplb_error_set(&err, EPLB_EARG, "--num-gpus 3 does not divide 8");
  capture_start();
  int code = eplb_cli_report("prog", &err);
  const char *msg = capture_end();
  assert_int_equal(code, EPLB_CLI_EXIT_USAGE);
  assert_string_equal(msg, "prog: error: --num-gpus 3 does not divide 8 (see prog --help)\n");
  eplb_error_set(&err, EPLB_EIO, "a.json: cannot open");
  capture_start();
  code = eplb_cli_report("prog", &err);
  msg = capture_end();
  assert_int_equal(code, EPLB_CLI_EXIT_RUNTIME);
  assert_string_equal(msg, "prog: error: a.json: cannot open\n");
}

static void test_bad_option(void **state) {
  (void)state;
  char *argv[] = {"prog", "--frob", "--stats", NULL};
  capture_start();
  int code = eplb_cli_bad_option("prog", '?', argv, 2);
  const char *msg = capture_end();
  assert_int_equal(code, EPLB_CLI_EXIT_USAGE);
  assert_has(msg, "unknown option '--frob'");
  capture_start();
  code = eplb_cli_bad_option("prog", ':', argv, 3);
  msg = capture_end();
  assert_int_equal(code, EPLB_CLI_EXIT_USAGE);
  assert_has(msg, "option '--stats' needs a value");
}

static void test_clock_monotonic(void **state) {
  (void)state;
  double a = eplb_cli_now(), b = eplb_cli_now();
  assert_true(a > 0);
  assert_true(b >= a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_int_good),
      cmocka_unit_test(test_parse_int_bad),
      cmocka_unit_test(test_parse_double),
      cmocka_unit_test(test_report_exit_codes),
      cmocka_unit_test(test_bad_option),
      cmocka_unit_test(test_clock_monotonic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
