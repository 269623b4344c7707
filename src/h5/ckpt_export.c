/* h5/ckpt_export.c - eplb_ckpt_export: shards back to safetensors
 * (eplb/checkpoint.h, docs/shards.md).
 *
 * Per rank: rank_<r>.safetensors holds that rank's slots, each tensor
 * named as the checkpoint named it with the global slot (r x P + s) in
 * place of the expert, and __metadata__ saying which logical expert each
 * slot holds.  Logical: one copy of every expert, named exactly as in the
 * checkpoint (the shards' /checkpoint pattern and suffixes, their layer
 * ids), split into model-<k>-of-<n>.safetensors of at most max_file_mb,
 * with model.safetensors.index.json.
 *
 * A file is laid out first (its header says where every tensor goes),
 * then filled row by row with pwrite: memory is one row.  Tensors are
 * ordered by decreasing element size, so each starts aligned to its
 * element.  Every file is a temporary file, fsynced and renamed; the
 * index is written last. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/formats.h"
#include "h5/ckpt.h"
#include "util/fileio.h"

/* One tensor to write, and where its bytes come from. */
typedef struct {
  eplb__st_tensor_t t;
  int32_t layer, slot, d, rank, file;
} xt_t;

/* How a shard set names its tensors. */
typedef struct {
  eplb__ckpt_meta_t meta;
  eplb__pattern_t pt;
  int32_t st[EPLB_SHARD_MAX_DATASETS]; /* safetensors dtype per dataset */
  int32_t L, P, R, D;
  int32_t *layer_ids; /* copy, [L] */
} naming_t;

void eplb_ckpt_export_opts_default(eplb_ckpt_export_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->max_file_mb = EPLB_CKPT_DEFAULT_FILE_MB;
}

/* Reads the naming of shard sh (rank 0's: every shard carries the same). */
static int naming_read(eplb_shard_t *sh, naming_t *n, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(sh);
  memset(n, 0, sizeof(*n));
  n->L = in->num_layers;
  n->P = in->slots_per_rank;
  n->R = in->world_size;
  n->D = in->num_datasets;
  int rc = eplb__ckpt_meta_read(sh, &n->meta, err);
  if (rc == 0)
    rc = eplb__pattern_parse(n->meta.pattern, &n->pt, err);
  for (int32_t d = 0; rc == 0 && d < n->D; d++)
    rc = eplb__ckpt_dataset_st(eplb_shard_file(sh), &in->datasets[d], &n->st[d],
                               err);
  if (rc == 0 &&
      (n->layer_ids = malloc(sizeof(int32_t) * (size_t)n->L)) == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc == 0)
    memcpy(n->layer_ids, eplb_shard_layer_ids(sh),
           sizeof(int32_t) * (size_t)n->L);
  return rc;
}

