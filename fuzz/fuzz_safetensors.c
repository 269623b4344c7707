/* fuzz/fuzz_safetensors.c - the one safetensors header parser
 * (formats/safetensors.c) and its two users on any bytes.  The input is a
 * safetensors file:
 *
 *  - parsed from memory (eplb__st_parse) and from the file
 *    (eplb__st_read_header), which must agree; an accepted header must keep
 *    the parser's promises, checked here: every tensor inside the data
 *    section, its size shape x dtype, no two tensors sharing a byte, no
 *    name twice;
 *  - read as a TensorRT-LLM statistics dump (meta_info.json + the bytes as
 *    rank0 and rank1.safetensors), as sums and as a series: a dump read as
 *    a series also reads as sums, its steps add up to them exactly, and
 *    every count is twice its layer's counts in the file (decoded here);
 *  - read as a checkpoint by the import's catalogue stage (eplb__ckpt_scan:
 *    headers, names, roles, where every expert tensor is; no HDF5), once as
 *    the directory's only *.safetensors file and once with a fixed
 *    model.safetensors.index.json naming tensors of the seeds: an accepted
 *    catalogue points at tensors of the header, of one dtype and shape per
 *    role.
 *
 * A refusal is one line, leaves nothing allocated, and a file the parser
 * refuses is refused by both readers. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eplb/eplb.h"
#include "eplb/series.h"
#include "formats/formats.h"
#include "formats/safetensors.h"
#include "fuzz_util.h"
#include "h5/ckpt.h"

/* The index of the second checkpoint directory: names the seeds use
 * (corpus/fuzz_safetensors/ckpt_deepseek.safetensors). */
static const char index_json[] =
    "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {"
    "\"model.layers.1.mlp.experts.0.gate_proj.weight\": \"m.safetensors\", "
    "\"model.layers.1.mlp.experts.1.gate_proj.weight\": \"m.safetensors\", "
    "\"model.layers.1.mlp.experts.0.down_proj.weight\": \"m.safetensors\", "
    "\"model.layers.1.mlp.experts.1.down_proj.weight\": \"m.safetensors\", "
    "\"model.embed_tokens.weight\": \"m.safetensors\"}}";
#define INDEX_TENSORS 5

/* A refusal: a one-line message naming `path`, nothing left. */
static void check_refusal(const char *what, const eplb_error_t *e,
                          const char *path, const void *left) {
  if (left != NULL)
    fuzz_fail("%s: a refusal left something allocated", what);
  if (e->msg[0] == '\0' || strchr(e->msg, '\n') != NULL)
    fuzz_fail("%s: the message is empty or not one line: '%s'", what, e->msg);
  if (path != NULL && strstr(e->msg, path) == NULL)
    fuzz_fail("%s: the message does not name %s: '%s'", what, path, e->msg);
}

