/* attr.c - reading a string attribute as other writers store it: fixed
 * or variable length, ASCII or UTF-8 (h5py writes a Python str as a
 * variable-length UTF-8 string), exactly one value (see
 * shard_internal.h).  Shared by the shard reader, its checksums and the
 * checkpoint metadata. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5/shard_internal.h"

/* 1 when attribute a holds exactly one value (a scalar or one-element
 * dataspace): H5Aread writes all of them, so anything else would overrun a
 * buffer of one. */
static int one_value(hid_t a) {
  hid_t sp = H5Aget_space(a);
  int one = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1;
  if (sp >= 0)
    H5Sclose(sp);
  return one;
}

int eplb__h5_attr_str(hid_t obj, const char *name, char *buf, size_t cap) {
  buf[0] = '\0';
  if (H5Aexists(obj, name) <= 0)
    return -1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  hid_t t = a >= 0 ? H5Aget_type(a) : -1;
  int rc = 0;
  /* One string: H5Aread writes every element of an array attribute. */
  if (t < 0 || H5Tget_class(t) != H5T_STRING || !one_value(a)) {
    rc = -2;
  } else if (H5Tis_variable_str(t) > 0) {
    /* Read in the attribute's own character set: HDF5 converts neither
     * way between ASCII and UTF-8 (h5py writes str as variable-length
     * UTF-8). */
    char *v = NULL;
    hid_t m = H5Tcopy(H5T_C_S1);
    if (m < 0 || H5Tset_size(m, H5T_VARIABLE) < 0 ||
        H5Tset_cset(m, H5Tget_cset(t)) < 0 || H5Aread(a, m, &v) < 0 ||
        v == NULL)
      rc = -3;
    else
      snprintf(buf, cap, "%s", v);
    if (v)
      H5free_memory(v);
    if (m >= 0)
      H5Tclose(m);
  } else {
    size_t n = H5Tget_size(t);
    char *v = calloc(n + 1, 1);
    if (v == NULL || H5Aread(a, t, v) < 0)
      rc = -3;
    else
      snprintf(buf, cap, "%s", v);
    free(v);
  }
  if (t >= 0)
    H5Tclose(t);
  if (a >= 0)
    H5Aclose(a);
  return rc;
}

int eplb__h5_put_attr(hid_t obj, const char *name, hid_t ft, hid_t mt,
                      const void *v) {
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a =
      s >= 0 ? H5Acreate2(obj, name, ft, s, H5P_DEFAULT, H5P_DEFAULT) : -1;
  int ok = a >= 0 && H5Awrite(a, mt, v) >= 0;
  if (a >= 0 && H5Aclose(a) < 0)
    ok = 0;
  if (s >= 0)
    H5Sclose(s);
  return ok ? 0 : -1;
}

int eplb__h5_put_str(hid_t obj, const char *name, const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  int rc = t < 0 || H5Tset_size(t, strlen(v) + 1) < 0
               ? -1
               : eplb__h5_put_attr(obj, name, t, t, v);
  if (t >= 0)
    H5Tclose(t);
  return rc;
}
