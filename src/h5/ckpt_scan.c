/* h5/ckpt_scan.c - the catalogue of a checkpoint's expert tensors
 * (h5/ckpt.h): which MoE layers, experts and roles, and where every expert
 * tensor's bytes are; what was left out (dense layers, shared experts,
 * the rest).
 *
 * The files and headers come from ckpt_files.c.  The family is found from
 * the names - DeepSeek/Qwen's pattern first, then Mixtral's - unless a
 * pattern is given.  Then every expert of every MoE layer must have every
 * role, in one dtype and one shape per role, or the error names the
 * tensor: an import must never write a shard with a hole in it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eplb/stats.h"
#include "h5/ckpt.h"

/* One expert tensor found. */
typedef struct {
  int32_t layer, expert, role, file;
  const eplb__st_tensor_t *t;
} match_t;

/* The scan's working state. */
typedef struct {
  const char *dir;
  eplb__ckpt_t *c;
  eplb__ckpt_files_t fs;
  eplb__pattern_t pt;
  int mixtral;
  int32_t layer_min, layer_max;
  match_t *m;
  size_t nm;
  int32_t ref_layer[EPLB_SHARD_MAX_DATASETS],
      ref_expert[EPLB_SHARD_MAX_DATASETS];
  int32_t row_of[EPLB_MAX_LAYERS]; /* layer id -> layer index */
  unsigned char moe[EPLB_MAX_LAYERS], skip[EPLB_MAX_LAYERS];
  unsigned char dense[EPLB_MAX_LAYERS], shared[EPLB_MAX_LAYERS];
} scan_t;

void eplb__ckpt_free(eplb__ckpt_t *c) {
  if (c == NULL)
    return;
  for (int32_t i = 0; c->files && i < c->num_files; i++) {
    if (c->files[i].fd >= 0)
      close(c->files[i].fd);
    free(c->files[i].path);
  }
  free(c->files);
  free(c->layer_ids);
  free(c->refs);
  memset(c, 0, sizeof(*c));
}

/* Counts the checkpoint's tensors that pattern pt matches. */
static int64_t count_matches(const scan_t *s, const eplb__pattern_t *pt) {
  int64_t n = 0;
  for (int32_t i = 0; i < s->c->num_files; i++)
    for (int32_t k = 0; k < s->fs.heads[i].num_tensors; k++) {
      int32_t l, e;
      const char *sfx;
      n +=
          eplb__ckpt_files_taken(&s->fs, i, k) &&
          eplb__pattern_match(pt, s->fs.heads[i].tensors[k].name, &l, &e, &sfx);
    }
  return n;
}

/* The first tensor name of the checkpoint (for a message). */
static const char *first_name(const scan_t *s) {
  for (int32_t i = 0; i < s->c->num_files; i++)
    if (s->fs.heads[i].num_tensors > 0)
      return s->fs.heads[i].tensors[0].name;
  return "(none: the checkpoint holds no tensor)";
}

/* Picks the pattern: the one given, else the first built-in family whose
 * pattern matches some tensor. */
