/* formats/trtllm_yaml.c - a reader for TensorRT-LLM's moe_load_balancer.yaml,
 * exactly the YAML subset that file uses:
 *
 *   # comments, blank lines
 *   initial_global_assignments:
 *     3: [138, 81, 60, ...]          (layer: flow list of expert ids; the
 *     4: [12, 200,                    list may continue on further lines)
 *        7, ...]
 *   num_slots: 288
 *   layer_updates_per_iter: 0
 *
 * Top-level keys may come in any order (PyYAML sorts them); other top-level
 * keys and their indented blocks are ignored.  Anything else (block lists,
 * flow mappings, tabs, anchors) is an error naming the line, so a file that
 * this reader does not understand is never half-understood.  A full YAML
 * library would be a dependency for three keys.
 *
 * The file does not say how many GPUs share the slots: the placement comes
 * back with num_gpus = 1 and the caller regroups (sets num_gpus to G after
 * checking num_slots % G == 0).  Layers are sorted by their key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/placement.h"
#include "eplb/stats.h"
#include "formats/formats.h"

/* A growable int32 array. */
typedef struct {
  int32_t *v;
  size_t n, cap;
} ivec_t;

/* Appends x (doubling).  0, or EPLB_ENOMEM. */
static int ivec_push(ivec_t *a, int32_t x) {
  if (a->n == a->cap) {
    size_t cap = a->cap ? 2 * a->cap : 256;
    int32_t *v = realloc(a->v, cap * sizeof(*v));
    if (v == NULL)
      return EPLB_ENOMEM;
    a->v = v;
    a->cap = cap;
  }
  a->v[a->n++] = x;
  return 0;
}

/* One logical line: [b, e) without comment and trailing blanks. */
typedef struct {
  const char *path;
  const char *next; /* start of the next physical line, NULL at the end */
  const char *b, *e;
  int line, indent;
} ycur_t;

/* Moves to the next line with content.  Returns 1, 0 at the end of the
 * text, or a negative code (tab in the indentation). */
static int next_line(ycur_t *y, eplb_error_t *err) {
  while (y->next != NULL) {
    const char *b = y->next, *nl = strchr(b, '\n');
    const char *e = nl ? nl : b + strlen(b);
    y->next = nl ? nl + 1 : NULL;
    y->line++;
    const char *p = b;
    while (p < e && *p == ' ')
      p++;
    if (p < e && *p == '\t')
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s, line %d: a tab in the indentation; YAML "
                            "indents with spaces",
                            y->path, y->line);
    for (const char *q = p; q < e; q++)
      if (*q == '#' && (q == p || q[-1] == ' ' || q[-1] == '\t')) {
        e = q;
        break;
      }
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
      e--;
    if (e == p)
      continue;
    y->b = p;
    y->e = e;
    y->indent = (int)(p - b);
    return 1;
  }
  return 0;
}

/* State of the reader. */
typedef struct {
  ycur_t y;
  ivec_t ids;   /* every slot of every layer, in file order */
  ivec_t keys;  /* layer key of each layer */
  ivec_t lines; /* line of each layer */
  int32_t S;    /* slots per layer (length of the first list), -1 */
  int32_t num_slots, max_id;
  int have_assign, have_slots, have_updates;
} yread_t;

/* Parses a decimal integer at *pp (optionally '-'), up to `max`.  Returns
 * 0, -1 (not a number) or -2 (too large). */
static int parse_int(const char **pp, const char *e, int64_t max,
                     int64_t *out) {
  const char *p = *pp;
  int neg = p < e && *p == '-';
  p += neg;
  if (p >= e || *p < '0' || *p > '9')
    return -1;
  int64_t v = 0;
  while (p < e && *p >= '0' && *p <= '9') {
    v = v * 10 + (*p++ - '0');
    if (v > max)
      return -2;
  }
  *pp = p;
  *out = neg ? -v : v;
  return 0;
}

/* The first byte of [p, e) that is not a blank (e if none). */
static const char *skip_blank(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\t'))
    p++;
  return p;
}

