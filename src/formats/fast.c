/* formats/fast.c - fast paths for the statistics files eplb reads most:
 * SGLang's {"logical_count": [[...], ...]} and MindSpeed-RL's
 * {"layer": {"expert": count}}, when they are well-formed.
 *
 * Why: cJSON builds a node per number (a DeepSeek-V3 histogram is 15k
 * numbers, and eplb-plan sums one file per rank), and building that tree
 * took longer than planning.  These scanners read the numbers straight into
 * the histogram (docs/formats.md gives the gain).  They accept only what the
 * full readers (stats_read.c) accept, with the same result: the same JSON
 * number grammar converted by the same strtod (or exactly, for plain integers),
 * the same shape rules, counts finite, >= 0, <= 2^53, sums <= 2^53.  On
 * anything else (an escaped key, a key twice, a ragged row, a missing
 * expert, a bad count, a syntax error) they give up without a message and
 * the full reader runs, so every error message still comes from one place;
 * they report where they gave up, which is where a file too large for the
 * full reader's tree is wrong.  SGLang files may carry other top-level keys
 * (scalars and arrays: skipped, each name once) and are also read as a
 * series (every step kept). */
#include <stdlib.h>
#include <string.h>

#include "eplb/series.h"
#include "eplb/stats.h"
#include "formats/formats.h"

/* ---- scanning primitives ------------------------------------------------ */

typedef struct {
  const char *p, *end;
} scan_t;

