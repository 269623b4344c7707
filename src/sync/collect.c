/* sync/collect.c - the first stage: each rank brings its own top-k
 * histogram, read from its files (%r in a pattern is the rank) or given
 * in memory, checked before any collective so that a bad file is this
 * rank's failure, agreed with the others, not a hang. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/formats.h"
#include "sync/internal.h"
#include "util/fileio.h"

int eplb_sync_expand(const char *pattern, int rank, char *buf, size_t size,
                     eplb_error_t *err) {
  size_t used = 0;
  for (const char *p = pattern; *p; p++) {
    char tmp[16];
    const char *piece = tmp;
    if (p[0] == '%' && p[1] == 'r') {
      snprintf(tmp, sizeof(tmp), "%d", rank);
      p++;
    } else {
      tmp[0] = *p;
      tmp[1] = '\0';
    }
    size_t n = strlen(piece);
    if (used + n + 1 > size)
      return eplb_error_set(err, EPLB_EARG,
                            "statistics pattern '%s' is longer than %zu bytes "
                            "once %%r is replaced; use a shorter path",
                            pattern, size - 1);
    memcpy(buf + used, piece, n);
    used += n;
  }
  buf[used] = '\0';
  return 0;
}

int eplb__sync_check_local(const eplb_stats_t *local, const char *name,
                           eplb_error_t *err) {
  if (local == NULL || local->load == NULL || local->num_layers <= 0)
    return eplb_error_set(err, EPLB_EARG, "%s: no statistics given", name);
  return eplb_stats_check(local, name, err);
}

/* eplb__sync_read_local, with `what` naming the option of the patterns
 * in messages ("--stats", "--scenario"). */
static int read_local(const char *what, const char *const *patterns, int n,
                      int rank, eplb_stats_format_t format, const char *output,
                      const char *summary, eplb_stats_t *st, char *name,
                      size_t name_size, eplb_error_t *err) {
  if (n < 1 || n > EPLB_SYNC_MAX_STATS)
    return eplb_error_set(err, EPLB_EARG,
                          "%d statistics patterns given; use 1..%d", n,
                          EPLB_SYNC_MAX_STATS);
  /* This rank's paths: %r expanded; then read and summed as eplb-plan
   * sums its --stats (globs included). */
  char(*paths)[4096] = malloc(sizeof(*paths) * (size_t)n);
  const char **p = malloc(sizeof(*p) * (size_t)n);
  int rc = paths && p ? 0 : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int i = 0; i < n && rc == 0; i++) {
    rc = eplb_sync_expand(patterns[i], rank, paths[i], sizeof(paths[i]), err);
    p[i] = paths[i];
  }
  /* What rank 0 will write may not be what this rank reads (compared on
   * this rank's view of the file system, by identity). */
  if (rc == 0)
    rc = eplb__check_output("--output", output, what, p, n, err);
  if (rc == 0)
    rc = eplb__check_output("--summary", summary, what, p, n, err);
  if (rc == 0) {
    snprintf(name, name_size, "%s", paths[0]);
    rc = eplb_stats_read_many(st, p, n, format, NULL, err);
  }
  free(paths);
  free(p);
  return rc;
}

int eplb__sync_read_local(const char *const *patterns, int n, int rank,
                          eplb_stats_format_t format, const char *output,
                          const char *summary, eplb_stats_t *st, char *name,
                          size_t name_size, eplb_error_t *err) {
  return read_local("--stats", patterns, n, rank, format, output, summary, st,
                    name, name_size, err);
}

int eplb__sync_read_scenarios(const eplb_sync_scenario_t *sc, int32_t num,
                              int rank, eplb_stats_format_t format,
                              const char *output, const char *summary,
                              eplb_stats_t *stats, char (*names)[4096],
                              eplb_error_t *err) {
  int rc = 0;
  int32_t k = 0;
  for (; k < num && rc == 0; k++)
    rc = read_local("--scenario", sc[k].patterns, sc[k].num_patterns, rank,
                    format, output, summary, &stats[k], names[k],
                    sizeof(names[k]), err);
  if (rc)
    for (int32_t j = 0; j < k; j++)
      eplb_stats_cleanup(&stats[j]);
  return rc;
}
