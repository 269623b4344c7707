/* formats/map_read.c - placement readers: the expert map JSON (MindSpeed-RL,
 * vllm-ascend, MindIE, msit) and, through formats/trtllm_yaml.c,
 * TensorRT-LLM's moe_load_balancer.yaml.
 *
 * A map read here says where the experts are now (`--current-map`), so a
 * wrong map must never be taken for a right one: every device must hold the
 * same number of slots, every layer the same devices, every id must be an
 * integer, and the result passes eplb_placement_check.  Errors name the file
 * and the JSON path (layer_list[3].device_list[2].device_expert[5]). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/placement.h"
#include "eplb/stats.h"
#include "formats/formats.h"
#include "util/fileio.h"

typedef struct {
  const char *path;
  int32_t L, G, per; /* layers, devices, slots per device */
  int32_t max_id;    /* largest expert id seen */
} em_ctx_t;

/* Reads obj[key] as an integer in min..max; `at` names obj in messages. */
static int em_int(const em_ctx_t *c, const cJSON *obj, const char *at,
                  const char *key, int64_t min, int64_t max, int32_t *out,
                  eplb_error_t *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (v == NULL)
    return eplb_error_set(err, EPLB_EPARSE, "%s: %s has no \"%s\"", c->path, at,
                          key);
  int64_t x = 0;
  const char *why = eplb__json_int(v, min, max, &x);
  if (why != NULL)
    return eplb_error_set(
        err, EPLB_EPARSE, "%s: %s.%s %s; expected an integer %lld..%lld",
        c->path, at, key, why, (long long)min, (long long)max);
  *out = (int32_t)x;
  return 0;
}

/* obj[key] as an array (NULL and an error if it is not one). */
static const cJSON *em_array(const em_ctx_t *c, const cJSON *obj,
                             const char *at, const char *key,
                             eplb_error_t *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (cJSON_IsArray(v))
    return v;
  eplb_error_set(err, EPLB_EPARSE, "%s: %s.%s is %s; expected an array",
                 c->path, at, key, eplb__json_kind(v));
  return NULL;
}

/* The shape, from moe_layer_count and the first device of the first layer.
 * *list receives layer_list. */
static int em_shape(em_ctx_t *c, const cJSON *root, const cJSON **list,
                    eplb_error_t *err) {
  if (!cJSON_IsObject(root))
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: the top level is %s; expected an expert map "
                          "{\"moe_layer_count\": L, \"layer_list\": [...]}",
                          c->path, eplb__json_kind(root));
  int rc = em_int(c, root, "the map", "moe_layer_count", 1, EPLB_MAX_LAYERS,
                  &c->L, err);
  if (rc || (*list = em_array(c, root, "the map", "layer_list", err)) == NULL)
    return rc ? rc : EPLB_EPARSE;
  int n = cJSON_GetArraySize(*list);
  if (n != c->L)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: moe_layer_count is %d but layer_list holds %d "
                          "layers",
                          c->path, (int)c->L, n);
  const cJSON *l0 = (*list)->child, *devs;
  if (!cJSON_IsObject(l0))
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: layer_list[0] is %s; expected an object",
                          c->path, eplb__json_kind(l0));
  rc = em_int(c, l0, "layer_list[0]", "device_count", EPLB_MIN_GPUS,
              EPLB_MAX_GPUS, &c->G, err);
  if (rc ||
      (devs = em_array(c, l0, "layer_list[0]", "device_list", err)) == NULL)
    return rc ? rc : EPLB_EPARSE;
  const cJSON *ids =
      cJSON_IsObject(devs->child)
          ? cJSON_GetObjectItemCaseSensitive(devs->child, "device_expert")
          : NULL;
  c->per = cJSON_IsArray(ids) ? cJSON_GetArraySize(ids) : 0;
  if (c->per < 1)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: layer_list[0].device_list[0] has no non-empty "
                          "\"device_expert\" array",
                          c->path);
  if ((int64_t)c->G * c->per > EPLB_MAX_SLOTS)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: %d devices x %d slots is more than the %d slots "
                          "per layer eplb supports",
                          c->path, (int)c->G, (int)c->per, EPLB_MAX_SLOTS);
  return 0;
}