/* Skips JSON white space. */
static void skip_ws(scan_t *s) {
  while (s->p < s->end &&
         (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
    s->p++;
}

/* 1 if the next byte (after white space) is c; consumes it. */
static int eat(scan_t *s, char c) {
  skip_ws(s);
  if (s->p < s->end && *s->p == c) {
    s->p++;
    return 1;
  }
  return 0;
}

/* 1 if the text is at its end (after white space). */
static int at_end(scan_t *s) {
  skip_ws(s);
  return s->p == s->end;
}

/* 1 for an ASCII decimal digit (locale-independent). */
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Length of the JSON number at p (0 if there is none):
 * -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static size_t number_len(const char *p, const char *end) {
  const char *q = p;
  if (q < end && *q == '-')
    q++;
  if (q >= end || !is_digit(*q))
    return 0;
  if (*q == '0')
    q++;
  else
    while (q < end && is_digit(*q))
      q++;
  if (q < end && *q == '.') {
    if (++q >= end || !is_digit(*q))
      return 0;
    while (q < end && is_digit(*q))
      q++;
  }
  if (q < end && (*q == 'e' || *q == 'E')) {
    if (++q < end && (*q == '+' || *q == '-'))
      q++;
    if (q >= end || !is_digit(*q))
      return 0;
    while (q < end && is_digit(*q))
      q++;
  }
  return (size_t)(q - p);
}

/* Counts are mostly "12345" or "12345.0": at most 15 digits and no
 * exponent give an integer below 2^53, which strtod would convert exactly
 * to the same double.  1 and *x for such a token, else 0 (use strtod).
 * A 16th digit stops the loop before v could overflow. */
static int small_integer(const char *p, size_t n, double *x) {
  int64_t v = 0;
  size_t i = 0;
  for (; i < n && is_digit(p[i]); i++) {
    if (i == 15)
      return 0;
    v = v * 10 + (p[i] - '0');
  }
  if (i == 0)
    return 0;
  if (i < n && p[i] == '.')
    for (i++; i < n && p[i] == '0'; i++)
      ;
  if (i != n)
    return 0;
  *x = (double)v;
  return 1;
}

/* Reads a JSON number that is a valid count (finite, 0..2^53) into *x.
 * On failure the scanner stays at the number (where the file is wrong). */
static int read_count(scan_t *s, double *x) {
  skip_ws(s);
  size_t n = number_len(s->p, s->end);
  /* cJSON copies at most 63 characters of a number: leave long ones to it. */
  if (n == 0 || n > 63)
    return 0;
  if (!small_integer(s->p, n, x)) {
    char buf[64], *stop = NULL;
    memcpy(buf, s->p, n);
    buf[n] = '\0';
    *x = strtod(buf, &stop);
    if (stop != buf + n)
      return 0;
  }
  if (!(*x >= 0.0 && *x <= EPLB_MAX_COUNT))
    return 0;
  s->p += n;
  return 1;
}

/* Reads "<index>": - a key that is a canonical decimal below `limit` (no
 * escapes, no sign, no leading zero) - and the ':' after it. */
static int read_index_key(scan_t *s, int32_t limit, int32_t *out) {
  if (!eat(s, '"'))
    return 0;
  const char *q = s->p;
  int64_t v = 0;
  while (q < s->end && is_digit(*q) && v < limit)
    v = v * 10 + (*q++ - '0');
  size_t n = (size_t)(q - s->p);
  if (n == 0 || v >= limit || (n > 1 && *s->p == '0') || q >= s->end ||
      *q != '"')
    return 0;
  s->p = q + 1;
  *out = (int32_t)v;
  return eat(s, ':');
}

/* A growable array of doubles. */
typedef struct {
  double *v;
  size_t n, cap;
} dvec_t;

/* Makes room for `more` values (doubling).  0 if out of memory. */
static int dvec_grow(dvec_t *d, size_t more) {
  if (d->n + more <= d->cap)
    return 1;
  size_t cap = d->cap ? d->cap : 4096;
  while (cap < d->n + more)
    cap *= 2;
  double *v = realloc(d->v, cap * sizeof(double));
  if (v == NULL)
    return 0;
  d->v = v;
  d->cap = cap;
  return 1;
}

/* ---- skipping the values of other keys --------------------------------- */

/* Reads a string without escapes or control characters (a stricter
 * grammar than cJSON's, so nothing is accepted here that cJSON rejects);
 * *at and *n receive its bytes. */
static int plain_string(scan_t *s, const char **at, size_t *n) {
  if (!eat(s, '"'))
    return 0;
  const char *q = s->p;
  while (q < s->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
    q++;
  if (q >= s->end || *q != '"')
    return 0;
  *at = s->p;
  *n = (size_t)(q - s->p);
  s->p = q + 1;
  return 1;
}

/* 1 if the literal word w is next; consumes it. */
static int eat_word(scan_t *s, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0)
    return 0;
  s->p += n;
  return 1;
}

/* Skips one value: a number, a plain string, a literal, or an array of
 * those (up to `depth` levels).  Objects are left to the full reader (it
 * checks their keys). */
static int skip_value(scan_t *s, int depth) {
  skip_ws(s);
  if (s->p >= s->end)
    return 0;
  const char *at;
  size_t n;
  switch (*s->p) {
  case '"': return plain_string(s, &at, &n);
  case 't': return eat_word(s, "true");
  case 'f': return eat_word(s, "false");
  case 'n': return eat_word(s, "null");
  case '[':
    if (depth == 0)
      return 0;
    s->p++;
    if (eat(s, ']'))
      return 1;
    do {
      if (!skip_value(s, depth - 1))
        return 0;
    } while (eat(s, ','));
    return eat(s, ']');
  }
  n = number_len(s->p, s->end);
  s->p += n;
  return n > 0;
}

/* ---- SGLang: {"logical_count": [L][E] or [T][L][E]} --------------------- */

typedef struct {
  scan_t s;
  int depth;      /* 2: [L][E]; 3: [T][L][E] */
  int keep_steps; /* a series: every step appended, none summed */
  int32_t dim[3]; /* sizes per level, learnt from the first of each */
  dvec_t v;       /* step 0 values (every step's), then the running sums */
  int32_t ix[3];  /* indices (step, layer, expert) of the current number */
} sg_t;

/* Reads one count at (t, l, e) into the histogram.  0 = give up. */
static int sg_number(sg_t *f) {
  double x = 0;
  const char *at = f->s.p;
  if (!read_count(&f->s, &x))
    return 0;
  if (f->ix[0] == 0 || f->keep_steps) { /* the first step: append */
    if (!dvec_grow(&f->v, 1))
      return 0;
    f->v.v[f->v.n++] = x;
    return 1;
  }
  int32_t L = f->dim[1], E = f->dim[2], l = f->ix[1], e = f->ix[2];
  double *dst = &f->v.v[(size_t)l * (size_t)E + (size_t)e];
  /* x <= MAX - sum, not sum + x <= MAX: the rounded sum of 2^53 - 1 and 2
   * is 2^53 (for integers the difference is exact). */
  if (l >= L || e >= E || !(x <= EPLB_MAX_COUNT - *dst)) {
    f->s.p = at;
    return 0;
  }
  *dst += x;
  return 1;
}

/* Reads the array at `level` ([ item, ... ]); items are numbers at the
 * last level.  Checks its length against the first array of that level. */
static int sg_array(sg_t *f, int level) {
  if (level < 0 || level > 2 || level >= f->depth || !eat(&f->s, '['))
    return 0;
  /* Level k of a depth-d array indexes steps, layers or experts. */
  int which = level + 3 - f->depth;
  int32_t limit = which == 2   ? EPLB_MAX_EXPERTS
                  : which == 1 ? EPLB_MAX_LAYERS
                               : INT32_MAX - 1;
  int last = level == f->depth - 1;
  int32_t count = 0;
  do {
    if (count == limit)
      return 0;
    f->ix[which] = count++;
    if (!(last ? sg_number(f) : sg_array(f, level + 1)))
      return 0;
  } while (eat(&f->s, ','));
  if (!eat(&f->s, ']'))
    return 0;
  if (f->dim[level] == 0)
    f->dim[level] = count;
  return count == f->dim[level];
}

/* How deep the array at p nests: the run of '[' (with white space). */
static int nesting(const char *p, const char *end) {
  int d = 0;
  for (; p < end; p++) {
    if (*p == '[')
      d++;
    else if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
      break;
  }
  return d;
}

/* The top-level object: "logical_count" once (read), other keys once each
 * (their values skipped).  At most this many other keys: */
#define SG_MAX_KEYS 32

static int sg_object(sg_t *f) {
  const char *keys[SG_MAX_KEYS], *at;
  size_t lens[SG_MAX_KEYS], n;
  int nkeys = 0, found = 0;
  if (!eat(&f->s, '{'))
    return 0;
  do {
    skip_ws(&f->s);
    const char *key = f->s.p;
    if (!plain_string(&f->s, &at, &n) || !eat(&f->s, ':'))
      return 0;
    if (n == 13 && memcmp(at, "logical_count", 13) == 0) {
      if (found) {
        f->s.p = key;
        return 0;
      }
      found = 1;
      skip_ws(&f->s);
      f->depth = nesting(f->s.p, f->s.end);
      if ((f->depth != 2 && f->depth != 3) || !sg_array(f, 0))
        return 0;
      continue;
    }
    for (int k = 0; k < nkeys; k++)
      if (lens[k] == n && memcmp(keys[k], at, n) == 0) {
        f->s.p = key;
        return 0;
      }
    if (nkeys == SG_MAX_KEYS || !skip_value(&f->s, 8))
      return 0;
    keys[nkeys] = at;
    lens[nkeys++] = n;
  } while (eat(&f->s, ','));
  return found && eat(&f->s, '}') && at_end(&f->s);
}

/* Scans the file; 1 with the values in f->v and the shape in *T, *L, *E. */
static int sg_scan(sg_t *f, int32_t *T, int32_t *L, int32_t *E, size_t *stop) {
  const char *text = f->s.p;
  int ok = sg_object(f);
  if (stop)
    *stop = (size_t)(f->s.p - text);
  if (!ok)
    return 0;
  *T = f->depth == 3 ? f->dim[0] : 1;
  *L = f->dim[f->depth - 2];
  *E = f->dim[f->depth - 1];
  size_t steps = f->keep_steps ? (size_t)*T : 1;
  return f->v.n == steps * (size_t)*L * (size_t)*E;
}

int eplb__sglang_fast_at(eplb_stats_t *out, const char *text, size_t len,
                         size_t *stop) {
  memset(out, 0, sizeof(*out));
  sg_t f = {.s = {text, text + len}};
  int32_t T = 0, L = 0, E = 0;
  int ok =
      sg_scan(&f, &T, &L, &E, stop) && eplb_stats_init(out, L, E, NULL) == 0;
  if (ok) {
    memcpy(out->load, f.v.v, sizeof(double) * f.v.n);
    out->dense_rows = 1;
  }
  free(f.v.v);
  return ok;
}

int eplb__sglang_fast(eplb_stats_t *out, const char *text, size_t len) {
  return eplb__sglang_fast_at(out, text, len, NULL);
}

int eplb__sglang_fast_series(eplb_series_t *out, const char *text, size_t len) {
  memset(out, 0, sizeof(*out));
  sg_t f = {.s = {text, text + len}, .keep_steps = 1};
  int32_t T = 0, L = 0, E = 0;
  int ok = sg_scan(&f, &T, &L, &E, NULL) &&
           eplb_series_init(out, T, L, E, NULL) == 0;
  if (ok) {
    memcpy(out->load, f.v.v, sizeof(double) * f.v.n);
    out->dense_rows = 1;
  }
  free(f.v.v);
  return ok;
}

/* ---- MindSpeed-RL: {"layer": {"expert": count}} ------------------------ */

typedef struct {
  scan_t s;
  int32_t E;           /* experts per layer (from the first layer) */
  dvec_t rows;         /* the layers in file order, E values each */
  int32_t *layer_key;  /* [layers read] */
  int32_t *ekey;       /* [EPLB_MAX_EXPERTS] keys of the current layer */
  double *eval;        /* [EPLB_MAX_EXPERTS] its counts */
  unsigned char *seen; /* [EPLB_MAX_EXPERTS] */
} ms_t;

/* Reads one layer object {"e": count, ...} and appends it as a row. */
static int ms_layer(ms_t *m) {
  if (!eat(&m->s, '{'))
    return 0;
  int32_t n = 0;
  do {
    if (n == EPLB_MAX_EXPERTS ||
        !read_index_key(&m->s, EPLB_MAX_EXPERTS, &m->ekey[n]) ||
        !read_count(&m->s, &m->eval[n]))
      return 0;
    n++;
  } while (eat(&m->s, ','));
  if (!eat(&m->s, '}'))
    return 0;
  if (m->E == 0)
    m->E = n;
  /* n distinct keys below E = n: every expert exactly once. */
  if (n != m->E || !dvec_grow(&m->rows, (size_t)n))
    return 0;
  double *row = m->rows.v + m->rows.n;
  memset(m->seen, 0, (size_t)n);
  for (int32_t i = 0; i < n; i++) {
    int32_t e = m->ekey[i];
    if (e >= n || m->seen[e])
      return 0;
    m->seen[e] = 1;
    row[e] = m->eval[i];
  }
  m->rows.n += (size_t)n;
  return 1;
}

/* Reads every layer; *L receives how many. */
static int ms_layers(ms_t *m, int32_t *L) {
  if (!eat(&m->s, '{'))
    return 0;
  int32_t l = 0;
  do {
    if (l == EPLB_MAX_LAYERS ||
        !read_index_key(&m->s, EPLB_MAX_LAYERS, &m->layer_key[l]) ||
        !ms_layer(m))
      return 0;
    l++;
  } while (eat(&m->s, ','));
  *L = l;
  return eat(&m->s, '}') && at_end(&m->s);
}

/* Copies the rows into out in key order; keys must be 0..L-1, once. */
static int ms_build(const ms_t *m, int32_t L, eplb_stats_t *out) {
  int32_t E = m->E;
  int32_t *pos = malloc(sizeof(int32_t) * (size_t)L);
  int ok = pos != NULL;
  for (int32_t k = 0; ok && k < L; k++)
    pos[k] = -1;
  for (int32_t r = 0; ok && r < L; r++) {
    int32_t k = m->layer_key[r];
    ok = k < L && pos[k] < 0;
    if (ok)
      pos[k] = r;
  }
  ok = ok && eplb_stats_init(out, L, E, NULL) == 0;
  for (int32_t k = 0; ok && k < L; k++)
    memcpy(out->load + (size_t)k * (size_t)E,
           m->rows.v + (size_t)pos[k] * (size_t)E, sizeof(double) * (size_t)E);
  free(pos);
  return ok;
}

/* See formats.h.  The scratch arrays hold one layer of the largest size. */
int eplb__mindspeed_fast_at(eplb_stats_t *out, const char *text, size_t len,
                            size_t *stop) {
  memset(out, 0, sizeof(*out));
  ms_t m = {.s = {text, text + len}};
  m.layer_key = malloc(sizeof(int32_t) * EPLB_MAX_LAYERS);
  m.ekey = malloc(sizeof(int32_t) * EPLB_MAX_EXPERTS);
  m.eval = malloc(sizeof(double) * EPLB_MAX_EXPERTS);
  m.seen = malloc(EPLB_MAX_EXPERTS);
  int32_t L = 0;
  int ok = m.layer_key && m.ekey && m.eval && m.seen && ms_layers(&m, &L);
  if (stop)
    *stop = (size_t)(m.s.p - text);
  ok = ok && ms_build(&m, L, out);
  free(m.rows.v);
  free(m.layer_key);
  free(m.ekey);
  free(m.eval);
  free(m.seen);
  return ok;
}

int eplb__mindspeed_fast(eplb_stats_t *out, const char *text, size_t len) {
  return eplb__mindspeed_fast_at(out, text, len, NULL);
}
