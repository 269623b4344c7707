/* fuzz/fuzz_map.c - the placement readers on any bytes: the expert map
 * JSON, TensorRT-LLM's YAML, SGLang's physical_to_logical_map and
 * DeepSeek's phy2log, each forced and auto-detected.  Each is read twice,
 * through the fast scanners (formats/map_fast.c) and through the full
 * readers alone, and the two must agree: the same code and message, or
 * the same placement; a scanner that accepts the bytes must give exactly
 * the full reader's placement.  A map a reader accepts must be a valid
 * placement (eplb_placement_check) and must come back unchanged through
 * the writer of its format (the files live in a private temporary
 * directory). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/eplb.h"
#include "formats/formats.h"
#include "fuzz_util.h"

/* Which writer gives back what reader `format` read: for AUTO, the reader
 * eplb__placement_read_text picks from the content (the same rule). */
static eplb_map_format_t writer_for(const char *text,
                                    eplb_map_format_t format) {
  if (format != EPLB_MAP_AUTO)
    return format;
  const char *p = text;
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' ||
         *p == '\f')
    p++;
  if (*p != '{' && *p != '[')
    return EPLB_MAP_TRTLLM_YAML;
  return strstr(p, "\"physical_to_logical_map\"") != NULL ||
                 strstr(p, "\"phy2log\"") != NULL
             ? EPLB_MAP_SGLANG
             : EPLB_MAP_EXPERT_MAP;
}

/* p written in format `w` and read back must hold the same slots. */
static void round_trip(const eplb_placement_t *p, eplb_map_format_t w,
                       const char *text) {
  /* A DeepSeek map is read by the phy2log reader (format SGLANG when
   * forced): write it back as DeepSeek when that is what it was. */
  if (w == EPLB_MAP_SGLANG &&
      strstr(text, "\"physical_to_logical_map\"") == NULL)
    w = EPLB_MAP_DEEPSEEK;
  const char *path =
      fuzz_path(w == EPLB_MAP_TRTLLM_YAML ? "rt.yaml" : "rt.json");
  eplb_error_t err;
  /* The expert-map writer refuses a GPU holding an expert twice unless
   * asked (its consumers drop a copy): that refusal, and only it. */
  int32_t dl = -1, dg = -1;
  int64_t dups = eplb_placement_duplicates(p, &dl, &dg, NULL);
  if (w == EPLB_MAP_EXPERT_MAP && eplb_placement_write(p, path, w, &err) != 0 &&
      (dups == 0 || err.code != EPLB_EMAP))
    fuzz_fail("a map read as %s without duplicates cannot be written back: %s",
              eplb_map_format_name(w), err.msg);
  eplb_map_write_opts_t opts = {.allow_duplicates = 1};
  if (eplb_placement_write_opts(p, path, w, &opts, &err) != 0)
    fuzz_fail("a map read as %s cannot be written back: %s",
              eplb_map_format_name(w), err.msg);
  eplb_placement_t q;
  if (eplb_placement_read(&q, path, w, &err) != 0)
    fuzz_fail("a map written as %s does not read back: %s",
              eplb_map_format_name(w), err.msg);
  size_t n = (size_t)p->num_layers * (size_t)p->num_slots;
  if (q.num_layers != p->num_layers || q.num_slots != p->num_slots ||
      q.num_gpus != p->num_gpus ||
      memcmp(q.phy2log, p->phy2log, sizeof(int32_t) * n) != 0)
    fuzz_fail("a map written as %s reads back different",
              eplb_map_format_name(w));
  eplb_placement_cleanup(&q);
}

