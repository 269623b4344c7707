/* fileio.c - whole-file reads and crash-safe whole-file writes, and the
 * checks that keep both safe on hostile paths: a FIFO or a device given as
 * an input (which would block a read forever), an output that is one of
 * the inputs (which the write would destroy), an output that is a device
 * (which the rename would replace). */
#include "util/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *eplb__file_kind(unsigned mode) {
  switch (mode & S_IFMT) {
  case S_IFREG: return "a regular file";
  case S_IFDIR: return "a directory";
  case S_IFIFO: return "a FIFO (named pipe)";
  case S_IFCHR: return "a character device";
  case S_IFBLK: return "a block device";
  case S_IFSOCK: return "a socket";
  case S_IFLNK: return "a symbolic link";
  }
  return "not a regular file";
}

int eplb__open_regular(const char *path, eplb_error_t *err) {
  /* O_NONBLOCK: open(2) of a FIFO without a writer returns at once instead
   * of waiting; fstat then says what it is. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot open: %s; check the path",
                          path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return eplb_error_set(err, EPLB_EIO, "%s: cannot stat: %s", path,
                          strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return eplb_error_set(err, EPLB_EIO,
                          "%s: is %s, not a regular file; eplb reads only "
                          "regular files (pass the file itself)",
                          path, eplb__file_kind((unsigned)st.st_mode));
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
    int e = errno;
    close(fd);
    return eplb_error_set(err, EPLB_EIO, "%s: cannot open: %s", path,
                          strerror(e));
  }
  return fd;
}

int eplb__check_regular(const char *path, eplb_error_t *err) {
  int fd = eplb__open_regular(path, err);
  if (fd < 0)
    return fd;
  close(fd);
  return 0;
}

/* Reads size bytes from fd into buf; the count read (short on error). */
static size_t read_all(int fd, char *buf, size_t size) {
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd, buf + got, size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  return got;
}

int eplb__read_file(const char *path, char **data, size_t *len,
                    eplb_error_t *err) {
  *data = NULL;
  if (len)
    *len = 0;
  int fd = eplb__open_regular(path, err);
  if (fd < 0)
    return fd;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size > EPLB_MAX_TEXT_FILE) {
    close(fd);
    return eplb_error_set(err, EPLB_EIO,
                          "%s: %lld bytes is larger than the 1 GiB limit", path,
                          (long long)st.st_size);
  }
  size_t size = (size_t)st.st_size;
  char *buf = malloc(size + 1);
  if (buf == NULL) {
    close(fd);
    return eplb_error_set(err, EPLB_ENOMEM,
                          "%s: out of memory reading %zu bytes", path, size);
  }
  size_t got = read_all(fd, buf, size);
  close(fd);
  if (got != size) {
    free(buf);
    return eplb_error_set(err, EPLB_EIO,
                          "%s: read error after %zu of %zu bytes (the file "
                          "shrank or could not be read)",
                          path, got, size);
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

/* ---- outputs against inputs ---------------------------------------- */

static int same_id(const struct stat *a, const struct stat *b) {
  return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Searches dir (and, at depth 0, its subdirectories) for the file `o`;
 * 1 and its path in found[size] when there. */
static int find_in_dir(const char *dir, const struct stat *o, int depth,
                       char *found, size_t size) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return 0;
  int hit = 0;
  struct dirent *de;
  while (!hit && (de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    char p[PATH_MAX];
    struct stat st;
    int n = snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
    if (n < 0 || (size_t)n >= sizeof(p) || stat(p, &st) != 0)
      continue;
    if (same_id(&st, o)) {
      snprintf(found, size, "%s", p);
      hit = 1;
    } else if (S_ISDIR(st.st_mode) && depth == 0) {
      hit = find_in_dir(p, o, 1, found, size);
    }
  }
  closedir(d);
  return hit;
}

/* 1 when the input `in` (a file, a directory) is or holds the file `o`;
 * the matching path goes to found. */
static int input_holds(const char *in, const struct stat *o, char *found,
                       size_t size) {
  struct stat st;
  if (stat(in, &st) != 0)
    return 0;
  if (same_id(&st, o)) {
    snprintf(found, size, "%s", in);
    return 1;
  }
  return S_ISDIR(st.st_mode) && find_in_dir(in, o, 0, found, size);
}

/* The same for an input that may be a glob pattern. */
static int pattern_holds(const char *in, const struct stat *o, char *found,
                         size_t size) {
  if (strpbrk(in, "*?[") == NULL)
    return input_holds(in, o, found, size);
  glob_t g;
  int hit = 0;
  if (glob(in, 0, NULL, &g) == 0)
    for (size_t i = 0; !hit && i < g.gl_pathc; i++)
      hit = input_holds(g.gl_pathv[i], o, found, size);
  globfree(&g);
  return hit;
}

int eplb__check_output(const char *what, const char *output,
                       const char *input_what, const char *const *inputs,
                       int num_inputs, eplb_error_t *err) {
  struct stat o;
  if (output == NULL || stat(output, &o) != 0)
    return 0; /* not there yet: it cannot be an input */
  if (!S_ISREG(o.st_mode))
    return eplb_error_set(err, EPLB_EARG,
                          "%s %s is %s, not a regular file; eplb writes a "
                          "new file and renames it over the old one, which "
                          "would replace it: name a file",
                          what, output, eplb__file_kind((unsigned)o.st_mode));
  for (int i = 0; i < num_inputs; i++) {
    char found[PATH_MAX];
    if (inputs[i] == NULL ||
        !pattern_holds(inputs[i], &o, found, sizeof(found)))
      continue;
    if (strcmp(found, inputs[i]) == 0)
      return eplb_error_set(err, EPLB_EARG,
                            "%s %s is the same file as %s %s; refusing to "
                            "overwrite an input: write the output elsewhere",
                            what, output, input_what, inputs[i]);
    return eplb_error_set(err, EPLB_EARG,
                          "%s %s is the same file as %s, which %s %s reads; "
                          "refusing to overwrite an input: write the output "
                          "elsewhere",
                          what, output, found, input_what, inputs[i]);
  }
  return 0;
}

/* The directory part of path into dir[size] ("." for none). */
static void dir_of(const char *path, char *dir, size_t size) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL)
    snprintf(dir, size, ".");
  else if (slash == path)
    snprintf(dir, size, "/");
  else
    snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

int eplb__same_path(const char *a, const char *b) {
  struct stat sa, sb;
  int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
  if (ea || eb)
    return ea && eb && same_id(&sa, &sb);
  const char *na = strrchr(a, '/'), *nb = strrchr(b, '/');
  na = na ? na + 1 : a;
  nb = nb ? nb + 1 : b;
  char da[PATH_MAX], db[PATH_MAX];
  dir_of(a, da, sizeof(da));
  dir_of(b, db, sizeof(db));
  return strcmp(na, nb) == 0 && stat(da, &sa) == 0 && stat(db, &sb) == 0 &&
         same_id(&sa, &sb);
}

/* ---- atomic writes ----------------------------------------------------- */

int eplb__write_atomic(const char *path, eplb__write_fn write, const void *ctx,
                       eplb_error_t *err) {
  struct stat old;
  if (stat(path, &old) == 0 && !S_ISREG(old.st_mode))
    return eplb_error_set(err, EPLB_EIO,
                          "%s: is %s, not a regular file; eplb writes a new "
                          "file and renames it over the old one, which would "
                          "replace it: name a file",
                          path, eplb__file_kind((unsigned)old.st_mode));
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