/* Reads one expert id at *pp into the list. */
static int list_item(yread_t *r, const char **pp, eplb_error_t *err) {
  const char *p = *pp, *e = r->y.e;
  int64_t v = 0;
  int k = parse_int(&p, e, EPLB_MAX_EXPERTS, &v);
  if (k == -1)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s, line %d, column %d: '%c' where an expert id was "
                          "expected; write [id, id, ...] with integer ids",
                          r->y.path, r->y.line,
                          (int)(p - r->y.b) + r->y.indent + 1, *p);
  if (k == -2 || v < 0 || v >= EPLB_MAX_EXPERTS) {
    const char *t = *pp + (**pp == '-');
    while (t < e && *t >= '0' && *t <= '9')
      t++;
    return eplb_error_set(
        err, EPLB_EMAP, "%s, line %d: expert id %.*s is outside 0..%d",
        r->y.path, r->y.line, (int)(t - *pp > 24 ? 24 : t - *pp), *pp,
        EPLB_MAX_EXPERTS - 1);
  }
  if (ivec_push(&r->ids, (int32_t)v))
    return eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", r->y.path);
  if (v > r->max_id)
    r->max_id = (int32_t)v;
  *pp = p;
  return 0;
}

/* Reads a flow list "[a, b, ...]" starting at p (just after '['); it may
 * continue on further lines.  Returns the number of ids through *count. */
static int read_list(yread_t *r, const char *p, int32_t *count,
                     eplb_error_t *err) {
  int start_line = r->y.line;
  size_t before = r->ids.n;
  int want_item = 1; /* after '[' or ',' */
  for (;;) {
    p = skip_blank(p, r->y.e);
    if (p == r->y.e) { /* the list goes on on the next line */
      int k = next_line(&r->y, err);
      if (k < 0)
        return k;
      if (k == 0 || r->y.indent == 0)
        return eplb_error_set(err, EPLB_EPARSE,
                              "%s, line %d: the list has no closing ']'",
                              r->y.path, start_line);
      p = r->y.b;
      continue;
    }
    if (*p == ']')
      break;
    if (!want_item) {
      if (*p != ',')
        return eplb_error_set(err, EPLB_EPARSE,
                              "%s, line %d: '%c' after an expert id; expected "
                              "',' or ']'",
                              r->y.path, r->y.line, *p);
      p++;
      want_item = 1;
      continue;
    }
    int rc = list_item(r, &p, err);
    if (rc)
      return rc;
    want_item = 0;
  }
  if (skip_blank(p + 1, r->y.e) != r->y.e)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s, line %d: text after the closing ']'", r->y.path,
                          r->y.line);
  *count = (int32_t)(r->ids.n - before);
  return 0;
}

/* Splits "key: rest" at the first ':' followed by a blank or the end.
 * Returns 0, or -1 when there is no such ':'.  Quotes around key go. */
static int split_key(const char *b, const char *e, const char **kb,
                     const char **ke, const char **rest) {
  const char *c = b;
  while (c < e && !(*c == ':' && (c + 1 == e || c[1] == ' ')))
    c++;
  if (c == e)
    return -1;
  *kb = b;
  *ke = c;
  if (c - b >= 2 && (*b == '\'' || *b == '"') && c[-1] == *b) {
    (*kb)++;
    (*ke)--;
  }
  *rest = skip_blank(c + 1, e);
  return 0;
}

