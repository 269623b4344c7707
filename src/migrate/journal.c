/* migrate/journal.c - what a commit in progress leaves on disk: the
 * temporary shards (shard_<rank>.h5.gen<G>.tmp) and the commit journal
 * (eplb_journal.json, "commit generation G"), which decides whether a
 * recovery rolls back or forward (see commit.c). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eplb/migrate.h"
#include "migrate/internal.h"
#include "util/fileio.h"

int eplb__shard_tmp_path(const char *dir, int rank, uint64_t gen, char *buf,
                         size_t size, eplb_error_t *err) {
  int n = snprintf(buf, size, "%s/shard_%05d.h5.gen%" PRIu64 ".tmp", dir, rank,
                   gen);
  if (n < 0 || (size_t)n >= size)
    return eplb_error_set(err, EPLB_EARG,
                          "shard directory '%.200s' is too long", dir);
  return 0;
}

int eplb__shard_redo_path(const char *dir, int rank, uint64_t gen, char *buf,
                          size_t size, eplb_error_t *err) {
  int n = snprintf(buf, size, "%s/shard_%05d.h5.gen%" PRIu64 ".redo", dir,
                   rank, gen);
  if (n < 0 || (size_t)n >= size)
    return eplb_error_set(err, EPLB_EARG,
                          "shard directory '%.200s' is too long", dir);
  return 0;
}

static int journal_path(const char *dir, char *buf, size_t size,
                        eplb_error_t *err) {
  int n = snprintf(buf, size, "%s/%s", dir, EPLB_JOURNAL_NAME);
  if (n < 0 || (size_t)n >= size)
    return eplb_error_set(err, EPLB_EARG,
                          "shard directory '%.200s' is too long", dir);
  return 0;
}

/* eplb__write_fn: the journal's JSON. */
static int write_journal_fn(FILE *f, const void *ctx, eplb_error_t *err) {
  const eplb__journal_t *j = ctx;
  if (fprintf(f,
              "{\"eplb_journal\": 1, \"state\": \"commit\", "
              "\"commit_generation\": %" PRIu64 ", \"world_size\": %d}\n",
              j->gen, (int)j->world_size) < 0)
    return eplb_error_set(err, EPLB_EIO, "writing the journal failed");
  return 0;
}

/* A non-negative integer member of the journal. */
static int journal_num(const cJSON *root, const char *key, double max,
                       double *v) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > max ||
      x->valuedouble != (double)(uint64_t)x->valuedouble)
    return -1;
  *v = x->valuedouble;
  return 0;
}

int eplb__journal_read(const char *dir, eplb__journal_t *j, int *exists,
                       eplb_error_t *err) {
  char path[4096];
  *exists = 0;
  int rc = journal_path(dir, path, sizeof(path), err);
  if (rc || access(path, F_OK) != 0)
    return rc;
  *exists = 1;
  char *text = NULL;
  rc = eplb__read_file(path, &text, NULL, err);
  if (rc)
    return rc;
  cJSON *root = cJSON_Parse(text);
  double g = 0, w = 0, v = 0;
  if (root == NULL || journal_num(root, "eplb_journal", 1, &v) || v != 1 ||
      journal_num(root, "commit_generation", 9007199254740991.0, &g) ||
      journal_num(root, "world_size", 65536, &w) || w < 1)
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s is not an eplb commit journal (eplb_journal 1, "
                        "commit_generation, world_size); inspect the directory "
                        "by hand",
                        path);
  j->gen = (uint64_t)g;
  j->world_size = (int32_t)w;
  cJSON_Delete(root);
  free(text);
  return rc;
}

int eplb__journal_write(const char *dir, uint64_t gen, int size,
                        eplb_error_t *err) {
  char path[4096];
  eplb__journal_t j = {gen, size};
  int rc = journal_path(dir, path, sizeof(path), err);
  return rc ? rc : eplb__write_atomic(path, write_journal_fn, &j, err);
}

int eplb__journal_remove(const char *dir, eplb_error_t *err) {
  char path[4096];
  int rc = journal_path(dir, path, sizeof(path), err);
  if (rc == 0 && unlink(path) != 0 && errno != ENOENT)
    rc = eplb_error_set(err, EPLB_EIO, "%s: cannot remove the journal: %s",
                        path, strerror(errno));
  return rc ? rc : eplb__fsync_dir_of(path, err);
}
