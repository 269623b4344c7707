/* fileio.c - whole-file reads and crash-safe whole-file writes. */
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int eplb__read_file(const char *path, char **data, size_t *len,
                    eplb_error_t *err) {
  *data = NULL;
  if (len)
    *len = 0;
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot open: %s; check the path",
                          path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return eplb_error_set(err, EPLB_EIO, "%s: not a regular file", path);
  }
  if (st.st_size > EPLB_MAX_TEXT_FILE) {
    fclose(f);
    return eplb_error_set(err, EPLB_EIO,
                          "%s: %lld bytes is larger than the 1 GiB limit", path,
                          (long long)st.st_size);
  }
  size_t size = (size_t)st.st_size;
  char *buf = malloc(size + 1);
  if (buf == NULL) {
    fclose(f);
    return eplb_error_set(err, EPLB_ENOMEM,
                          "%s: out of memory reading %zu bytes", path, size);
  }
  size_t got = fread(buf, 1, size, f);
  int rerr = ferror(f);
  fclose(f);
  if (got != size || rerr) {
    free(buf);
    return eplb_error_set(err, EPLB_EIO,
                          "%s: read error after %zu of %zu bytes", path, got,
                          size);
  }
  buf[size] = '\0';
  *data = buf;
  if (len)
    *len = size;
  return 0;
}

int eplb__fsync_dir_of(const char *path, eplb_error_t *err) {
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (slash == NULL) {
    strcpy(dir, ".");
  } else if (slash == path) {
    strcpy(dir, "/");
  } else {
    size_t n = (size_t)(slash - path);
    if (n >= sizeof(dir))
      return eplb_error_set(err, EPLB_EIO, "%s: path too long", path);
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot open directory: %s", dir,
                          strerror(errno));
  int rc = fsync(fd);
  int saved = errno;
  close(fd);
  if (rc != 0)
    return eplb_error_set(err, EPLB_EIO, "%s: fsync of directory failed: %s",
                          dir, strerror(saved));
  return 0;
}

int eplb__write_atomic(const char *path, eplb__write_fn write, const void *ctx,
                       eplb_error_t *err) {
  char tmp[PATH_MAX];
  int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= sizeof(tmp))
    return eplb_error_set(err, EPLB_EIO, "%s: path too long", path);
  FILE *f = fopen(tmp, "wb");
  if (f == NULL)
    return eplb_error_set(err, EPLB_EIO,
                          "%s: cannot create temporary file %s: %s; check the "
                          "directory exists and is writable",
                          path, tmp, strerror(errno));
  int rc = write(f, ctx, err);
  if (rc == 0 && (fflush(f) != 0 || ferror(f)))
    rc = eplb_error_set(err, EPLB_EIO, "%s: write failed: %s", tmp,
                        strerror(errno));
  if (rc == 0 && fsync(fileno(f)) != 0)
    rc = eplb_error_set(err, EPLB_EIO, "%s: fsync failed: %s", tmp,
                        strerror(errno));
  if (fclose(f) != 0 && rc == 0)
    rc = eplb_error_set(err, EPLB_EIO, "%s: close failed: %s", tmp,
                        strerror(errno));
  if (rc == 0 && rename(tmp, path) != 0)
    rc = eplb_error_set(err, EPLB_EIO, "%s: rename from %s failed: %s", path,
                        tmp, strerror(errno));
  if (rc != 0) {
    unlink(tmp);
    return rc;
  }
  return eplb__fsync_dir_of(path, err);
}

int eplb__write_text(FILE *f, const void *ctx, eplb_error_t *err) {
  if (fputs((const char *)ctx, f) == EOF || fputc('\n', f) == EOF)
    return eplb_error_set(err, EPLB_EIO, "write failed");
  return 0;
}
