/* formats/map_write.c - placement writers: the expert map JSON of
 * MindSpeed-RL / vllm-ascend / MindIE / msit, and TensorRT-LLM's
 * moe_load_balancer.yaml.
 *
 * The placement is checked before a byte is written (a serving framework
 * that loads a broken map fails far from its cause), and the file goes
 * through eplb__write_atomic: temporary file, fsync, rename.  The output is a
 * pure function of the placement (no time stamps, no host names), so the
 * same plan always gives the same bytes and maps can be compared with cmp. */
#include <stdio.h>
#include <string.h>

#include "eplb/placement.h"
#include "formats/formats.h"
#include "util/fileio.h"

int eplb_map_format_from_name(const char *name) {
  if (name == NULL)
    return -1;
  if (strcmp(name, "auto") == 0)
    return EPLB_MAP_AUTO;
  if (strcmp(name, "expert-map") == 0)
    return EPLB_MAP_EXPERT_MAP;
  if (strcmp(name, "trtllm-yaml") == 0)
    return EPLB_MAP_TRTLLM_YAML;
  if (strcmp(name, "sglang") == 0)
    return EPLB_MAP_SGLANG;
  if (strcmp(name, "deepseek") == 0)
    return EPLB_MAP_DEEPSEEK;
  return -1;
}

const char *eplb_map_format_name(eplb_map_format_t format) {
  switch (format) {
  case EPLB_MAP_AUTO: return "auto";
  case EPLB_MAP_EXPERT_MAP: return "expert-map";
  case EPLB_MAP_TRTLLM_YAML: return "trtllm-yaml";
  case EPLB_MAP_SGLANG: return "sglang";
  case EPLB_MAP_DEEPSEEK: return "deepseek";
  }
  return "unknown";
}

/* Writes "e, e, ..., e" for `n` slots starting at row.  (Formats by hand:
 * a DeepSeek-V3 map is 16k ids, and fprintf per id was most of a write.) */
