/* test_shard.c - HDF5 shards: round trip of every type, files from other
 * writers (h5py-like: int64 attributes, variable-length strings, chunked
 * datasets), malformed files, descriptor differences, test content. */
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

/* A path in the test's scratch directory. */
static void tmp_path(char *buf, size_t n, const char *name) {
  const char *dir = getenv("EPLB_TEST_TMPDIR");
  snprintf(buf, n, "%s/test_shard_%d_%s", dir ? dir : "/tmp", (int)getpid(), name);
}

/* An info with one dataset per standard type, shapes varying. */
static void make_all_types(eplb_shard_info_t *info, int32_t P) {
  const char *names[EPLB_DTYPE_OTHER];
  eplb_dtype_t types[EPLB_DTYPE_OTHER];
  int32_t nd[EPLB_DTYPE_OTHER];
  int64_t dims[EPLB_DTYPE_OTHER][EPLB_SHARD_MAX_DIMS] = {{0}};
  static char nb[EPLB_DTYPE_OTHER][32];
  for (int t = 0; t < EPLB_DTYPE_OTHER; t++) {
    snprintf(nb[t], sizeof(nb[t]), "d_%s", eplb_dtype_name((eplb_dtype_t)t));
    names[t] = nb[t];
    types[t] = (eplb_dtype_t)t;
    nd[t] = t % 3; /* rows of 1 element, [3], [3, 2] */
    dims[t][0] = 3;
    dims[t][1] = 2;
  }
  eplb_error_t err;
  assert_int_equal(eplb_shard_info_make(info, 2, 2, P, 7, EPLB_DTYPE_OTHER, names,
                                        types, nd, (const int64_t(*)[EPLB_SHARD_MAX_DIMS])dims, &err), 0);
}

/* Writes a shard of `info` (rank 1) whose slot s of layer l holds expert
 * l * 10 + s. */
static void write_shard(const char *path, eplb_shard_info_t *info) {
  eplb_error_t err;
  eplb_shard_writer_t *w = NULL;
  size_t stride = (size_t)info->row_bytes;
  unsigned char *buf = malloc(stride * (size_t)info->slots_per_rank);
  int32_t ids[16];
  info->rank = 1;
  assert_int_equal(eplb_shard_writer_create(path, info, &w, &err), 0);
  for (int32_t l = 0; l < info->num_layers; l++) {
    for (int32_t s = 0; s < info->slots_per_rank; s++) {
      ids[s] = l * 10 + s;
      eplb_shard_fill_row(info, l, ids[s], buf + (size_t)s * stride);
    }
    assert_int_equal(eplb_shard_writer_put_layer(w, l, ids, buf, stride, &err), 0);
  }
  assert_int_equal(eplb_shard_writer_finish(w, 1, &err), 0);
  free(buf);
}

static void test_round_trip_every_type(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof(path), "types.h5");
  eplb_shard_info_t *info = calloc(1, sizeof(*info));
  make_all_types(info, 3);
  write_shard(path, info);

  eplb_error_t err;
  eplb_shard_t *sh = NULL;
  assert_int_equal(eplb_shard_open(path, &sh, &err), 0);
  const eplb_shard_info_t *got = eplb_shard_info(sh);
  char why[256];
  assert_int_equal(eplb_shard_info_diff(info, got, why, sizeof(why)), 0);
  assert_int_equal(got->rank, 1);
  assert_int_equal(got->generation, 7);
  assert_int_equal(got->num_datasets, EPLB_DTYPE_OTHER);
  for (int32_t d = 0; d < got->num_datasets; d++) {
    /* each type comes back as itself: float16 included */
    assert_int_equal(eplb_dtype_from_name(got->datasets[d].type_name), got->datasets[d].dtype);
    assert_string_equal(got->datasets[d].name + 2, got->datasets[d].type_name);
  }
  size_t stride = (size_t)got->row_bytes + 5; /* a stride larger than a row */
  unsigned char *buf = malloc(stride * 3), *want = malloc(stride);
  int32_t ids[3];
  for (int32_t l = 0; l < 2; l++) {
    assert_int_equal(eplb_shard_read_ids(sh, l, ids, &err), 0);
    assert_int_equal(eplb_shard_read_rows(sh, l, buf, stride, &err), 0);
    for (int32_t s = 0; s < 3; s++) {
      assert_int_equal(ids[s], l * 10 + s);
      eplb_shard_fill_row(got, l, ids[s], want);
      assert_memory_equal(buf + (size_t)s * stride, want, (size_t)got->row_bytes);
    }
  }
  free(buf);
  free(want);
  eplb_shard_close(sh);
  free(info);
  unlink(path);
}

