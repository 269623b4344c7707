/* h5/ckpt_meta.c - the /checkpoint group of a shard: what eplb-shard import
 * records so that export and verify can name every tensor as the
 * checkpoint did (docs/shards.md).
 *
 *   /checkpoint            attributes family, pattern, source (strings),
 *                          num_experts (int32)
 *   /checkpoint/tensors    one string attribute per dataset: its suffix
 *                          ("gate_proj" -> "gate_proj.weight")
 *
 * Strings are variable-length UTF-8, as h5py writes and reads them.  A
 * migration carries the group over (eplb_shard_writer_copy_extras).  A
 * shard without it (eplb-shard create, another writer) gets defaults: the
 * DeepSeek/Qwen pattern, each dataset's name as its suffix. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5/ckpt.h"
#include "h5/h5types.h"
#include "h5/shard_internal.h"

/* Writes string attribute name = v on object o. */
static int put_str(hid_t o, const char *name, const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
  int ok = t >= 0 && sp >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 &&
           H5Tset_cset(t, H5T_CSET_UTF8) >= 0;
  hid_t a = ok ? H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
  ok = a >= 0 && H5Awrite(a, t, &v) >= 0;
  if (a >= 0 && H5Aclose(a) < 0)
    ok = 0;
  if (sp >= 0)
    H5Sclose(sp);
  if (t >= 0)
    H5Tclose(t);
  return ok ? 0 : -1;
}

/* Writes int32 attribute name = v on object o. */
static int put_int(hid_t o, const char *name, int32_t v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a =
      sp >= 0 ? H5Acreate2(o, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT)
              : -1;
  int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT32, &v) >= 0;
  if (a >= 0 && H5Aclose(a) < 0)
    ok = 0;
  if (sp >= 0)
    H5Sclose(sp);
  return ok ? 0 : -1;
}

int eplb__ckpt_meta_write(eplb_shard_writer_t *w, const eplb__ckpt_t *c,
                          const char *source, eplb_error_t *err) {
  hid_t f = eplb__shard_writer_hid(w);
  char abs[PATH_MAX];
  if (realpath(source, abs) == NULL)
    snprintf(abs, sizeof(abs), "%s", source);
  hid_t g = H5Gcreate2(f, "checkpoint", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hid_t t =
      g >= 0 ? H5Gcreate2(g, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
             : -1;
  int rc = t < 0 || put_str(g, "family", c->family) ||
           put_str(g, "pattern", c->pattern) || put_str(g, "source", abs) ||
           put_int(g, "num_experts", c->num_experts);
  for (int32_t r = 0; rc == 0 && r < c->num_roles; r++)
    rc = put_str(t, c->roles[r].name, c->roles[r].suffix);
  if (t >= 0 && H5Gclose(t) < 0)
    rc = 1;
  if (g >= 0 && H5Gclose(g) < 0)
    rc = 1;
  if (rc)
    return eplb_error_set(err, EPLB_EIO,
                          "cannot write the /checkpoint group of a new shard "
                          "(disk full?)");
  return 0;
}

/* Reads string attribute `name` of object o (fixed or variable length,
 * ASCII or UTF-8, one value) into buf.  -1 if it is missing or not one
 * string. */
static int get_str(hid_t o, const char *name, char *buf, size_t cap) {
  return eplb__h5_attr_str(o, name, buf, cap) ? -1 : 0;
}

/* The defaults of a shard without /checkpoint. */
static void defaults(const eplb_shard_info_t *in, eplb__ckpt_meta_t *m) {
  snprintf(m->family, sizeof(m->family), "none");
  snprintf(m->pattern, sizeof(m->pattern), "%s", EPLB_CKPT_PATTERN_DEEPSEEK);
  for (int32_t d = 0; d < in->num_datasets; d++)
    snprintf(m->suffix[d], sizeof(m->suffix[d]), "%s", in->datasets[d].name);
}

/* Reads the group's attributes into m. */
static int read_group(hid_t g, const char *path, const eplb_shard_info_t *in,
                      eplb__ckpt_meta_t *m, eplb_error_t *err) {
  eplb__pattern_t pt;
  if (get_str(g, "pattern", m->pattern, sizeof(m->pattern)) != 0 ||
      eplb__pattern_parse(m->pattern, &pt, err) != 0)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: /checkpoint has no valid 'pattern' attribute "
                          "(e.g. \"%s\")",
                          path, EPLB_CKPT_PATTERN_DEEPSEEK);
  if (get_str(g, "family", m->family, sizeof(m->family)) != 0)
    snprintf(m->family, sizeof(m->family), "pattern");
  if (H5Aexists(g, "num_experts") > 0) {
    hid_t a = H5Aopen(g, "num_experts", H5P_DEFAULT);
    if (a < 0 || H5Aread(a, H5T_NATIVE_INT32, &m->num_experts) < 0)
      m->num_experts = 0;
    if (a >= 0)
      H5Aclose(a);
  }
  hid_t t = H5Lexists(g, "tensors", H5P_DEFAULT) > 0
                ? H5Gopen2(g, "tensors", H5P_DEFAULT)
                : -1;
  int rc = 0;
  for (int32_t d = 0; rc == 0 && d < in->num_datasets; d++)
    if (t < 0 ||
        get_str(t, in->datasets[d].name, m->suffix[d], sizeof(m->suffix[d])) !=
            0 ||
        m->suffix[d][0] == '\0')
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "%s: /checkpoint/tensors has no string attribute "
                          "'%s' (the tensor suffix of dataset '%s')",
                          path, in->datasets[d].name, in->datasets[d].name);
  if (t >= 0)
    H5Gclose(t);
  return rc;
}