/* Fills x: dataset d of layer l under `expert` (a slot or an expert). */
static int name_tensor(const naming_t *n, const eplb_shard_info_t *in,
                       int32_t l, int32_t expert, int32_t d, xt_t *x,
                       eplb_error_t *err) {
  char name[1024];
  const eplb_shard_dataset_t *ds = &in->datasets[d];
  if (eplb__pattern_name(&n->pt, n->layer_ids[l], expert, n->meta.suffix[d],
                         name, sizeof(name)) != 0 ||
      (x->t.name = strdup(name)) == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory naming a tensor");
  x->t.dtype = n->st[d];
  x->t.ndims = ds->ndims - 1;
  for (int32_t i = 1; i < ds->ndims; i++)
    x->t.shape[i - 1] = ds->dims[i];
  x->t.nbytes = (uint64_t)ds->row_bytes;
  x->layer = l;
  x->d = d;
  return 0;
}

static void xt_free(xt_t *x, size_t n) {
  for (size_t i = 0; x && i < n; i++)
    free(x[i].t.name);
  free(x);
}

/* Orders the tensors of one file by decreasing element size (stable). */
static int by_size(const void *a, const void *b) {
  const xt_t *const *x = a, *const *y = b;
  int sx = eplb__st_dtype_size((*x)->t.dtype);
  int sy = eplb__st_dtype_size((*y)->t.dtype);
  if (sx != sy)
    return sx > sy ? -1 : 1;
  return *x < *y ? -1 : *x > *y;
}

/* Lays out file `path` of tensors x[0..n) and creates it (temporary
 * `tmp`, header written); sets each x[i].t.offset.  Returns the fd. */
static int create_file(const char *path, const char *tmp, xt_t **x, size_t n,
                       const char *const *meta, int32_t nmeta, int *fd,
                       eplb_error_t *err) {
  eplb__st_tensor_t *tt = malloc(sizeof(*tt) * (n ? n : 1));
  unsigned char *head = NULL;
  size_t hl = 0;
  *fd = -1;
  if (tt == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  qsort(x, n, sizeof(*x), by_size);
  for (size_t i = 0; i < n; i++)
    tt[i] = x[i]->t;
  int rc = eplb__st_layout(path, tt, (int32_t)n, meta, nmeta, &head, &hl, err);
  for (size_t i = 0; rc == 0 && i < n; i++)
    x[i]->t.offset = tt[i].offset;
  free(tt);
  if (rc == 0 &&
      (*fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
    rc = eplb_error_set(err, EPLB_EIO,
                        "%s: cannot create it: %s (directory missing, "
                        "read-only or full?)",
                        tmp, strerror(errno));
  if (rc == 0)
    rc = eplb__ckpt_pwrite(*fd, tmp, head, hl, 0, err);
  free(head);
  return rc;
}

/* Copies tensor x (row of slot x->slot) from shard sh into fd at its
 * offset, through buf. */
static int copy_row(eplb_shard_t *sh, const xt_t *x, int fd, const char *tmp,
                    unsigned char *buf, eplb_error_t *err) {
  int rc = eplb_shard_read_row(sh, x->layer, x->d, x->slot, buf, err);
  if (rc == 0)
    rc = eplb__ckpt_pwrite(fd, tmp, buf, (size_t)x->t.nbytes, x->t.offset, err);
  return rc;
}

/* The largest row of a shard's datasets (one buffer serves them all). */
static size_t max_row(const eplb_shard_info_t *in) {
  size_t m = 1;
  for (int32_t d = 0; d < in->num_datasets; d++)
    if ((size_t)in->datasets[d].row_bytes > m)
      m = (size_t)in->datasets[d].row_bytes;
  return m;
}

/* The key-value pairs of a __metadata__, owned. */
typedef struct {
  char **kv; /* [2n] */
  int32_t n, cap;
} meta_t;

static void meta_free(meta_t *m) {
  for (int32_t i = 0; i < 2 * m->n; i++)
    free(m->kv[i]);
  free(m->kv);
  memset(m, 0, sizeof(*m));
}

/* Adds key = val (copied). */
static int meta_add(meta_t *m, const char *key, const char *val,
                    eplb_error_t *err) {
  if (m->n == m->cap) {
    int32_t nc = m->cap ? m->cap * 2 : 16;
    char **more = realloc(m->kv, sizeof(char *) * 2 * (size_t)nc);
    if (more == NULL)
      return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    m->kv = more;
    m->cap = nc;
  }
  char *k = strdup(key), *v = strdup(val);
  if (k == NULL || v == NULL) {
    free(k);
    free(v);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  m->kv[2 * m->n] = k;
  m->kv[2 * m->n + 1] = v;
  m->n++;
  return 0;
}

/* Adds key = the integer v. */
static int meta_int(meta_t *m, const char *key, long long v,
                    eplb_error_t *err) {
  char b[32];
  snprintf(b, sizeof(b), "%lld", v);
  return meta_add(m, key, b, err);
}

/* Adds key = "v0,v1,...". */
static int meta_list(meta_t *m, const char *key, const int32_t *v, int32_t n,
                     eplb_error_t *err) {
  char *s = malloc(12 * (size_t)n + 1);
  if (s == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  size_t u = 0;
  s[0] = '\0';
  for (int32_t i = 0; i < n; i++)
    u += (size_t)sprintf(s + u, "%s%d", i ? "," : "", (int)v[i]);
  int rc = meta_add(m, key, s, err);
  free(s);
  return rc;
}

/* The __metadata__ of rank r's file: who it is, and the logical expert of
 * each of its slots, per layer (ids[L * P]). */
static int rank_meta(const naming_t *n, const eplb_shard_info_t *in,
                     const int32_t *ids, meta_t *m, eplb_error_t *err) {
  int rc = meta_add(m, "format", "pt", err);
  if (rc == 0)
    rc = meta_int(m, "eplb_rank", in->rank, err);
  if (rc == 0)
    rc = meta_int(m, "eplb_world_size", n->R, err);
  if (rc == 0)
    rc = meta_int(m, "eplb_slots_per_rank", n->P, err);
  if (rc == 0)
    rc = meta_int(m, "eplb_first_slot", (long long)in->rank * n->P, err);
  if (rc == 0 && n->meta.num_experts > 0)
    rc = meta_int(m, "eplb_num_experts", n->meta.num_experts, err);
  if (rc == 0)
    rc = meta_int(m, "eplb_generation", (long long)in->generation, err);
  if (rc == 0)
    rc = meta_list(m, "eplb_layer_ids", n->layer_ids, n->L, err);
  for (int32_t l = 0; rc == 0 && l < n->L; l++) {
    char key[64];
    snprintf(key, sizeof(key), "eplb_experts.%d", (int)n->layer_ids[l]);
    rc = meta_list(m, key, ids + (size_t)l * (size_t)n->P, n->P, err);
  }
  return rc;
}

/* Reads the expert ids of every layer of sh into ids[L * P]. */
static int read_ids(eplb_shard_t *sh, int32_t *ids, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(sh);
  for (int32_t l = 0; l < in->num_layers; l++) {
    int rc =
        eplb_shard_read_ids(sh, l, ids + (size_t)l * in->slots_per_rank, err);
    if (rc)
      return rc;
  }
  return 0;
}

/* The tensors of rank r's file: every (layer, slot, dataset). */
static int rank_tensors(const naming_t *n, const eplb_shard_info_t *in, xt_t *x,
                        eplb_error_t *err) {
  size_t k = 0;
  int rc = 0;
  for (int32_t l = 0; l < n->L; l++)
    for (int32_t s = 0; s < n->P; s++)
      for (int32_t d = 0; d < n->D; d++, k++) {
        if ((rc = name_tensor(n, in, l, in->rank * n->P + s, d, &x[k], err)))
          return rc;
        x[k].slot = s;
      }
  return 0;
}

/* Writes <out>/rank_<r>.safetensors from the open shard sh. */
static int write_rank(const char *out, eplb_shard_t *sh, const naming_t *n,
                      eplb_ckpt_export_result_t *res, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(sh);
  size_t cnt = (size_t)n->L * (size_t)n->P * (size_t)n->D;
  xt_t *x = calloc(cnt ? cnt : 1, sizeof(*x));
  xt_t **px = malloc(sizeof(*px) * (cnt ? cnt : 1));
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)n->L * (size_t)n->P);
  unsigned char *buf = malloc(max_row(in));
  meta_t m = {0};
  char path[4096], tmp[4200];
  int fd = -1;
  int rc = x && px && ids && buf
               ? 0
               : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc == 0 && snprintf(path, sizeof(path), "%s/rank_%05d.safetensors", out,
                          (int)in->rank) >= (int)sizeof(path))
    rc = eplb_error_set(err, EPLB_EARG, "--out %.200s: path too long", out);
  if (rc == 0)
    rc = eplb__ckpt_tmp_path(path, tmp, sizeof(tmp), err);
  if (rc == 0)
    rc = read_ids(sh, ids, err);
  if (rc == 0)
    rc = rank_tensors(n, in, x, err);
  if (rc == 0)
    rc = rank_meta(n, in, ids, &m, err);
  for (size_t i = 0; rc == 0 && i < cnt; i++)
    px[i] = &x[i];
  if (rc == 0)
    rc = create_file(path, tmp, px, cnt, (const char *const *)m.kv, m.n, &fd,
                     err);
  for (size_t i = 0; rc == 0 && i < cnt; i++) {
    rc = copy_row(sh, &x[i], fd, tmp, buf, err);
    res->bytes += x[i].t.nbytes;
  }
  if (rc == 0) {
    rc = eplb__ckpt_commit_file(fd, tmp, path, err);
    fd = -1;
    res->files++;
    res->tensors += (int64_t)cnt;
  }
  if (fd >= 0) {
    close(fd);
    unlink(tmp);
  }
  meta_free(&m);
  free(buf);
  free(ids);
  free(px);
  xt_free(x, cnt);
  return rc;
}

/* One file per rank. */
static int export_ranks(const eplb_ckpt_export_opts_t *o,
                        eplb_ckpt_export_result_t *res, eplb_error_t *err) {
  eplb_shard_t *first = NULL;
  int rc = eplb__ckpt_shard_open(o->dir, 0, NULL, &first, err);
  int32_t R = rc ? 0 : eplb_shard_info(first)->world_size;
  for (int32_t r = 0; rc == 0 && r < R; r++) {
    eplb_shard_t *sh = first;
    naming_t n;
    memset(&n, 0, sizeof(n));
    if (r > 0)
      rc = eplb__ckpt_shard_open(o->dir, r, eplb_shard_info(first), &sh, err);
    if (rc == 0)
      rc = naming_read(sh, &n, err);
    if (rc == 0)
      rc = write_rank(o->out, sh, &n, res, err);
    free(n.layer_ids);
    if (sh != first)
      eplb_shard_close(sh);
  }
  eplb_shard_close(first);
  return rc;
}

/* The logical export's state. */
typedef struct {
  const eplb_ckpt_export_opts_t *o;
  naming_t n;
  const eplb_shard_info_t *in; /* rank 0's */
  int32_t E, F;                /* experts, files */
  int32_t *map;                /* [L][R * P]: the shards' expert ids */
  xt_t *x;                     /* [L * E * D] */
  size_t nx;
  int *fd;     /* [F] */
  char **path; /* [2 F]: path, temporary path */
} logical_t;

/* Reads rank r's expert ids into g->map. */
static int map_rank(logical_t *g, eplb_shard_t *sh, int32_t r, int32_t *ids,
                    eplb_error_t *err) {
  const naming_t *n = &g->n;
  size_t S = (size_t)n->R * (size_t)n->P;
  int rc = read_ids(sh, ids, err);
  for (int32_t l = 0; rc == 0 && l < n->L; l++)
    memcpy(g->map + (size_t)l * S + (size_t)r * (size_t)n->P,
           ids + (size_t)l * (size_t)n->P, sizeof(int32_t) * (size_t)n->P);
  return rc;
}

/* Reads every shard's expert ids; E is /checkpoint's, or the largest id
 * + 1.  Every id must be in 0..E-1. */
static int read_map(logical_t *g, eplb_shard_t *first, eplb_error_t *err) {
  const naming_t *n = &g->n;
  size_t S = (size_t)n->R * (size_t)n->P, all = S * (size_t)n->L;
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)n->L * (size_t)n->P);
  g->map = malloc(sizeof(int32_t) * all);
  int rc =
      ids && g->map ? 0 : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t r = 0; rc == 0 && r < n->R; r++) {
    eplb_shard_t *sh = first;
    if (r > 0)
      rc = eplb__ckpt_shard_open(g->o->dir, r, g->in, &sh, err);
    if (rc == 0)
      rc = map_rank(g, sh, r, ids, err);
    if (sh != first)
      eplb_shard_close(sh);
  }
  free(ids);
  int32_t mx = -1;
  for (size_t i = 0; rc == 0 && i < all; i++)
    mx = g->map[i] > mx ? g->map[i] : mx;
  g->E = n->meta.num_experts > 0 ? n->meta.num_experts : mx + 1;
  for (size_t i = 0; rc == 0 && i < all; i++)
    if (g->map[i] < 0 || g->map[i] >= g->E)
      rc = eplb_error_set(err, EPLB_EMAP,
                          "%s: layer %d slot %zu holds expert %d, outside "
                          "0..%d",
                          g->o->dir, (int)n->layer_ids[i / S], i % S,
                          (int)g->map[i], (int)g->E - 1);
  return rc;
}