/* The two placements must be the same, byte for byte. */
static void same_placement(const eplb_placement_t *a, const eplb_placement_t *b,
                           const char *what) {
  if (a->num_layers != b->num_layers || a->num_experts != b->num_experts ||
      a->num_slots != b->num_slots || a->num_gpus != b->num_gpus)
    fuzz_fail("%s: fast %dx%d (E %d, G %d), full %dx%d (E %d, G %d)", what,
              (int)a->num_layers, (int)a->num_slots, (int)a->num_experts,
              (int)a->num_gpus, (int)b->num_layers, (int)b->num_slots,
              (int)b->num_experts, (int)b->num_gpus);
  size_t n = (size_t)a->num_layers * (size_t)a->num_slots;
  if (memcmp(a->layer_ids, b->layer_ids,
             sizeof(int32_t) * (size_t)a->num_layers) != 0 ||
      memcmp(a->phy2log, b->phy2log, sizeof(int32_t) * n) != 0)
    fuzz_fail("%s: the fast and full readers give different slots", what);
}

/* A scanner that accepts the bytes agrees with the full reader of its
 * format (forced, so whatever AUTO would pick). */
static void scanner_vs_full(const char *text, size_t size,
                            int (*scan)(eplb_placement_t *, const char *,
                                        size_t),
                            eplb_map_format_t format) {
  eplb_placement_t a, b;
  eplb_error_t err;
  if (!scan(&a, text, size)) {
    if (a.phy2log != NULL)
      fuzz_fail("a scanner that declined left a map");
    return;
  }
  if (eplb__placement_read_text(&b, "fuzz.map", text, size, format, 0, &err))
    fuzz_fail("a %s scanner accepted what the full reader refuses: %s",
              eplb_map_format_name(format), err.msg);
  same_placement(&a, &b, eplb_map_format_name(format));
  eplb_placement_cleanup(&a);
  eplb_placement_cleanup(&b);
}

/* Reading through the fast path and with the full reader alone agree. */
static void fast_vs_full(const char *text, size_t size,
                         eplb_map_format_t format) {
  eplb_placement_t a, b;
  eplb_error_t ea, eb;
  eplb_error_clear(&ea);
  eplb_error_clear(&eb);
  int ra =
      eplb__placement_read_text(&a, "fuzz.map", text, size, format, 1, &ea);
  int rb =
      eplb__placement_read_text(&b, "fuzz.map", text, size, format, 0, &eb);
  if (ra != rb || (ra != 0 && strcmp(ea.msg, eb.msg) != 0))
    fuzz_fail("format %s: fast path %d (%s), full reader %d (%s)",
              eplb_map_format_name(format), ra, ea.msg, rb, eb.msg);
  if (ra == 0)
    same_placement(&a, &b, eplb_map_format_name(format));
  eplb_placement_cleanup(&a);
  eplb_placement_cleanup(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_text(data, size);
  static const eplb_map_format_t formats[] = {
      EPLB_MAP_AUTO, EPLB_MAP_EXPERT_MAP, EPLB_MAP_TRTLLM_YAML,
      EPLB_MAP_SGLANG};
  scanner_vs_full(text, size, eplb__expert_map_fast, EPLB_MAP_EXPERT_MAP);
  scanner_vs_full(text, size, eplb__phy2log_fast, EPLB_MAP_SGLANG);
  for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
    fast_vs_full(text, size, formats[f]);
    eplb_placement_t p;
    eplb_error_t err;
    eplb_error_clear(&err);
    int rc = eplb__placement_read_text(&p, "fuzz.map", text, size, formats[f],
                                       1, &err);
    if (rc != 0) {
      if (p.phy2log != NULL || err.msg[0] == '\0' || strchr(err.msg, '\n'))
        fuzz_fail("a failed read left a map or gave no one-line message");
      continue;
    }
    if (eplb_placement_check(&p, 0, "fuzz.map", &err) != 0)
      fuzz_fail("a map read as %s is not valid: %s",
                eplb_map_format_name(formats[f]), err.msg);
    round_trip(&p, writer_for(text, formats[f]), text);
    eplb_placement_cleanup(&p);
  }
  free(text);
  return 0;
}
