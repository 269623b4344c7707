/* series_h5.c - see series_h5.h.  Compiled into libeplb as eplb__h5_read3
 * and into the module eplb_h5series.so as EPLB_H5_ENTRY (its loader in
 * eplb-plan defines eplb__h5_read3 itself). */
#include "formats/series_h5.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>

#include "eplb/error.h"

#ifndef EPLB_H5_ENTRY
#define EPLB_H5_ENTRY eplb__h5_read3
#endif

/* H5Literate callback: remembers the 3-D datasets at the root. */
typedef struct {
  char name[256];
  int found;
} find3_t;

static herr_t find3(hid_t g, const char *name, const H5L_info_t *info,
                    void *data) {
  (void)info;
  find3_t *f = data;
  hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
  if (d < 0)
    return 0; /* a group or something else: not ours */
  hid_t sp = H5Dget_space(d);
  if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == 3) {
    if (f->found++ == 0)
      snprintf(f->name, sizeof(f->name), "%s", name);
  }
  if (sp >= 0)
    H5Sclose(sp);
  H5Dclose(d);
  return 0;
}

/* Exported by the module; a declaration keeps -Wmissing-prototypes quiet. */
int EPLB_H5_ENTRY(const char *path, const int64_t max[3], double **data,
                  int64_t dims[3], char *msg, size_t msglen);

int EPLB_H5_ENTRY(const char *path, const int64_t max[3], double **data,
                  int64_t dims[3], char *msg, size_t msglen) {
  *data = NULL;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our errors, not HDF5's stack */
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    snprintf(msg, msglen, "%s: not a readable HDF5 file", path);
    return EPLB_EPARSE;
  }
  int rc = 0;
  hid_t d = -1, sp = -1;
  find3_t fd = {.found = 0};
  if (H5Lexists(f, "logical_count", H5P_DEFAULT) > 0) {
    snprintf(fd.name, sizeof(fd.name), "logical_count");
    fd.found = 1;
  } else {
    H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, NULL, find3, &fd);
  }
  if (fd.found != 1) {
    snprintf(msg, msglen,
             "%s: %s; name the [steps][layers][experts] dataset "
             "logical_count",
             path,
             fd.found ? "several 3-D datasets at the root"
                      : "no 3-D dataset at the root");
    rc = EPLB_EPARSE;
    goto done;
  }
  d = H5Dopen2(f, fd.name, H5P_DEFAULT);
  sp = d >= 0 ? H5Dget_space(d) : -1;
  hsize_t hd[3] = {0, 0, 0};
  if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 3 ||
      H5Sget_simple_extent_dims(sp, hd, NULL) != 3) {
    snprintf(msg, msglen, "%s: dataset %s must be [steps][layers][experts]",
             path, fd.name);
    rc = EPLB_EPARSE;
    goto done;
  }
  if (hd[0] < 1 || hd[1] < 1 || hd[2] < 1 || hd[0] > (hsize_t)max[0] ||
      hd[1] > (hsize_t)max[1] || hd[2] > (hsize_t)max[2]) {
    snprintf(msg, msglen,
             "%s: dataset %s is %llu x %llu x %llu, outside "
             "1..%lld x 1..%lld x 1..%lld",
             path, fd.name, (unsigned long long)hd[0],
             (unsigned long long)hd[1], (unsigned long long)hd[2],
             (long long)max[0], (long long)max[1], (long long)max[2]);
    rc = EPLB_ESHAPE;
    goto done;
  }
  *data = malloc(sizeof(double) * (size_t)(hd[0] * hd[1] * hd[2]));
  if (*data == NULL) {
    snprintf(msg, msglen, "%s: out of memory for %llu x %llu x %llu counts",
             path, (unsigned long long)hd[0], (unsigned long long)hd[1],
             (unsigned long long)hd[2]);
    rc = EPLB_ENOMEM;
    goto done;
  }
  /* HDF5 converts any numeric type to double on the way in. */
  if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0) {
    free(*data);
    *data = NULL;
    snprintf(msg, msglen,
             "%s: cannot read dataset %s as numbers (is it numeric, and is "
             "the file complete?)",
             path, fd.name);
    rc = EPLB_EHDF5;
    goto done;
  }
  for (int i = 0; i < 3; i++)
    dims[i] = (int64_t)hd[i];
done:
  if (sp >= 0)
    H5Sclose(sp);
  if (d >= 0)
    H5Dclose(d);
  H5Fclose(f);
  return rc;
}