/* Reads one device's slot list into dst[per]. */
static int em_slots(em_ctx_t *c, const cJSON *ids, const char *at, int32_t *dst,
                    eplb_error_t *err) {
  if (cJSON_GetArraySize(ids) != c->per)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: %s.device_expert holds %d experts but "
                          "layer_list[0].device_list[0] holds %d; every device "
                          "needs the same number of slots",
                          c->path, at, cJSON_GetArraySize(ids), (int)c->per);
  int32_t i = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, ids) {
    int64_t e = 0;
    const char *why = eplb__json_int(v, 0, EPLB_MAX_EXPERTS - 1, &e);
    if (why != NULL)
      return eplb_error_set(err, cJSON_IsNumber(v) ? EPLB_EMAP : EPLB_EPARSE,
                            "%s: %s.device_expert[%d] %s; expected an expert "
                            "id 0..%d",
                            c->path, at, (int)i, why, EPLB_MAX_EXPERTS - 1);
    if (e > c->max_id)
      c->max_id = (int32_t)e;
    dst[i++] = (int32_t)e;
  }
  return 0;
}

/* Reads the devices of layer l (`devs`) into row l of p; seen[G] scratch. */
static int em_devices(em_ctx_t *c, eplb_placement_t *p, int32_t l,
                      const cJSON *devs, unsigned char *seen,
                      eplb_error_t *err) {
  memset(seen, 0, (size_t)c->G);
  int32_t i = 0;
  const cJSON *d;
  cJSON_ArrayForEach(d, devs) {
    char at[96];
    snprintf(at, sizeof(at), "layer_list[%d].device_list[%d]", (int)l,
             (int)i++);
    if (!cJSON_IsObject(d))
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: %s is %s; expected an "
                            "object",
                            c->path, at, eplb__json_kind(d));
    int32_t g = 0;
    const cJSON *ids;
    int rc = em_int(c, d, at, "device_id", 0, c->G - 1, &g, err);
    if (rc == 0 && seen[g])
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "%s: %s: device_id %d appears "
                          "twice in this layer",
                          c->path, at, (int)g);
    if (rc || (ids = em_array(c, d, at, "device_expert", err)) == NULL)
      return rc ? rc : EPLB_EPARSE;
    seen[g] = 1;
    rc = em_slots(c, ids, at,
                  p->phy2log + (size_t)l * (size_t)p->num_slots +
                      (size_t)g * (size_t)c->per,
                  err);
    if (rc)
      return rc;
  }
  return 0;
}

/* Reads layer_list[l] into row l of p. */
static int em_layer(em_ctx_t *c, eplb_placement_t *p, int32_t l,
                    const cJSON *layer, unsigned char *seen,
                    eplb_error_t *err) {
  char at[48];
  snprintf(at, sizeof(at), "layer_list[%d]", (int)l);
  if (!cJSON_IsObject(layer))
    return eplb_error_set(err, EPLB_EPARSE, "%s: %s is %s; expected an object",
                          c->path, at, eplb__json_kind(layer));
  int32_t G = 0;
  const cJSON *devs;
  int rc =
      em_int(c, layer, at, "layer_id", 0, INT32_MAX, &p->layer_ids[l], err);
  if (rc == 0)
    rc = em_int(c, layer, at, "device_count", EPLB_MIN_GPUS, EPLB_MAX_GPUS, &G,
                err);
  if (rc == 0 && G != c->G)
    rc = eplb_error_set(err, EPLB_ESHAPE,
                        "%s: %s.device_count is %d but "
                        "layer_list[0] has %d; every layer must use the same "
                        "devices",
                        c->path, at, (int)G, (int)c->G);
  if (rc || (devs = em_array(c, layer, at, "device_list", err)) == NULL)
    return rc ? rc : EPLB_EPARSE;
  if (cJSON_GetArraySize(devs) != G)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: %s.device_list holds %d "
                          "devices but device_count is %d",
                          c->path, at, cJSON_GetArraySize(devs), (int)G);
  return em_devices(c, p, l, devs, seen, err);
}

