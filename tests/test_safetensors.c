/* test_safetensors.c - the one safetensors header parser and the layout of
 * new files (src/formats/safetensors.c).
 *
 * Headers are built here as text, one defect each: the header length past
 * the file or over the cap, an unknown or sub-byte dtype, a shape that does
 * not match the offsets, offsets past the data, overlapping tensors, a name
 * twice, metadata that is not strings.  Every message names the file and,
 * where there is one, the tensor.  A laid-out file parses back to the same
 * names, dtypes, shapes and offsets. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/safetensors.h"

/* 8-byte length + header text + `data` zero bytes, in buf; returns size. */
static size_t build(unsigned char *buf, const char *head, size_t data) {
  size_t n = strlen(head);
  for (int b = 0; b < 8; b++)
    buf[b] = (unsigned char)((uint64_t)n >> (8 * b));
  memcpy(buf + 8, head, n);
  memset(buf + 8 + n, 0, data);
  return 8 + n + data;
}

/* Parses head (+ data bytes) expecting `code` and `needle`. */
static void expect(const char *head, size_t data, int code,
                   const char *needle) {
  unsigned char buf[4096];
  size_t len = build(buf, head, data);
  eplb__st_header_t h;
  eplb_error_t err;
  eplb_error_clear(&err);
  int rc = eplb__st_parse("x.safetensors", buf, len, len, &h, &err);
  if (rc != code || (needle && strstr(err.msg, needle) == NULL))
    fail_msg("%s: rc %d (want %d), message '%s' (want '%s')", head, rc, code,
             err.msg, needle ? needle : "");
  if (code) {
    assert_non_null(strstr(err.msg, "x.safetensors"));
    assert_null(strchr(err.msg, '\n'));
    assert_null(h.tensors);
  }
  eplb__st_header_free(&h);
}

static void test_parse_good(void **state) {
  (void)state;
  unsigned char buf[512];
  const char *head =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[4,16]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
      "\"e\":{\"dtype\":\"F8_E4M3\",\"shape\":[0,5],\"data_offsets\":[16,16]}}";
  size_t len = build(buf, head, 16);
  eplb__st_header_t h;
  eplb_error_t err;
  assert_int_equal(eplb__st_parse("x", buf, len, len, &h, &err), 0);
  assert_int_equal(h.num_tensors, 3);
  assert_int_equal(h.data_start, 8 + strlen(head));
  assert_string_equal(h.tensors[0].name, "b");
  assert_int_equal(h.tensors[0].dtype, EPLB_ST_BF16);
  assert_int_equal(h.tensors[0].ndims, 2);
  assert_int_equal(h.tensors[0].shape[1], 3);
  assert_int_equal(h.tensors[0].offset, h.data_start + 4);
  assert_int_equal(h.tensors[0].nbytes, 12);
  assert_int_equal(h.tensors[1].ndims, 0); /* a scalar */
  assert_int_equal(h.tensors[1].nbytes, 4);
  assert_int_equal(h.tensors[2].nbytes, 0); /* empty: allowed */
  eplb__st_header_free(&h);
  eplb__st_header_free(&h); /* idempotent */
}

static void test_parse_bad(void **state) {
  (void)state;
  expect("{\"t\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1,
         EPLB_EPARSE, "tensor \"t\": dtype \"F4\" is not one eplb carries");
  expect("{\"t\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
         EPLB_EPARSE, "tensor \"t\": data_offsets [0, 2] do not hold 3 U8");
  expect("{\"t\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}", 2,
         EPLB_EPARSE, "inside the 2 data bytes (truncated");
  expect("{\"t\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[3,0]}}", 3,
         EPLB_EPARSE, "0 <= begin <= end");
  expect("{\"t\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}",
         0, EPLB_EPARSE, "tensor \"t\": shape dimension 0");
  expect("{\"t\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
         "\"data_offsets\":[0,0]}}",
         0, EPLB_EPARSE, "more than 2^53 elements");
  expect("{\"t\":{\"dtype\":\"U8\",\"shape\":3,\"data_offsets\":[0,3]}}", 3,
         EPLB_EPARSE, "\"shape\" is not an array");
  expect("{\"t\":[1]}", 0, EPLB_EPARSE, "tensor \"t\" is an array");
  expect("{\"t\":{\"dtype\":7}}", 0, EPLB_EPARSE, "\"dtype\" is a number");
  expect("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
         6, EPLB_EPARSE, "overlaps tensor");
  expect("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
         "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
         2, EPLB_EPARSE, "tensor \"a\" appears twice");
  expect("{\"__metadata__\":{\"k\":1}}", 0, EPLB_EPARSE,
         "\"__metadata__\" is not an object of strings");
  expect("[]", 0, EPLB_EPARSE, "header is an array");
  expect("{\"a\":", 0, EPLB_EPARSE, NULL);
}

