/* formats/safetensors.c - the one safetensors header parser (and the
 * layout of new files), see formats/safetensors.h.
 *
 * Written here rather than taken from a library: the format is small, and
 * the files come from other programs, so every number in the header is
 * checked before it is used - the header length against a cap and the
 * file's size, each tensor's data_offsets against the data section,
 * shape x dtype against the bytes the offsets hold (with overflow checks),
 * names for duplicates (JSON parsers keep both copies; a reader that sums
 * or imports tensors must not see one twice) and byte ranges for overlap. */
#include "formats/safetensors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/formats.h"

static const struct {
  const char *name;
  int size;
} dtypes[EPLB_ST_NUM_DTYPES] = {
    {"BOOL", 1},    {"U8", 1},      {"I8", 1},  {"F8_E4M3", 1},
    {"F8_E5M2", 1}, {"F8_E8M0", 1}, {"U16", 2}, {"I16", 2},
    {"F16", 2},     {"BF16", 2},    {"U32", 4}, {"I32", 4},
    {"F32", 4},     {"U64", 8},     {"I64", 8}, {"F64", 8}};

const char *eplb__st_dtype_name(int dtype) {
  return dtype >= 0 && dtype < EPLB_ST_NUM_DTYPES ? dtypes[dtype].name : "?";
}

int eplb__st_dtype_size(int dtype) {
  return dtype >= 0 && dtype < EPLB_ST_NUM_DTYPES ? dtypes[dtype].size : 0;
}

int eplb__st_dtype_from_name(const char *name) {
  for (int i = 0; name && i < EPLB_ST_NUM_DTYPES; i++)
    if (strcmp(name, dtypes[i].name) == 0)
      return i;
  return -1;
}

void eplb__st_header_free(eplb__st_header_t *h) {
  if (h == NULL)
    return;
  for (int32_t i = 0; h->tensors && i < h->num_tensors; i++)
    free(h->tensors[i].name);
  free(h->tensors);
  memset(h, 0, sizeof(*h));
}

/* Reads the little-endian uint64 at p. */
static uint64_t le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

/* "dtype": a known name.  Sets t->dtype. */
static int entry_dtype(const char *path, const cJSON *v, eplb__st_tensor_t *t,
                       eplb_error_t *err) {
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(v, "dtype");
  t->dtype =
      cJSON_IsString(dt) ? eplb__st_dtype_from_name(dt->valuestring) : -1;
  if (t->dtype >= 0)
    return 0;
  if (!cJSON_IsString(dt))
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: tensor \"%.200s\": \"dtype\" is %s; expected a "
                          "string such as \"BF16\"",
                          path, t->name, eplb__json_kind(dt));
  return eplb_error_set(err, EPLB_EPARSE,
                        "%s: tensor \"%.200s\": dtype \"%.40s\" is not one "
                        "eplb carries (BOOL, U8, I8, U16, I16, U32, I32, U64, "
                        "I64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2, "
                        "F8_E8M0)",
                        path, t->name, dt->valuestring);
}

/* "shape": up to EPLB_ST_MAX_DIMS integers >= 0.  Sets t->ndims, t->shape
 * and, in *elems, their product (overflow checked). */
static int entry_shape(const char *path, const cJSON *v, eplb__st_tensor_t *t,
                       int64_t *elems, eplb_error_t *err) {
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(v, "shape");
  int n = cJSON_IsArray(sh) ? cJSON_GetArraySize(sh) : -1;
  if (n < 0 || n > EPLB_ST_MAX_DIMS)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: tensor \"%.200s\": \"shape\" is not an array "
                          "of at most %d integers",
                          path, t->name, EPLB_ST_MAX_DIMS);
  t->ndims = n;
  *elems = 1;
  const cJSON *d = sh->child;
  for (int i = 0; i < n; i++, d = d->next) {
    int64_t x = 0;
    if (eplb__json_int(d, 0, EPLB_ST_MAX_OFFSET, &x) != NULL ||
        (x > 0 && *elems > EPLB_ST_MAX_OFFSET / x))
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: tensor \"%.200s\": shape dimension %d is not "
                            "an integer >= 0, or the shape holds more than "
                            "2^53 elements",
                            path, t->name, i);
    t->shape[i] = x;
    *elems *= x;
  }
  return 0;
}