/* One tensor per (layer, expert, dataset), taken from the first slot
 * holding the expert; a missing expert is named. */
static int logical_tensors(logical_t *g, eplb_error_t *err) {
  const naming_t *n = &g->n;
  size_t S = (size_t)n->R * (size_t)n->P;
  g->nx = (size_t)n->L * (size_t)g->E * (size_t)n->D;
  if ((g->x = calloc(g->nx ? g->nx : 1, sizeof(*g->x))) == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  size_t k = 0;
  for (int32_t l = 0; l < n->L; l++)
    for (int32_t e = 0; e < g->E; e++) {
      size_t s = 0;
      while (s < S && g->map[(size_t)l * S + s] != e)
        s++;
      if (s == S)
        return eplb_error_set(err, EPLB_EMAP,
                              "%s: expert %d of layer %d is in no shard; "
                              "export --logical needs every expert",
                              g->o->dir, (int)e, (int)n->layer_ids[l]);
      for (int32_t d = 0; d < n->D; d++, k++) {
        int rc = name_tensor(n, g->in, l, e, d, &g->x[k], err);
        if (rc)
          return rc;
        g->x[k].rank = (int32_t)(s / (size_t)n->P);
        g->x[k].slot = (int32_t)(s % (size_t)n->P);
      }
    }
  return 0;
}

/* Cuts the tensors, in order, into files of at most max_file_mb. */
static void split_files(logical_t *g) {
  uint64_t cap = (uint64_t)g->o->max_file_mb << 20, used = 0;
  g->F = 0;
  for (size_t i = 0; i < g->nx; i++) {
    if (g->F == 0 || (used > 0 && used + g->x[i].t.nbytes > cap)) {
      g->F++;
      used = 0;
    }
    g->x[i].file = g->F - 1;
    used += g->x[i].t.nbytes;
  }
}

/* Creates the F files (temporary, header written). */
static int create_files(logical_t *g, xt_t **px, eplb_error_t *err) {
  static const char *const meta[] = {"format", "pt"};
  g->fd = malloc(sizeof(int) * (size_t)g->F);
  g->path = calloc(2 * (size_t)g->F, sizeof(char *));
  if (g->fd == NULL || g->path == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t k = 0; k < g->F; k++)
    g->fd[k] = -1;
  size_t a = 0;
  for (int32_t k = 0; k < g->F; k++) {
    char path[4096], tmp[4200];
    size_t b = a;
    while (b < g->nx && g->x[b].file == k)
      b++;
    if (snprintf(path, sizeof(path), "%s/model-%05d-of-%05d.safetensors",
                 g->o->out, (int)k + 1, (int)g->F) >= (int)sizeof(path))
      return eplb_error_set(err, EPLB_EARG, "--out %.200s: path too long",
                            g->o->out);
    int rc = eplb__ckpt_tmp_path(path, tmp, sizeof(tmp), err);
    if (rc == 0 && ((g->path[2 * k] = strdup(path)) == NULL ||
                    (g->path[2 * k + 1] = strdup(tmp)) == NULL))
      rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    if (rc == 0)
      rc = create_file(path, tmp, px + a, b - a, meta, 1, &g->fd[k], err);
    if (rc)
      return rc;
    a = b;
  }
  return 0;
}

/* Copies every tensor from its shard, one shard open at a time. */
static int fill_files(logical_t *g, eplb_shard_t *first,
                      eplb_ckpt_export_result_t *res, eplb_error_t *err) {
  unsigned char *buf = malloc(max_row(g->in));
  int rc = buf ? 0 : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t r = 0; rc == 0 && r < g->n.R; r++) {
    eplb_shard_t *sh = first;
    if (r > 0)
      rc = eplb__ckpt_shard_open(g->o->dir, r, g->in, &sh, err);
    for (size_t i = 0; rc == 0 && i < g->nx; i++)
      if (g->x[i].rank == r) {
        int32_t k = g->x[i].file;
        rc = copy_row(sh, &g->x[i], g->fd[k], g->path[2 * k + 1], buf, err);
        res->bytes += g->x[i].t.nbytes;
      }
    if (sh != first)
      eplb_shard_close(sh);
  }
  free(buf);
  return rc;
}

