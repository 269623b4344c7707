/* fuzz/fuzz_shard.c - shards from any bytes, opened with eplb_shard_open
 * (which checks the format, attributes, layers and datasets) and, when one
 * opens, every layer's expert ids and rows read back.  eplb must refuse
 * what it cannot use with one line, and never read or write past what it
 * allocated.
 *
 * Two targets from this file:
 *   fuzz_shard      the input describes a shard (fuzz_shard.c's decoder:
 *                   which root attributes exist, of which HDF5 type and
 *                   shape, with which values; how many layers, their
 *                   expert_ids and weight datasets, types, shapes, chunks)
 *                   and HDF5 writes it: every file is one HDF5 itself
 *                   wrote, so what is fuzzed is eplb's reading of it.  An
 *                   all-zero input decodes to a valid one-layer shard.
 *   fuzz_shard_raw  (FUZZ_SHARD_RAW) the input is the file itself: HDF5's
 *                   own parser meets the corrupted bytes, and Debian's HDF5
 *                   1.10.8 reads out of bounds on some of them
 *                   (docs/fuzzing.md), so scripts/fuzz.sh runs it only when
 *                   asked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "eplb/eplb.h"
#include "eplb/shard.h"
#include "fuzz_util.h"

/* Rows of at most this many bytes per layer are read (a file may declare
 * datasets far larger than the input, which HDF5 fills). */
#define MAX_LAYER_BYTES (16 << 20)

#ifndef FUZZ_SHARD_RAW
/* ---- the decoder: bytes in, choices out (0 past the end) --------------- */

typedef struct {
  const uint8_t *p, *end;
} src_t;

static unsigned byte(src_t *s) { return s->p < s->end ? *s->p++ : 0; }

/* A signed small delta: 0 most often (the valid value). */
static int delta(src_t *s) { return (int8_t)byte(s); }

static int64_t word(src_t *s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)byte(s) << (8 * i);
  return (int64_t)v;
}

/* The integer types an attribute or dataset may have (0: the expected). */
static hid_t int_type(unsigned k) {
  switch (k % 10) {
  case 1: return H5T_STD_I8LE;
  case 2: return H5T_STD_U8LE;
  case 3: return H5T_STD_I16LE;
  case 4: return H5T_STD_U16LE;
  case 5: return H5T_STD_I32LE;
  case 6: return H5T_STD_U32LE;
  case 7: return H5T_STD_U64LE;
  case 8: return H5T_STD_I32BE;
  case 9: return H5T_IEEE_F64LE;
  }
  return H5T_STD_I64LE;
}

/* A dataspace: scalar, or (rarely) an array of 1..3 points, or empty. */
static hid_t space(src_t *s) {
  unsigned k = byte(s) % 16;
  if (k < 13)
    return H5Screate(H5S_SCALAR);
  if (k == 15)
    return H5Screate(H5S_NULL);
  hsize_t n = 1 + byte(s) % 3;
  return H5Screate_simple(1, &n, NULL);
}

/* Writes attribute `name` on obj: an integer near `valid` of some type
 * and shape, a string, or nothing. */
static void int_attr(hid_t obj, const char *name, int64_t valid, src_t *s) {
  unsigned kind = byte(s) % 16;
  if (kind == 15)
    return; /* missing */
  int64_t v[3];
  /* Wrapping arithmetic (unsigned): the harness must not overflow. */
  uint64_t v0 = kind == 14 ? (uint64_t)word(s)
                           : (uint64_t)valid + (uint64_t)delta(s);
  v[0] = (int64_t)v0;
  v[1] = (int64_t)(v0 + 1);
  v[2] = (int64_t)(v0 - 1);
  hid_t sp = space(s), t, a;
  if (kind == 13) { /* a string where a number belongs */
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 4);
    a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, "1234567890ab");
    H5Tclose(t);
  } else {
    t = int_type(kind);
    a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, v);
  }
  H5Aclose(a);
  H5Sclose(sp);
}

/* eplb_format: "eplb-shard" as a fixed or variable string, ASCII or UTF-8,
 * or something else. */
