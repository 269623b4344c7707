/* shard_inplace.c - what a migration needs to change a shard in place
 * (h5/shard_writer.h): where every row, expert id and checksum lies in the
 * file, and the exact bytes HDF5 writes to bump the generation attribute.
 *
 * With those, a commit is a list of (offset, bytes) records: the new rows
 * of the slots that change, their ids and checksums, and the generation.
 * migrate/redo.c journals the list, fsyncs it, and applies it with plain
 * pwrite - no HDF5 on the way, so applying twice (a recovery replaying
 * it) gives the same bytes.  The generation's bytes come from HDF5 itself,
 * run against eplb's file driver in capture mode (h5/vfd.h): HDF5 decides
 * what to write (an object header, its modification time), the driver
 * keeps it instead of writing it. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "h5/shard_internal.h"
#include "h5/shard_writer.h"
#include "h5/vfd.h"

void eplb__shard_io_totals(int64_t *bytes_read, int64_t *bytes_written) {
  eplb__vfd_totals(bytes_read, bytes_written);
}

void eplb__layout_free(eplb__layout_t *lay) {
  if (lay == NULL)
    return;
  free(lay->data);
  free(lay->ids);
  memset(lay, 0, sizeof(*lay));
}

/* The file offset of dataset `name` of f when it is contiguous, allocated,
 * `bytes` long and (type != NULL) of that type; else -1. */
static int64_t contiguous_at(hid_t f, const char *name, hsize_t bytes,
                             hid_t type) {
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t pl = d >= 0 ? H5Dget_create_plist(d) : -1;
  hid_t t = d >= 0 && type >= 0 ? H5Dget_type(d) : -1;
  haddr_t at = d >= 0 ? H5Dget_offset(d) : HADDR_UNDEF;
  int ok = pl >= 0 && H5Pget_layout(pl) == H5D_CONTIGUOUS &&
           H5Pget_external_count(pl) == 0 && at != HADDR_UNDEF &&
           H5Dget_storage_size(d) == bytes &&
           (type < 0 || (t >= 0 && H5Tequal(t, type) > 0));
  if (t >= 0)
    H5Tclose(t);
  if (pl >= 0)
    H5Pclose(pl);
  if (d >= 0)
    H5Dclose(d);
  return ok ? (int64_t)at : -1;
}

int eplb__shard_layout(eplb_shard_t *sh, eplb__layout_t *lay, char *why,
                       size_t cap, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(sh);
  hid_t f = eplb__shard_hid(sh);
  size_t L = (size_t)in->num_layers, D = (size_t)in->num_datasets;
  hsize_t P = (hsize_t)in->slots_per_rank;
  memset(lay, 0, sizeof(*lay));
  why[0] = '\0';
  struct stat st;
  if (stat(eplb_shard_file(sh), &st) != 0)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot stat it",
                          eplb_shard_file(sh));
  lay->file_size = (int64_t)st.st_size;
  if (eplb_shard_checksums(sh) == NULL || D == 0)
    return snprintf(why, cap, "it has no at-rest checksums"), 1;
  lay->data = malloc(sizeof(int64_t) * L * D);
  lay->ids = malloc(sizeof(int64_t) * L);
  if (!lay->data || !lay->ids)
    return eplb__layout_free(lay),
           eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  char name[200];
  for (size_t l = 0; l < L; l++) {
    snprintf(name, sizeof(name), "/layers/%d/expert_ids", (int)l);
    if ((lay->ids[l] = contiguous_at(f, name, P * 4, H5T_STD_I32LE)) < 0)
      return snprintf(why, cap, "%s is not contiguous int32 little-endian",
                      name),
             1;
    for (size_t d = 0; d < D; d++) {
      snprintf(name, sizeof(name), "/layers/%d/%s", (int)l,
               in->datasets[d].name);
      lay->data[l * D + d] = contiguous_at(
          f, name, P * (hsize_t)in->datasets[d].row_bytes, -1);
      if (lay->data[l * D + d] < 0)
        return snprintf(why, cap,
                        "%s is not contiguous (chunked, compressed, "
                        "external or unallocated)",
                        name),
               1;
    }
  }
  lay->sums =
      contiguous_at(f, "/eplb_checksums", (hsize_t)(L * (size_t)P * D * 8),
                    H5T_STD_U64LE);
  if (lay->sums < 0)
    return snprintf(why, cap, "/eplb_checksums is not contiguous"), 1;
  return 0;
}

int eplb__shard_generation_recs(const char *path, uint64_t gen,
                                eplb__recs_t *out, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  struct stat st;
  if (stat(path, &st) != 0)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot stat it", path);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t fapl = eplb__vfd_fapl(0);
  eplb__vfd_capture(out); /* the file opened now writes nothing */
  hid_t f = fapl >= 0 ? H5Fopen(path, H5F_ACC_RDWR, fapl) : -1;
  eplb__vfd_capture(NULL);
  if (fapl >= 0)
    H5Pclose(fapl);
  hid_t a = f >= 0 ? H5Aopen(f, "generation", H5P_DEFAULT) : -1;
  int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_UINT64, &gen) >= 0;
  if (a >= 0 && H5Aclose(a) < 0)
    ok = 0;
  if (f >= 0 && H5Fclose(f) < 0)
    ok = 0;
  int rc = 0;
  if (!ok || out->failed)
    rc = eplb_error_set(err, EPLB_EHDF5,
                        "%s: cannot prepare the generation's bytes%s", path,
                        out->failed ? " (out of memory)" : "");
  for (size_t i = 0; rc == 0 && i < out->n; i++)
    if (out->v[i].off < 0 || out->v[i].off + out->v[i].len > (int64_t)st.st_size)
      rc = eplb_error_set(err, EPLB_ESTATE,
                          "%s: bumping the generation would grow the file "
                          "(%lld bytes at %lld)",
                          path, (long long)out->v[i].len,
                          (long long)out->v[i].off);
  if (rc)
    eplb__recs_free(out);
  return rc;
}
