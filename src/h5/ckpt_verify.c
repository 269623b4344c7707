/* h5/ckpt_verify.c - eplb_ckpt_verify: every slot of every shard holds the
 * checkpoint's bytes of the expert its expert_ids names (eplb/checkpoint.h).
 *
 * The shards say how the checkpoint named their tensors (/checkpoint,
 * /layer_ids); the checkpoint is scanned with that pattern, each dataset
 * matched to the role of the same suffix (same dtype, same shape), and
 * then every row is compared with the tensor's bytes, read with pread in
 * pieces: memory is one row and one piece, after an import or after any
 * number of migrations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5/ckpt.h"
#include "h5/shard_internal.h"

#define PIECE (16u << 20) /* bytes of checkpoint compared at a time */

typedef struct {
  const char *dir, *ckpt;
  eplb__ckpt_t c;
  eplb__ckpt_meta_t meta;
  eplb__pattern_t pt;
  const eplb_shard_info_t *in;           /* rank 0's */
  int32_t role[EPLB_SHARD_MAX_DATASETS]; /* dataset -> role */
  int32_t *row;                          /* shard layer -> checkpoint layer */
  eplb_placement_t p;                    /* the shards' map */
  unsigned char *buf, *piece;
  eplb_ckpt_verify_result_t *res;
} ver_t;

/* Each dataset is a role of the checkpoint: same suffix, dtype, shape. */
static int match_datasets(ver_t *v, eplb_error_t *err) {
  const eplb_shard_info_t *in = v->in;
  for (int32_t d = 0; d < in->num_datasets; d++) {
    const eplb_shard_dataset_t *ds = &in->datasets[d];
    int32_t st = -1, r = 0;
    int rc = eplb__ckpt_dataset_st(v->dir, ds, &st, err);
    if (rc)
      return rc;
    while (r < v->c.num_roles &&
           strcmp(v->c.roles[r].suffix, v->meta.suffix[d]))
      r++;
    if (r == v->c.num_roles)
      return eplb_error_set(err, EPLB_ESHAPE,
                            "dataset '%s' holds tensors named '...%s' but "
                            "the checkpoint %s has no expert tensor so named",
                            ds->name, v->meta.suffix[d], v->ckpt);
    const eplb__ckpt_role_t *ro = &v->c.roles[r];
    int same = ro->dtype == st && ro->ndims == ds->ndims - 1;
    for (int32_t i = 1; same && i < ds->ndims; i++)
      same = ro->shape[i - 1] == ds->dims[i];
    if (!same)
      return eplb_error_set(err, EPLB_ESHAPE,
                            "dataset '%s' is %s with rows of %lld bytes; the "
                            "checkpoint's %s tensors are %s, %llu bytes: "
                            "another checkpoint?",
                            ds->name, ds->type_name, (long long)ds->row_bytes,
                            ro->suffix, eplb__st_dtype_name(ro->dtype),
                            (unsigned long long)ro->nbytes);
    v->role[d] = r;
  }
  return 0;
}

/* Each shard layer is a checkpoint layer (by layer id). */
static int match_layers(ver_t *v, const int32_t *ids, eplb_error_t *err) {
  if ((v->row = malloc(sizeof(int32_t) * (size_t)v->in->num_layers)) == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t l = 0; l < v->in->num_layers; l++) {
    int32_t k = 0;
    while (k < v->c.num_layers && v->c.layer_ids[k] != ids[l])
      k++;
    if (k == v->c.num_layers)
      return eplb_error_set(err, EPLB_ESHAPE,
                            "the shards' layer %d is model layer %d, which has "
                            "no experts in the checkpoint %s",
                            (int)l, (int)ids[l], v->ckpt);
    v->row[l] = k;
  }
  return 0;
}

/* Compares buf (the row) with checkpoint tensor ref, piece by piece.
 * Returns the first differing byte, or -1 if equal (-2 on a read error). */
static int64_t compare(ver_t *v, const eplb__ckpt_ref_t *ref,
                       eplb_error_t *err) {
  const eplb__ckpt_file_t *f = &v->c.files[ref->file];
  for (uint64_t off = 0; off < ref->nbytes; off += PIECE) {
    size_t n = ref->nbytes - off < PIECE ? (size_t)(ref->nbytes - off) : PIECE;
    if (eplb__ckpt_pread(f->fd, f->path, v->piece, n, ref->offset + off, err))
      return -2;
    if (memcmp(v->piece, v->buf + off, n) != 0)
      for (size_t i = 0; i < n; i++)
        if (v->piece[i] != v->buf[off + i])
          return (int64_t)(off + i);
  }
  return -1;
}