/* Reads one "  <layer>: [ids]" line of initial_global_assignments. */
static int read_layer(yread_t *r, eplb_error_t *err) {
  const char *kb, *ke, *rest;
  if (split_key(r->y.b, r->y.e, &kb, &ke, &rest) != 0 || rest == r->y.e ||
      *rest != '[')
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s, line %d: expected '<layer>: [id, id, ...]' "
                          "under initial_global_assignments (flow lists only)",
                          r->y.path, r->y.line);
  char key[16];
  int32_t id = 0;
  size_t n = (size_t)(ke - kb);
  int bad = n >= sizeof(key);
  if (!bad) {
    memcpy(key, kb, n);
    key[n] = '\0';
    bad = eplb__parse_index(key, INT32_MAX, &id) != 0;
  }
  if (bad)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s, line %d: layer key '%.*s' is not a "
                          "non-negative integer",
                          r->y.path, r->y.line,
                          (int)(ke - kb > 40 ? 40 : ke - kb), kb);
  if (r->keys.n >= EPLB_MAX_LAYERS)
    return eplb_error_set(err, EPLB_ESHAPE, "%s, line %d: more than %d layers",
                          r->y.path, r->y.line, EPLB_MAX_LAYERS);
  int line = r->y.line;
  int32_t count = 0;
  int rc = read_list(r, rest + 1, &count, err);
  if (rc)
    return rc;
  if (r->S < 0)
    r->S = count;
  if (count != r->S || count < 1 || count > EPLB_MAX_SLOTS)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s, line %d: layer %d lists %d slots but the first "
                          "layer lists %d; every layer has num_slots slots "
                          "(1..%d)",
                          r->y.path, line, (int)id, (int)count, (int)r->S,
                          EPLB_MAX_SLOTS);
  if (ivec_push(&r->keys, id) || ivec_push(&r->lines, line))
    return eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", r->y.path);
  return 0;
}

/* A top-level "key: integer" value in min..max. */
static int scalar(yread_t *r, const char *name, const char *rest, int64_t min,
                  int64_t max, int32_t *out, eplb_error_t *err) {
  int64_t v = 0;
  const char *p = rest;
  if (parse_int(&p, r->y.e, max, &v) != 0 || p != r->y.e || v < min)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s, line %d: %s is '%.*s'; expected an integer "
                          "%lld..%lld",
                          r->y.path, r->y.line, name,
                          (int)(r->y.e - rest > 40 ? 40 : r->y.e - rest), rest,
                          (long long)min, (long long)max);
  *out = (int32_t)v;
  return 0;
}

/* Marks a top-level key as seen; a second one is an error. */
static int once(yread_t *r, int *flag, const char *name, eplb_error_t *err) {
  if (*flag)
    return eplb_error_set(err, EPLB_EPARSE, "%s, line %d: %s appears twice",
                          r->y.path, r->y.line, name);
  *flag = 1;
  return 0;
}

enum { SEC_NONE, SEC_ASSIGN, SEC_SKIP };

/* Handles a line at indentation 0; *sec receives the section it opens. */
static int top_level(yread_t *r, int *sec, eplb_error_t *err) {
  const char *kb, *ke, *rest;
  if (split_key(r->y.b, r->y.e, &kb, &ke, &rest) != 0)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s, line %d: expected 'key: value'; is this a "
                          "TensorRT-LLM moe_load_balancer.yaml?",
                          r->y.path, r->y.line);
  size_t n = (size_t)(ke - kb);
  int32_t ignored = 0;
  *sec = SEC_NONE;
#define KEY_IS(s) (n == strlen(s) && memcmp(kb, s, n) == 0)
  if (KEY_IS("initial_global_assignments")) {
    if (rest != r->y.e)
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s, line %d: write initial_global_assignments as "
                            "one '  <layer>: [ids]' line per layer",
                            r->y.path, r->y.line);
    *sec = SEC_ASSIGN;
    return once(r, &r->have_assign, "initial_global_assignments", err);
  }
  if (KEY_IS("num_slots")) {
    int rc = once(r, &r->have_slots, "num_slots", err);
    return rc ? rc
              : scalar(r, "num_slots", rest, EPLB_MIN_SLOTS, EPLB_MAX_SLOTS,
                       &r->num_slots, err);
  }
  if (KEY_IS("layer_updates_per_iter")) {
    int rc = once(r, &r->have_updates, "layer_updates_per_iter", err);
    return rc ? rc
              : scalar(r, "layer_updates_per_iter", rest, 0, INT32_MAX,
                       &ignored, err);
  }