/* Row-by-row writing (slots in any order) reads back as written, dataset
 * by dataset. */
static void test_row_writer(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof(path), "rows.h5");
  eplb_shard_info_t *info = calloc(1, sizeof(*info));
  make_all_types(info, 3);
  info->rank = 1;
  eplb_error_t err;
  eplb_shard_writer_t *w = NULL;
  size_t rb = (size_t)info->row_bytes;
  unsigned char *row = malloc(rb);
  int32_t ids[3] = {7, 5, 9};
  assert_int_equal(eplb_shard_writer_create(path, info, &w, &err), 0);
  /* put_row before begin_layer is an error */
  const unsigned char *pieces[EPLB_SHARD_MAX_DATASETS];
  assert_int_equal(eplb_shard_writer_put_row(w, 0, pieces, &err), EPLB_EIO);
  for (int32_t l = 0; l < 2; l++) {
    assert_int_equal(eplb_shard_writer_begin_layer(w, l, ids, &err), 0);
    for (int32_t k = 0; k < 3; k++) {
      int32_t s = (k + 2) % 3; /* out of order */
      eplb_shard_fill_row(info, l, ids[s], row);
      size_t off = 0;
      for (int32_t d = 0; d < info->num_datasets; d++) {
        pieces[d] = row + off;
        off += (size_t)info->datasets[d].row_bytes;
      }
      assert_int_equal(eplb_shard_writer_put_row(w, s, pieces, &err), 0);
    }
  }
  assert_int_equal(eplb_shard_writer_finish(w, 1, &err), 0);
  eplb_shard_t *sh = NULL;
  assert_int_equal(eplb_shard_open(path, &sh, &err), 0);
  size_t off = 0;
  for (int32_t d = 0; d < info->num_datasets; d++) {
    size_t drb = (size_t)info->datasets[d].row_bytes;
    unsigned char *buf = malloc(drb * 3);
    assert_int_equal(eplb_shard_read_dataset(sh, 1, d, buf, &err), 0);
    for (int32_t s = 0; s < 3; s++) {
      eplb_shard_fill_row(info, 1, ids[s], row);
      assert_memory_equal(buf + (size_t)s * drb, row + off, drb);
    }
    off += drb;
    free(buf);
  }
  assert_int_equal(eplb_shard_read_dataset(sh, 1, info->num_datasets, row, &err), EPLB_EARG);
  /* strided, aligned read straight into place */
  size_t offs[EPLB_SHARD_MAX_DATASETS], end = 0;
  for (int32_t d = 0; d < info->num_datasets; d++) {
    offs[d] = (end + 15) / 16 * 16;
    end = offs[d] + (size_t)info->datasets[d].row_bytes;
  }
  size_t stride = (end + 15) / 16 * 16;
  unsigned char *lay = calloc(3, stride);
  assert_int_equal(eplb_shard_read_layer(sh, 0, lay, stride, offs, &err), 0);
  for (int32_t s = 0; s < 3; s++) {
    eplb_shard_fill_row(info, 0, ids[s], row);
    size_t o = 0;
    for (int32_t d = 0; d < info->num_datasets; d++) {
      size_t drb = (size_t)info->datasets[d].row_bytes;
      assert_memory_equal(lay + (size_t)s * stride + offs[d], row + o, drb);
      o += drb;
    }
  }
  assert_true(info->datasets[0].type_size > 1); /* d_float16 */
  offs[0] += 1; /* misaligned for its elements */
  assert_int_equal(eplb_shard_read_layer(sh, 0, lay, stride, offs, &err), EPLB_EARG);
  free(lay);
  eplb_shard_close(sh);
  free(row);
  free(info);
  unlink(path);
}

