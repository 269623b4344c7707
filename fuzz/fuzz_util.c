/* fuzz/fuzz_util.c - see fuzz_util.h. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "fuzz_util.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[512];

static int remove_one(const char *path, const struct stat *sb, int flag,
                      struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

static void remove_dir(void) {
  if (g_dir[0] != '\0')
    nftw(g_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_dir(void) {
  if (g_dir[0] != '\0')
    return g_dir;
  struct stat sb;
  const char *base = getenv("TMPDIR");
  if (stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) &&
      access("/dev/shm", W_OK) == 0)
    base = "/dev/shm";
  snprintf(g_dir, sizeof(g_dir), "%s/eplb_fuzz_XXXXXX",
           base && base[0] ? base : "/tmp");
  if (mkdtemp(g_dir) == NULL)
    fuzz_fail("cannot make a temporary directory %s", g_dir);
  atexit(remove_dir);
  return g_dir;
}

const char *fuzz_path(const char *name) {
  static char buf[2][1024];
  static int k;
  k ^= 1;
  snprintf(buf[k], sizeof(buf[k]), "%s/%s", fuzz_dir(), name);
  return buf[k];
}

void fuzz_write(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) ||
      fclose(f) != 0)
    fuzz_fail("cannot write %s", path);
}

char *fuzz_text(const uint8_t *data, size_t size) {
  char *t = malloc(size + 1);
  if (t == NULL)
    fuzz_fail("out of memory");
  if (size > 0)
    memcpy(t, data, size);
  t[size] = '\0';
  return t;
}

/* The index of `name` (n bytes) in names, or -1. */
static int name_index(const char *const *names, const char *name, size_t n) {
  for (int i = 0; names[i] != NULL; i++)
    if (strlen(names[i]) == n && memcmp(names[i], name, n) == 0)
      return i;
  return -1;
}

/* Finds "\n@@ " in [p, end); returns it or end. */
static const char *next_section(const char *p, const char *end) {
  for (; p + 4 <= end; p++)
    if (memcmp(p, "\n@@ ", 4) == 0)
      return p;
  return end;
}

int fuzz_write_sections(const char *dir, const uint8_t *data, size_t size,
                        const char *const *names) {
  char path[1024];
  for (int i = 0; names[i] != NULL; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    remove(path);
    const char *slash = strchr(names[i], '/');
    if (slash != NULL) {
      snprintf(path, sizeof(path), "%s/%.*s", dir, (int)(slash - names[i]),
               names[i]);
      mkdir(path, 0755);
    }
  }
  const char *p = (const char *)data, *end = p + size;
  if (size < 3 || memcmp(p, "@@ ", 3) != 0)
    return 0;
  p += 3;
  int written = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
      break;
    /* The header's own newline may start the next separator (an empty
     * file): then the body is empty. */
    const char *body = nl + 1, *stop = next_section(nl, end);
    size_t n = stop > body ? (size_t)(stop - body) : 0;
    int k = name_index(names, p, (size_t)(nl - p));
    if (k >= 0) {
      snprintf(path, sizeof(path), "%s/%s", dir, names[k]);
      fuzz_write(path, body, n);
      written++;
    }
    p = stop + 4;
  }
  return written;
}

void fuzz_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}