static void format_attr(hid_t f, src_t *s) {
  unsigned kind = byte(s) % 8;
  if (kind == 7)
    return;
  const char *text[] = {"eplb-shard", "eplb-shard", "eplb-shar", ""};
  const char *v[3] = {text[byte(s) % 4], "x", "eplb-shard"};
  hid_t t = H5Tcopy(H5T_C_S1), sp = space(s);
  if (kind & 1)
    H5Tset_size(t, H5T_VARIABLE);
  else
    H5Tset_size(t, 16);
  if (kind & 2)
    H5Tset_cset(t, H5T_CSET_UTF8);
  if (kind == 6) { /* a number where a string belongs */
    H5Tclose(t);
    t = H5Tcopy(H5T_STD_I32LE);
  }
  hid_t a = H5Acreate2(f, "eplb_format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
  char fixed[3][16];
  for (int i = 0; i < 3; i++)
    snprintf(fixed[i], sizeof(fixed[i]), "%s", v[i]);
  int32_t n[3] = {7, 7, 7};
  H5Awrite(a, t,
           kind == 6    ? (const void *)n
           : (kind & 1) ? (const void *)v
                        : (const void *)fixed);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}

/* One layer group: expert_ids and 1..3 weight datasets of P rows. */
static void layer(hid_t f, int32_t l, int32_t P, src_t *s) {
  char name[64];
  unsigned g = byte(s) % 16;
  if (g == 15)
    return; /* a layer missing */
  snprintf(name, sizeof(name), g == 14 ? "layers/x%d" : "layers/%d", (int)l);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t grp = H5Gcreate2(f, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Pclose(lcpl);
  /* expert_ids [P (+ delta)] of some integer type. */
  hsize_t n = (hsize_t)(P + (byte(s) % 8 == 7 ? delta(s) % 3 : 0));
  if ((int64_t)n >= 0) {
    int64_t ids[64] = {0};
    for (hsize_t i = 0; i < n && i < 64; i++)
      ids[i] = (int64_t)i + delta(s);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d =
        H5Dcreate2(grp, "expert_ids", int_type(byte(s) % 12 == 11 ? 9 : 5), sp,
                   H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (n <= 64)
      H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids);
    H5Dclose(d);
    H5Sclose(sp);
  }
  static const char *names[] = {"w", "w_gate", "b", "w_down"};
  int nd = 1 + (int)(byte(s) % 3);
  for (int k = 0; k < nd; k++) {
    hsize_t dims[3] = {(hsize_t)P, 1 + byte(s) % 4, 1 + byte(s) % 3};
    int rank = 1 + (int)(byte(s) % 3);
    if (byte(s) % 8 == 7)
      dims[0] = (hsize_t)(P + 1);
    hid_t t;
    switch (byte(s) % 6) {
    case 1: t = H5Tcopy(H5T_STD_I8LE); break;
    case 2: t = H5Tcopy(H5T_IEEE_F64BE); break;
    case 3: t = H5Tcopy(H5T_STD_U16LE); break;
    case 4: /* float16, as h5py writes it */
      t = H5Tcopy(H5T_IEEE_F32LE);
      H5Tset_fields(t, 15, 10, 5, 0, 10);
      H5Tset_size(t, 2);
      H5Tset_ebias(t, 15);
      break;
    case 5: t = H5Tcopy(H5T_C_S1); break; /* not numeric */
    default: t = H5Tcopy(H5T_IEEE_F32LE);
    }
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (byte(s) % 2) {
      hsize_t chunk[3] = {1, dims[1], dims[2]};
      H5Pset_chunk(dcpl, rank, chunk);
    }
    hid_t d = H5Dcreate2(grp, names[byte(s) % 4], t, sp, H5P_DEFAULT, dcpl,
                         H5P_DEFAULT);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Tclose(t);
  }
  H5Gclose(grp);
}

/* Writes the shard the input describes to path. */
static void write_shard(const char *path, const uint8_t *data, size_t size) {
  src_t s = {data, data + size};
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0)
    fuzz_fail("cannot create %s", path);
  int32_t L = 1 + (int32_t)(byte(&s) % 3);
  int32_t P = 1 + (int32_t)(byte(&s) % 4);
  format_attr(f, &s);
  int_attr(f, "eplb_version", 1, &s);
  int_attr(f, "generation", 0, &s);
  int_attr(f, "rank", 0, &s);
  int_attr(f, "world_size", 1, &s);
  int_attr(f, "num_layers", L, &s);
  for (int32_t l = 0; l < L + (byte(&s) % 8 == 7); l++)
    layer(f, l, P, &s);
  H5Fclose(f);
}

#endif /* FUZZ_SHARD_RAW */

/* ---- the target ---------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* HDF5 keeps freed blocks on free lists of its own: with no limit, every
 * input looks to libFuzzer like a possible leak and costs a full leak
 * scan.  Lists of at most a few blocks keep the counts balanced. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  H5set_free_list_limits(0, 0, 0, 0, 0, 0);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_path("shard_00000.h5");
#ifdef FUZZ_SHARD_RAW
  fuzz_write(path, data, size);
#else
  write_shard(path, data, size);
#endif
  eplb_shard_t *sh = NULL;
  eplb_error_t err;
  eplb_error_clear(&err);
  int rc = eplb_shard_open(path, &sh, &err);
  if (getenv("FUZZ_VERBOSE") != NULL) /* what a seed decodes to */
    fprintf(stderr, "fuzz_shard: %s\n", rc ? err.msg : "opened");
  if (rc != 0) {
    if (sh != NULL || err.msg[0] == '\0' || strchr(err.msg, '\n'))
      fuzz_fail("a failed open left a shard or gave no one-line message");
    return 0;
  }
  const eplb_shard_info_t *info = eplb_shard_info(sh);
  int32_t P = info->slots_per_rank;
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)P);
  size_t bytes = (size_t)P * (size_t)info->row_bytes;
  void *rows = bytes <= MAX_LAYER_BYTES ? malloc(bytes ? bytes : 1) : NULL;
  for (int32_t l = 0; ids != NULL && l < info->num_layers; l++) {
    eplb_shard_read_ids(sh, l, ids, &err);
    if (rows != NULL)
      eplb_shard_read_rows(sh, l, rows, (size_t)info->row_bytes, &err);
  }
  free(ids);
  free(rows);
  eplb_shard_close(sh);
  return 0;
}
