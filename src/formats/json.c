/* formats/json.c - the small layer between cJSON and eplb's readers.
 *
 * cJSON says only *that* a parse failed and keeps the place in a global;
 * users need the line and column, and the readers need the same checks on
 * keys and numbers again and again (is this key a decimal index, is this
 * number an integer in range, is this count finite and non-negative).  They
 * live here so every reader says it the same way. */
#include "formats/formats.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
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
  long line, col;
  line_col(text, off, &line, &col);
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
