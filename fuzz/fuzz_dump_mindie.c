/* fuzz/fuzz_dump_mindie.c - MindIE dump directories from any bytes: the
 * input is split into the dump's files (fuzz_write_sections: "@@
 * model_gen_config.json\n{...}\n@@ decode_0.csv\n1,2\n..."), which are read
 * as one window (eplb_stats_read) and as a series (eplb_series_read).  A
 * dump read as a series must also read as a window, and the steps must add
 * up to it exactly (the blocks are cumulative). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eplb/eplb.h"
#include "eplb/series.h"
#include "fuzz_util.h"

/* The files a MindIE dump may hold (and a few it must not be fooled by). */
static const char *const names[] = {"model_gen_config.json",
                                    "decode_0.csv",
                                    "decode_1.csv",
                                    "prefill_0.csv",
                                    "decode_01.csv",
                                    "map.json",
                                    "prefill/prefill_0.csv",
                                    "prefill/prefill_1.csv",
                                    "decode/decode_1.csv",
                                    "decode/decode_2.csv",
                                    NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *dir = fuzz_path("mindie");
  mkdir(dir, 0755);
  fuzz_write_sections(dir, data, size, names);
  eplb_stats_t st;
  eplb_series_t se;
  eplb_error_t e1, e2;
  int rs = eplb_stats_read(&st, dir, EPLB_STATS_MINDIE, &e1);
  int rz = eplb_series_read(&se, dir, &e2);
  if (rs != 0 && (st.load != NULL || e1.msg[0] == '\0'))
    fuzz_fail("a failed read left counts or gave no message");
  if (rz == 0) {
    if (rs != 0)
      fuzz_fail("read as a series but not as a window: %s", e1.msg);
    eplb_stats_t sum;
    eplb_error_t e3;
    if (eplb_series_sum(&se, 0.0, &sum, &e3) != 0)
      fuzz_fail("the series does not sum: %s", e3.msg);
    size_t n = (size_t)st.num_layers * (size_t)st.num_experts;
    if (sum.num_layers != st.num_layers || sum.num_experts != st.num_experts)
      fuzz_fail("series %dx%d, window %dx%d", (int)sum.num_layers,
                (int)sum.num_experts, (int)st.num_layers, (int)st.num_experts);
    for (size_t i = 0; i < n; i++)
      if (sum.load[i] != st.load[i])
        fuzz_fail("count %zu: the steps sum to %.17g, the window holds %.17g",
                  i, sum.load[i], st.load[i]);
    eplb_stats_cleanup(&sum);
  }
  eplb_stats_cleanup(&st);
  eplb_series_cleanup(&se);
  return 0;
}