static int pick_family(scan_t *s, const char *pattern, eplb_error_t *err) {
  static const char *const fam[][2] = {
      {"deepseek/qwen", EPLB_CKPT_PATTERN_DEEPSEEK},
      {"mixtral", EPLB_CKPT_PATTERN_MIXTRAL}};
  eplb__ckpt_t *c = s->c;
  if (pattern) {
    snprintf(c->family, sizeof(c->family), "pattern");
    snprintf(c->pattern, sizeof(c->pattern), "%s", pattern);
    int rc = eplb__pattern_parse(pattern, &s->pt, err);
    if (rc == 0 && count_matches(s, &s->pt) == 0)
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "--checkpoint %s: no tensor matches --pattern "
                          "'%.200s' (the first tensor is \"%.200s\")",
                          s->dir, pattern, first_name(s));
    return rc;
  }
  for (int f = 0; f < 2; f++) {
    eplb__pattern_parse(fam[f][1], &s->pt, err);
    if (count_matches(s, &s->pt) > 0) {
      snprintf(c->family, sizeof(c->family), "%s", fam[f][0]);
      snprintf(c->pattern, sizeof(c->pattern), "%s", fam[f][1]);
      s->mixtral = f == 1;
      return eplb__pattern_parse(c->pattern, &s->pt, err);
    }
  }
  return eplb_error_set(err, EPLB_EPARSE,
                        "--checkpoint %s: no tensor is named as "
                        "DeepSeek/Qwen (%s) or Mixtral (%s) name their "
                        "experts (the first tensor is \"%.200s\"); give "
                        "--pattern",
                        s->dir, EPLB_CKPT_PATTERN_DEEPSEEK,
                        EPLB_CKPT_PATTERN_MIXTRAL, first_name(s));
}

/* The role of suffix sfx (added on first sight, with its dataset name). */
static int role_of(scan_t *s, const char *sfx, const char *tensor,
                   int32_t *role, eplb_error_t *err) {
  eplb__ckpt_t *c = s->c;
  for (int32_t r = 0; r < c->num_roles; r++)
    if (strcmp(c->roles[r].suffix, sfx) == 0)
      return *role = r, 0;
  eplb__ckpt_role_t *ro = &c->roles[c->num_roles];
  if (c->num_roles >= EPLB_SHARD_MAX_DATASETS ||
      strlen(sfx) >= sizeof(ro->suffix) ||
      eplb__role_name(sfx, s->mixtral, ro->name, sizeof(ro->name)) != 0)
    return eplb_error_set(err, EPLB_EPARSE,
                          "\"%.200s\": more than %d tensors per expert, or a "
                          "suffix '%.80s' too long for a dataset name (%d "
                          "bytes); give a --pattern that leaves less in "
                          "{name}",
                          tensor, EPLB_SHARD_MAX_DATASETS, sfx,
                          EPLB_SHARD_NAME_MAX - 1);
  for (int32_t r = 0; r < c->num_roles; r++)
    if (strcmp(c->roles[r].name, ro->name) == 0)
      return eplb_error_set(err, EPLB_EPARSE,
                            "\"%.200s\": suffixes '%s' and '%s' would both "
                            "be dataset '%s'; give a --pattern",
                            tensor, c->roles[r].suffix, sfx, ro->name);
  snprintf(ro->suffix, sizeof(ro->suffix), "%s", sfx);
  *role = c->num_roles++;
  return 0;
}

/* "model.layers.<n>." at the start of name: n, else -1. */
static int32_t layer_prefix(const char *name) {
  static const char pre[] = "model.layers.";
  if (strncmp(name, pre, sizeof(pre) - 1) != 0)
    return -1;
  const char *p = name + sizeof(pre) - 1;
  int32_t v = 0;
  if (*p < '0' || *p > '9')
    return -1;
  for (; *p >= '0' && *p <= '9'; p++)
    if ((v = v * 10 + (*p - '0')) >= EPLB_MAX_LAYERS)
      return -1;
  return *p == '.' ? v : -1;
}

/* A tensor that is not an expert's: a shared expert's, a dense layer's
 * MLP, or another (attention, norms, embeddings, routers). */
static void left_out(scan_t *s, const char *name) {
  int32_t l = layer_prefix(name);
  if (strstr(name, "shared_expert") != NULL) {
    s->c->shared_tensors++;
    if (l >= 0)
      s->shared[l] = 1;
  } else if (l >= 0 && !s->moe[l] && !s->skip[l] &&
             strstr(name, ".mlp.") != NULL) {
    s->dense[l] = 1;
  } else {
    s->c->other_tensors++;
  }
}

