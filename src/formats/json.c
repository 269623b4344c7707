/* formats/json.c - the small layer between cJSON and eplb's readers.
 *
 * cJSON says only *that* a parse failed and keeps the place in a global;
 * users need the line and column, and the readers need the same checks on
 * keys and numbers again and again (is this key a decimal index, is this
 * number an integer in range, is this count finite and non-negative).  They
 * live here so every reader says it the same way.  cJSON is also lenient
 * where eplb must not be: it keeps both copies of a duplicate key (and its
 * lookups find the first), it builds a tree of any size (about 80 bytes
 * per value), and it calls nesting beyond 1000 levels a syntax error; the
 * checks here refuse each by name. */
#include "formats/formats.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/stats.h"

/* Copies up to 20 printable characters starting at p into buf (other bytes
 * become '?'), for "near '...'" in a message. */
static void excerpt(const char *p, const char *end, char *buf, size_t size) {
  size_t n = 0;
  while (p < end && n + 1 < size && n < 20) {
    unsigned char c = (unsigned char)*p++;
    if (c == '\n' || c == '\r')
      break;
    buf[n++] = isprint(c) ? (char)c : '?';
  }
  buf[n] = '\0';
}

/* Line and column (both from 1) of byte `off` of text. */
static void line_col(const char *text, size_t off, long *line, long *col) {
  *line = 1;
  *col = 1;
  for (size_t i = 0; i < off; i++) {
    if (text[i] == '\n') {
      (*line)++;
      *col = 1;
    } else {
      (*col)++;
    }
  }
}

size_t eplb__json_count_values(const char *text, size_t len) {
  size_t n = 1;
  int in_string = 0;
  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_string = 0;
    } else if (c == '"') {
      in_string = 1;
    } else if (c == '[' || c == '{' || c == ',') {
      n++;
    }
  }
  return n;
}

/* How many arrays and objects are open before byte `off` (strings
 * skipped). */
static long depth_at(const char *text, size_t off) {
  long d = 0;
  int in_string = 0;
  for (size_t i = 0; i < off; i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_string = 0;
    } else if (c == '"') {
      in_string = 1;
    } else if (c == '[' || c == '{') {
      d++;
    } else if (c == ']' || c == '}') {
      d--;
    }
  }
  return d;
}

/* The message for a parse that stopped at byte `off`. */
static int parse_error(const char *path, const char *text, size_t len,
                       size_t off, eplb_error_t *err) {
  long line, col;
  line_col(text, off, &line, &col);
  if (off < len && (text[off] == '[' || text[off] == '{') &&
      depth_at(text, off) >= CJSON_NESTING_LIMIT)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: JSON nested deeper than %d levels at line %ld, "
                          "column %ld; eplb's statistics and maps nest at most "
                          "4 levels: is this the right file?",
                          path, CJSON_NESTING_LIMIT, line, col);
  if (off >= len)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: not valid JSON: it ends at line %ld, column %ld "
                          "in the middle of a value; is the file truncated?",
                          path, line, col);
  char near[32];
  excerpt(text + off, text + len, near, sizeof(near));
  return eplb_error_set(err, EPLB_EPARSE,
                        "%s: not valid JSON: the parser stopped at line %ld, "
                        "column %ld, %s%s%s; fix the file there",
                        path, line, col,
                        near[0] ? "near '" : "at the end of the line", near,
                        near[0] ? "'" : "");
}

int eplb__json_parse(const char *path, const char *text, size_t len,
                     cJSON **out, eplb_error_t *err) {
  *out = NULL;
  size_t i = 0;
  while (i < len && isspace((unsigned char)text[i]))
    i++;
  if (i == len)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: the file is empty; expected JSON statistics or "
                          "an expert map",
                          path);
  size_t nul = strlen(text);
  if (nul != len)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: a NUL byte at offset %zu: this is not a JSON "
                          "text file",
                          path, nul);
  const char *end = NULL;
  /* len + 1: cJSON counts the terminating NUL when it must find one. */
  cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
  if (root != NULL) {
    *out = root;
    return 0;
  }
  size_t off = (end != NULL && end >= text && end <= text + len)
                   ? (size_t)(end - text)
                   : len;
  return parse_error(path, text, len, off, err);
}

int eplb__json_parse_bounded(const char *path, const char *text, size_t len,
                             cJSON **out, eplb_error_t *err) {
  *out = NULL;
  size_t values = eplb__json_count_values(text, len);
  if (values > EPLB_JSON_MAX_VALUES)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: about %zu JSON values, more than the %d eplb's "
                          "full JSON reader holds (about 100 bytes of memory "
                          "each); well-formed statistics of any size are read "
                          "without that limit (docs/formats.md)",
                          path, values, EPLB_JSON_MAX_VALUES);
  return eplb__json_parse(path, text, len, out, err);
}

/* ---- duplicate keys ------------------------------------------------------ */

/* Appends one step of a JSON path (a key, or an index when key is NULL)
 * to path[size] at *n. */