static void write_ids(FILE *f, const int32_t *row, int32_t n) {
  char buf[4096];
  size_t len = 0;
  for (int32_t i = 0; i < n; i++) {
    if (len > sizeof(buf) - 16) {
      fwrite(buf, 1, len, f);
      len = 0;
    }
    if (i) {
      buf[len++] = ',';
      buf[len++] = ' ';
    }
    char digits[12];
    int k = 0;
    uint32_t v = (uint32_t)(row[i] < 0 ? -(int64_t)row[i] : row[i]);
    do
      digits[k++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    if (row[i] < 0)
      buf[len++] = '-';
    while (k > 0)
      buf[len++] = digits[--k];
  }
  fwrite(buf, 1, len, f);
}

/* eplb__write_fn: the expert map JSON, one device per line.  layer_id is the
 * MoE layer index (the layer's position in the placement), as vllm-ascend
 * and MindSpeed-RL number their MoE layers. */
static int write_expert_map(FILE *f, const void *ctx, eplb_error_t *err) {
  (void)err;
  const eplb_placement_t *p = ctx;
  int32_t S = p->num_slots, G = p->num_gpus, per = S / G;
  fprintf(f, "{\n  \"moe_layer_count\": %d,\n  \"layer_list\": [\n",
          (int)p->num_layers);
  for (int32_t l = 0; l < p->num_layers; l++) {
    fprintf(f,
            "    {\n      \"layer_id\": %d,\n      \"device_count\": %d,\n"
            "      \"device_list\": [\n",
            (int)l, (int)G);
    for (int32_t g = 0; g < G; g++) {
      fprintf(f, "        {\"device_id\": %d, \"device_expert\": [", (int)g);
      write_ids(f, p->phy2log + (size_t)l * (size_t)S + (size_t)g * (size_t)per,
                per);
      fprintf(f, "]}%s\n", g + 1 < G ? "," : "");
    }
    fprintf(f, "      ]\n    }%s\n", l + 1 < p->num_layers ? "," : "");
  }
  fprintf(f, "  ]\n}\n");
  return 0;
}

/* eplb__write_fn: TensorRT-LLM's moe_load_balancer.yaml; layer keys are the
 * layer ids the statistics named (decoder-layer indices). */
static int write_trtllm_yaml(FILE *f, const void *ctx, eplb_error_t *err) {
  (void)err;
  const eplb_placement_t *p = ctx;
  int32_t S = p->num_slots;
  fprintf(f, "initial_global_assignments:\n");
  for (int32_t l = 0; l < p->num_layers; l++) {
    fprintf(f, "  %d: [", (int)p->layer_ids[l]);
    write_ids(f, p->phy2log + (size_t)l * (size_t)S, S);
    fprintf(f, "]\n");
  }
  fprintf(f, "num_slots: %d\nlayer_updates_per_iter: 0\n", (int)S);
  return 0;
}

/* YAML keys must be distinct, non-negative layer ids. */
static int check_layer_ids(const eplb_placement_t *p, const char *path,
                           eplb_error_t *err) {
  for (int32_t l = 0; l < p->num_layers; l++) {
    if (p->layer_ids[l] < 0)
      return eplb_error_set(err, EPLB_EMAP,
                            "%s: layer %d has the negative id %d; TensorRT-LLM "
                            "keys layers by decoder-layer index",
                            path, (int)l, (int)p->layer_ids[l]);
    for (int32_t k = 0; k < l; k++)
      if (p->layer_ids[k] == p->layer_ids[l])
        return eplb_error_set(err, EPLB_EMAP,
                              "%s: layers %d and %d have the same id %d; "
                              "every layer needs its own key",
                              path, (int)k, (int)l, (int)p->layer_ids[l]);
  }
  return 0;
}

/* Checks that p is a complete, valid placement before writing it. */
static int check_for_write(const eplb_placement_t *p, const char *path,
                           eplb_error_t *err) {
  if (p == NULL || p->phy2log == NULL || p->layer_ids == NULL ||
      p->num_layers < 1 || p->num_experts < 1 || p->num_gpus < 1 ||
      p->num_slots < 1 || p->num_slots % p->num_gpus != 0)
    return eplb_error_set(err, EPLB_EARG,
                          "%s: the placement to write is empty or "
                          "inconsistent (a bug in the caller)",
                          path);
  int rc = eplb_placement_check(p, 0, path, err);
  if (rc)
    eplb_error_prefix(err, "refusing to write an invalid map");
  return rc;
}

eplb_map_format_t eplb_map_format_for_path(const char *path) {
  size_t n = strlen(path);
  if ((n >= 5 && strcmp(path + n - 5, ".yaml") == 0) ||
      (n >= 4 && strcmp(path + n - 4, ".yml") == 0))
    return EPLB_MAP_TRTLLM_YAML;
  return EPLB_MAP_EXPERT_MAP;
}

/* The expert-map JSON's consumers keep one copy of an expert a device
 * holds twice (vllm-ascend: the other slot gets no traffic, so the served
 * balance is not the planned one; its v0.11.0 counts one local expert
 * fewer, and on device 0 every physical id after it shifts). */
static int check_no_duplicates(const eplb_placement_t *p, const char *path,
                               eplb_error_t *err) {
  int32_t l = 0, g = 0, e = 0;
  int64_t n = eplb_placement_duplicates(p, &l, &g, &e);
  if (n < 0)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (n == 0)
    return 0;
  return eplb_error_set(err, EPLB_EMAP,
                        "%s: layer %d (id %d), GPU %d holds expert %d twice "
                        "(%lld such GPUs in all), which vllm-ascend, "
                        "MindSpeed-RL and MindIE drop; plan with the default "
                        "policy (balanced), or allow duplicates "
                        "(--allow-duplicates) for a consumer that accepts "
                        "them",
                        path, (int)l, (int)p->layer_ids[l], (int)g, (int)e,
                        (long long)n);
}

int eplb_placement_write(const eplb_placement_t *p, const char *path,
                         eplb_map_format_t format, eplb_error_t *err) {
  return eplb_placement_write_opts(p, path, format, NULL, err);
}

int eplb_placement_check_writable(const eplb_placement_t *p, const char *path,
                                  eplb_map_format_t format,
                                  const eplb_map_write_opts_t *opts,
                                  eplb_error_t *err) {
  if (path == NULL || path[0] == '\0')
    return eplb_error_set(err, EPLB_EARG, "no output path for the map");
  int rc = check_for_write(p, path, err);
  if (rc)
    return rc;
  if (format == EPLB_MAP_AUTO)
    format = eplb_map_format_for_path(path);
  if (format == EPLB_MAP_EXPERT_MAP && !(opts && opts->allow_duplicates))
    return check_no_duplicates(p, path, err);
  if (format == EPLB_MAP_EXPERT_MAP || format == EPLB_MAP_DEEPSEEK)
    return 0;
  if (format != EPLB_MAP_TRTLLM_YAML && format != EPLB_MAP_SGLANG)
    return eplb_error_set(err, EPLB_EARG, "%s: unknown map format %d", path,
                          (int)format);
  return check_layer_ids(p, path, err);
}

int eplb_placement_write_opts(const eplb_placement_t *p, const char *path,
                              eplb_map_format_t format,
                              const eplb_map_write_opts_t *opts,
                              eplb_error_t *err) {
  int rc = eplb_placement_check_writable(p, path, format, opts, err);
  if (rc)
    return rc;
  if (format == EPLB_MAP_AUTO)
    format = eplb_map_format_for_path(path);
  if (format == EPLB_MAP_EXPERT_MAP)
    return eplb__write_atomic(path, write_expert_map, p, err);
  if (format == EPLB_MAP_DEEPSEEK)
    return eplb__write_atomic(path, eplb__write_deepseek, p, err);
  if (format == EPLB_MAP_SGLANG)
    return eplb__write_atomic(path, eplb__write_sglang, p, err);
  return eplb__write_atomic(path, write_trtllm_yaml, p, err);
}
