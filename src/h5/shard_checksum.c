/* shard_checksum.c - eplb_shard_checksum_file (eplb/shard.h): a shard
 * from another writer gets its at-rest checksums, in a checked copy that
 * the caller renames over it (eplb-shard checksum). */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5/shard_internal.h"
#include "h5/vfd.h"
#include "util/checksum.h"

/* Copies file `from` to `to` (created, fsynced by the caller's close). */
static int copy_file(const char *from, const char *to, eplb_error_t *err) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  int out = in >= 0 ? open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                    : -1;
  static unsigned char buf[1 << 20];
  int rc = in < 0 || out < 0 ? -1 : 0;
  while (rc == 0) {
    ssize_t n = read(in, buf, sizeof(buf));
    if (n == 0)
      break;
    if (n < 0 || write(out, buf, (size_t)n) != n)
      rc = -1;
  }
  int e = errno;
  if (out >= 0 && close(out) != 0)
    rc = -1;
  if (in >= 0)
    close(in);
  if (rc)
    return eplb_error_set(err, EPLB_EIO, "copying %s to %s failed: %s", from,
                          to, strerror(e));
  return 0;
}

/* Every row of sh, checked against its checksums if it has them, and
 * their checksums into sums[L * P * D]. */
static int sum_rows(eplb_shard_t *sh, uint64_t *sums, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(sh);
  size_t D = (size_t)in->num_datasets, P = (size_t)in->slots_per_rank;
  size_t most = 1;
  for (size_t d = 0; d < D; d++)
    if ((size_t)in->datasets[d].row_bytes * P > most)
      most = (size_t)in->datasets[d].row_bytes * P;
  unsigned char *buf = malloc(most);
  int rc = buf ? 0 : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t l = 0; rc == 0 && l < in->num_layers; l++)
    for (size_t d = 0; rc == 0 && d < D; d++) {
      size_t rb = (size_t)in->datasets[d].row_bytes;
      rc = eplb_shard_read_dataset(sh, l, (int32_t)d, buf, err);
      for (size_t s = 0; rc == 0 && s < P; s++)
        sums[((size_t)l * P + s) * D + d] = eplb__checksum(buf + s * rb, rb, 0);
    }
  free(buf);
  return rc;
}

int eplb_shard_checksum_file(const char *path, const char *out, int *had,
                             eplb_error_t *err) {
  eplb_shard_t *sh = NULL;
  *had = 0;
  int rc = eplb_shard_open(path, &sh, err);
  if (rc)
    return rc;
  const eplb_shard_info_t *in = eplb_shard_info(sh);
  *had = eplb_shard_checksums(sh) != NULL;
  uint64_t *sums = calloc((size_t)in->num_layers * (size_t)in->slots_per_rank *
                              (size_t)(in->num_datasets ? in->num_datasets : 1),
                          sizeof(uint64_t));
  if (sums == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc == 0 && in->num_datasets == 0)
    rc = eplb_error_set(err, EPLB_ESHAPE,
                        "%s has no weight datasets to checksum", path);
  if (rc == 0) /* reading checks the checksums a shard already has */
    rc = sum_rows(sh, sums, err);
  eplb_shard_info_t info = *in;
  eplb_shard_close(sh);
  if (rc || *had || out == NULL) {
    free(sums);
    return rc;
  }
  rc = copy_file(path, out, err);
  hid_t fapl = rc == 0 ? eplb__vfd_fapl(0) : -1;
  hid_t f = fapl >= 0 ? H5Fopen(out, H5F_ACC_RDWR, fapl) : -1;
  if (fapl >= 0)
    H5Pclose(fapl);
  int bad = rc == 0 && (f < 0 || eplb__sums_write(f, &info, sums) != 0 ||
                        H5Fflush(f, H5F_SCOPE_LOCAL) < 0);
  if (bad)
    eplb__vfd_discard(f);
  if (f >= 0 && H5Fclose(f) < 0)
    bad = 1;
  free(sums);
  if (rc == 0 && bad)
    rc = eplb_error_set(err, EPLB_EIO,
                        "%s: cannot add the checksums (disk full or "
                        "read-only?)",
                        out);
  if (rc == 0) {
    int fd = open(out, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
      rc = eplb_error_set(err, EPLB_EIO, "%s: fsync failed: %s", out,
                          strerror(errno));
    if (fd >= 0)
      close(fd);
  }
  if (rc)
    unlink(out);
  return rc;
}
