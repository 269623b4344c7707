/* h5/ckpt_pattern.c - tensor-name patterns: "model.layers.{layer}.mlp.
 * experts.{expert}.{name}" matched against a checkpoint's names and
 * filled in to name tensors again, and the dataset (role) name a suffix
 * becomes.
 *
 * A pattern holds {layer} and {expert} once each, in either order, each
 * followed by literal text (so the digits end unambiguously), and {name},
 * the suffix, at its end.  Numbers are canonical decimals (no sign, no
 * leading zero): "model.layers.03" is not layer 3, as no engine would
 * write it. */
#include <stdio.h>
#include <string.h>

#include "eplb/stats.h"
#include "h5/ckpt_pattern.h"

/* Finds the single occurrence of `ph` in p; -1 if none or several. */
static long find_once(const char *p, const char *ph) {
  const char *a = strstr(p, ph);
  if (a == NULL || strstr(a + 1, ph) != NULL)
    return -1;
  return a - p;
}

int eplb__pattern_parse(const char *p, eplb__pattern_t *out,
                        eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  size_t n = p ? strlen(p) : 0;
  long l = p ? find_once(p, "{layer}") : -1;
  long e = p ? find_once(p, "{expert}") : -1;
  long m = p ? find_once(p, "{name}") : -1;
  int ok = n > 0 && n < EPLB_CKPT_PATTERN_MAX && l >= 0 && e >= 0 && m >= 0 &&
           (size_t)m + 6 == n && l < m && e < m;
  if (ok) {
    long first = l < e ? l : e, second = l < e ? e : l;
    size_t w1 = l < e ? 7 : 8, w2 = l < e ? 8 : 7;
    out->lit[0] = p;
    out->len[0] = (size_t)first;
    out->lit[1] = p + first + w1;
    out->len[1] = (size_t)(second - first - (long)w1);
    out->lit[2] = p + second + w2;
    out->len[2] = (size_t)(m - second - (long)w2);
    out->layer_first = l < e;
    ok = second >= first + (long)w1 && out->len[1] > 0 && out->len[2] > 0;
  }
  if (!ok)
    return eplb_error_set(err, EPLB_EARG,
                          "pattern '%.200s': it needs {layer} and {expert} "
                          "once each, each followed by some text, and {name} "
                          "once at the end, e.g. '%s'",
                          p ? p : "", EPLB_CKPT_PATTERN_DEEPSEEK);
  return 0;
}

/* A canonical decimal at *s, at most max; advances *s.  0 or -1. */
static int number(const char **s, int32_t max, int32_t *out) {
  const char *p = *s;
  int64_t v = 0;
  if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
    return -1;
  for (; *p >= '0' && *p <= '9'; p++)
    if ((v = v * 10 + (*p - '0')) > max)
      return -1;
  *out = (int32_t)v;
  *s = p;
  return 0;
}

int eplb__pattern_match(const eplb__pattern_t *pt, const char *name,
                        int32_t *layer, int32_t *expert, const char **suffix) {
  const char *s = name;
  int32_t v[2];
  for (int i = 0; i < 2; i++) {
    int32_t max = (i == 0) == pt->layer_first ? EPLB_MAX_LAYERS - 1
                                              : EPLB_MAX_EXPERTS - 1;
    if (strncmp(s, pt->lit[i], pt->len[i]) != 0)
      return 0;
    s += pt->len[i];
    if (number(&s, max, &v[i]) != 0)
      return 0;
  }
  if (strncmp(s, pt->lit[2], pt->len[2]) != 0 || s[pt->len[2]] == '\0')
    return 0;
  *layer = pt->layer_first ? v[0] : v[1];
  *expert = pt->layer_first ? v[1] : v[0];
  *suffix = s + pt->len[2];
  return 1;
}

int eplb__pattern_name(const eplb__pattern_t *pt, int32_t layer, int32_t expert,
                       const char *suffix, char *buf, size_t size) {
  int32_t a = pt->layer_first ? layer : expert;
  int32_t b = pt->layer_first ? expert : layer;
  int n = snprintf(buf, size, "%.*s%d%.*s%d%.*s%s", (int)pt->len[0], pt->lit[0],
                   (int)a, (int)pt->len[1], pt->lit[1], (int)b, (int)pt->len[2],
                   pt->lit[2], suffix);
  return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Mixtral's projections by the names the other families use. */
static const char *mixtral_head(const char *head, size_t n) {
  static const char *const map[][2] = {
      {"w1", "gate_proj"}, {"w2", "down_proj"}, {"w3", "up_proj"}};
  for (int i = 0; i < 3; i++)
    if (n == 2 && strncmp(head, map[i][0], 2) == 0)
      return map[i][1];
  return NULL;
}

int eplb__role_name(const char *suffix, int mixtral, char *buf, size_t size) {
  const char *dot = strrchr(suffix, '.');
  size_t hn = dot ? (size_t)(dot - suffix) : strlen(suffix);
  const char *kind = dot ? dot + 1 : "";
  const char *head = mixtral ? mixtral_head(suffix, hn) : NULL;
  char h[EPLB_CKPT_SUFFIX_MAX];
  if (head)
    snprintf(h, sizeof(h), "%s", head);
  else
    snprintf(h, sizeof(h), "%.*s", (int)hn, suffix);
  int n;
  if (dot == NULL || strcmp(kind, "weight") == 0)
    n = snprintf(buf, size, "%s", h); /* gate_proj.weight -> gate_proj */
  else if (strncmp(kind, "weight_", 7) == 0)
    n = snprintf(buf, size, "%s_%s", h, kind + 7); /* _scale_inv */
  else
    n = snprintf(buf, size, "%s_%s", h, kind); /* gate_proj_input_scale */
  if (n < 0 || (size_t)n >= size)
    return -1;
  for (char *c = buf; *c; c++)
    if (*c == '.' || *c == '/')
      *c = '_';
  return strcmp(buf, "expert_ids") == 0 ? -1 : 0;
}
