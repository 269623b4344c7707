/* formats/map_fast.c - fast paths for the maps eplb reads most: the expert
 * map JSON ({"moe_layer_count", "layer_list": [{"layer_id", "device_count",
 * "device_list": [{"device_id", "device_expert": [...]}]}]}), SGLang's
 * {"physical_to_logical_map": [[...]]} and DeepSeek's {"phy2log", "log2phy",
 * "logcnt"}, when they are well-formed.
 *
 * Why: `--current-map` is read on every planning run, and cJSON's tree of a
 * DeepSeek-V3 map (17k numbers, a node and a strtod each, then a free each)
 * cost more than planning.  These scanners make one pass over the text,
 * read the ids as decimal integers by hand into a few growing arrays, and
 * fill the same eplb_placement_t as the full readers (map_read.c,
 * map_phy2log.c) with the same checks.  They accept a strict subset of
 * what the full readers accept: the known keys only (in any order, each
 * once), plain keys (no escapes), ids written as plain decimal integers in
 * range (no sign, fraction, exponent or leading zero), JSON white space,
 * nothing after the value.  On anything else they give up without a
 * message and the full reader runs, so every error message still comes
 * from one place (docs/formats.md). */
#include <stdlib.h>
#include <string.h>

#include "eplb/placement.h"
#include "eplb/stats.h"
#include "formats/formats.h"

/* ---- scanning primitives ------------------------------------------------ */

typedef struct {
  const char *p, *end;
} scan_t;