/* Layer ids must be distinct. */
static int em_unique_ids(const em_ctx_t *c, const eplb_placement_t *p,
                         eplb_error_t *err) {
  for (int32_t l = 1; l < p->num_layers; l++)
    for (int32_t k = 0; k < l; k++)
      if (p->layer_ids[k] == p->layer_ids[l])
        return eplb_error_set(err, EPLB_EPARSE,
                              "%s: layer_list[%d] and layer_list[%d] both have "
                              "layer_id %d; each layer must appear once",
                              c->path, (int)k, (int)l, (int)p->layer_ids[l]);
  return 0;
}

/* The expert-map JSON reader: `text` (len bytes, NUL-terminated) is the
 * content of `path`; *out must be empty and stays empty on failure. */
static int map_read_json(eplb_placement_t *out, const char *path,
                         const char *text, size_t len, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  em_ctx_t c = {.path = path, .max_id = -1};
  cJSON *root = NULL;
  const cJSON *list = NULL;
  unsigned char *seen = NULL;
  int rc = eplb__json_parse_bounded(path, text, len, &root, err);
  if (rc == 0)
    rc = eplb__json_unique_keys(path, root, err);
  if (rc == 0)
    rc = em_shape(&c, root, &list, err);
  /* E is known only at the end: allocate for the largest, then narrow. */
  if (rc == 0)
    rc = eplb_placement_init(out, c.L, EPLB_MAX_EXPERTS, c.G * c.per, c.G, err);
  if (rc)
    goto done;
  if ((seen = malloc((size_t)c.G)) == NULL) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  int32_t l = 0;
  const cJSON *layer;
  cJSON_ArrayForEach(layer, list) {
    if ((rc = em_layer(&c, out, l++, layer, seen, err)) != 0)
      goto done;
  }
  out->num_experts = c.max_id + 1;
  rc = em_unique_ids(&c, out, err);
  if (rc == 0)
    rc = eplb_placement_check(out, 0, path, err);
done:
  free(seen);
  cJSON_Delete(root);
  if (rc)
    eplb_placement_cleanup(out);
  return rc;
}

int eplb__placement_read_text(eplb_placement_t *out, const char *path,
                              const char *text, size_t len,
                              eplb_map_format_t format, int use_fast,
                              eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  if (format == EPLB_MAP_AUTO) {
    /* JSON starts with '{' (or '[', which the JSON reader rejects with a
     * clear message); anything else is taken for YAML. */
    const char *p = text;
    while (isspace((unsigned char)*p))
      p++;
    format =
        (*p == '{' || *p == '[') ? EPLB_MAP_EXPERT_MAP : EPLB_MAP_TRTLLM_YAML;
    if (format == EPLB_MAP_EXPERT_MAP &&
        (strstr(p, "\"physical_to_logical_map\"") != NULL ||
         strstr(p, "\"phy2log\"") != NULL))
      format = EPLB_MAP_SGLANG;
  }
  /* Well-formed JSON maps take the fast scanners (map_fast.c); anything
   * they do not accept goes to the full readers, which give every error. */
  if (format == EPLB_MAP_EXPERT_MAP)
    return use_fast && eplb__expert_map_fast(out, text, len)
               ? 0
               : map_read_json(out, path, text, len, err);
  /* The YAML reader stops at a NUL: a file cut short there must not
   * read as a shorter map. */
  if (format == EPLB_MAP_TRTLLM_YAML && strlen(text) != len)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: a NUL byte at offset %zu: this is not a YAML "
                          "text file",
                          path, strlen(text));
  if (format == EPLB_MAP_TRTLLM_YAML)
    return eplb__map_read_yaml(out, path, text, err);
  if (format == EPLB_MAP_SGLANG || format == EPLB_MAP_DEEPSEEK)
    return use_fast && eplb__phy2log_fast(out, text, len)
               ? 0
               : eplb__map_read_phy2log(out, path, text, len, err);
  return eplb_error_set(err, EPLB_EARG, "%s: unknown map format %d", path,
                        (int)format);
}

int eplb_placement_read(eplb_placement_t *out, const char *path,
                        eplb_map_format_t format, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  char *text = NULL;
  size_t len = 0;
  int rc = eplb__read_file(path, &text, &len, err);
  if (rc == 0)
    rc = eplb__placement_read_text(out, path, text, len, format, 1, err);
  free(text);
  return rc;
}

