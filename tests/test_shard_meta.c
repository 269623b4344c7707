/* test_shard_meta.c - what the checkpoint import added to the shards: the
 * opaque bfloat16/float8 types (h5/h5types.c), the model's layer ids
 * (/layer_ids), single-row reads, and the metadata a migration carries over
 * to the next generation (eplb_shard_writer_copy_extras).
 *
 * A migration recreates every dataset's type from its H5Tencode'd form; the
 * "migration" here does the same (open, read, write a new shard from the
 * info, reopen) and checks the types, the bytes and the metadata came
 * through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eplb/shard.h"
#include "formats/safetensors.h"
#include "h5/h5types.h"
#include "h5/shard_internal.h"

static void tmp_path(char *buf, size_t n, const char *name) {
  const char *dir = getenv("EPLB_TEST_TMPDIR");
  snprintf(buf, n, "%s/test_shard_meta_%d_%s", dir ? dir : "/tmp",
           (int)getpid(), name);
}

/* An info of 2 layers x 3 slots: bf16 [4], f8_e4m3 [2, 3], f32 scale []. */
static void make_info(eplb_shard_info_t *info) {
  const char *names[] = {"w_bf16", "w_fp8", "scale"};
  hid_t t[] = {eplb__h5_type_for_st(EPLB_ST_BF16),
               eplb__h5_type_for_st(EPLB_ST_F8_E4M3),
               eplb__h5_type_for_st(EPLB_ST_F32)};
  int32_t nd[] = {1, 2, 0};
  int64_t dims[3][EPLB_SHARD_MAX_DIMS] = {{4}, {2, 3}, {0}};
  eplb_error_t err;
  assert_int_equal(eplb__shard_info_from_types(
                       info, 1, 2, 3, 0, 3, names, t, nd,
                       (const int64_t(*)[EPLB_SHARD_MAX_DIMS])dims, &err),
                   0);
  for (int i = 0; i < 3; i++)
    H5Tclose(t[i]);
}

/* Writes `path` from info, slot s of layer l holding bytes l*50 + s*10 + i,
 * with layer ids `lids` (NULL: none). */
static void write_shard(const char *path, eplb_shard_info_t *info,
                        const int32_t *lids) {
  eplb_shard_writer_t *w = NULL;
  eplb_error_t err;
  size_t stride = (size_t)info->row_bytes;
  unsigned char buf[256];
  int32_t ids[3] = {2, 0, 1};
  assert_int_equal(eplb_shard_writer_create(path, info, &w, &err), 0);
  if (lids)
    assert_int_equal(eplb_shard_writer_put_layer_ids(w, lids, &err), 0);
  for (int32_t l = 0; l < 2; l++) {
    for (size_t i = 0; i < stride * 3; i++)
      buf[i] = (unsigned char)(l * 50 + (int)(i / stride) * 10 + (int)(i % stride));
    assert_int_equal(eplb_shard_writer_put_layer(w, l, ids, buf, stride, &err), 0);
  }
  assert_int_equal(eplb_shard_writer_finish(w, 0, &err), 0);
}

static void test_opaque_types(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof(path), "opaque.h5");
  eplb_shard_info_t info;
  make_info(&info);
  assert_string_equal(info.datasets[1].name, "w_bf16");
  assert_string_equal(info.datasets[1].type_name, "bfloat16");
  assert_string_equal(info.datasets[2].type_name, "float8_e4m3fn");
  assert_int_equal(info.row_bytes, 8 + 6 + 4);
  write_shard(path, &info, NULL);
  eplb_shard_t *sh = NULL;
  eplb_error_t err;
  assert_int_equal(eplb_shard_open(path, &sh, &err), 0);
  const eplb_shard_info_t *in = eplb_shard_info(sh);
  assert_string_equal(in->datasets[1].type_name, "bfloat16");
  assert_int_equal(in->datasets[2].type_size, 1);
  /* One row: dataset w_fp8 (index 2) of slot 1, layer 1. */
  unsigned char row[8];
  assert_int_equal(eplb_shard_read_row(sh, 1, 2, 1, row, &err), 0);
  for (int i = 0; i < 6; i++)
    assert_int_equal(row[i], 50 + 10 + 4 + 8 + i); /* after scale, w_bf16 */
  assert_int_equal(eplb_shard_read_row(sh, 2, 0, 0, row, &err), EPLB_EARG);
  assert_int_equal(eplb_shard_read_row(sh, 0, 0, 3, row, &err), EPLB_EARG);
  /* The types survive being recreated from their encoding. */
  for (int32_t d = 0; d < 3; d++) {
    hid_t t = H5Tdecode(in->datasets[d].type_enc);
    int st = eplb__h5_st_of_type(t);
    assert_int_equal(st, d == 0   ? EPLB_ST_F32
                         : d == 1 ? EPLB_ST_BF16
                                  : EPLB_ST_F8_E4M3);
    H5Tclose(t);
  }
  eplb_shard_close(sh);
  unlink(path);
}