/* Row (l, s, d) of shard sh, holding expert e, against the checkpoint. */
static int check_row(ver_t *v, eplb_shard_t *sh, int32_t l, int32_t s,
                     int32_t d, int32_t e, eplb_error_t *err) {
  const eplb__ckpt_t *c = &v->c;
  const eplb__ckpt_ref_t *ref =
      &c->refs[((size_t)v->row[l] * (size_t)c->num_experts + (size_t)e) *
                   (size_t)c->num_roles +
               (size_t)v->role[d]];
  /* The checkpoint's bytes first (the more precise statement), the
   * at-rest checksum after. */
  eplb_shard_set_check(sh, 0);
  int rc = eplb_shard_read_row(sh, l, d, s, v->buf, err);
  int64_t at = rc ? -2 : compare(v, ref, err);
  if (at == -2)
    return rc ? rc : EPLB_EIO;
  v->res->tensors++;
  v->res->bytes += ref->nbytes;
  if (at < 0)
    return eplb__sums_check(eplb_shard_file(sh), eplb_shard_info(sh),
                            eplb_shard_checksums(sh), l, s, d, v->buf, err);
  char name[1024];
  eplb__pattern_name(&v->pt, c->layer_ids[v->row[l]], e,
                     c->roles[v->role[d]].suffix, name, sizeof(name));
  return eplb_error_set(err, EPLB_ECHECKSUM,
                        "rank %d: %s: layer %d (model layer %d) slot %d "
                        "dataset '%s': byte %lld differs from \"%.200s\" in "
                        "%s (expert_ids says expert %d)",
                        (int)eplb_shard_info(sh)->rank, eplb_shard_file(sh),
                        (int)l, (int)c->layer_ids[v->row[l]], (int)s,
                        v->in->datasets[d].name, (long long)at, name,
                        c->files[ref->file].path, (int)e);
}

/* Every row of shard sh (rank r); its ids go into the map. */
static int check_rank(ver_t *v, eplb_shard_t *sh, int32_t r,
                      eplb_error_t *err) {
  const eplb_shard_info_t *in = v->in;
  int32_t P = in->slots_per_rank;
  for (int32_t l = 0; l < in->num_layers; l++) {
    int32_t *ids = v->p.phy2log + (size_t)l * (size_t)v->p.num_slots +
                   (size_t)r * (size_t)P;
    int rc = eplb_shard_read_ids(sh, l, ids, err);
    for (int32_t s = 0; rc == 0 && s < P; s++) {
      if (ids[s] < 0 || ids[s] >= v->c.num_experts)
        return eplb_error_set(err, EPLB_EMAP,
                              "rank %d: %s: layer %d slot %d holds expert %d; "
                              "the checkpoint has experts 0..%d",
                              (int)r, eplb_shard_file(sh), (int)l, (int)s,
                              (int)ids[s], (int)v->c.num_experts - 1);
      for (int32_t d = 0; rc == 0 && d < in->num_datasets; d++)
        rc = check_row(v, sh, l, s, d, ids[s], err);
    }
    if (rc)
      return rc;
  }
  return 0;
}

/* Scans the checkpoint the way the shards say it names its tensors. */
static int prepare(ver_t *v, eplb_shard_t *first, eplb_error_t *err) {
  v->in = eplb_shard_info(first);
  int rc = eplb__ckpt_meta_read(first, &v->meta, err);
  if (rc == 0)
    rc = eplb__pattern_parse(v->meta.pattern, &v->pt, err);
  if (rc == 0)
    rc = eplb__ckpt_scan(v->ckpt, v->meta.pattern, -1, -1, &v->c, err);
  if (rc == 0)
    rc = match_datasets(v, err);
  if (rc == 0)
    rc = match_layers(v, eplb_shard_layer_ids(first), err);
  size_t mx = 1;
  for (int32_t d = 0; d < v->in->num_datasets; d++)
    if ((size_t)v->in->datasets[d].row_bytes > mx)
      mx = (size_t)v->in->datasets[d].row_bytes;
  if (rc == 0 && ((v->buf = malloc(mx)) == NULL ||
                  (v->piece = malloc(mx < PIECE ? mx : PIECE)) == NULL))
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc == 0)
    rc = eplb_placement_init(&v->p, v->in->num_layers, v->c.num_experts,
                             v->in->world_size * v->in->slots_per_rank,
                             v->in->world_size, err);
  return rc;
}

int eplb_ckpt_verify(const char *dir, const char *checkpoint,
                     eplb_ckpt_verify_result_t *res, eplb_error_t *err) {
  eplb_ckpt_verify_result_t tmp;
  double t0 = eplb__ckpt_now();
  ver_t v;
  memset(&v, 0, sizeof(v));
  v.dir = dir;
  v.ckpt = checkpoint;
  v.res = res ? res : &tmp;
  memset(v.res, 0, sizeof(*v.res));
  eplb_shard_t *first = NULL;
  eplb__ckpt_raise_nofile();
  int rc = eplb__ckpt_shard_open(dir, 0, NULL, &first, err);
  if (rc == 0)
    rc = prepare(&v, first, err);
  for (int32_t r = 0; rc == 0 && r < v.in->world_size; r++) {
    eplb_shard_t *sh = first;
    if (r > 0)
      rc = eplb__ckpt_shard_open(dir, r, v.in, &sh, err);
    if (rc == 0)
      rc = check_rank(&v, sh, r, err);
    if (sh != first)
      eplb_shard_close(sh);
  }
  if (rc == 0)
    rc = eplb_placement_check(&v.p, 0, dir, err);
  if (rc == 0) {
    v.res->ranks = v.in->world_size;
    v.res->num_layers = v.in->num_layers;
    v.res->slots_per_rank = v.in->slots_per_rank;
    v.res->num_experts = v.c.num_experts;
  }
  v.res->seconds = eplb__ckpt_now() - t0;
  eplb_placement_cleanup(&v.p);
  free(v.buf);
  free(v.piece);
  free(v.row);
  eplb__ckpt_free(&v.c);
  eplb_shard_close(first);
  return rc;
}