static int by_offset(const void *a, const void *b) {
  const eplb__st_tensor_t *x = *(const eplb__st_tensor_t *const *)a;
  const eplb__st_tensor_t *y = *(const eplb__st_tensor_t *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* One tensor of an accepted header: a dtype, a shape, its bytes inside the
 * data section and exactly shape x dtype of them. */
static void check_tensor(const eplb__st_header_t *h, int32_t i) {
  const eplb__st_tensor_t *t = &h->tensors[i];
  int size = eplb__st_dtype_size(t->dtype);
  if (t->name == NULL || size == 0 || t->ndims < 0 ||
      t->ndims > EPLB_ST_MAX_DIMS)
    fuzz_fail("tensor %d: no name, dtype %d or %d dimensions", (int)i,
              (int)t->dtype, (int)t->ndims);
  unsigned __int128 bytes = (unsigned)size;
  for (int32_t d = 0; d < t->ndims; d++) {
    if (t->shape[d] < 0)
      fuzz_fail("tensor \"%s\": dimension %d is %lld", t->name, (int)d,
                (long long)t->shape[d]);
    bytes *= (uint64_t)t->shape[d];
  }
  if (bytes != t->nbytes)
    fuzz_fail("tensor \"%s\": %llu bytes for its shape x dtype, %llu held",
              t->name, (unsigned long long)bytes,
              (unsigned long long)t->nbytes);
  if (t->offset < h->data_start || t->offset > h->file_size ||
      t->nbytes > h->file_size - t->offset)
    fuzz_fail("tensor \"%s\": bytes %llu + %llu outside the data %llu..%llu",
              t->name, (unsigned long long)t->offset,
              (unsigned long long)t->nbytes, (unsigned long long)h->data_start,
              (unsigned long long)h->file_size);
  for (int32_t j = 0; j < i; j++)
    if (strcmp(h->tensors[j].name, t->name) == 0)
      fuzz_fail("tensor \"%s\" is in the header twice", t->name);
}

/* An accepted header keeps every promise of formats/safetensors.h. */
static void check_header(const eplb__st_header_t *h, const uint8_t *data,
                         size_t size) {
  uint64_t n = 0;
  for (int b = 7; b >= 0; b--)
    n = (n << 8) | data[b];
  if (h->file_size != size || h->data_start != 8 + n || h->data_start > size ||
      n > (uint64_t)EPLB_ST_MAX_HEADER || h->num_tensors < 0)
    fuzz_fail("header: file %llu bytes, data from %llu, %d tensors",
              (unsigned long long)h->file_size,
              (unsigned long long)h->data_start, (int)h->num_tensors);
  const eplb__st_tensor_t **s =
      malloc(sizeof(*s) * ((size_t)h->num_tensors + 1));
  if (s == NULL)
    fuzz_fail("out of memory");
  for (int32_t i = 0; i < h->num_tensors; i++) {
    check_tensor(h, i);
    s[i] = &h->tensors[i];
  }
  qsort(s, (size_t)h->num_tensors, sizeof(*s), by_offset);
  uint64_t end = 0; /* of the non-empty tensors so far */
  for (int32_t i = 0; i < h->num_tensors; i++) {
    if (s[i]->nbytes == 0)
      continue;
    if (s[i]->offset < end)
      fuzz_fail("tensor \"%s\" overlaps an earlier one", s[i]->name);
    end = s[i]->offset + s[i]->nbytes;
  }
  free(s);
}

/* The header parsed from the file (pread) equals the one from memory. */
static void check_from_file(const char *path, int rc,
                            const eplb__st_header_t *h, const eplb_error_t *e) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    fuzz_fail("cannot open %s", path);
  eplb__st_header_t g;
  eplb_error_t ge;
  int rg = eplb__st_read_header(path, fd, &g, &ge);
  close(fd);
  if (rg != rc || (rc != 0 && strcmp(ge.msg, e->msg) != 0))
    fuzz_fail("from memory %d (%s), from the file %d (%s)", rc,
              rc ? e->msg : "", rg, rg ? ge.msg : "");
  if (rc == 0 && (g.num_tensors != h->num_tensors ||
                  g.data_start != h->data_start || g.file_size != h->file_size))
    fuzz_fail("from the file: %d tensors, data from %llu", (int)g.num_tensors,
              (unsigned long long)g.data_start);
  for (int32_t i = 0; rc == 0 && i < h->num_tensors; i++) {
    const eplb__st_tensor_t *a = &h->tensors[i], *b = &g.tensors[i];
    if (strcmp(a->name, b->name) != 0 || a->dtype != b->dtype ||
        a->ndims != b->ndims || a->offset != b->offset ||
        a->nbytes != b->nbytes ||
        memcmp(a->shape, b->shape, sizeof(a->shape)) != 0)
      fuzz_fail("tensor %d differs between memory and the file", (int)i);
  }
  if (rg != 0)
    check_refusal("read_header", &ge, path, g.tensors);
  eplb__st_header_free(&g);
}

/* num_experts for meta_info.json: the length of the header's first 1-D
 * tensor (the one shape a dump's tensors may have), else 3. */
static int32_t experts_of(int rc, const eplb__st_header_t *h) {
  for (int32_t i = 0; rc == 0 && i < h->num_tensors; i++)
    if (h->tensors[i].ndims == 1 && h->tensors[i].shape[0] >= 1 &&
        h->tensors[i].shape[0] <= EPLB_MAX_EXPERTS)
      return (int32_t)h->tensors[i].shape[0];
  return 3;
}

/* The counts of tensor t in the file, added to row[0..E) (a dump was
 * accepted, so t is I32 or I64 [E] of counts in 0..2^53). */
static void add_counts(const eplb__st_tensor_t *t, const uint8_t *data,
                       uint64_t *row) {
  int w = eplb__st_dtype_size(t->dtype);
  for (int64_t x = 0; x < t->shape[0]; x++) {
    const uint8_t *p = data + t->offset + (uint64_t)x * (uint64_t)w;
    uint64_t v = 0;
    for (int b = w - 1; b >= 0; b--)
      v = (v << 8) | p[b];
    row[x] += v;
  }
}

/* Accepted sums: each count is twice (two ranks) the sum of its layer's
 * tensors' counts in the file; every tensor's layer is one of the
 * histogram's. */
static void check_dump_sums(const eplb_stats_t *st, const eplb__st_header_t *h,
                            const uint8_t *data) {
  uint64_t *row = malloc(sizeof(*row) * (size_t)st->num_experts);
  if (row == NULL)
    fuzz_fail("out of memory");
  for (int32_t l = 0; l < st->num_layers; l++) {
    if (l > 0 && st->layer_ids[l] <= st->layer_ids[l - 1])
      fuzz_fail("dump: layer ids not increasing at %d", (int)l);
    memset(row, 0, sizeof(*row) * (size_t)st->num_experts);
    for (int32_t i = 0; i < h->num_tensors; i++)
      if (atoi(strchr(h->tensors[i].name, '_') + 1) == st->layer_ids[l])
        add_counts(&h->tensors[i], data, row);
    for (int32_t x = 0; x < st->num_experts; x++) {
      double got = st->load[(size_t)l * (size_t)st->num_experts + x];
      if (got != (double)(2 * row[x]) || 2 * row[x] > (1ULL << 53))
        fuzz_fail("dump: layer %d, expert %d: %.17g, the tensors hold 2 x "
                  "%llu",
                  (int)st->layer_ids[l], (int)x, got,
                  (unsigned long long)row[x]);
    }
  }
  free(row);
  for (int32_t i = 0; i < h->num_tensors; i++) {
    int32_t id = atoi(strchr(h->tensors[i].name, '_') + 1), l = 0;
    while (l < st->num_layers && st->layer_ids[l] != id)
      l++;
    if (l == st->num_layers)
      fuzz_fail("dump: tensor \"%s\" of no layer", h->tensors[i].name);
  }
}

/* An accepted series: its steps add up to the sums exactly. */
static void check_dump_series(const eplb_series_t *se, const eplb_stats_t *st) {
  eplb_stats_t sum;
  eplb_error_t e;
  if (eplb_series_sum(se, 0.0, &sum, &e) != 0)
    fuzz_fail("dump: the series does not sum: %s", e.msg);
  if (sum.num_layers != st->num_layers || sum.num_experts != st->num_experts)
    fuzz_fail("dump: series %dx%d, sums %dx%d", (int)sum.num_layers,
              (int)sum.num_experts, (int)st->num_layers, (int)st->num_experts);
  for (int32_t l = 0; l < st->num_layers; l++)
    if (se->layer_ids[l] != st->layer_ids[l])
      fuzz_fail("dump: layer %d is id %d in the series, %d in the sums",
                (int)l, (int)se->layer_ids[l], (int)st->layer_ids[l]);
  size_t n = (size_t)st->num_layers * (size_t)st->num_experts;
  for (size_t i = 0; i < n; i++)
    if (sum.load[i] != st->load[i])
      fuzz_fail("dump: count %zu: the steps sum to %.17g, the sums hold %.17g",
                i, sum.load[i], st->load[i]);
  eplb_stats_cleanup(&sum);
}

/* The bytes as both ranks of a TensorRT-LLM dump, as sums and as a series. */
static void check_dump(const uint8_t *data, size_t size, int rc,
                       const eplb__st_header_t *h) {
  const char *dir = fuzz_path("trtllm");
  char path[1100], meta[64];
  mkdir(dir, 0755);
  snprintf(meta, sizeof(meta), "{\"num_experts\": %d}", (int)experts_of(rc, h));
  snprintf(path, sizeof(path), "%s/meta_info.json", dir);
  fuzz_write(path, meta, strlen(meta));
  snprintf(path, sizeof(path), "%s/rank1.safetensors", dir);
  fuzz_write(path, data, size);
  eplb_stats_t st;
  eplb_series_t se;
  eplb_error_t e1, e2;
  int rs = eplb_stats_read(&st, dir, EPLB_STATS_TRTLLM, &e1);
  int rz = eplb_series_read(&se, dir, &e2);
  if (rs != 0)
    check_refusal("dump sums", &e1, NULL, st.load);
  if (rz != 0)
    check_refusal("dump series", &e2, NULL, se.load);
  if ((rs == 0 || rz == 0) && rc != 0)
    fuzz_fail("dump read (sums %d, series %d), the header refused", rs, rz);
  if (rz == 0 && rs != 0)
    fuzz_fail("dump read as a series but not as sums: %s", e1.msg);
  if (rs == 0)
    check_dump_sums(&st, h, data);
  if (rz == 0)
    check_dump_series(&se, &st);
  eplb_stats_cleanup(&st);
  eplb_series_cleanup(&se);
}

/* The header tensor at `offset` ("" if none). */
static const char *tensor_at(const eplb__st_header_t *h, uint64_t offset,
                             uint64_t nbytes) {
  for (int32_t i = 0; i < h->num_tensors; i++)
    if (h->tensors[i].offset == offset && h->tensors[i].nbytes == nbytes)
      return h->tensors[i].name;
  return "";
}

/* An accepted catalogue: increasing layers, and every (layer, expert, role)
 * a tensor of the header with its role's size, named by the pattern. */
static void check_catalogue(const eplb__ckpt_t *c, const eplb__st_header_t *h) {
  if (c->num_files != 1 || c->num_layers < 1 || c->num_experts < 1 ||
      c->num_roles < 1 || c->num_tensors > h->num_tensors)
    fuzz_fail("checkpoint: %d files, %d layers, %d experts, %d roles",
              (int)c->num_files, (int)c->num_layers, (int)c->num_experts,
              (int)c->num_roles);
  eplb__pattern_t pt;
  eplb_error_t e;
  if (eplb__pattern_parse(c->pattern, &pt, &e) != 0)
    fuzz_fail("checkpoint: pattern '%s' does not parse", c->pattern);
  size_t k = 0;
  for (int32_t l = 0; l < c->num_layers; l++) {
    if (l > 0 && c->layer_ids[l] <= c->layer_ids[l - 1])
      fuzz_fail("checkpoint: layer ids not increasing at %d", (int)l);
    for (int32_t x = 0; x < c->num_experts; x++)
      for (int32_t r = 0; r < c->num_roles; r++, k++) {
        const eplb__ckpt_ref_t *ref = &c->refs[k];
        char want[512];
        eplb__pattern_name(&pt, c->layer_ids[l], x, c->roles[r].suffix, want,
                           sizeof(want));
        if (ref->file != 0 || ref->nbytes != c->roles[r].nbytes ||
            ref->nbytes == 0 ||
            strcmp(tensor_at(h, ref->offset, ref->nbytes), want) != 0)
          fuzz_fail("checkpoint: layer %d, expert %d, role %s: not tensor "
                    "\"%s\" of the header",
                    (int)c->layer_ids[l], (int)x, c->roles[r].suffix, want);
      }
  }
}

/* The bytes as a checkpoint directory's one file, with `index` or none. */
static void check_ckpt(const char *name, const char *file, const char *index,
                       const uint8_t *data, size_t size, int rc,
                       const eplb__st_header_t *h) {
  const char *dir = fuzz_path(name);
  char path[1100];
  mkdir(dir, 0755);
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  fuzz_write(path, data, size);
  if (index != NULL) {
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    fuzz_write(path, index, strlen(index));
  }
  eplb__ckpt_t c;
  eplb_error_t e;
  int rk = eplb__ckpt_scan(dir, NULL, -1, -1, &c, &e);
  if (rk != 0)
    check_refusal(name, &e, NULL, c.refs);
  else if (rc != 0)
    fuzz_fail("%s: a checkpoint read, its header refused", name);
  else {
    check_catalogue(&c, h);
    if (index != NULL ? c.num_tensors != INDEX_TENSORS
                      : c.num_tensors != h->num_tensors)
      fuzz_fail("%s: %lld tensors counted, %d in the header", name,
                (long long)c.num_tensors, (int)h->num_tensors);
  }
  eplb__ckpt_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* rank0 of the dump is also the file the header is read from. */
  char file[1100];
  mkdir(fuzz_path("trtllm"), 0755);
  snprintf(file, sizeof(file), "%s", fuzz_path("trtllm/rank0.safetensors"));
  fuzz_write(file, data, size);
  eplb__st_header_t h;
  eplb_error_t e;
  int rc = eplb__st_parse(file, data, size, size, &h, &e);
  if (rc == 0)
    check_header(&h, data, size);
  else
    check_refusal("parse", &e, file, h.tensors);
  check_from_file(file, rc, &h, &e);
  check_dump(data, size, rc, &h);
  check_ckpt("ckpt", "model.safetensors", NULL, data, size, rc, &h);
  check_ckpt("ckpt_index", "m.safetensors", index_json, data, size, rc, &h);
  eplb__st_header_free(&h);
  return 0;
}
