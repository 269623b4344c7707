/* h5/ckpt_import.c - eplb_ckpt_import: a Hugging Face checkpoint becomes
 * one shard per rank (eplb/checkpoint.h, docs/shards.md).
 *
 * Layer by layer, each expert a group of ranks needs is read once - its
 * tensors by pread at the offsets the header gave, in file order - into
 * one buffer, then written to every slot that holds it.  Memory is one
 * expert's tensors, whatever the checkpoint's size.  The shards of a group
 * of ranks are open at once (as many as the open-files limit allows, the
 * checkpoint's files being open too); every shard is written to a
 * temporary file and fsynced, and only when all are written are they
 * renamed into place. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5/ckpt.h"
#include "h5/h5types.h"
#include "h5/shard_internal.h"
#include "util/fileio.h"

/* Where an expert's first tensor is, to read experts in file order. */
struct pos_s {
  int32_t file, expert;
  uint64_t offset;
};

typedef struct {
  const eplb_ckpt_import_opts_t *o;
  eplb__ckpt_t c;
  eplb_placement_t p;
  eplb_shard_info_t *info;
  int32_t R, P;
  unsigned char *row; /* one expert's tensors, role after role */
  unsigned char *pieces[EPLB_SHARD_MAX_DATASETS];
  struct pos_s *order;     /* [E]: the experts of a layer, in file order */
  char **path, **tmp;      /* [R] */
  eplb_shard_writer_t **w; /* [R], open for the current group */
  unsigned char *done;     /* [R]: temporary file written */
  uint64_t bytes_read, bytes_written;
} imp_t;

void eplb_ckpt_import_opts_default(eplb_ckpt_import_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->layer_min = -1;
  o->layer_max = -1;
}

/* The options' ranges (the CLI checks them too, with the option names). */
static int check_opts(const eplb_ckpt_import_opts_t *o, eplb_error_t *err) {
  if (o->checkpoint == NULL || o->dir == NULL || o->ranks < 1 ||
      o->ranks > EPLB_CKPT_MAX_RANKS ||
      (o->placement == NULL &&
       (o->slots_per_rank < 1 || o->slots_per_rank > EPLB_SHARD_MAX_SLOTS)) ||
      o->layer_min < -1 || o->layer_max < -1 ||
      o->layer_min >= EPLB_MAX_LAYERS || o->layer_max >= EPLB_MAX_LAYERS ||
      (o->layer_min >= 0 && o->layer_max >= 0 && o->layer_min > o->layer_max))
    return eplb_error_set(err, EPLB_EARG,
                          "import needs a checkpoint, a shard directory, "
                          "ranks 1..%d, slots per rank 1..%d (or a map) and "
                          "a layer range within 0..%d",
                          EPLB_CKPT_MAX_RANKS, EPLB_SHARD_MAX_SLOTS,
                          EPLB_MAX_LAYERS - 1);
  eplb__pattern_t pt;
  if (o->pattern)
    return eplb__pattern_parse(o->pattern, &pt, err);
  return 0;
}

/* The given map, checked against the checkpoint and regrouped on R. */
static int map_placement(imp_t *m, eplb_error_t *err) {
  const eplb_placement_t *g = m->o->placement;
  const char *name = m->o->placement_name ? m->o->placement_name : "the map";
  const eplb__ckpt_t *c = &m->c;
  if (g->num_layers != c->num_layers || g->num_experts > c->num_experts ||
      (g->num_gpus != m->R && g->num_gpus != 1) || g->num_slots % m->R != 0 ||
      g->num_slots / m->R > EPLB_SHARD_MAX_SLOTS)
    return eplb_error_set(
        err, EPLB_ESHAPE,
        "%s has %d layers x %d slots on %d devices, experts < %d; the "
        "checkpoint has %d MoE layers (ids %d..%d) of %d experts and the "
        "job %d ranks (at most %d slots each)",
        name, g->num_layers, g->num_slots, g->num_gpus, g->num_experts,
        c->num_layers, c->layer_ids[0], c->layer_ids[c->num_layers - 1],
        c->num_experts, m->R, EPLB_SHARD_MAX_SLOTS);
  int rc = eplb_placement_copy(&m->p, g, err);
  if (rc)
    return rc;
  m->p.num_gpus = m->R;
  m->p.num_experts = c->num_experts;
  m->P = g->num_slots / m->R;
  return eplb_placement_check(&m->p, 0, name, err);
}