static void test_float16_is_ieee_half(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof(path), "f16.h5");
  eplb_shard_info_t *info = calloc(1, sizeof(*info));
  const char *names[] = {"h"};
  eplb_dtype_t types[] = {EPLB_DTYPE_FLOAT16};
  int32_t nd[] = {1};
  int64_t dims[1][EPLB_SHARD_MAX_DIMS] = {{4}};
  eplb_error_t err;
  assert_int_equal(eplb_shard_info_make(info, 2, 1, 2, 0, 1, names, types, nd,
                                        (const int64_t(*)[EPLB_SHARD_MAX_DIMS])dims, &err), 0);
  assert_int_equal(info->datasets[0].type_size, 2);
  write_shard(path, info);
  /* HDF5 converts it to float: 1.0 in half precision is 0x3c00.  (Written
   * behind eplb's back: the at-rest checksums go, as another writer's
   * shard has none.) */
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(H5Ldelete(f, "eplb_checksums", H5P_DEFAULT) >= 0);
  hid_t d = H5Dopen2(f, "/layers/0/h", H5P_DEFAULT);
  float ones[8] = {1, 1, 1, 1, -2, -2, -2, -2};
  assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ones) >= 0);
  H5Dclose(d);
  H5Fclose(f);
  eplb_shard_t *sh = NULL;
  assert_int_equal(eplb_shard_open(path, &sh, &err), 0);
  uint16_t raw[8];
  assert_int_equal(eplb_shard_read_rows(sh, 0, raw, 8, &err), 0);
  assert_int_equal(raw[0], 0x3c00);
  assert_int_equal(raw[4], 0xc000);
  assert_string_equal(eplb_shard_info(sh)->datasets[0].type_name, "float16");
  eplb_shard_close(sh);
  free(info);
  unlink(path);
}

/* Writes an h5py-style shard: int64 attributes, variable-length string,
 * chunked big-endian dataset, int64 expert ids. */
