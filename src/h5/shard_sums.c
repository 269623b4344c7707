/* shard_sums.c - the at-rest checksums of a shard: one XXH3-64 per row
 * and dataset, in the root dataset /eplb_checksums (uint64 [layers,
 * slots, datasets], attributes `hash` = "xxh3-64" and `datasets` = the
 * dataset names in order, joined by '/', which no HDF5 name contains).
 *
 * Why: a flipped bit on disk would otherwise be read, sent and committed
 * as a weight without complaint.  Every read of a row through
 * eplb/shard.h compares it with its checksum; a shard without
 * /eplb_checksums (an older eplb's, another writer's) reads as before,
 * and `eplb-shard checksum` adds them (eplb_shard_checksum_file). */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5/shard_internal.h"
#include "h5/vfd.h"
#include "util/checksum.h"

#define SUMS_NAME "eplb_checksums"

/* The datasets' names joined by '/' into buf (0), or -1 if too long. */
static int names_of(const eplb_shard_info_t *in, char *buf, size_t cap) {
  size_t u = 0;
  buf[0] = '\0';
  for (int32_t d = 0; d < in->num_datasets; d++) {
    int n =
        snprintf(buf + u, cap - u, "%s%s", d ? "/" : "", in->datasets[d].name);
    if (n < 0 || (size_t)n >= cap - u)
      return -1;
    u += (size_t)n;
  }
  return 0;
}

uint64_t eplb_shard_row_checksum(const void *row, size_t len) {
  return eplb__checksum(row, len, 0);
}

int eplb__sums_read(hid_t file, const char *path, const eplb_shard_info_t *in,
                    uint64_t **sums, eplb_error_t *err) {
  *sums = NULL;
  if (H5Lexists(file, SUMS_NAME, H5P_DEFAULT) <= 0)
    return 0; /* an older eplb's or another writer's shard */
  char hash[32], names[EPLB_SHARD_MAX_DATASETS * EPLB_SHARD_NAME_MAX],
      want[sizeof(names)];
  hid_t d = H5Dopen2(file, SUMS_NAME, H5P_DEFAULT);
  hid_t t = d >= 0 ? H5Dget_type(d) : -1, sp = d >= 0 ? H5Dget_space(d) : -1;
  hsize_t dims[3] = {0, 0, 0};
  int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 3 &&
           H5Sget_simple_extent_dims(sp, dims, NULL) == 3 && t >= 0 &&
           H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 8 &&
           dims[0] == (hsize_t)in->num_layers &&
           dims[1] == (hsize_t)in->slots_per_rank &&
           dims[2] == (hsize_t)in->num_datasets;
  int rc = 0;
  if (!ok)
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: /%s is not a uint64 dataset [layers %d, slots "
                        "%d, datasets %d]; remove it or rewrite it with "
                        "`eplb-shard checksum`",
                        path, SUMS_NAME, (int)in->num_layers,
                        (int)in->slots_per_rank, (int)in->num_datasets);
  else if (eplb__h5_attr_str(d, "hash", hash, sizeof(hash)) != 0 ||
           strcmp(hash, "xxh3-64") != 0)
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: /%s holds hash '%s'; this eplb knows xxh3-64 "
                        "only",
                        path, SUMS_NAME, hash);
  else if (eplb__h5_attr_str(d, "datasets", names, sizeof(names)) != 0 ||
           names_of(in, want, sizeof(want)) != 0 || strcmp(names, want) != 0)
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: /%s is for the datasets '%s', not this shard's "
                        "'%s'; rewrite it with `eplb-shard checksum`",
                        path, SUMS_NAME, names, want);
  size_t n = (size_t)in->num_layers * (size_t)in->slots_per_rank *
             (size_t)(in->num_datasets ? in->num_datasets : 1);
  if (rc == 0 && (*sums = malloc(sizeof(uint64_t) * n)) == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc == 0 && in->num_datasets > 0 &&
      H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, *sums) < 0)
    rc =
        eplb_error_set(err, EPLB_EHDF5, "%s: cannot read /%s", path, SUMS_NAME);
  if (rc) {
    free(*sums);
    *sums = NULL;
  }
  if (sp >= 0)
    H5Sclose(sp);
  if (t >= 0)
    H5Tclose(t);
  if (d >= 0)
    H5Dclose(d);
  return rc;
}

int eplb__sums_write(hid_t file, const eplb_shard_info_t *in,
                     const uint64_t *sums) {
  char names[EPLB_SHARD_MAX_DATASETS * EPLB_SHARD_NAME_MAX];
  if (in->num_datasets < 1 || names_of(in, names, sizeof(names)) != 0)
    return -1;
  hsize_t dims[3] = {(hsize_t)in->num_layers, (hsize_t)in->slots_per_rank,
                     (hsize_t)in->num_datasets};
  hid_t s = H5Screate_simple(3, dims, NULL);
  hid_t d = s >= 0 ? H5Dcreate2(file, SUMS_NAME, H5T_STD_U64LE, s, H5P_DEFAULT,
                                H5P_DEFAULT, H5P_DEFAULT)
                   : -1;
  int ok = d >= 0 &&
           H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                    sums) >= 0 &&
           eplb__h5_put_str(d, "hash", "xxh3-64") == 0 &&
           eplb__h5_put_str(d, "datasets", names) == 0;
  if (d >= 0 && H5Dclose(d) < 0)
    ok = 0;
  if (s >= 0)
    H5Sclose(s);
  return ok ? 0 : -1;
}

int eplb__sums_check(const char *path, const eplb_shard_info_t *in,
                     const uint64_t *sums, int32_t l, int32_t s, int32_t d,
                     const void *row, eplb_error_t *err) {
  if (sums == NULL)
    return 0;
  size_t i = ((size_t)l * (size_t)in->slots_per_rank + (size_t)s) *
                 (size_t)in->num_datasets +
             (size_t)d;
  if (eplb__checksum(row, (size_t)in->datasets[d].row_bytes, 0) == sums[i])
    return 0;
  return eplb_error_set(err, EPLB_ECHECKSUM,
                        "%s (rank %d): layer %d slot %d dataset '%s': the "
                        "bytes do not match the shard's at-rest checksum "
                        "(xxh3-64): the file is corrupted (a flipped bit, a "
                        "torn write); restore the shard from a copy",
                        path, (int)in->rank, (int)l, (int)s,
                        in->datasets[d].name);
}