/* model.safetensors.index.json: total_size and tensor -> file. */
static int write_index(logical_t *g, eplb_error_t *err) {
  char path[4096];
  uint64_t total = 0;
  cJSON *root = cJSON_CreateObject();
  cJSON *meta = root ? cJSON_AddObjectToObject(root, "metadata") : NULL;
  cJSON *wm = root ? cJSON_AddObjectToObject(root, "weight_map") : NULL;
  int ok = meta && wm;
  for (size_t i = 0; ok && i < g->nx; i++) {
    const char *file = strrchr(g->path[2 * g->x[i].file], '/') + 1;
    ok = cJSON_AddStringToObject(wm, g->x[i].t.name, file) != NULL;
    total += g->x[i].t.nbytes;
  }
  char num[32];
  snprintf(num, sizeof(num), "%llu", (unsigned long long)total);
  ok = ok && cJSON_AddRawToObject(meta, "total_size", num) != NULL &&
       cJSON_AddStringToObject(meta, "eplb_export", "logical") != NULL;
  char *text = ok ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (text == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  snprintf(path, sizeof(path), "%s/model.safetensors.index.json", g->o->out);
  int rc = eplb__write_atomic(path, eplb__write_text, text, err);
  free(text);
  return rc;
}

/* The output directory must not hold a checkpoint eplb did not write: its
 * files would be replaced (an index whose metadata lacks "eplb_export"). */
static int check_out(const char *out, eplb_error_t *err) {
  char path[4096], *text = NULL;
  size_t len = 0;
  cJSON *root = NULL;
  snprintf(path, sizeof(path), "%s/model.safetensors.index.json", out);
  if (access(path, F_OK) != 0)
    return 0;
  int rc = eplb__read_file(path, &text, &len, err);
  if (rc == 0 && eplb__json_parse(path, text, len, &root, NULL) != 0)
    root = NULL;
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "metadata");
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(m, "eplb_export");
  if (rc == 0 && !(cJSON_IsString(e) && strcmp(e->valuestring, "logical") == 0))
    rc = eplb_error_set(err, EPLB_ESTATE,
                        "--out %s holds a checkpoint eplb did not export (%s "
                        "without metadata.eplb_export): its files would be "
                        "replaced; export into another directory",
                        out, path);
  cJSON_Delete(root);
  free(text);
  return rc;
}