/* Adds match (layer, expert, suffix) of tensor k of file i. */
static int add_match(scan_t *s, int32_t i, int32_t k, int32_t l, int32_t e,
                     const char *sfx, size_t *cap, eplb_error_t *err) {
  const eplb__st_tensor_t *t = &s->fs.heads[i].tensors[k];
  if (s->nm == *cap) {
    size_t nc = *cap ? *cap * 2 : 1024;
    match_t *more = realloc(s->m, sizeof(*more) * nc);
    if (more == NULL)
      return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    s->m = more;
    *cap = nc;
  }
  match_t *m = &s->m[s->nm];
  int rc = role_of(s, sfx, t->name, &m->role, err);
  if (rc)
    return rc;
  m->layer = l;
  m->expert = e;
  m->file = i;
  m->t = t;
  s->nm++;
  s->moe[l] = 1;
  return 0;
}

/* The ids set in set[0..EPLB_MAX_LAYERS) as "0-2, 5" into buf ("" if
 * none; cut with "..." if it does not fit). */
static void ranges(const unsigned char *set, char *buf, size_t size) {
  size_t u = 0;
  buf[0] = '\0';
  for (int32_t a = 0; a < EPLB_MAX_LAYERS; a++) {
    if (!set[a])
      continue;
    int32_t b = a;
    while (b + 1 < EPLB_MAX_LAYERS && set[b + 1])
      b++;
    int n = a == b
                ? snprintf(buf + u, size - u, "%s%d", u ? ", " : "", a)
                : snprintf(buf + u, size - u, "%s%d-%d", u ? ", " : "", a, b);
    if (n < 0 || (size_t)n >= size - u - 4) {
      snprintf(buf + u, size - u, "...");
      return;
    }
    u += (size_t)n;
    a = b;
  }
}

/* Pass 1: the expert tensors of the kept layers; pass 2: the rest. */
static int classify(scan_t *s, eplb_error_t *err) {
  size_t cap = 0;
  for (int pass = 1; pass <= 2; pass++)
    for (int32_t i = 0; i < s->c->num_files; i++)
      for (int32_t k = 0; k < s->fs.heads[i].num_tensors; k++) {
        const char *nm = s->fs.heads[i].tensors[k].name, *sfx;
        int32_t l, e;
        if (!eplb__ckpt_files_taken(&s->fs, i, k))
          continue;
        s->c->num_tensors += pass == 1;
        int hit = eplb__pattern_match(&s->pt, nm, &l, &e, &sfx);
        int out = hit && ((s->layer_min >= 0 && l < s->layer_min) ||
                          (s->layer_max >= 0 && l > s->layer_max));
        if (pass == 2 && !hit)
          left_out(s, nm);
        if (pass == 1 && out)
          s->skip[l] = 1;
        if (pass == 1 && hit && !out) {
          int rc = add_match(s, i, k, l, e, sfx, &cap, err);
          if (rc)
            return rc;
        }
      }
  ranges(s->skip, s->c->skipped, sizeof(s->c->skipped));
  ranges(s->dense, s->c->dense, sizeof(s->c->dense));
  for (int32_t l = 0; l < EPLB_MAX_LAYERS; l++)
    s->c->shared_layers += s->shared[l];
  if (s->nm == 0)
    return eplb_error_set(err, EPLB_EARG,
                          "--checkpoint %s: no MoE layer in the --layers "
                          "range %d..%d (layers with experts: %s)",
                          s->dir, (int)s->layer_min, (int)s->layer_max,
                          s->c->skipped);
  return 0;
}

/* "BF16 [4, 8]" into buf. */
static void describe(int32_t dtype, int32_t nd, const int64_t *shape, char *buf,
                     size_t size) {
  size_t u = (size_t)snprintf(buf, size, "%s [", eplb__st_dtype_name(dtype));
  for (int32_t i = 0; i < nd && u + 24 < size; i++)
    u += (size_t)snprintf(buf + u, size - u, "%s%lld", i ? ", " : "",
                          (long long)shape[i]);
  snprintf(buf + u, size - u, "]");
}

