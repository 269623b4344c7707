/* util/strmap.c - a string -> int32 hash map (util/strmap.h): FNV-1a,
 * linear probing, at most half full. */
#include "util/strmap.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s) {
  uint64_t h = 14695981039346656037ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* The slot of key, or of the empty place it would go to. */
static size_t slot(const eplb__strmap_t *m, const char *key) {
  size_t i = (size_t)hash(key) & (m->cap - 1);
  while (m->keys[i] && strcmp(m->keys[i], key) != 0)
    i = (i + 1) & (m->cap - 1);
  return i;
}

int32_t eplb__strmap_get(const eplb__strmap_t *m, const char *key) {
  if (m->cap == 0)
    return -1;
  size_t i = slot(m, key);
  return m->keys[i] ? m->vals[i] : -1;
}

/* Doubles the table (at least 64 places). */
static int grow(eplb__strmap_t *m) {
  eplb__strmap_t g = {0};
  g.cap = m->cap ? m->cap * 2 : 64;
  g.keys = calloc(g.cap, sizeof(*g.keys));
  g.vals = calloc(g.cap, sizeof(*g.vals));
  if (g.keys == NULL || g.vals == NULL) {
    free(g.keys);
    free(g.vals);
    return -1;
  }
  for (size_t i = 0; i < m->cap; i++)
    if (m->keys[i]) {
      size_t j = slot(&g, m->keys[i]);
      g.keys[j] = m->keys[i];
      g.vals[j] = m->vals[i];
    }
  g.n = m->n;
  free(m->keys);
  free(m->vals);
  *m = g;
  return 0;
}

int eplb__strmap_put(eplb__strmap_t *m, const char *key, int32_t val,
                     eplb_error_t *err) {
  if ((m->n + 1) * 2 > m->cap && grow(m) != 0)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  size_t i = slot(m, key);
  if (m->keys[i] == NULL) {
    if ((m->keys[i] = strdup(key)) == NULL)
      return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    m->n++;
  }
  m->vals[i] = val;
  return 0;
}

void eplb__strmap_free(eplb__strmap_t *m) {
  if (m == NULL)
    return;
  for (size_t i = 0; i < m->cap; i++)
    free(m->keys[i]);
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof(*m));
}
