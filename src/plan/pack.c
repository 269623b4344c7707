/* pack.c - putting replicas onto GPUs: greedy packing, duplicate repair and
 * the local search that removes what greedy packing leaves.
 *
 * DESIGN.  Greedy longest-processing-time packing (DeepSeek's) is within 4/3
 * of optimal but on real loads leaves a visible gap between the most and
 * least loaded GPU.  Every GPU holds the same number of slots, so the only
 * move that keeps the shape is a swap of two slots.  The local search takes
 * the most loaded GPU g and looks, over every other GPU h, for the swap
 * (a on g, b on h) with 0 < w_a - w_b < load_g - load_h that makes
 * max(load_g', load_h') smallest.  Such a swap lowers the sum of squared
 * loads by 2d(gap - d) > 0, so the search cannot cycle. */
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

int32_t eplb__argmax(const double *load, int32_t G) {
  int32_t best = 0;
  for (int32_t g = 1; g < G; g++)
    if (load[g] > load[best])
      best = g;
  return best;
}

int eplb__pack_greedy(const double *w, const int32_t *order, int32_t n,
                      int32_t bins, int32_t cap, const int32_t *key,
                      int32_t *bin_of, int32_t *rank_of, int32_t *dups,
                      eplb_error_t *err) {
  double *bin_w = calloc((size_t)bins, sizeof(double));
  int32_t *bin_n = calloc((size_t)bins, sizeof(int32_t));
  /* keys held per bin, to avoid duplicates: bins * cap entries */
  int32_t *bin_keys = key ? malloc(sizeof(int32_t) * (size_t)n) : NULL;
  if (bin_w == NULL || bin_n == NULL || (key && bin_keys == NULL)) {
    free(bin_w);
    free(bin_n);
    free(bin_keys);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory packing %d items",
                          (int)n);
  }
  int32_t ndup = 0;
  for (int32_t k = 0; k < n; k++) {
    int32_t i = order[k], best = -1, best_any = -1;
    for (int32_t b = 0; b < bins; b++) {
      if (bin_n[b] >= cap)
        continue;
      if (best_any < 0 || bin_w[b] < bin_w[best_any])
        best_any = b;
      if (key != NULL) {
        int clash = 0;
        for (int32_t j = 0; j < bin_n[b] && !clash; j++)
          clash = bin_keys[b * cap + j] == key[i];
        if (clash)
          continue;
      }
      if (best < 0 || bin_w[b] < bin_w[best])
        best = b;
    }
    if (best < 0) {
      best = best_any;
      ndup++;
    }
    bin_of[i] = best;
    rank_of[i] = bin_n[best];
    if (key != NULL)
      bin_keys[best * cap + bin_n[best]] = key[i];
    bin_n[best]++;
    bin_w[best] += w[i];
  }
  if (dups)
    *dups = ndup;
  free(bin_w);
  free(bin_n);
  free(bin_keys);
  return 0;
}

/* 1 when GPU g holds expert x in a slot other than `skip` (-1: any). */
static int holds(const eplb__layout_t *lay, int32_t g, int32_t x,
                 int32_t skip) {
  const int32_t *row = lay->expert + (size_t)g * (size_t)lay->per;
  for (int32_t j = 0; j < lay->per; j++)
    if (j != skip && row[j] == x)
      return 1;
  return 0;
}

static void swap_slots(eplb__layout_t *lay, int32_t g, int32_t a, int32_t h,
                       int32_t b) {
  size_t ia = (size_t)g * (size_t)lay->per + (size_t)a;
  size_t ib = (size_t)h * (size_t)lay->per + (size_t)b;
  double d = lay->w[ia] - lay->w[ib];
  int32_t te = lay->expert[ia];
  double tw = lay->w[ia];
  lay->expert[ia] = lay->expert[ib];
  lay->w[ia] = lay->w[ib];
  lay->expert[ib] = te;
  lay->w[ib] = tw;
  lay->load[g] -= d;
  lay->load[h] += d;
}

int32_t eplb__repair_duplicates(eplb__layout_t *lay) {
  int32_t G = lay->G, per = lay->per, left = 0;
  for (int32_t g = 0; g < G; g++) {
    for (int32_t a = 0; a < per; a++) {
      int32_t x = lay->expert[(size_t)g * per + a];
      if (!holds(lay, g, x, a))
        continue;
      /* Slot a of GPU g is a second copy of x: find (h, b) to swap with,
       * legal both ways, that changes the loads least. */
      double wa = lay->w[(size_t)g * per + a], best_cost = 0;
      int32_t bh = -1, bb = -1;
      for (int32_t h = 0; h < G; h++) {
        if (h == g || holds(lay, h, x, -1))
          continue;
        for (int32_t b = 0; b < per; b++) {
          int32_t y = lay->expert[(size_t)h * per + b];
          if (holds(lay, g, y, a) || holds(lay, h, y, b))
            continue; /* y would clash on g, or y is itself a dup on h */
          double d = wa - lay->w[(size_t)h * per + b];
          double ng = lay->load[g] - d, nh = lay->load[h] + d;
          double cost = ng > nh ? ng : nh;
          if (bh < 0 || cost < best_cost) {
            best_cost = cost;
            bh = h;
            bb = b;
          }
        }
      }
      if (bh < 0)
        left++;
      else
        swap_slots(lay, g, a, bh, bb);
    }
  }
  return left;
}

void eplb__local_search(eplb__layout_t *lay, int32_t max_iters) {
  int32_t G = lay->G, per = lay->per;
  if (G < 2)
    return;
  for (int32_t it = 0; it < max_iters; it++) {
    int32_t g = eplb__argmax(lay->load, G);
    double lg = lay->load[g];
    const int32_t *ge = lay->expert + (size_t)g * per;
    const double *gw = lay->w + (size_t)g * per;
    double best = lg;
    int32_t bh = -1, ba = -1, bb = -1;
    for (int32_t h = 0; h < G; h++) {
      double gap = lg - lay->load[h];
      if (h == g || gap <= 0)
        continue;
      const int32_t *he = lay->expert + (size_t)h * per;
      const double *hw = lay->w + (size_t)h * per;
      for (int32_t a = 0; a < per; a++) {
        for (int32_t b = 0; b < per; b++) {
          double d = gw[a] - hw[b];
          if (d <= 0 || d >= gap)
            continue;
          double nmax = lg - d > lay->load[h] + d ? lg - d : lay->load[h] + d;
          if (nmax >= best)
            continue;
          /* No duplicates: a's expert must not already be on h (except in
           * slot b, which leaves), nor b's expert on g (except slot a). */
          if (he[b] != ge[a] &&
              (holds(lay, h, ge[a], b) || holds(lay, g, he[b], a)))
            continue;
          best = nmax;
          bh = h;
          ba = a;
          bb = b;
        }
      }
    }
    if (bh < 0)
      return;
    swap_slots(lay, g, ba, bh, bb);
  }
}

double eplb__max_gpu_load(const double *load, int32_t E, const int32_t *phy2log,
                          int32_t S, int32_t G) {
  int32_t *cnt = calloc((size_t)E, sizeof(int32_t));
  if (cnt == NULL)
    return -1.0;
  for (int32_t s = 0; s < S; s++)
    cnt[phy2log[s]]++;
  int32_t per = S / G;
  double worst = 0;
  for (int32_t g = 0; g < G; g++) {
    double sum = 0;
    for (int32_t j = 0; j < per; j++) {
      int32_t e = phy2log[g * per + j];
      sum += load[e] / cnt[e];
    }
    if (g == 0 || sum > worst)
      worst = sum;
  }
  free(cnt);
  return worst;
}