/* The placement to import: the map, or the contiguous one. */
static int make_placement(imp_t *m, eplb_error_t *err) {
  int rc = 0;
  if (m->o->placement) {
    rc = map_placement(m, err);
  } else {
    int64_t S = (int64_t)m->R * m->o->slots_per_rank;
    m->P = m->o->slots_per_rank;
    if (S < m->c.num_experts || S > EPLB_MAX_SLOTS)
      return eplb_error_set(err, EPLB_EARG,
                            "--ranks %d x --slots-per-rank %d = %lld slots "
                            "must hold the checkpoint's %d experts and be at "
                            "most %d",
                            m->R, m->P, (long long)S, m->c.num_experts,
                            EPLB_MAX_SLOTS);
    rc = eplb_placement_init_contiguous(
        &m->p, m->c.num_layers, m->c.num_experts, (int32_t)S, m->R, err);
  }
  for (int32_t l = 0; rc == 0 && l < m->c.num_layers; l++)
    m->p.layer_ids[l] = m->c.layer_ids[l];
  return rc;
}

/* The shards' description: one dataset per role, [P, shape...]. */
static int make_info(imp_t *m, eplb_error_t *err) {
  const eplb__ckpt_t *c = &m->c;
  const char *names[EPLB_SHARD_MAX_DATASETS];
  hid_t types[EPLB_SHARD_MAX_DATASETS];
  int32_t nd[EPLB_SHARD_MAX_DATASETS];
  int64_t dims[EPLB_SHARD_MAX_DATASETS][EPLB_SHARD_MAX_DIMS];
  if ((m->info = calloc(1, sizeof(*m->info))) == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t r = 0; r < c->num_roles; r++) {
    names[r] = c->roles[r].name;
    types[r] = eplb__h5_type_for_st(c->roles[r].dtype);
    nd[r] = c->roles[r].ndims;
    for (int32_t i = 0; i < EPLB_SHARD_MAX_DIMS; i++)
      dims[r][i] = i < nd[r] && i < EPLB_ST_MAX_DIMS ? c->roles[r].shape[i] : 0;
  }
  int rc = eplb__shard_info_from_types(
      m->info, m->R, c->num_layers, m->P, 0, c->num_roles, names, types, nd,
      (const int64_t(*)[EPLB_SHARD_MAX_DIMS])dims, err);
  for (int32_t r = 0; r < c->num_roles; r++)
    if (types[r] >= 0)
      H5Tclose(types[r]);
  return rc;
}

/* The directory: made if missing; no journal of an interrupted migration;
 * no shard of a larger job that would be mistaken for this one's. */
static int prepare_dir(imp_t *m, eplb_error_t *err) {
  const char *dir = m->o->dir;
  int rc = eplb__ckpt_mkdir(dir, "--dir", err);
  char path[4096];
  struct stat st;
  snprintf(path, sizeof(path), "%s/eplb_journal.json", dir);
  if (rc == 0 && stat(path, &st) == 0)
    return eplb_error_set(err, EPLB_ESTATE,
                          "%s holds a migration journal: run `eplb-sync "
                          "--recover --shards %s` or use another directory",
                          dir, dir);
  DIR *d = rc ? NULL : opendir(dir);
  struct dirent *de;
  while (d && rc == 0 && (de = readdir(d)) != NULL) {
    int r = -1, n = 0;
    if (sscanf(de->d_name, "shard_%d.h5%n", &r, &n) == 1 &&
        de->d_name[n] == '\0' && r >= m->R)
      rc = eplb_error_set(err, EPLB_ESTATE,
                          "%s/%s belongs to a job of more than %d ranks; "
                          "remove it or import into an empty directory",
                          dir, de->d_name, m->R);
  }
  if (d)
    closedir(d);
  return rc;
}