/* A map with a row per hidden layer (more rows than the statistics, every
 * statistics layer id a row of it): keep the statistics' rows. */
static int select_rows(eplb_placement_t *p, const int32_t *ids, int32_t n,
                       eplb_error_t *err) {
  if (p->num_layers <= n || n < 1)
    return 0;
  for (int32_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= p->num_layers)
      return 0;
  size_t S = (size_t)p->num_slots;
  int32_t *rows = malloc(sizeof(int32_t) * S * (size_t)n);
  if (rows == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t i = 0; i < n; i++) {
    memcpy(rows + (size_t)i * S, p->phy2log + (size_t)ids[i] * S,
           sizeof(int32_t) * S);
    p->layer_ids[i] = ids[i];
  }
  free(p->phy2log);
  p->phy2log = rows;
  p->num_layers = n;
  return 0;
}

int eplb_placement_read_for(eplb_placement_t *out, const char *path,
                            const eplb_stats_t *stats, int32_t num_slots,
                            int32_t num_gpus, const char *what,
                            eplb_error_t *err) {
  int rc = eplb_placement_read(out, path, EPLB_MAP_AUTO, err);
  if (rc)
    return rc;
  int32_t G = num_gpus;
  rc = select_rows(out, stats->layer_ids, stats->num_layers, err);
  if (out->num_gpus == 1 && G > 1 && out->num_slots % G == 0)
    out->num_gpus = G; /* the file does not say G: regroup */
  char opts[96] = "";
  if (num_slots > 0)
    snprintf(opts, sizeof(opts), " and the options say %d slots on %d GPUs",
             (int)num_slots, (int)G);
  else if (G > 0)
    snprintf(opts, sizeof(opts), " and --num-gpus is %d", (int)G);
  if (rc == 0 && (out->num_layers != stats->num_layers ||
                  out->num_experts > stats->num_experts ||
                  (num_slots > 0 && out->num_slots != num_slots) ||
                  (G > 0 && out->num_gpus != G)))
    rc = eplb_error_set(err, EPLB_ESHAPE,
                        "%s %s holds %d layers x %d slots on %d GPUs (experts "
                        "0..%d) but the statistics have %d (MoE) layers x %d "
                        "experts%s; pass the map of this model",
                        what, path, (int)out->num_layers, (int)out->num_slots,
                        (int)out->num_gpus, (int)out->num_experts - 1,
                        (int)stats->num_layers, (int)stats->num_experts, opts);
  if (rc == 0) {
    memcpy(out->layer_ids, stats->layer_ids,
           sizeof(int32_t) * (size_t)stats->num_layers);
    out->num_experts = stats->num_experts;
    rc = eplb_placement_check(out, 0, path, err);
  }
  if (rc)
    eplb_placement_cleanup(out);
  return rc;
}

int eplb_placement_read_for_mtp(eplb_placement_t *out, const char *path,
                                const eplb_stats_t *stats, int32_t num_slots,
                                int32_t num_gpus, int32_t mtp_layers,
                                const char *what, eplb_error_t *err) {
  if (mtp_layers <= 0)
    return eplb_placement_read_for(out, path, stats, num_slots, num_gpus, what,
                                   err);
  /* The statistics' layers and the MTP layers' ids after them, as
   * eplb_placement_append_layers numbers them. */
  eplb_stats_t ext;
  int32_t L = stats->num_layers, n = mtp_layers;
  int rc = eplb_stats_init(&ext, L + n, stats->num_experts, err);
  if (rc)
    return rc;
  memcpy(ext.layer_ids, stats->layer_ids, sizeof(int32_t) * (size_t)L);
  for (int32_t i = 0; i < n; i++)
    ext.layer_ids[L + i] = stats->layer_ids[L - 1] + 1 + i;
  rc = eplb_placement_read_for(out, path, &ext, num_slots, num_gpus, what, err);
  eplb_stats_cleanup(&ext);
  if (rc)
    return eplb_error_prefix(err, "with %d MTP layer%s after layer %d", (int)n,
                             n > 1 ? "s" : "", (int)stats->layer_ids[L - 1]);
  rc = eplb_placement_drop_last_layers(out, n, err);
  if (rc)
    eplb_placement_cleanup(out);
  return rc;
}