#undef KEY_IS
  *sec = SEC_SKIP; /* another key: ignored with its block */
  return 0;
}

/* Reads every line into r. */
static int read_lines(yread_t *r, eplb_error_t *err) {
  int sec = SEC_NONE, entry_indent = -1, k;
  while ((k = next_line(&r->y, err)) > 0) {
    int rc = 0;
    if (r->y.indent == 0) {
      rc = top_level(r, &sec, err);
      entry_indent = -1;
    } else if (sec == SEC_ASSIGN) {
      if (entry_indent < 0)
        entry_indent = r->y.indent;
      if (r->y.indent != entry_indent)
        rc = eplb_error_set(err, EPLB_EPARSE,
                            "%s, line %d: indented by %d spaces where the "
                            "layers above are indented by %d",
                            r->y.path, r->y.line, r->y.indent, entry_indent);
      else
        rc = read_layer(r, err);
    } else if (sec == SEC_NONE) {
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "%s, line %d: an indented line under a key that "
                          "takes a single value",
                          r->y.path, r->y.line);
    }
    if (rc)
      return rc;
  }
  return k;
}

/* After the last line: the keys that must be there, and agree. */
static int check_read(const yread_t *r, eplb_error_t *err) {
  const char *path = r->y.path;
  if (!r->have_assign || r->keys.n == 0)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: no layers under initial_global_assignments; "
                          "is this a TensorRT-LLM moe_load_balancer.yaml?",
                          path);
  if (!r->have_slots)
    return eplb_error_set(err, EPLB_EPARSE, "%s: no num_slots", path);
  if (r->num_slots != r->S)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: num_slots is %d but the layers list %d slots",
                          path, (int)r->num_slots, (int)r->S);
  return 0;
}

typedef struct {
  int32_t key, idx, line;
} ylayer_t;

/* qsort order: by layer key. */
static int cmp_layer(const void *a, const void *b) {
  const ylayer_t *x = a, *y = b;
  return (x->key > y->key) - (x->key < y->key);
}

/* Builds the placement, layers sorted by key (which must be distinct). */
static int build(const yread_t *r, eplb_placement_t *out, eplb_error_t *err) {
  int32_t L = (int32_t)r->keys.n, S = r->S;
  ylayer_t *order = malloc(sizeof(*order) * (size_t)L);
  if (order == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", r->y.path);
  for (int32_t l = 0; l < L; l++)
    order[l] = (ylayer_t){r->keys.v[l], l, r->lines.v[l]};
  qsort(order, (size_t)L, sizeof(*order), cmp_layer);
  int rc = 0;
  for (int32_t l = 1; l < L && rc == 0; l++) {
    int32_t a = order[l - 1].line, b = order[l].line;
    if (order[l].key == order[l - 1].key)
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "%s: layer %d appears twice (lines %d and %d); each "
                          "layer must appear once",
                          r->y.path, (int)order[l].key, (int)(a < b ? a : b),
                          (int)(a < b ? b : a));
  }
  if (rc == 0)
    rc = eplb_placement_init(out, L, r->max_id + 1, S, 1, err);
  for (int32_t l = 0; l < L && rc == 0; l++) {
    out->layer_ids[l] = order[l].key;
    memcpy(out->phy2log + (size_t)l * (size_t)S,
           r->ids.v + (size_t)order[l].idx * (size_t)S,
           sizeof(int32_t) * (size_t)S);
  }
  free(order);
  return rc;
}

int eplb__map_read_yaml(eplb_placement_t *out, const char *path,
                        const char *text, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  yread_t r = {.y = {.path = path, .next = text}, .S = -1, .max_id = -1};
  int rc = read_lines(&r, err);
  if (rc == 0)
    rc = check_read(&r, err);
  if (rc == 0)
    rc = build(&r, out, err);
  if (rc == 0)
    rc = eplb_placement_check(out, 0, path, err);
  if (rc)
    eplb_placement_cleanup(out);
  free(r.ids.v);
  free(r.keys.v);
  free(r.lines.v);
  return rc;
}
