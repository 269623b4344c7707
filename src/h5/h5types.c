/* h5/h5types.c - HDF5 types for the dtypes of model weights and back
 * (see h5/h5types.h for why bfloat16 and float8 are opaque types). */
#include "h5/h5types.h"

#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

/* The opaque tags, by safetensors dtype. */
static const struct {
  int st;
  const char *tag;
} opaque[] = {{EPLB_ST_BF16, "bfloat16"},
              {EPLB_ST_F8_E4M3, "float8_e4m3fn"},
              {EPLB_ST_F8_E5M2, "float8_e5m2"},
              {EPLB_ST_F8_E8M0, "float8_e8m0fnu"},
              {EPLB_ST_BOOL, "bool"}};
#define NUM_OPAQUE ((int)(sizeof(opaque) / sizeof(opaque[0])))

/* IEEE half as h5py writes it: 1 sign, 5 exponent, 10 mantissa bits. */
static hid_t half(void) {
  hid_t h = H5Tcopy(H5T_IEEE_F32LE);
  if (h < 0 || H5Tset_fields(h, 15, 10, 5, 0, 10) < 0 ||
      H5Tset_size(h, 2) < 0 || H5Tset_ebias(h, 15) < 0) {
    if (h >= 0)
      H5Tclose(h);
    return -1;
  }
  return h;
}

hid_t eplb__h5_type_for_st(int st) {
  for (int i = 0; i < NUM_OPAQUE; i++)
    if (opaque[i].st == st) {
      hid_t t = H5Tcreate(H5T_OPAQUE, (size_t)eplb__st_dtype_size(st));
      if (t >= 0 && H5Tset_tag(t, opaque[i].tag) < 0) {
        H5Tclose(t);
        return -1;
      }
      return t;
    }
  switch (st) {
  case EPLB_ST_U8: return H5Tcopy(H5T_STD_U8LE);
  case EPLB_ST_I8: return H5Tcopy(H5T_STD_I8LE);
  case EPLB_ST_U16: return H5Tcopy(H5T_STD_U16LE);
  case EPLB_ST_I16: return H5Tcopy(H5T_STD_I16LE);
  case EPLB_ST_U32: return H5Tcopy(H5T_STD_U32LE);
  case EPLB_ST_I32: return H5Tcopy(H5T_STD_I32LE);
  case EPLB_ST_U64: return H5Tcopy(H5T_STD_U64LE);
  case EPLB_ST_I64: return H5Tcopy(H5T_STD_I64LE);
  case EPLB_ST_F16: return half();
  case EPLB_ST_F32: return H5Tcopy(H5T_IEEE_F32LE);
  case EPLB_ST_F64: return H5Tcopy(H5T_IEEE_F64LE);
  default: return -1;
  }
}

const char *eplb__h5_opaque_kind(hid_t t) {
  if (H5Tget_class(t) != H5T_OPAQUE)
    return NULL;
  char *tag = H5Tget_tag(t);
  const char *kind = NULL;
  size_t size = H5Tget_size(t);
  for (int i = 0; tag && i < NUM_OPAQUE; i++)
    if (strcmp(tag, opaque[i].tag) == 0 &&
        size == (size_t)eplb__st_dtype_size(opaque[i].st))
      kind = opaque[i].tag;
  if (tag)
    H5free_memory(tag);
  return kind;
}

/* The safetensors dtype of a little-endian float type, from its fields. */
static int float_st(hid_t t, size_t size) {
  size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
  if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) < 0 ||
      spos != size * 8 - 1 || mpos != 0)
    return -1;
  size_t bias = H5Tget_ebias(t);
  if (size == 2 && esize == 5 && msize == 10 && bias == 15)
    return EPLB_ST_F16;
  if (size == 2 && esize == 8 && msize == 7 && bias == 127)
    return EPLB_ST_BF16;
  if (size == 4 && esize == 8 && msize == 23 && bias == 127)
    return EPLB_ST_F32;
  if (size == 8 && esize == 11 && msize == 52 && bias == 1023)
    return EPLB_ST_F64;
  if (size == 1 && esize == 4 && msize == 3 && bias == 7)
    return EPLB_ST_F8_E4M3;
  if (size == 1 && esize == 5 && msize == 2 && bias == 15)
    return EPLB_ST_F8_E5M2;
  return -1;
}

int eplb__h5_st_of_type(hid_t t) {
  H5T_class_t cls = H5Tget_class(t);
  size_t size = H5Tget_size(t);
  if (cls == H5T_OPAQUE) {
    const char *k = eplb__h5_opaque_kind(t);
    for (int i = 0; k && i < NUM_OPAQUE; i++)
      if (strcmp(k, opaque[i].tag) == 0)
        return opaque[i].st;
    return -1;
  }
  if ((cls != H5T_INTEGER && cls != H5T_FLOAT) ||
      (size > 1 && H5Tget_order(t) != H5T_ORDER_LE) ||
      H5Tget_precision(t) != size * 8 || H5Tget_offset(t) != 0)
    return -1; /* big-endian, or padded: no safetensors dtype */
  if (cls == H5T_FLOAT)
    return float_st(t, size);
  int sign = H5Tget_sign(t) == H5T_SGN_2;
  switch (size) {
  case 1: return sign ? EPLB_ST_I8 : EPLB_ST_U8;
  case 2: return sign ? EPLB_ST_I16 : EPLB_ST_U16;
  case 4: return sign ? EPLB_ST_I32 : EPLB_ST_U32;
  case 8: return sign ? EPLB_ST_I64 : EPLB_ST_U64;
  default: return -1;
  }
}