static void test_type_mapping(void **state) {
  (void)state;
  for (int st = 0; st < EPLB_ST_NUM_DTYPES; st++) {
    hid_t t = eplb__h5_type_for_st(st);
    assert_true(t >= 0);
    assert_int_equal(H5Tget_size(t), (size_t)eplb__st_dtype_size(st));
    assert_int_equal(eplb__h5_st_of_type(t), st);
    H5Tclose(t);
  }
  assert_true(eplb__h5_type_for_st(EPLB_ST_NUM_DTYPES) < 0);
  assert_int_equal(eplb__h5_st_of_type(H5T_STD_I32BE), -1); /* big-endian */
  assert_int_equal(eplb__h5_st_of_type(H5T_C_S1), -1);
  /* Floats described field by field, as other writers do. */
  hid_t bf = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(bf, 15, 7, 8, 0, 7);
  H5Tset_size(bf, 2);
  H5Tset_ebias(bf, 127);
  assert_int_equal(eplb__h5_st_of_type(bf), EPLB_ST_BF16);
  H5Tclose(bf);
  hid_t f8 = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(f8, 7, 3, 4, 0, 3);
  H5Tset_offset(f8, 0);
  H5Tset_precision(f8, 8);
  H5Tset_size(f8, 1);
  H5Tset_ebias(f8, 7);
  assert_int_equal(eplb__h5_st_of_type(f8), EPLB_ST_F8_E4M3);
  H5Tclose(f8);
  /* An opaque type of another tag is not recognised. */
  hid_t o = H5Tcreate(H5T_OPAQUE, 2);
  H5Tset_tag(o, "half_but_mine");
  assert_null(eplb__h5_opaque_kind(o));
  assert_int_equal(eplb__h5_st_of_type(o), -1);
  H5Tclose(o);
}

/* Writes a /layer_ids of `n` values v into the shard at path. */
static void put_raw_layer_ids(const char *path, const int64_t *v, hsize_t n) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t sp = H5Screate_simple(1, &n, NULL);
  hid_t d = H5Dcreate2(f, "layer_ids", H5T_STD_I64BE, sp, H5P_DEFAULT,
                       H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(d);
  H5Sclose(sp);
  H5Fclose(f);
}

static void test_layer_ids(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof(path), "lids.h5");
  eplb_shard_info_t info;
  eplb_shard_t *sh = NULL;
  eplb_error_t err;
  make_info(&info);
  write_shard(path, &info, NULL); /* none: 0..L-1 */
  assert_int_equal(eplb_shard_open(path, &sh, &err), 0);
  assert_int_equal(eplb_shard_layer_ids(sh)[0], 0);
  assert_int_equal(eplb_shard_layer_ids(sh)[1], 1);
  eplb_shard_close(sh);
  const int32_t lids[2] = {3, 60};
  write_shard(path, &info, lids);
  assert_int_equal(eplb_shard_open(path, &sh, &err), 0);
  assert_int_equal(eplb_shard_layer_ids(sh)[1], 60);
  eplb_shard_close(sh);
  /* The writer refuses ids that do not increase. */
  eplb_shard_writer_t *w = NULL;
  const int32_t down[2] = {5, 4};
  assert_int_equal(eplb_shard_writer_create(path, &info, &w, &err), 0);
  assert_int_equal(eplb_shard_writer_put_layer_ids(w, down, &err), EPLB_EPARSE);
  assert_non_null(strstr(err.msg, "/layer_ids[1] = 4"));
  eplb_shard_writer_abort(w);
  /* Another writer's ids (int64, big-endian) are read; bad ones named. */
  write_shard(path, &info, NULL);
  const int64_t ok[2] = {1, 2}, bad[2] = {7, 4096}, three[3] = {0, 1, 2};
  put_raw_layer_ids(path, ok, 2);
  assert_int_equal(eplb_shard_open(path, &sh, &err), 0);
  assert_int_equal(eplb_shard_layer_ids(sh)[1], 2);
  eplb_shard_close(sh);
  write_shard(path, &info, NULL);
  put_raw_layer_ids(path, bad, 2);
  assert_int_equal(eplb_shard_open(path, &sh, &err), EPLB_EPARSE);
  assert_non_null(strstr(err.msg, "/layer_ids[1] = 4096"));
  write_shard(path, &info, NULL);
  put_raw_layer_ids(path, three, 3);
  assert_int_equal(eplb_shard_open(path, &sh, &err), EPLB_EPARSE);
  assert_non_null(strstr(err.msg, "[num_layers = 2]"));
  unlink(path);
}

