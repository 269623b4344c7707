/* fuzz/fuzz_stats.c - the statistics readers on any bytes: MindSpeed-RL
 * and SGLang JSON, as a sum (each format, and auto-detected) and as an
 * SGLang series.  Each is read twice, through the fast scanners
 * (formats/fast.c) and through the full cJSON reader alone, and the two
 * must agree: both refuse with the same code, or both accept with equal
 * histograms (shape, dense rows, layer ids, every count).  Beyond that,
 * ASan and UBSan watch every read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/eplb.h"
#include "eplb/series.h"
#include "formats/formats.h"
#include "fuzz_util.h"

/* The two histograms must be equal. */
static void same_stats(const eplb_stats_t *a, const eplb_stats_t *b,
                       const char *what) {
  if (a->num_layers != b->num_layers || a->num_experts != b->num_experts ||
      a->dense_rows != b->dense_rows)
    fuzz_fail("%s: fast %dx%d (dense %d), full %dx%d (dense %d)", what,
              (int)a->num_layers, (int)a->num_experts, a->dense_rows,
              (int)b->num_layers, (int)b->num_experts, b->dense_rows);
  for (int32_t l = 0; l < a->num_layers; l++)
    if (a->layer_ids[l] != b->layer_ids[l])
      fuzz_fail("%s: layer id %d differs", what, (int)l);
  size_t n = (size_t)a->num_layers * (size_t)a->num_experts;
  for (size_t i = 0; i < n; i++)
    if (!(a->load[i] == b->load[i])) /* -0 and +0 are the same count */
      fuzz_fail("%s: count %zu: fast %.17g, full %.17g", what, i, a->load[i],
                b->load[i]);
}

static void same_series(const eplb_series_t *a, const eplb_series_t *b) {
  if (a->num_steps != b->num_steps || a->num_layers != b->num_layers ||
      a->num_experts != b->num_experts || a->dense_rows != b->dense_rows)
    fuzz_fail("series: fast %dx%dx%d, full %dx%dx%d", (int)a->num_steps,
              (int)a->num_layers, (int)a->num_experts, (int)b->num_steps,
              (int)b->num_layers, (int)b->num_experts);
  size_t n =
      (size_t)a->num_steps * (size_t)a->num_layers * (size_t)a->num_experts;
  for (size_t i = 0; i < n; i++)
    if (!(a->load[i] == b->load[i]))
      fuzz_fail("series: value %zu: fast %.17g, full %.17g", i, a->load[i],
                b->load[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_text(data, size);
  static const eplb_stats_format_t formats[] = {
      EPLB_STATS_AUTO, EPLB_STATS_MINDSPEED, EPLB_STATS_SGLANG};
  for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
    eplb_stats_t a, b;
    eplb_error_t ea, eb;
    int ra =
        eplb__stats_read_text(&a, "fuzz.json", text, size, formats[f], 1, &ea);
    int rb =
        eplb__stats_read_text(&b, "fuzz.json", text, size, formats[f], 0, &eb);
    if (ra != rb)
      fuzz_fail("format %s: fast path %d (%s), full reader %d (%s)",
                eplb_stats_format_name(formats[f]), ra, ea.msg, rb, eb.msg);
    if (ra == 0)
      same_stats(&a, &b, eplb_stats_format_name(formats[f]));
    else if (a.load != NULL || b.load != NULL || ea.msg[0] == '\0')
      fuzz_fail("a failed read left counts or gave no message");
    eplb_stats_cleanup(&a);
    eplb_stats_cleanup(&b);
  }
  eplb_series_t sa, sb;
  eplb_error_t ea, eb;
  int ra = eplb__series_read_json(&sa, "fuzz.json", text, size, 1, &ea);
  int rb = eplb__series_read_json(&sb, "fuzz.json", text, size, 0, &eb);
  if (ra != rb)
    fuzz_fail("series: fast path %d (%s), full reader %d (%s)", ra, ea.msg, rb,
              eb.msg);
  if (ra == 0)
    same_series(&sa, &sb);
  eplb_series_cleanup(&sa);
  eplb_series_cleanup(&sb);
  free(text);
  return 0;
}