/* Every match of a role has the dtype and shape of the role's first. */
static int check_roles(scan_t *s, eplb_error_t *err) {
  eplb__ckpt_t *c = s->c;
  int seen[EPLB_SHARD_MAX_DATASETS] = {0};
  for (size_t j = 0; j < s->nm; j++) {
    const match_t *m = &s->m[j];
    eplb__ckpt_role_t *r = &c->roles[m->role];
    if (!seen[m->role]) {
      seen[m->role] = 1;
      r->dtype = m->t->dtype;
      r->ndims = m->t->ndims;
      memcpy(r->shape, m->t->shape, sizeof(r->shape));
      r->nbytes = m->t->nbytes;
      s->ref_layer[m->role] = m->layer;
      s->ref_expert[m->role] = m->expert;
    }
    if (r->dtype == m->t->dtype && r->ndims == m->t->ndims &&
        memcmp(r->shape, m->t->shape, sizeof(r->shape)) == 0 && r->nbytes > 0)
      continue;
    char a[160], b[160], ref[512];
    describe(m->t->dtype, m->t->ndims, m->t->shape, a, sizeof(a));
    describe(r->dtype, r->ndims, r->shape, b, sizeof(b));
    eplb__pattern_name(&s->pt, s->ref_layer[m->role], s->ref_expert[m->role],
                       r->suffix, ref, sizeof(ref));
    if (r->nbytes == 0)
      return eplb_error_set(err, EPLB_ESHAPE,
                            "%s: expert tensor \"%.200s\" is empty (%s); "
                            "there are no weights to place",
                            c->files[m->file].path, m->t->name, a);
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: expert tensor \"%.200s\" is %s where \"%.200s\" "
                          "is %s; every expert's %s needs one dtype and shape",
                          c->files[m->file].path, m->t->name, a, ref, b,
                          r->suffix);
  }
  return 0;
}

/* Sorts the roles by dataset name (a shard's order) and renumbers the
 * matches. */
static void sort_roles(scan_t *s) {
  eplb__ckpt_t *c = s->c;
  int32_t order[EPLB_SHARD_MAX_DATASETS], pos[EPLB_SHARD_MAX_DATASETS];
  for (int32_t r = 0; r < c->num_roles; r++)
    order[r] = r;
  for (int32_t i = 1; i < c->num_roles; i++)
    for (int32_t j = i; j > 0 && strcmp(c->roles[order[j - 1]].name,
                                        c->roles[order[j]].name) > 0;
         j--) {
      int32_t x = order[j];
      order[j] = order[j - 1];
      order[j - 1] = x;
    }
  eplb__ckpt_role_t sorted[EPLB_SHARD_MAX_DATASETS];
  for (int32_t r = 0; r < c->num_roles; r++) {
    sorted[r] = c->roles[order[r]];
    pos[order[r]] = r;
  }
  memcpy(c->roles, sorted, sizeof(sorted[0]) * (size_t)c->num_roles);
  for (size_t j = 0; j < s->nm; j++)
    s->m[j].role = pos[s->m[j].role];
}

/* The layers (increasing ids) and the number of experts. */
static int make_layers(scan_t *s, eplb_error_t *err) {
  eplb__ckpt_t *c = s->c;
  for (int32_t l = 0; l < EPLB_MAX_LAYERS; l++)
    c->num_layers += s->moe[l];
  if ((c->layer_ids = malloc(sizeof(int32_t) * (size_t)c->num_layers)) == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t l = 0, k = 0; l < EPLB_MAX_LAYERS; l++)
    if (s->moe[l]) {
      s->row_of[l] = k;
      c->layer_ids[k++] = l;
    }
  for (size_t j = 0; j < s->nm; j++)
    if (s->m[j].expert >= c->num_experts)
      c->num_experts = s->m[j].expert + 1;
  return 0;
}