/* Skips JSON white space (a subset of what cJSON skips). */
static int is_ws(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static void skip_ws(scan_t *s) {
  while (s->p < s->end && is_ws(*s->p))
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

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The digits at *q (before end) as 0..max: a digit first, no leading
 * zero; *q moves past them.  0 when they break those rules. */
static inline int digits(const char **q, const char *end, int64_t max,
                         int64_t *out) {
  const char *p = *q;
  if (p == end || !is_digit(*p))
    return 0;
  int64_t v = *p++ - '0';
  if (v == 0 && p < end && is_digit(*p))
    return 0;
  while (p < end && is_digit(*p) && v <= max)
    v = v * 10 + (*p++ - '0');
  if (v > max)
    return 0;
  *q = p;
  *out = v;
  return 1;
}

/* Reads a plain decimal integer 0..max (max < 2^31): no sign, no leading
 * zero, no fraction or exponent after it (cJSON would read "3.0", "3e0"
 * or "03" as 3 too: those are left to it). */
static int read_uint(scan_t *s, int64_t max, int64_t *out) {
  skip_ws(s);
  const char *q = s->p, *end = s->end;
  int64_t v;
  if (!digits(&q, end, max, &v) ||
      (q < end && (*q == '.' || *q == 'e' || *q == 'E')))
    return 0;
  s->p = q;
  *out = v;
  return 1;
}

/* A key eplb knows, with its length. */
typedef struct {
  const char *name;
  size_t len;
} known_key_t;
#define KEY(k)                                                                 \
  { k, sizeof(k) - 1 }

/* Reads a key without escapes or control characters and the ':' after
 * it; returns its index in keys[n] (-1 if unknown: give up). */
static int read_key(scan_t *s, const known_key_t *keys, int n) {
  if (!eat(s, '"'))
    return -1;
  const char *k = s->p, *q = memchr(k, '"', (size_t)(s->end - k));
  if (q == NULL)
    return -1;
  size_t len = (size_t)(q - k);
  s->p = q + 1;
  if (!eat(s, ':'))
    return -1;
  /* A known key has no escape or control character: matching one is
   * enough (an unknown key, whatever it holds, gives up). */
  for (int i = 0; i < n; i++)
    if (keys[i].len == len && memcmp(keys[i].name, k, len) == 0)
      return i;
  return -1;
}

/* Marks key i of an object as read: 0 if it was read before. */
static int first_time(unsigned *seen, int i) {
  if (i < 0 || (*seen & (1u << i)))
    return 0;
  *seen |= 1u << i;
  return 1;
}

/* A growable array of int32 (doubling: no allocation per value). */
typedef struct {
  int32_t *v;
  size_t n, cap;
} ivec_t;

static int ivec_push(ivec_t *a, int32_t x) {
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 4096;
    int32_t *v = realloc(a->v, cap * sizeof(int32_t));
    if (v == NULL)
      return 0;
    a->v = v;
    a->cap = cap;
  }
  a->v[a->n++] = x;
  return 1;
}

/* Reads [i, i, ...] of integers 0..max (< 2^31), appended to a; *n = how
 * many.  The loop every id goes through: read_uint's rules (a digit
 * first, no leading zero: digits()) with the byte after each id required to be
 * white space, ',' or ']', so "3.0", "3e0" or "-3" give up. */
static int read_ids(scan_t *s, int64_t max, ivec_t *a, size_t *n) {
  if (!eat(s, '['))
    return 0;
  size_t start = a->n;
  if (eat(s, ']')) {
    *n = 0;
    return 1;
  }
  const char *q = s->p, *end = s->end;
  for (;;) {
    while (q < end && is_ws(*q))
      q++;
    int64_t v;
    if (!digits(&q, end, max, &v) || !ivec_push(a, (int32_t)v))
      return 0;
    while (q < end && is_ws(*q))
      q++;
    if (q == end || (*q != ',' && *q != ']'))
      return 0;
    if (*q++ == ']')
      break;
  }
  s->p = q;
  *n = a->n - start;
  return 1;
}

/* 1 if every row of p holds every expert 0..E-1 (its ids are 0..E-1
 * already): all that eplb_placement_check(p, 0, ...) checks of a map just
 * read, in one pass without a division per slot.  (When the check grows,
 * fuzz/fuzz_map.c says so: the full readers call it.) */
static int covers(const eplb_placement_t *p) {
  int32_t E = p->num_experts, S = p->num_slots;
  int32_t *last = malloc(sizeof(int32_t) * (size_t)E);
  int ok = last != NULL;
  for (int32_t e = 0; ok && e < E; e++)
    last[e] = -1;
  for (int32_t l = 0; ok && l < p->num_layers; l++) {
    const int32_t *row = p->phy2log + (size_t)l * (size_t)S;
    int32_t n = 0;
    for (int32_t s = 0; s < S; s++)
      if (last[row[s]] != l) {
        last[row[s]] = l;
        n++;
      }
    ok = n == E;
  }
  free(last);
  return ok;
}

/* 1 if only white space is left. */
static int at_end(scan_t *s) {
  skip_ws(s);
  return s->p == s->end;
}

/* ---- the expert map JSON ------------------------------------------------ */

/* Records of what was read, in file order; every field is filled once. */
enum { DEV_ID, DEV_EXPERT };
static const known_key_t dev_keys[] = {KEY("device_id"), KEY("device_expert")};
enum { LAY_ID, LAY_COUNT, LAY_LIST };
static const known_key_t lay_keys[] = {KEY("layer_id"), KEY("device_count"),
                                       KEY("device_list")};
enum { TOP_COUNT, TOP_LIST };
static const known_key_t top_keys[] = {KEY("moe_layer_count"),
                                       KEY("layer_list")};

typedef struct {
  scan_t s;
  ivec_t ids;  /* every device_expert entry, in file order */
  ivec_t devs; /* 3 per device: device_id, offset in ids, count */
  ivec_t lays; /* 4 per layer: layer_id, device_count, first dev, count */
  int64_t L;   /* moe_layer_count */
} em_t;

/* {"device_id": g, "device_expert": [...]} */
static int em_device(em_t *m) {
  unsigned seen = 0;
  int64_t g = 0;
  size_t n = 0;
  if (!eat(&m->s, '{'))
    return 0;
  do {
    int k = read_key(&m->s, dev_keys, 2);
    if (!first_time(&seen, k))
      return 0;
    if (k == DEV_ID ? !read_uint(&m->s, EPLB_MAX_GPUS - 1, &g)
                    : !read_ids(&m->s, EPLB_MAX_EXPERTS - 1, &m->ids, &n))
      return 0;
  } while (eat(&m->s, ','));
  if (seen != 3u || !eat(&m->s, '}') || n > EPLB_MAX_SLOTS)
    return 0;
  size_t off = m->ids.n - n; /* read_ids appended them last */
  return ivec_push(&m->devs, (int32_t)g) && ivec_push(&m->devs, (int32_t)off) &&
         ivec_push(&m->devs, (int32_t)n);
}

/* [device, ...] (at most EPLB_MAX_GPUS); *n = how many. */
static int em_devices(em_t *m, int64_t *n) {
  size_t first = m->devs.n / 3;
  if (!eat(&m->s, '['))
    return 0;
  do {
    if (m->devs.n / 3 - first == EPLB_MAX_GPUS || !em_device(m))
      return 0;
  } while (eat(&m->s, ','));
  *n = (int64_t)(m->devs.n / 3 - first);
  return eat(&m->s, ']');
}

/* {"layer_id": i, "device_count": G, "device_list": [...]} */
static int em_layer(em_t *m) {
  unsigned seen = 0;
  int64_t id = 0, count = 0, ndev = 0;
  int64_t first = (int64_t)(m->devs.n / 3);
  if (!eat(&m->s, '{'))
    return 0;
  do {
    int k = read_key(&m->s, lay_keys, 3);
    if (!first_time(&seen, k))
      return 0;
    int ok = k == LAY_ID      ? read_uint(&m->s, INT32_MAX, &id)
             : k == LAY_COUNT ? read_uint(&m->s, EPLB_MAX_GPUS, &count)
                              : em_devices(m, &ndev);
    if (!ok)
      return 0;
  } while (eat(&m->s, ','));
  return seen == 7u && eat(&m->s, '}') && ivec_push(&m->lays, (int32_t)id) &&
         ivec_push(&m->lays, (int32_t)count) &&
         ivec_push(&m->lays, (int32_t)first) &&
         ivec_push(&m->lays, (int32_t)ndev);
}

/* The whole text: {"moe_layer_count": L, "layer_list": [...]} and nothing
 * after it. */
static int em_scan(em_t *m) {
  unsigned seen = 0;
  if (!eat(&m->s, '{'))
    return 0;
  do {
    int k = read_key(&m->s, top_keys, 2);
    if (!first_time(&seen, k))
      return 0;
    if (k == TOP_COUNT) {
      if (!read_uint(&m->s, EPLB_MAX_LAYERS, &m->L))
        return 0;
      continue;
    }
    if (!eat(&m->s, '['))
      return 0;
    do {
      if (m->lays.n / 4 == EPLB_MAX_LAYERS || !em_layer(m))
        return 0;
    } while (eat(&m->s, ','));
    if (!eat(&m->s, ']'))
      return 0;
  } while (eat(&m->s, ','));
  return seen == 3u && eat(&m->s, '}') && at_end(&m->s);
}

/* The shape rules of the full reader: L layers, each with the G devices
 * 0..G-1 of layer 0 (each once), every device `per` slots. */
static int em_shape_ok(const em_t *m, int32_t *G, int32_t *per) {
  const int32_t *lay = m->lays.v, *dev = m->devs.v;
  if (m->L < 1 || (int64_t)(m->lays.n / 4) != m->L)
    return 0;
  *G = lay[1];
  if (*G < EPLB_MIN_GPUS || lay[3] < 1)
    return 0;
  *per = dev[3 * lay[2] + 2];
  if (*per < 1 || (int64_t)*G * *per > EPLB_MAX_SLOTS)
    return 0;
  for (int64_t l = 0; l < m->L; l++) {
    const int32_t *y = lay + 4 * l;
    if (y[1] != *G || y[3] != *G)
      return 0;
    for (int32_t i = 0; i < *G; i++)
      if (dev[3 * (y[2] + i)] >= *G || dev[3 * (y[2] + i) + 2] != *per)
        return 0;
  }
  return 1;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* 1 if the L ids are distinct. */
static int distinct(const int32_t *ids, int32_t L) {
  int32_t *c = malloc(sizeof(int32_t) * (size_t)L);
  if (c == NULL)
    return 0;
  memcpy(c, ids, sizeof(int32_t) * (size_t)L);
  qsort(c, (size_t)L, sizeof(int32_t), cmp_i32);
  int ok = 1;
  for (int32_t i = 1; i < L && ok; i++)
    ok = c[i] != c[i - 1];
  free(c);
  return ok;
}

/* Fills out (L x G*per) from the records; 0 on a device twice in a layer,
 * a layer id twice, or an expert without a slot in some layer. */
static int em_build(const em_t *m, int32_t G, int32_t per,
                    eplb_placement_t *out) {
  eplb_error_t err;
  int32_t L = (int32_t)m->L, S = G * per, max = -1;
  unsigned char *seen = malloc((size_t)G);
  int ok = seen != NULL &&
           eplb_placement_init(out, L, EPLB_MAX_EXPERTS, S, G, &err) == 0;
  for (int32_t l = 0; ok && l < L; l++) {
    const int32_t *y = m->lays.v + 4 * l;
    out->layer_ids[l] = y[0];
    memset(seen, 0, (size_t)G);
    for (int32_t i = 0; ok && i < G; i++) {
      const int32_t *d = m->devs.v + 3 * (y[2] + i);
      const int32_t *src = m->ids.v + d[1];
      ok = !seen[d[0]];
      seen[d[0]] = 1;
      memcpy(out->phy2log + (size_t)l * (size_t)S + (size_t)d[0] * (size_t)per,
             src, sizeof(int32_t) * (size_t)per);
      for (int32_t j = 0; j < per; j++)
        max = src[j] > max ? src[j] : max;
    }
  }
  free(seen);
  if (ok) {
    out->num_experts = max + 1;
    ok = distinct(out->layer_ids, L) && covers(out);
  }
  if (!ok)
    eplb_placement_cleanup(out);
  return ok;
}

int eplb__expert_map_fast(eplb_placement_t *out, const char *text, size_t len) {
  memset(out, 0, sizeof(*out));
  em_t m = {.s = {text, text + len}};
  int32_t G = 0, per = 0;
  int ok =
      em_scan(&m) && em_shape_ok(&m, &G, &per) && em_build(&m, G, per, out);
  free(m.ids.v);
  free(m.devs.v);
  free(m.lays.v);
  return ok;
}

/* ---- SGLang's and DeepSeek's phy2log ----------------------------------- */

enum { PH_SGLANG, PH_PHY2LOG, PH_LOG2PHY, PH_LOGCNT };
static const known_key_t ph_keys[] = {KEY("physical_to_logical_map"),
                                      KEY("phy2log"), KEY("log2phy"),
                                      KEY("logcnt")};

/* Reads [[i, ...], ...]: rows of integers 0..max, appended to a; *rows
 * and *width (row 0's length) out.  At most max_rows rows, each of 1 ..
 * EPLB_MAX_SLOTS ids: as long as row 0, or, when lens is given, of any
 * length (appended to lens). */
static int read_rows(scan_t *s, int64_t max, int32_t max_rows, ivec_t *a,
                     ivec_t *lens, int32_t *rows, int32_t *width) {
  int32_t n = 0;
  if (!eat(s, '['))
    return 0;
  do {
    size_t k = 0;
    if (n == max_rows || !read_ids(s, max, a, &k) || k < 1 ||
        k > EPLB_MAX_SLOTS)
      return 0;
    if (n == 0)
      *width = (int32_t)k;
    if (lens ? !ivec_push(lens, (int32_t)k) : (int32_t)k != *width)
      return 0;
    n++;
  } while (eat(s, ','));
  *rows = n;
  return eat(s, ']');
}

/* Skips an integer that is plain JSON: an optional '-' right before the
 * digits, no leading zero, at most INT32_MAX, no fraction or exponent. */
static int skip_int(scan_t *s) {
  skip_ws(s);
  if (s->p < s->end && *s->p == '-' && ++s->p < s->end && !is_digit(*s->p))
    return 0;
  int64_t x = 0;
  return read_uint(s, INT32_MAX, &x);
}

/* Skips log2phy: arrays (at most `depth` levels) of plain integers. */
static int skip_ints(scan_t *s, int depth) {
  skip_ws(s);
  if (s->p >= s->end || *s->p != '[')
    return skip_int(s);
  if (depth == 0)
    return 0;
  s->p++;
  if (eat(s, ']'))
    return 1;
  do {
    if (!skip_ints(s, depth - 1))
      return 0;
  } while (eat(s, ','));
  return eat(s, ']');
}

typedef struct {
  scan_t s;
  ivec_t ids;             /* the phy2log rows, L x S */
  ivec_t cnt, cnt_len;    /* logcnt rows and their lengths */
  int32_t L, S, cnt_rows; /* shape of phy2log, rows of logcnt */
  unsigned seen;          /* keys read (1 << PH_*) */
} ph_t;

static int ph_scan(ph_t *f) {
  if (!eat(&f->s, '{'))
    return 0;
  do {
    int k = read_key(&f->s, ph_keys, 4);
    int32_t w = 0;
    if (!first_time(&f->seen, k))
      return 0;
    int ok = k == PH_LOG2PHY ? skip_ints(&f->s, 3)
             : k == PH_LOGCNT
                 ? read_rows(&f->s, EPLB_MAX_SLOTS, INT32_MAX - 1, &f->cnt,
                             &f->cnt_len, &f->cnt_rows, &w)
                 : read_rows(&f->s, EPLB_MAX_EXPERTS - 1, EPLB_MAX_LAYERS,
                             &f->ids, NULL, &f->L, &f->S);
    if (!ok)
      return 0;
  } while (eat(&f->s, ','));
  /* SGLang's key alone, or DeepSeek's phy2log with its other arrays. */
  unsigned sg = 1u << PH_SGLANG, ds = 1u << PH_PHY2LOG;
  return (f->seen == sg || (f->seen & (sg | ds)) == ds) && eat(&f->s, '}') &&
         at_end(&f->s);
}

/* logcnt[l][e] must be the replicas of e in phy2log row l, for the first
 * L rows (as the full reader checks them); cnt[] is scratch of E. */
static int ph_logcnt_ok(const ph_t *f, const eplb_placement_t *p) {
  if (!(f->seen & (1u << PH_LOGCNT)))
    return 1;
  if (f->cnt_rows < p->num_layers)
    return 0;
  int32_t E = p->num_experts, S = p->num_slots;
  int32_t *n = calloc((size_t)E, sizeof(int32_t));
  int ok = n != NULL;
  const int32_t *v = f->cnt.v;
  for (int32_t l = 0; ok && l < p->num_layers; l++) {
    memset(n, 0, sizeof(int32_t) * (size_t)E);
    for (int32_t s = 0; s < S; s++)
      n[p->phy2log[(size_t)l * (size_t)S + (size_t)s]]++;
    int32_t k = f->cnt_len.v[l];
    for (int32_t e = 0; ok && e < k; e++)
      ok = v[e] == (e < E ? n[e] : 0);
    v += k;
  }
  free(n);
  return ok;
}

int eplb__phy2log_fast(eplb_placement_t *out, const char *text, size_t len) {
  memset(out, 0, sizeof(*out));
  ph_t f = {.s = {text, text + len}};
  eplb_error_t err;
  int ok = ph_scan(&f) &&
           eplb_placement_init(out, f.L, EPLB_MAX_EXPERTS, f.S, 1, &err) == 0;
  if (ok) {
    int32_t max = -1;
    for (size_t i = 0; i < f.ids.n; i++)
      max = f.ids.v[i] > max ? f.ids.v[i] : max;
    memcpy(out->phy2log, f.ids.v, sizeof(int32_t) * f.ids.n);
    out->num_experts = max + 1;
    ok = covers(out) && ph_logcnt_ok(&f, out);
    if (!ok)
      eplb_placement_cleanup(out);
  }
  free(f.ids.v);
  free(f.cnt.v);
  free(f.cnt_len.v);
  return ok;
}