int eplb__ckpt_meta_read(eplb_shard_t *sh, eplb__ckpt_meta_t *m,
                         eplb_error_t *err) {
  memset(m, 0, sizeof(*m));
  const eplb_shard_info_t *in = eplb_shard_info(sh);
  hid_t f = eplb__shard_hid(sh);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (H5Lexists(f, "checkpoint", H5P_DEFAULT) <= 0) {
    defaults(in, m);
    return 0;
  }
  hid_t g = H5Gopen2(f, "checkpoint", H5P_DEFAULT);
  if (g < 0)
    return eplb_error_set(err, EPLB_EPARSE, "%s: /checkpoint is not a group",
                          eplb_shard_file(sh));
  m->present = 1;
  int rc = read_group(g, eplb_shard_file(sh), in, m, err);
  H5Gclose(g);
  return rc;
}

int eplb__ckpt_shard_open(const char *dir, int32_t r,
                          const eplb_shard_info_t *ref, eplb_shard_t **out,
                          eplb_error_t *err) {
  char path[4096], why[512];
  *out = NULL;
  int rc = eplb_shard_path(dir, r, path, sizeof(path), err);
  if (rc == 0)
    rc = eplb_shard_open(path, out, err);
  if (rc)
    return eplb_error_prefix(err, "rank %d", (int)r);
  const eplb_shard_info_t *in = eplb_shard_info(*out);
  if (in->rank != r)
    rc = eplb_error_set(err, EPLB_ESTATE,
                        "rank %d: %s says rank %d; shard files must not be "
                        "renamed",
                        (int)r, path, in->rank);
  else if (ref && eplb_shard_info_diff(ref, in, why, sizeof(why)))
    rc = eplb_error_set(err, EPLB_ESHAPE, "rank %d: %s %s", (int)r, path, why);
  if (rc) {
    eplb_shard_close(*out);
    *out = NULL;
  }
  return rc;
}

int eplb__ckpt_dataset_st(const char *path, const eplb_shard_dataset_t *ds,
                          int32_t *st, eplb_error_t *err) {
  hid_t t = H5Tdecode(ds->type_enc);
  *st = t >= 0 ? eplb__h5_st_of_type(t) : -1;
  if (t >= 0)
    H5Tclose(t);
  if (*st < 0)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: dataset '%s' is %s: no safetensors dtype holds "
                          "it byte for byte (little-endian integers, float16, "
                          "bfloat16, float32, float64, float8 only)",
                          path, ds->name, ds->type_name);
  return 0;
}