/* "data_offsets": [begin, end] inside the data section of `data_bytes`,
 * holding exactly elems x the dtype's size.  Sets t->offset, t->nbytes. */
static int entry_offsets(const char *path, const cJSON *v, eplb__st_tensor_t *t,
                         int64_t elems, uint64_t data_start,
                         uint64_t data_bytes, eplb_error_t *err) {
  const cJSON *off = cJSON_GetObjectItemCaseSensitive(v, "data_offsets");
  int64_t b = 0, e = 0;
  if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
      eplb__json_int(off->child, 0, EPLB_ST_MAX_OFFSET, &b) != NULL ||
      eplb__json_int(off->child->next, 0, EPLB_ST_MAX_OFFSET, &e) != NULL ||
      e < b)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: tensor \"%.200s\": data_offsets is not [begin, "
                          "end] of two integers 0 <= begin <= end",
                          path, t->name);
  int size = eplb__st_dtype_size(t->dtype);
  if (elems > EPLB_ST_MAX_OFFSET / size || e - b != elems * size ||
      (uint64_t)e > data_bytes)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: tensor \"%.200s\": data_offsets [%lld, %lld] "
                          "do not hold %lld %s values inside the %llu data "
                          "bytes (truncated or corrupt file?)",
                          path, t->name, (long long)b, (long long)e,
                          (long long)elems, eplb__st_dtype_name(t->dtype),
                          (unsigned long long)data_bytes);
  t->offset = data_start + (uint64_t)b;
  t->nbytes = (uint64_t)(e - b);
  return 0;
}

/* "__metadata__": an object of strings. */
static int check_metadata(const char *path, const cJSON *v, eplb_error_t *err) {
  const cJSON *m;
  int ok = cJSON_IsObject(v);
  cJSON_ArrayForEach(m, v) ok = ok && cJSON_IsString(m);
  if (ok)
    return 0;
  return eplb_error_set(err, EPLB_EPARSE,
                        "%s: \"__metadata__\" is not an object of strings",
                        path);
}

/* One tensor entry of the header. */
static int parse_entry(const char *path, const cJSON *v, eplb__st_header_t *h,
                       eplb_error_t *err) {
  eplb__st_tensor_t *t = &h->tensors[h->num_tensors];
  memset(t, 0, sizeof(*t));
  if ((t->name = strdup(v->string)) == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", path);
  h->num_tensors++; /* owns the name from here on */
  if (!cJSON_IsObject(v))
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: tensor \"%.200s\" is %s; expected an object "
                          "{dtype, shape, data_offsets}",
                          path, t->name, eplb__json_kind(v));
  int64_t elems = 0;
  int rc = entry_dtype(path, v, t, err);
  if (rc == 0)
    rc = entry_shape(path, v, t, &elems, err);
  if (rc == 0)
    rc = entry_offsets(path, v, t, elems, h->data_start,
                       h->file_size - h->data_start, err);
  return rc;
}

static int by_name(const void *a, const void *b) {
  return strcmp((*(const eplb__st_tensor_t *const *)a)->name,
                (*(const eplb__st_tensor_t *const *)b)->name);
}