static void path_push(char *path, size_t size, size_t *n, const char *key,
                      int index) {
  int plain = key != NULL && (isalpha((unsigned char)key[0]) || key[0] == '_');
  for (const char *p = key; plain && *p; p++)
    plain = isalnum((unsigned char)*p) || *p == '_';
  int w;
  if (key == NULL)
    w = snprintf(path + *n, size - *n, "[%d]", index);
  else if (plain)
    w = snprintf(path + *n, size - *n, "%s%s", *n ? "." : "", key);
  else
    w = snprintf(path + *n, size - *n, "[\"%.40s\"]", key);
  if (w > 0)
    *n = *n + (size_t)w < size ? *n + (size_t)w : size - 1;
}

static int cmp_keys(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The key that appears twice among obj's members, or NULL. */
static const char *duplicate_key(const cJSON *obj, int *oom) {
  int n = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, obj) n++;
  if (n < 2)
    return NULL;
  if (n <= 8) {
    for (const cJSON *a = obj->child; a; a = a->next)
      for (const cJSON *b = a->next; b; b = b->next)
        if (strcmp(a->string, b->string) == 0)
          return a->string;
    return NULL;
  }
  const char **keys = malloc(sizeof(*keys) * (size_t)n);
  if (keys == NULL) {
    *oom = 1;
    return NULL;
  }
  int k = 0;
  cJSON_ArrayForEach(c, obj) keys[k++] = c->string;
  qsort(keys, (size_t)n, sizeof(*keys), cmp_keys);
  const char *dup = NULL;
  for (int i = 1; i < n && dup == NULL; i++)
    if (strcmp(keys[i - 1], keys[i]) == 0)
      dup = keys[i];
  free(keys);
  return dup;
}

/* One step of the path from the root to the value being walked: a key,
 * or an index when key is NULL.  The path is spelled out only for an
 * error (formatting it at every step cost more than the walk). */
typedef struct frame_s {
  const struct frame_s *up;
  const char *key;
  int index;
} frame_t;

/* Spells the path of f into at[size]. */
static void path_of(const frame_t *f, char *at, size_t size, size_t *n) {
  if (f == NULL)
    return;
  path_of(f->up, at, size, n);
  path_push(at, size, n, f->key, f->index);
}

/* Walks v (reached by `f`, NULL for the root); 0 or the error. */
static int unique_walk(const char *file, const cJSON *v, const frame_t *f,
                       eplb_error_t *err) {
  if (cJSON_IsObject(v)) {
    int oom = 0;
    const char *dup = duplicate_key(v, &oom);
    if (oom)
      return eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", file);
    if (dup != NULL) {
      char at[256] = "";
      size_t n = 0;
      path_of(f, at, sizeof(at), &n);
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: key \"%.60s\" appears twice in %s; each key "
                            "may appear once (which one is meant?)",
                            file, dup, n ? at : "the top-level object");
    }
  }
  if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
    return 0;
  int i = 0;
  for (const cJSON *c = v->child; c != NULL; c = c->next, i++) {
    if (!cJSON_IsObject(c) && !cJSON_IsArray(c))
      continue;
    frame_t step = {f, cJSON_IsObject(v) ? c->string : NULL, i};
    int rc = unique_walk(file, c, &step, err);
    if (rc)
      return rc;
  }
  return 0;
}

int eplb__json_unique_keys(const char *path, const cJSON *root,
                           eplb_error_t *err) {
  return unique_walk(path, root, NULL, err);
}

const char *eplb__json_kind(const cJSON *v) {
  if (v == NULL)
    return "nothing";
  if (cJSON_IsObject(v))
    return "an object";
  if (cJSON_IsArray(v))
    return "an array";
  if (cJSON_IsString(v))
    return "a string";
  if (cJSON_IsNumber(v))
    return "a number";
  if (cJSON_IsNull(v))
    return "null";
  if (cJSON_IsBool(v))
    return "true or false";
  return "an unknown value";
}

int eplb__parse_index(const char *key, int32_t max, int32_t *out) {
  if (key == NULL || key[0] == '\0')
    return -1;
  if (key[0] == '0' && key[1] != '\0')
    return -1;
  int64_t v = 0;
  for (const char *p = key; *p; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    v = v * 10 + (*p - '0');
    if (v > max)
      return -2;
  }
  *out = (int32_t)v;
  return 0;
}

const char *eplb__json_int(const cJSON *v, int64_t min, int64_t max,
                           int64_t *out) {
  if (!cJSON_IsNumber(v))
    return "is not a number";
  double d = v->valuedouble;
  if (!isfinite(d) || d != floor(d))
    return "is not an integer";
  if (d < (double)min || d > (double)max)
    return "is out of range";
  *out = (int64_t)d;
  return NULL;
}

int eplb__check_count(double v, const char *path, const char *where,
                      eplb_error_t *err) {
  if (isfinite(v) && v >= 0.0 && v <= EPLB_MAX_COUNT)
    return 0;
  const char *why = !isfinite(v) ? "is not finite"
                    : v < 0.0    ? "is negative"
                                 : "exceeds 2^53, the largest count eplb sums "
                                   "exactly";
  return eplb_error_set(err, EPLB_ECOUNT,
                        "%s: %s: count %.17g %s; counts must be finite, "
                        "non-negative and at most 2^53",
                        path, where, v, why);
}