static void write_foreign(const char *path, int64_t version, int bad_rows) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t sc = H5Screate(H5S_SCALAR);
  hid_t vs = H5Tcopy(H5T_C_S1);
  H5Tset_size(vs, H5T_VARIABLE);
  const char *fmt = "eplb-shard";
  hid_t a = H5Acreate2(f, "eplb_format", vs, sc, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, vs, &fmt);
  H5Aclose(a);
  const char *keys[] = {"eplb_version", "generation", "rank", "world_size", "num_layers"};
  int64_t vals[] = {version, 3, 0, 1, 1};
  for (int i = 0; i < 5; i++) {
    a = H5Acreate2(f, keys[i], H5T_STD_I64BE, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &vals[i]);
    H5Aclose(a);
  }
  H5Gclose(H5Gcreate2(f, "/layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  H5Gclose(H5Gcreate2(f, "/layers/0", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  hsize_t n = 2, dims[2] = {bad_rows ? 3 : 2, 5}, ch[2] = {1, 5};
  hid_t s1 = H5Screate_simple(1, &n, NULL), s2 = H5Screate_simple(2, dims, NULL);
  int64_t ids[2] = {1, 0};
  hid_t d = H5Dcreate2(f, "/layers/0/expert_ids", H5T_STD_I64LE, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids);
  H5Dclose(d);
  hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(pl, 2, ch);
  int32_t w[15] = {0};
  for (int i = 0; i < 15; i++)
    w[i] = i;
  d = H5Dcreate2(f, "/layers/0/w", H5T_STD_I32BE, s2, H5P_DEFAULT, pl, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, w);
  H5Dclose(d);
  H5Pclose(pl);
  H5Sclose(s1);
  H5Sclose(s2);
  H5Tclose(vs);
  H5Sclose(sc);
  H5Fclose(f);
}

static void test_foreign_writer(void **state) {
  (void)state;
  char path[512];
  tmp_path(path, sizeof(path), "foreign.h5");
  write_foreign(path, 1, 0);
  eplb_error_t err;
  eplb_shard_t *sh = NULL;
  assert_int_equal(eplb_shard_open(path, &sh, &err), 0);
  const eplb_shard_info_t *in = eplb_shard_info(sh);
  assert_int_equal(in->generation, 3);
  assert_int_equal(in->slots_per_rank, 2);
  assert_string_equal(in->datasets[0].type_name, "int32be");
  assert_int_equal(in->row_bytes, 20);
  int32_t ids[2];
  unsigned char rows[40];
  assert_int_equal(eplb_shard_read_ids(sh, 0, ids, &err), 0);
  assert_int_equal(ids[0], 1);
  assert_int_equal(eplb_shard_read_rows(sh, 0, rows, 20, &err), 0);
  /* raw big-endian bytes, unconverted: element 1 is 00 00 00 01 */
  assert_int_equal(rows[7], 1);
  assert_int_equal(rows[4], 0);
  /* rewriting it keeps the exact type */
  char out[512];
  tmp_path(out, sizeof(out), "foreign_copy.h5");
  eplb_shard_writer_t *w = NULL;
  assert_int_equal(eplb_shard_writer_create(out, in, &w, &err), 0);
  assert_int_equal(eplb_shard_writer_put_layer(w, 0, ids, rows, 20, &err), 0);
  assert_int_equal(eplb_shard_writer_finish(w, 0, &err), 0);
  eplb_shard_t *copy = NULL;
  char why[256];
  assert_int_equal(eplb_shard_open(out, &copy, &err), 0);
  assert_int_equal(eplb_shard_info_diff(in, eplb_shard_info(copy), why, sizeof(why)), 0);
  eplb_shard_close(copy);
  eplb_shard_close(sh);
  unlink(path);
  unlink(out);
}

static void test_malformed(void **state) {
  (void)state;
  char path[512];
  eplb_error_t err;
  eplb_shard_t *sh = NULL;
  tmp_path(path, sizeof(path), "missing.h5");
  assert_int_equal(eplb_shard_open(path, &sh, &err), EPLB_EIO);
  assert_non_null(strstr(err.msg, "missing.h5"));
  assert_null(sh);

  tmp_path(path, sizeof(path), "version.h5");
  write_foreign(path, 2, 0);
  assert_int_equal(eplb_shard_open(path, &sh, &err), EPLB_EPARSE);
  assert_non_null(strstr(err.msg, "version 2"));

  write_foreign(path, 1, 1); /* a dataset with 3 rows for 2 slots */
  assert_int_equal(eplb_shard_open(path, &sh, &err), EPLB_ESHAPE);
  assert_non_null(strstr(err.msg, "/layers/0/w"));

  /* truncated: half of a good file */
  eplb_shard_info_t *info = calloc(1, sizeof(*info));
  make_all_types(info, 4);
  write_shard(path, info);
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fclose(f);
  assert_int_equal(truncate(path, n / 2), 0);
  int rc = eplb_shard_open(path, &sh, &err);
  if (rc == 0) { /* the metadata survived: the weights cannot be read */
    unsigned char *buf = malloc((size_t)eplb_shard_info(sh)->row_bytes * 4);
    rc = eplb_shard_read_rows(sh, 1, buf, (size_t)eplb_shard_info(sh)->row_bytes, &err);
    free(buf);
    eplb_shard_close(sh);
  }
  assert_int_not_equal(rc, 0);
  assert_non_null(strstr(err.msg, "version.h5"));

  /* not HDF5 at all */
  f = fopen(path, "wb");
  fputs("not hdf5\n", f);
  fclose(f);
  assert_int_equal(eplb_shard_open(path, &sh, &err), EPLB_EPARSE);
  assert_non_null(strstr(err.msg, "not a readable HDF5 file"));
  free(info);
  unlink(path);
}

static void test_info_diff_names_the_field(void **state) {
  (void)state;
  eplb_shard_info_t *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
  make_all_types(a, 2);
  make_all_types(b, 2);
  char why[256];
  assert_int_equal(eplb_shard_info_diff(a, b, why, sizeof(why)), 0);
  assert_string_equal(why, "");
  b->generation = 8;
  assert_int_equal(eplb_shard_info_diff(a, b, why, sizeof(why)), 1);
  assert_non_null(strstr(why, "generation 8"));
  b->generation = a->generation;
  int k = 0;
  while (b->datasets[k].ndims < 2)
    k++;
  b->datasets[k].dims[1] = 9;
  assert_int_equal(eplb_shard_info_diff(a, b, why, sizeof(why)), 1);
  assert_non_null(strstr(why, b->datasets[k].name));
  assert_non_null(strstr(why, "[2, 9"));
  free(a);
  free(b);
}

static void test_fill_row_is_deterministic(void **state) {
  (void)state;
  eplb_shard_info_t *info = calloc(1, sizeof(*info));
  make_all_types(info, 2);
  size_t n = (size_t)info->row_bytes;
  unsigned char *x = malloc(n), *y = malloc(n);
  eplb_shard_fill_row(info, 1, 5, x);
  eplb_shard_fill_row(info, 1, 5, y);
  assert_memory_equal(x, y, n);
  eplb_shard_fill_row(info, 1, 6, y);
  assert_memory_not_equal(x, y, n);
  eplb_shard_fill_row(info, 0, 5, y);
  assert_memory_not_equal(x, y, n);
  free(x);
  free(y);
  free(info);
}

static void test_info_make_ranges(void **state) {
  (void)state;
  eplb_shard_info_t *info = calloc(1, sizeof(*info));
  const char *names[] = {"a", "a"};
  eplb_dtype_t types[] = {EPLB_DTYPE_INT8, EPLB_DTYPE_INT8};
  int32_t nd[] = {0, 0};
  int64_t dims[2][EPLB_SHARD_MAX_DIMS] = {{0}};
  eplb_error_t err;
  const int64_t(*dp)[EPLB_SHARD_MAX_DIMS] = (const int64_t(*)[EPLB_SHARD_MAX_DIMS])dims;
  assert_int_equal(eplb_shard_info_make(info, 0, 1, 1, 0, 1, names, types, nd, dp, &err), EPLB_EARG);
  assert_int_equal(eplb_shard_info_make(info, 1, 1, 0, 0, 1, names, types, nd, dp, &err), EPLB_EARG);
  assert_int_equal(eplb_shard_info_make(info, 1, 1, 1, 0, 2, names, types, nd, dp, &err), EPLB_EARG);
  assert_non_null(strstr(err.msg, "twice"));
  assert_int_equal(eplb_dtype_from_name("float16"), EPLB_DTYPE_FLOAT16);
  assert_int_equal(eplb_dtype_from_name("bfloat17"), -1);
  free(info);
}

/* The at-rest checksum is XXH3-64 with seed 0 (its reference value for
 * no bytes), and a shard eplb writes carries one per row and dataset. */
static void test_at_rest_checksums(void **state) {
  (void)state;
  assert_true(eplb_shard_row_checksum("", 0) == 0x2D06800538D394C2ULL);
  char path[512];
  tmp_path(path, sizeof(path), "sums.h5");
  eplb_shard_info_t *info = calloc(1, sizeof(*info));
  const char *names[] = {"a", "b"};
  eplb_dtype_t types[] = {EPLB_DTYPE_FLOAT32, EPLB_DTYPE_UINT8};
  int32_t nd[] = {1, 1};
  int64_t dims[2][EPLB_SHARD_MAX_DIMS] = {{4}, {3}};
  eplb_error_t err;
  assert_int_equal(eplb_shard_info_make(info, 2, 2, 3, 0, 2, names, types, nd,
                                        (const int64_t(*)[EPLB_SHARD_MAX_DIMS])dims, &err), 0);
  write_shard(path, info);
  eplb_shard_t *sh = NULL;
  assert_int_equal(eplb_shard_open(path, &sh, &err), 0);
  const uint64_t *sums = eplb_shard_checksums(sh);
  assert_non_null(sums);
  unsigned char row[64];
  for (int32_t l = 0; l < 2; l++)
    for (int32_t s = 0; s < 3; s++)
      for (int32_t d = 0; d < 2; d++) {
        assert_int_equal(eplb_shard_read_row(sh, l, d, s, row, &err), 0);
        assert_true(sums[((size_t)l * 3 + (size_t)s) * 2 + (size_t)d] ==
                    eplb_shard_row_checksum(row, (size_t)info->datasets[d].row_bytes));
      }
  eplb_shard_close(sh);
  /* one byte changed behind eplb's back: every read of that row says so */
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, "/layers/1/b", H5P_DEFAULT);
  uint8_t b[9];
  assert_true(H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, b) >= 0);
  b[4] ^= 1; /* slot 1 */
  assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, b) >= 0);
  H5Dclose(d);
  H5Fclose(f);
  assert_int_equal(eplb_shard_open(path, &sh, &err), 0);
  assert_int_equal(eplb_shard_read_row(sh, 1, 1, 1, row, &err), EPLB_ECHECKSUM);
  assert_non_null(strstr(err.msg, "layer 1 slot 1 dataset 'b'"));
  assert_int_equal(eplb_shard_read_row(sh, 1, 1, 0, row, &err), 0);
  assert_int_equal(eplb_shard_read_dataset(sh, 1, 1, b, &err), EPLB_ECHECKSUM);
  eplb_shard_set_check(sh, 0);
  assert_int_equal(eplb_shard_read_dataset(sh, 1, 1, b, &err), 0);
  eplb_shard_close(sh);
  free(info);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_every_type),
      cmocka_unit_test(test_row_writer),
      cmocka_unit_test(test_float16_is_ieee_half),
      cmocka_unit_test(test_at_rest_checksums),
      cmocka_unit_test(test_foreign_writer),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_info_diff_names_the_field),
      cmocka_unit_test(test_fill_row_is_deterministic),
      cmocka_unit_test(test_info_make_ranges),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