static int by_offset(const void *a, const void *b) {
  const eplb__st_tensor_t *x = *(const eplb__st_tensor_t *const *)a;
  const eplb__st_tensor_t *y = *(const eplb__st_tensor_t *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* No name twice, no two tensors sharing a byte. */
static int check_unique(const char *path, const eplb__st_header_t *h,
                        eplb_error_t *err) {
  if (h->num_tensors < 2)
    return 0;
  const eplb__st_tensor_t **s = malloc(sizeof(*s) * (size_t)h->num_tensors);
  if (s == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", path);
  for (int32_t i = 0; i < h->num_tensors; i++)
    s[i] = &h->tensors[i];
  int rc = 0;
  qsort(s, (size_t)h->num_tensors, sizeof(*s), by_name);
  for (int32_t i = 1; rc == 0 && i < h->num_tensors; i++)
    if (strcmp(s[i - 1]->name, s[i]->name) == 0)
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "%s: tensor \"%.200s\" appears twice in the header "
                          "(a name must be unique; which copy is meant?)",
                          path, s[i]->name);
  qsort(s, (size_t)h->num_tensors, sizeof(*s), by_offset);
  for (int32_t i = 1, last = 0; rc == 0 && i < h->num_tensors; i++) {
    if (s[i]->nbytes == 0)
      continue;
    if (s[last]->nbytes > 0 && s[i]->offset < s[last]->offset + s[last]->nbytes)
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "%s: tensor \"%.200s\" overlaps tensor \"%.200s\" "
                          "(data_offsets share bytes: corrupt header)",
                          path, s[i]->name, s[last]->name);
    last = i;
  }
  free(s);
  return rc;
}

/* Parses the JSON text of the header (NUL-terminated) into h. */
static int parse_json(const char *path, const char *text, size_t n,
                      eplb__st_header_t *h, eplb_error_t *err) {
  cJSON *root = NULL;
  int rc = eplb__json_parse(path, text, n, &root, err);
  if (rc == 0 && !cJSON_IsObject(root))
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: the safetensors header is %s; expected an object",
                        path, eplb__json_kind(root));
  int count = rc == 0 ? cJSON_GetArraySize(root) : 0;
  if (rc == 0 &&
      (h->tensors = calloc((size_t)count + 1, sizeof(*h->tensors))) == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", path);
  const cJSON *v;
  if (rc == 0)
    cJSON_ArrayForEach(v, root) {
      rc = strcmp(v->string, "__metadata__") == 0
               ? check_metadata(path, v, err)
               : parse_entry(path, v, h, err);
      if (rc)
        break;
    }
  cJSON_Delete(root);
  if (rc == 0)
    rc = check_unique(path, h, err);
  return rc;
}

int eplb__st_parse(const char *path, const unsigned char *head, size_t len,
                   uint64_t file_size, eplb__st_header_t *out,
                   eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  uint64_t n = len >= 8 ? le64(head) : 0;
  if (len < 8 || file_size < 8 || n < 2 || n > file_size - 8 ||
      n > (uint64_t)EPLB_ST_MAX_HEADER)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: not a safetensors file: the header length %llu "
                          "does not fit the %llu-byte file (at most %lld "
                          "bytes of header)",
                          path, (unsigned long long)n,
                          (unsigned long long)file_size,
                          (long long)EPLB_ST_MAX_HEADER);
  if (len < 8 + n)
    return eplb_error_set(err, EPLB_EINTERNAL,
                          "%s: only %zu bytes of the header given", path, len);
  char *text = malloc((size_t)n + 1);
  if (text == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", path);
  memcpy(text, head + 8, (size_t)n);
  text[n] = '\0';
  out->file_size = file_size;
  out->data_start = 8 + n;
  int rc = parse_json(path, text, strlen(text), out, err);
  free(text);
  if (rc)
    eplb__st_header_free(out);
  return rc;
}

/* pread of exactly n bytes at off. */
static int pread_all(int fd, unsigned char *buf, size_t n, uint64_t off) {
  while (n > 0) {
    ssize_t k = pread(fd, buf, n, (off_t)off);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    buf += k;
    n -= (size_t)k;
    off += (uint64_t)k;
  }
  return 0;
}

int eplb__st_read_header(const char *path, int fd, eplb__st_header_t *out,
                         eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  off_t end = lseek(fd, 0, SEEK_END);
  unsigned char len8[8];
  if (end < 0)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot find its size: %s", path,
                          strerror(errno));
  if (end < 8 || pread_all(fd, len8, 8, 0) != 0)
    return eplb__st_parse(path, len8, 0, (uint64_t)end, out, err);
  uint64_t n = le64(len8);
  if (n < 2 || n > (uint64_t)end - 8 || n > (uint64_t)EPLB_ST_MAX_HEADER)
    return eplb__st_parse(path, len8, 8, (uint64_t)end, out, err);
  unsigned char *head = malloc((size_t)n + 8);
  if (head == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", path);
  int rc =
      pread_all(fd, head, (size_t)n + 8, 0)
          ? eplb_error_set(err, EPLB_EIO,
                           "%s: cannot read its %llu-byte header: %s", path,
                           (unsigned long long)n, strerror(errno))
          : eplb__st_parse(path, head, (size_t)n + 8, (uint64_t)end, out, err);
  free(head);
  return rc;
}

/* A JSON number written as an integer (cJSON would print 1e+15). */
static cJSON *raw_int(uint64_t v) {
  char b[32];
  snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
  return cJSON_CreateRaw(b);
}

/* The header object of eplb__st_layout, offsets relative to the data. */
static cJSON *layout_json(const eplb__st_tensor_t *t, int32_t n,
                          const char *const *meta, int32_t num_meta) {
  cJSON *root = cJSON_CreateObject(), *m = cJSON_CreateObject();
  int ok = root && m && cJSON_AddItemToObject(root, "__metadata__", m);
  if (!ok)
    cJSON_Delete(m);
  for (int32_t k = 0; ok && k < num_meta; k++)
    ok = cJSON_AddStringToObject(m, meta[2 * k], meta[2 * k + 1]) != NULL;
  uint64_t rel = 0;
  for (int32_t i = 0; ok && i < n; i++) {
    cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
    cJSON *sh = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
    cJSON *off = e ? cJSON_CreateArray() : NULL;
    ok = sh && off &&
         cJSON_AddStringToObject(e, "dtype", eplb__st_dtype_name(t[i].dtype));
    for (int32_t d = 0; ok && d < t[i].ndims; d++)
      ok = cJSON_AddItemToArray(sh, raw_int((uint64_t)t[i].shape[d]));
    ok = ok && cJSON_AddItemToArray(off, raw_int(rel)) &&
         cJSON_AddItemToArray(off, raw_int(rel + t[i].nbytes)) &&
         cJSON_AddItemToObject(e, "data_offsets", off);
    if (!ok && off && !off->string)
      cJSON_Delete(off);
    rel += t[i].nbytes;
  }
  if (!ok) {
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

int eplb__st_layout(const char *path, eplb__st_tensor_t *t, int32_t n,
                    const char *const *meta, int32_t num_meta,
                    unsigned char **out, size_t *out_len, eplb_error_t *err) {
  *out = NULL;
  cJSON *root = layout_json(t, n, meta, num_meta);
  char *text = root ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  size_t hl = text ? strlen(text) : 0;
  size_t padded = (hl + 7) / 8 * 8;
  unsigned char *buf = text ? malloc(8 + padded) : NULL;
  if (buf == NULL) {
    free(text);
    return eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", path);
  }
  for (int b = 0; b < 8; b++)
    buf[b] = (unsigned char)((uint64_t)padded >> (8 * b));
  memcpy(buf + 8, text, hl);
  memset(buf + 8 + hl, ' ', padded - hl);
  free(text);
  uint64_t pos = 8 + padded;
  for (int32_t i = 0; i < n; i++) {
    t[i].offset = pos;
    pos += t[i].nbytes;
  }
  *out = buf;
  *out_len = 8 + padded;
  return 0;
}