/* The index of match m's (layer, expert, role) in c->refs. */
static size_t ref_index(const scan_t *s, const match_t *m) {
  const eplb__ckpt_t *c = s->c;
  return ((size_t)s->row_of[m->layer] * (size_t)c->num_experts +
          (size_t)m->expert) *
             (size_t)c->num_roles +
         (size_t)m->role;
}

/* Names the tensor of refs index i, which the checkpoint lacks. */
static int missing(const scan_t *s, size_t i, eplb_error_t *err) {
  const eplb__ckpt_t *c = s->c;
  int32_t r = (int32_t)(i % (size_t)c->num_roles);
  int32_t e = (int32_t)(i / (size_t)c->num_roles % (size_t)c->num_experts);
  int32_t l = c->layer_ids[i / (size_t)c->num_roles / (size_t)c->num_experts];
  char name[512];
  eplb__pattern_name(&s->pt, l, e, c->roles[r].suffix, name, sizeof(name));
  return eplb_error_set(err, EPLB_ESHAPE,
                        "--checkpoint %s: tensor \"%.200s\" is missing: the "
                        "MoE layers have experts 0..%d, each with a %s (a "
                        "missing file, or a cut checkpoint?)",
                        s->dir, name, (int)c->num_experts - 1,
                        c->roles[r].suffix);
}

static int by_index(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

/* Fewer matches than (layer, expert, role)s: the first one missing, found
 * from the matches' sorted indices (each names a different one) rather
 * than from a table as large as the ids: a few kilobytes of names with
 * ids up to 65535 in 32 layers would make that table gigabytes. */
static int first_missing(const scan_t *s, eplb_error_t *err) {
  size_t *k = malloc(sizeof(*k) * (s->nm + 1));
  if (k == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (size_t j = 0; j < s->nm; j++)
    k[j] = ref_index(s, &s->m[j]);
  qsort(k, s->nm, sizeof(*k), by_index);
  size_t i = 0;
  while (i < s->nm && k[i] == i)
    i++;
  free(k);
  return missing(s, i, err);
}

/* Where every (layer, expert, role) is; a missing one is named. */
static int fill_refs(scan_t *s, eplb_error_t *err) {
  eplb__ckpt_t *c = s->c;
  size_t n =
      (size_t)c->num_layers * (size_t)c->num_experts * (size_t)c->num_roles;
  if (n > s->nm)
    return first_missing(s, err);
  if ((c->refs = malloc(sizeof(*c->refs) * n)) == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++)
    c->refs[i].file = -1;
  for (size_t j = 0; j < s->nm; j++) {
    eplb__ckpt_ref_t *r = &c->refs[ref_index(s, &s->m[j])];
    r->file = s->m[j].file;
    r->offset = s->m[j].t->offset;
    r->nbytes = s->m[j].t->nbytes;
  }
  for (size_t i = 0; i < n; i++)
    if (c->refs[i].file < 0)
      return missing(s, i, err);
  return 0;
}

int eplb__ckpt_scan(const char *dir, const char *pattern, int32_t layer_min,
                    int32_t layer_max, eplb__ckpt_t *out, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  scan_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  s->dir = dir;
  s->c = out;
  s->layer_min = layer_min;
  s->layer_max = layer_max;
  int rc = eplb__ckpt_files_read(dir, out, &s->fs, err);
  if (rc == 0)
    rc = pick_family(s, pattern, err);
  if (rc == 0)
    rc = classify(s, err);
  if (rc == 0)
    rc = check_roles(s, err);
  if (rc == 0) {
    sort_roles(s);
    rc = make_layers(s, err);
  }
  if (rc == 0)
    rc = fill_refs(s, err);
  eplb__ckpt_files_free(&s->fs, out->num_files);
  free(s->m);
  free(s);
  if (rc)
    eplb__ckpt_free(out);
  return rc;
}
