/* util/strmap.h - a string -> int32 hash map (open addressing, keys
 * copied), for the names of a checkpoint: tens of thousands of tensor
 * names looked up once each, so a sort or a linear search would not do.
 * Internal: not installed. */
#ifndef EPLB_UTIL_STRMAP_H
#define EPLB_UTIL_STRMAP_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/error.h"

typedef struct {
  char **keys;   /* [cap], NULL = empty */
  int32_t *vals; /* [cap] */
  size_t cap, n;
} eplb__strmap_t;

/* The value of key, or -1.  A zeroed map is empty. */
int32_t eplb__strmap_get(const eplb__strmap_t *m, const char *key);
/* Sets key -> val (val >= 0), copying key; replaces an existing value. */
int eplb__strmap_put(eplb__strmap_t *m, const char *key, int32_t val,
                     eplb_error_t *err);
/* NULL-safe, idempotent. */
void eplb__strmap_free(eplb__strmap_t *m);

#endif /* EPLB_UTIL_STRMAP_H */