/* Adds a variable-length UTF-8 string attribute (as h5py writes one). */
static void put_vlen(hid_t o, const char *name, const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hid_t a = H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, t, &v);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}

/* Reads the vlen string attribute name of object path in file f. */
static void expect_vlen(hid_t f, const char *obj, const char *name,
                        const char *want) {
  hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(a >= 0);
  hid_t t = H5Aget_type(a);
  char *s = NULL;
  assert_true(H5Aread(a, t, &s) >= 0);
  assert_string_equal(s, want);
  H5free_memory(s);
  H5Tclose(t);
  H5Aclose(a);
}

static void test_copy_extras(void **state) {
  (void)state;
  char src[512], dst[512];
  tmp_path(src, sizeof(src), "src.h5");
  tmp_path(dst, sizeof(dst), "dst.h5");
  eplb_shard_info_t info;
  eplb_error_t err;
  make_info(&info);
  const int32_t lids[2] = {3, 4};
  write_shard(src, &info, lids);
  hid_t f = H5Fopen(src, H5F_ACC_RDWR, H5P_DEFAULT);
  put_vlen(f, "note", "from the user");
  hid_t g = H5Gcreate2(f, "checkpoint", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  put_vlen(g, "pattern", "m.{layer}.e.{expert}.{name}");
  H5Gclose(g);
  H5Fclose(f);
  /* The "migration": open, read every layer, write generation 1. */
  eplb_shard_t *sh = NULL;
  eplb_shard_writer_t *w = NULL;
  assert_int_equal(eplb_shard_open(src, &sh, &err), 0);
  eplb_shard_info_t next = *eplb_shard_info(sh);
  next.generation = 1;
  unsigned char buf[256];
  int32_t ids[3];
  assert_int_equal(eplb_shard_writer_create(dst, &next, &w, &err), 0);
  assert_int_equal(eplb_shard_writer_copy_extras(w, sh, &err), 0);
  for (int32_t l = 0; l < 2; l++) {
    assert_int_equal(eplb_shard_read_ids(sh, l, ids, &err), 0);
    assert_int_equal(eplb_shard_read_rows(sh, l, buf, (size_t)next.row_bytes, &err), 0);
    assert_int_equal(eplb_shard_writer_put_layer(w, l, ids, buf, (size_t)next.row_bytes, &err), 0);
  }
  assert_int_equal(eplb_shard_writer_finish(w, 0, &err), 0);
  eplb_shard_t *out = NULL;
  assert_int_equal(eplb_shard_open(dst, &out, &err), 0);
  assert_int_equal(eplb_shard_info(out)->generation, 1);
  assert_int_equal(eplb_shard_layer_ids(out)[0], 3);
  assert_int_equal(memcmp(eplb_shard_info(out)->datasets, eplb_shard_info(sh)->datasets,
                          sizeof(next.datasets)), 0);
  unsigned char again[256];
  assert_int_equal(eplb_shard_read_rows(out, 1, again, (size_t)next.row_bytes, &err), 0);
  assert_memory_equal(again, buf, (size_t)next.row_bytes * 3);
  hid_t o = eplb__shard_hid(out);
  expect_vlen(o, ".", "note", "from the user");
  expect_vlen(o, "checkpoint", "pattern", "m.{layer}.e.{expert}.{name}");
  eplb_shard_close(out);
  eplb_shard_close(sh);
  unlink(src);
  unlink(dst);
}

static void test_unknown_opaque_refused(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof(path), "unknown.h5");
  eplb_shard_info_t info;
  eplb_error_t err;
  make_info(&info);
  write_shard(path, &info, NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hsize_t n[2] = {3, 2};
  hid_t o = H5Tcreate(H5T_OPAQUE, 2), sp = H5Screate_simple(2, n, NULL);
  H5Tset_tag(o, "half_but_mine");
  for (int l = 0; l < 2; l++) {
    char name[64];
    snprintf(name, sizeof(name), "/layers/%d/mine", l);
    H5Dclose(H5Dcreate2(f, name, o, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  }
  H5Sclose(sp);
  H5Tclose(o);
  H5Fclose(f);
  eplb_shard_t *sh = NULL;
  assert_int_equal(eplb_shard_open(path, &sh, &err), EPLB_EPARSE);
  assert_non_null(strstr(err.msg, "/layers/0/mine is neither a numeric"));
  assert_non_null(strstr(err.msg, "bfloat16, float8_e4m3fn"));
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_opaque_types),
      cmocka_unit_test(test_type_mapping),
      cmocka_unit_test(test_layer_ids),
      cmocka_unit_test(test_copy_extras),
      cmocka_unit_test(test_unknown_opaque_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
