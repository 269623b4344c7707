/* h5/ckpt_io.c - the file operations of the checkpoint import and export:
 * whole reads and writes at an offset (the tensors stream through one
 * buffer, never a whole file), temporary files committed by fsync +
 * rename + fsync of the directory, and the open-files limit (an import
 * holds every checkpoint file and a group of shards open at once). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "h5/ckpt.h"
#include "util/fileio.h"

int eplb__ckpt_pread(int fd, const char *path, void *buf, size_t n,
                     uint64_t off, eplb_error_t *err) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t k = pread(fd, p, n, (off_t)off);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return eplb_error_set(err, EPLB_EIO,
                            "%s: cannot read %zu bytes at offset %llu: %s "
                            "(the file shrank?)",
                            path, n, (unsigned long long)off,
                            k < 0 ? strerror(errno) : "end of file");
    p += k;
    n -= (size_t)k;
    off += (uint64_t)k;
  }
  return 0;
}

int eplb__ckpt_pwrite(int fd, const char *path, const void *buf, size_t n,
                      uint64_t off, eplb_error_t *err) {
  const unsigned char *p = buf;
  while (n > 0) {
    ssize_t k = pwrite(fd, p, n, (off_t)off);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return eplb_error_set(
          err, EPLB_EIO, "%s: cannot write %zu bytes at offset %llu: %s", path,
          n, (unsigned long long)off, k < 0 ? strerror(errno) : "no progress");
    p += k;
    n -= (size_t)k;
    off += (uint64_t)k;
  }
  return 0;
}

int eplb__ckpt_mkdir(const char *dir, const char *what, eplb_error_t *err) {
  struct stat st;
  if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
    return 0;
  if (mkdir(dir, 0777) != 0)
    return eplb_error_set(err, EPLB_EIO, "%s %s: cannot create it: %s", what,
                          dir, strerror(errno));
  return 0;
}

int eplb__ckpt_tmp_path(const char *path, char *buf, size_t size,
                        eplb_error_t *err) {
  int n = snprintf(buf, size, "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= size)
    return eplb_error_set(err, EPLB_EARG, "%.200s: path too long", path);
  return 0;
}

int eplb__ckpt_commit_file(int fd, const char *tmp, const char *path,
                           eplb_error_t *err) {
  int rc = 0;
  if (fsync(fd) != 0)
    rc = eplb_error_set(err, EPLB_EIO, "%s: fsync failed: %s", tmp,
                        strerror(errno));
  if (close(fd) != 0 && rc == 0)
    rc = eplb_error_set(err, EPLB_EIO, "%s: close failed: %s", tmp,
                        strerror(errno));
  if (rc == 0 && rename(tmp, path) != 0)
    rc = eplb_error_set(err, EPLB_EIO, "%s: cannot rename %s over it: %s", path,
                        tmp, strerror(errno));
  if (rc) {
    unlink(tmp);
    return rc;
  }
  return eplb__fsync_dir_of(path, err);
}

long eplb__ckpt_raise_nofile(void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) != 0)
    return 256;
  if (r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    getrlimit(RLIMIT_NOFILE, &r);
  }
  return r.rlim_cur == RLIM_INFINITY || r.rlim_cur > (1L << 20)
             ? (1L << 20)
             : (long)r.rlim_cur;
}

double eplb__ckpt_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