/* Closes what is open; removes the temporary files left. */
static void logical_free(logical_t *g) {
  for (int32_t k = 0; g->fd && k < g->F; k++)
    if (g->fd[k] >= 0) {
      close(g->fd[k]);
      unlink(g->path[2 * k + 1]);
    }
  for (int32_t k = 0; g->path && k < 2 * g->F; k++)
    free(g->path[k]);
  free(g->path);
  free(g->fd);
  xt_free(g->x, g->nx);
  free(g->map);
  free(g->n.layer_ids);
}

/* One copy of every logical expert, as a Hugging Face checkpoint. */
static int export_logical(const eplb_ckpt_export_opts_t *o,
                          eplb_ckpt_export_result_t *res, eplb_error_t *err) {
  logical_t g;
  memset(&g, 0, sizeof(g));
  g.o = o;
  eplb_shard_t *first = NULL;
  xt_t **px = NULL;
  int rc = check_out(o->out, err);
  if (rc == 0)
    rc = eplb__ckpt_shard_open(o->dir, 0, NULL, &first, err);
  if (rc == 0) {
    g.in = eplb_shard_info(first);
    rc = naming_read(first, &g.n, err);
  }
  if (rc == 0)
    rc = read_map(&g, first, err);
  if (rc == 0)
    rc = logical_tensors(&g, err);
  if (rc == 0) {
    split_files(&g);
    if ((px = malloc(sizeof(*px) * (g.nx ? g.nx : 1))) == NULL)
      rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  for (size_t i = 0; rc == 0 && i < g.nx; i++)
    px[i] = &g.x[i];
  if (rc == 0)
    rc = create_files(&g, px, err);
  if (rc == 0)
    rc = fill_files(&g, first, res, err);
  for (int32_t k = 0; rc == 0 && k < g.F; k++) {
    rc = eplb__ckpt_commit_file(g.fd[k], g.path[2 * k + 1], g.path[2 * k], err);
    g.fd[k] = -1;
  }
  if (rc == 0)
    rc = write_index(&g, err);
  if (rc == 0) {
    res->files = g.F;
    res->tensors = (int64_t)g.nx;
  }
  free(px);
  logical_free(&g);
  eplb_shard_close(first);
  return rc;
}

int eplb_ckpt_export(const eplb_ckpt_export_opts_t *o,
                     eplb_ckpt_export_result_t *res, eplb_error_t *err) {
  eplb_ckpt_export_result_t tmp;
  double t0 = eplb__ckpt_now();
  if (res == NULL)
    res = &tmp;
  memset(res, 0, sizeof(*res));
  if (o->dir == NULL || o->out == NULL ||
      (o->logical && (o->max_file_mb < EPLB_CKPT_MIN_FILE_MB ||
                      o->max_file_mb > EPLB_CKPT_MAX_FILE_MB)))
    return eplb_error_set(err, EPLB_EARG,
                          "export needs the shard directory, an output "
                          "directory and a file size of %d..%ld MiB",
                          EPLB_CKPT_MIN_FILE_MB, EPLB_CKPT_MAX_FILE_MB);
  eplb__ckpt_raise_nofile();
  int rc = eplb__ckpt_mkdir(o->out, "--out", err);
  if (rc == 0)
    rc = o->logical ? export_logical(o, res, err) : export_ranks(o, res, err);
  res->seconds = eplb__ckpt_now() - t0;
  return rc;
}