static void test_header_length(void **state) {
  (void)state;
  unsigned char buf[64];
  eplb__st_header_t h;
  eplb_error_t err;
  size_t len = build(buf, "{}", 0);
  buf[0] = 40; /* past the end of the file */
  assert_int_equal(eplb__st_parse("x", buf, len, len, &h, &err), EPLB_EPARSE);
  assert_non_null(strstr(err.msg, "header length 40 does not fit the 10-byte"));
  /* Over the cap, even in a file that would hold it. */
  uint64_t big = (uint64_t)EPLB_ST_MAX_HEADER + 1;
  for (int b = 0; b < 8; b++)
    buf[b] = (unsigned char)(big >> (8 * b));
  assert_int_equal(eplb__st_parse("x", buf, len, big + 100, &h, &err),
                   EPLB_EPARSE);
  assert_non_null(strstr(err.msg, "at most 100000000 bytes of header"));
  assert_int_equal(eplb__st_parse("x", buf, 3, 3, &h, &err), EPLB_EPARSE);
}

/* Lays out three tensors, writes the file, reads its header back. */
static void test_layout_roundtrip(void **state) {
  (void)state;
  eplb__st_tensor_t t[3] = {
      {.name = "w.\"quoted\"\\name", .dtype = EPLB_ST_F32, .ndims = 2,
       .shape = {2, 3}, .nbytes = 24},
      {.name = "s", .dtype = EPLB_ST_BF16, .ndims = 0, .nbytes = 2},
      {.name = "z", .dtype = EPLB_ST_F8_E5M2, .ndims = 1, .shape = {0}}};
  const char *meta[] = {"format", "pt", "eplb_rank", "3"};
  unsigned char *head = NULL;
  size_t hl = 0;
  eplb_error_t err;
  assert_int_equal(eplb__st_layout("y", t, 3, meta, 2, &head, &hl, &err), 0);
  assert_int_equal(hl % 8, 0);
  assert_int_equal(t[0].offset, hl);
  assert_int_equal(t[1].offset, hl + 24);
  char path[512];
  const char *d = getenv("EPLB_TEST_TMPDIR");
  snprintf(path, sizeof(path), "%s/st_%ld.safetensors", d && *d ? d : "/tmp",
           (long)getpid());
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(head, 1, hl, f), hl);
  for (int i = 0; i < 26; i++)
    fputc(i, f);
  fclose(f);
  free(head);
  int fd = open(path, O_RDONLY);
  eplb__st_header_t h;
  assert_int_equal(eplb__st_read_header(path, fd, &h, &err), 0);
  close(fd);
  unlink(path);
  assert_int_equal(h.num_tensors, 3);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(h.tensors[i].name, t[i].name);
    assert_int_equal(h.tensors[i].dtype, t[i].dtype);
    assert_int_equal(h.tensors[i].ndims, t[i].ndims);
    assert_int_equal(h.tensors[i].offset, t[i].offset);
    assert_int_equal(h.tensors[i].nbytes, t[i].nbytes);
  }
  assert_int_equal(h.data_start, hl);
  eplb__st_header_free(&h);
}

static void test_dtype_names(void **state) {
  (void)state;
  for (int i = 0; i < EPLB_ST_NUM_DTYPES; i++) {
    assert_int_equal(eplb__st_dtype_from_name(eplb__st_dtype_name(i)), i);
    assert_true(eplb__st_dtype_size(i) >= 1 && eplb__st_dtype_size(i) <= 8);
  }
  assert_int_equal(eplb__st_dtype_from_name("F6_E2M3"), -1);
  assert_int_equal(eplb__st_dtype_size(EPLB_ST_NUM_DTYPES), 0);
  assert_string_equal(eplb__st_dtype_name(-1), "?");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_good),
      cmocka_unit_test(test_parse_bad),
      cmocka_unit_test(test_header_length),
      cmocka_unit_test(test_layout_roundtrip),
      cmocka_unit_test(test_dtype_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