/* Paths, buffers and the expert order of the import. */
static int setup(imp_t *m, eplb_error_t *err) {
  size_t rb = (size_t)m->info->row_bytes, off = 0;
  m->path = calloc((size_t)m->R, sizeof(char *));
  m->tmp = calloc((size_t)m->R, sizeof(char *));
  m->w = calloc((size_t)m->R, sizeof(*m->w));
  m->done = calloc((size_t)m->R, 1);
  m->order = malloc(sizeof(*m->order) * (size_t)m->c.num_experts);
  m->row = malloc(rb ? rb : 1);
  if (!m->path || !m->tmp || !m->w || !m->done || !m->order || !m->row)
    return eplb_error_set(err, EPLB_ENOMEM,
                          "out of memory (one expert's tensors: %zu bytes)",
                          rb);
  for (int32_t d = 0; d < m->c.num_roles; d++) {
    m->pieces[d] = m->row + off;
    off += (size_t)m->c.roles[d].nbytes;
  }
  for (int32_t r = 0; r < m->R; r++) {
    char p[4096], t[4200];
    int rc = eplb_shard_path(m->o->dir, r, p, sizeof(p), err);
    if (rc == 0)
      rc = eplb__ckpt_tmp_path(p, t, sizeof(t), err);
    if (rc)
      return rc;
    if ((m->path[r] = strdup(p)) == NULL || (m->tmp[r] = strdup(t)) == NULL)
      return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  return 0;
}

/* The ranks' expert ids of layer l: rank r's slots. */
static const int32_t *ids_of(const imp_t *m, int32_t l, int32_t r) {
  return m->p.phy2log + (size_t)l * (size_t)m->p.num_slots +
         (size_t)r * (size_t)m->P;
}

/* Where role d of expert e in layer l is. */
static const eplb__ckpt_ref_t *ref_of(const imp_t *m, int32_t l, int32_t e,
                                      int32_t d) {
  const eplb__ckpt_t *c = &m->c;
  return &c->refs[((size_t)l * (size_t)c->num_experts + (size_t)e) *
                      (size_t)c->num_roles +
                  (size_t)d];
}

static int by_position(const void *a, const void *b) {
  const struct pos_s *x = a, *y = b;
  if (x->file != y->file)
    return x->file < y->file ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Reads expert e of layer l (every role) into m->row. */
static int read_expert(imp_t *m, int32_t l, int32_t e, eplb_error_t *err) {
  for (int32_t d = 0; d < m->c.num_roles; d++) {
    const eplb__ckpt_ref_t *r = ref_of(m, l, e, d);
    const eplb__ckpt_file_t *f = &m->c.files[r->file];
    int rc = eplb__ckpt_pread(f->fd, f->path, m->pieces[d], (size_t)r->nbytes,
                              r->offset, err);
    if (rc)
      return rc;
    m->bytes_read += r->nbytes;
  }
  return 0;
}

/* Layer l of ranks r0..r1-1: each expert they hold read once, in file
 * order, and written to each of their slots that holds it. */
static int put_layer(imp_t *m, int32_t l, int32_t r0, int32_t r1,
                     eplb_error_t *err) {
  int32_t n = 0, E = m->c.num_experts;
  unsigned char *need = calloc((size_t)E, 1);
  if (need == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  int rc = 0;
  for (int32_t r = r0; rc == 0 && r < r1; r++) {
    rc = eplb_shard_writer_begin_layer(m->w[r], l, ids_of(m, l, r), err);
    for (int32_t s = 0; s < m->P; s++)
      need[ids_of(m, l, r)[s]] = 1;
  }
  for (int32_t e = 0; e < E; e++)
    if (need[e]) {
      const eplb__ckpt_ref_t *f = ref_of(m, l, e, 0);
      m->order[n++] = (struct pos_s){f->file, e, f->offset};
    }
  free(need);
  qsort(m->order, (size_t)n, sizeof(*m->order), by_position);
  for (int32_t k = 0; rc == 0 && k < n; k++) {
    int32_t e = m->order[k].expert;
    rc = read_expert(m, l, e, err);
    for (int32_t r = r0; rc == 0 && r < r1; r++)
      for (int32_t s = 0; rc == 0 && s < m->P; s++)
        if (ids_of(m, l, r)[s] == e) {
          rc = eplb_shard_writer_put_row(
              m->w[r], s, (const unsigned char *const *)m->pieces, err);
          m->bytes_written += (uint64_t)m->info->row_bytes;
        }
  }
  return rc;
}

/* Creates the temporary shard of rank r with its metadata. */
static int open_rank(imp_t *m, int32_t r, eplb_error_t *err) {
  m->info->rank = r;
  int rc = eplb_shard_writer_create(m->tmp[r], m->info, &m->w[r], err);
  if (rc == 0)
    rc = eplb_shard_writer_put_layer_ids(m->w[r], m->c.layer_ids, err);
  if (rc == 0)
    rc = eplb__ckpt_meta_write(m->w[r], &m->c, m->o->checkpoint, err);
  if (rc)
    eplb_error_prefix(err, "%s", m->tmp[r]);
  return rc;
}

/* Ranks r0..r1-1: created, every layer written, closed and fsynced. */
static int put_group(imp_t *m, int32_t r0, int32_t r1, eplb_error_t *err) {
  int rc = 0;
  for (int32_t r = r0; rc == 0 && r < r1; r++)
    rc = open_rank(m, r, err);
  for (int32_t l = 0; rc == 0 && l < m->c.num_layers; l++)
    rc = put_layer(m, l, r0, r1, err);
  for (int32_t r = r0; r < r1; r++) {
    if (m->w[r] == NULL)
      continue;
    if (rc == 0) {
      rc = eplb_shard_writer_finish(m->w[r], 1, err);
      m->done[r] = rc == 0;
    } else {
      eplb_shard_writer_abort(m->w[r]);
    }
    m->w[r] = NULL;
  }
  return rc;
}

/* How many shards to keep open at once: what the open-files limit allows,
 * at most MAX_OPEN (each open HDF5 file keeps caches of its own). */
#define MAX_OPEN 256
static int32_t group_size(const imp_t *m) {
  long room = (eplb__ckpt_raise_nofile() - m->c.num_files - 64) / 2;
  room = room < MAX_OPEN ? room : MAX_OPEN;
  return room < 1 ? 1 : room < m->R ? (int32_t)room : m->R;
}

/* Writes every shard, then renames them all into place. */
static int write_all(imp_t *m, eplb_error_t *err) {
  int32_t G = group_size(m);
  int rc = 0;
  for (int32_t r0 = 0; rc == 0 && r0 < m->R; r0 += G)
    rc = put_group(m, r0, r0 + G < m->R ? r0 + G : m->R, err);
  for (int32_t r = 0; rc == 0 && r < m->R; r++)
    if (rename(m->tmp[r], m->path[r]) != 0)
      rc = eplb_error_set(err, EPLB_EIO,
                          "%s: cannot rename %s over it: %s (shards 0..%d "
                          "are in place, the others not: import again)",
                          m->path[r], m->tmp[r], strerror(errno), (int)r - 1);
    else
      m->done[r] = 0;
  if (rc == 0)
    rc = eplb__fsync_dir_of(m->path[0], err);
  return rc;
}

/* Frees everything; removes the temporary shards left. */
static void imp_free(imp_t *m) {
  for (int32_t r = 0; m->path && r < m->R; r++) {
    if (m->w && m->w[r])
      eplb_shard_writer_abort(m->w[r]);
    if (m->done && m->done[r])
      unlink(m->tmp[r]);
    free(m->path[r]);
    free(m->tmp[r]);
  }
  free(m->path);
  free(m->tmp);
  free(m->w);
  free(m->done);
  free(m->order);
  free(m->row);
  free(m->info);
  eplb_placement_cleanup(&m->p);
  eplb__ckpt_free(&m->c);
}

/* The result: what was imported and what was left out. */
static void fill_result(const imp_t *m, double t0,
                        eplb_ckpt_import_result_t *res) {
  const eplb__ckpt_t *c = &m->c;
  memset(res, 0, sizeof(*res));
  snprintf(res->family, sizeof(res->family), "%s", c->family);
  snprintf(res->pattern, sizeof(res->pattern), "%s", c->pattern);
  res->num_files = c->num_files;
  res->num_layers = c->num_layers;
  res->num_experts = c->num_experts;
  res->num_datasets = c->num_roles;
  res->slots_per_rank = m->P;
  res->first_layer_id = c->layer_ids[0];
  res->last_layer_id = c->layer_ids[c->num_layers - 1];
  res->bytes_per_expert = m->info->row_bytes;
  res->bytes_read = m->bytes_read;
  res->bytes_written = m->bytes_written;
  snprintf(res->dense_layers, sizeof(res->dense_layers), "%s", c->dense);
  snprintf(res->skipped_layers, sizeof(res->skipped_layers), "%s", c->skipped);
  res->shared_tensors = c->shared_tensors;
  res->shared_layers = c->shared_layers;
  res->other_tensors = c->other_tensors;
  res->seconds = eplb__ckpt_now() - t0;
}

int eplb_ckpt_import(const eplb_ckpt_import_opts_t *o,
                     eplb_ckpt_import_result_t *res, eplb_error_t *err) {
  double t0 = eplb__ckpt_now();
  imp_t m;
  memset(&m, 0, sizeof(m));
  m.o = o;
  m.R = o->ranks;
  int rc = check_opts(o, err);
  if (rc == 0)
    rc = eplb__ckpt_scan(o->checkpoint, o->pattern, o->layer_min, o->layer_max,
                         &m.c, err);
  if (rc == 0)
    rc = make_placement(&m, err);
  if (rc == 0)
    rc = make_info(&m, err);
  if (rc == 0)
    rc = prepare_dir(&m, err);
  if (rc == 0)
    rc = setup(&m, err);
  if (rc == 0)
    rc = write_all(&m, err);
  if (rc == 0 && res)
    fill_result(&m, t0, res);
  imp_free(&m);
  return rc;
}
