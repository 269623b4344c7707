/* plan/local_search.c - what greedy packing leaves, removed: duplicate
 * repair and the slot-swap local search.
 *
 * DESIGN.  Greedy longest-processing-time packing (DeepSeek's) is within 4/3
 * of optimal but on real loads leaves a visible gap between the most and
 * least loaded GPU.  Every GPU holds the same number of slots, so the only
 * move that keeps the shape is a swap of two slots.  The local search takes
 * the most loaded GPU g and looks, over every other GPU h, for the swap
 * (a on g, b on h) with 0 < w_a - w_b < load_g - load_h that makes
 * max(load_g', load_h') smallest.  Such a swap lowers the sum of squared
 * loads by 2d(gap - d) > 0, so the search cannot cycle. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "plan/internal.h"

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

/* 1 when some GPU holds an expert twice: one pass with a stamp per
 * expert, instead of the pairwise scan of the repair (which then finds
 * nothing to do: packing avoids duplicates whenever it can).  2 when out
 * of memory (the caller then takes the full scan). */
static int has_duplicates(const eplb__layout_t *lay, eplb__arena_t *ar) {
  int32_t S = lay->G * lay->per, emax = 0;
  for (int32_t s = 0; s < S; s++)
    emax = lay->expert[s] > emax ? lay->expert[s] : emax;
  size_t mark = ar->used;
  int32_t *stamp = eplb__arena_take(ar, sizeof(int32_t) * ((size_t)emax + 1));
  if (stamp == NULL)
    return 2;
  for (int32_t e = 0; e <= emax; e++)
    stamp[e] = -1;
  int dup = 0;
  for (int32_t s = 0; s < S && !dup; s++) {
    int32_t g = s / lay->per, x = lay->expert[s];
    dup = stamp[x] == g;
    stamp[x] = g;
  }
  ar->used = mark;
  return dup;
}

int32_t eplb__repair_duplicates_a(eplb__layout_t *lay, eplb__arena_t *ar) {
  int32_t G = lay->G, per = lay->per, left = 0;
  if (has_duplicates(lay, ar) == 0)
    return 0;
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

/* Keeps GPU g's slots sorted by weight, heaviest first (insertion sort:
 * after a swap only one slot is out of place). */
static void sort_gpu(eplb__layout_t *lay, int32_t g) {
  int32_t *e = lay->expert + (size_t)g * lay->per;
  double *w = lay->w + (size_t)g * lay->per;
  for (int32_t i = 1; i < lay->per; i++) {
    double wi = w[i];
    int32_t ei = e[i], j = i;
    while (j > 0 && w[j - 1] < wi) {
      w[j] = w[j - 1];
      e[j] = e[j - 1];
      j--;
    }
    w[j] = wi;
    e[j] = ei;
  }
}

/* Best swap candidate found so far. */
typedef struct {
  double nmax;
  int32_t h, a, b;
  int blocked; /* a better swap was ruled out as a duplicate */
} swap_t;

/* Considers swapping slot a of g with slot b of h. */
static inline void consider(const eplb__layout_t *lay, int32_t g, int32_t a,
                            int32_t h, int32_t b, swap_t *best) {
  size_t ia = (size_t)g * lay->per + a, ib = (size_t)h * lay->per + b;
  double d = lay->w[ia] - lay->w[ib], lg = lay->load[g], lh = lay->load[h];
  if (d <= 0 || d >= lg - lh)
    return;
  double nmax = lg - d > lh + d ? lg - d : lh + d;
  if (nmax >= best->nmax)
    return;
  /* No duplicates: a's expert must not already be on h (except in slot b,
   * which leaves), nor b's expert on g (except slot a). */
  int32_t xa = lay->expert[ia], xb = lay->expert[ib];
  if (holds(lay, h, xa, b) || holds(lay, g, xb, a)) {
    best->blocked = 1;
    return;
  }
  best->nmax = nmax;
  best->h = h;
  best->a = a;
  best->b = b;
}

/* 1 when GPU x (load lx) sorts before GPU y (load ly): lighter, ties
 * lower index. */
static inline int lighter_than(double lx, int32_t x, double ly, int32_t y) {
  return lx < ly || (lx == ly && x < y);
}

static inline int lighter(const double *load, int32_t x, int32_t y) {
  return lighter_than(load[x], x, load[y], y);
}

/* Moves the GPU at by_load[i], whose load just changed, to its place in
 * by_load[0..n) (sorted lightest first, ties lower index, except for that
 * GPU), and its load with it in bl[] (bl[k] = load[by_load[k]]: the
 * compares read it without a dependent load).  Only the two GPUs of a swap
 * move, so this keeps the order at O(distance) instead of re-sorting every
 * GPU after every swap. */
static void reposition(const double *load, int32_t *by_load, double *bl,
                       int32_t n, int32_t i) {
  int32_t x = by_load[i];
  double lx = load[x];
  while (i > 0 && lighter_than(lx, x, bl[i - 1], by_load[i - 1])) {
    by_load[i] = by_load[i - 1];
    bl[i] = bl[i - 1];
    i--;
  }
  while (i < n - 1 && lighter_than(bl[i + 1], by_load[i + 1], lx, x)) {
    by_load[i] = by_load[i + 1];
    bl[i] = bl[i + 1];
    i++;
  }
  by_load[i] = x;
  bl[i] = lx;
}

/* Slot j of GPU g just changed weight; the other slots are in order
 * (heaviest first): moves it to its place, as the insertion sort would
 * (past strictly lighter slots to the left, strictly heavier ones to the
 * right, so equal weights keep their order). */
static void resort_slot(eplb__layout_t *lay, int32_t g, int32_t j) {
  int32_t *e = lay->expert + (size_t)g * lay->per;
  double *w = lay->w + (size_t)g * lay->per;
  double wj = w[j];
  int32_t ej = e[j];
  while (j > 0 && w[j - 1] < wj) {
    w[j] = w[j - 1];
    e[j] = e[j - 1];
    j--;
  }
  while (j < lay->per - 1 && w[j + 1] > wj) {
    w[j] = w[j + 1];
    e[j] = e[j + 1];
    j++;
  }
  w[j] = wj;
  e[j] = ej;
}

/* The tiered candidate of GPU h: slot am of both GPUs, the pair's new
 * maximum mn (< best->nmax), or, when that one is a duplicate, the same
 * ranks in order.  Considering them in order would pick the same one
 * unless it is a duplicate: then they are. */
static inline void tier_take(const eplb__layout_t *lay, int32_t g, int32_t h,
                             int32_t am, double mn, swap_t *best) {
  size_t per = (size_t)lay->per;
  if (!holds(lay, h, lay->expert[(size_t)g * per + (size_t)am], am) &&
      !holds(lay, g, lay->expert[(size_t)h * per + (size_t)am], am)) {
    best->nmax = mn;
    best->h = h;
    best->a = am;
    best->b = am;
  } else {
    for (int32_t a = 0; a < lay->per; a++)
      consider(lay, g, a, h, a, best);
  }
}

/* One iteration of the tiered search (the slot of the same rank on h
 * only) for the most loaded GPU g: updates *best, returns the index in
 * by_load of best->h if this found it, else -1.  Lightest GPUs first: a
 * swap with h cannot bring the pair below (lg + lh) / 2, so once that is
 * no better than the best found, no heavier h can help either.  Each
 * version below finds the same best of the per candidates of an h (same
 * maximum, lowest slot among equal ones), without branches (their tests
 * are coin flips to the branch predictor); the duplicate check for that
 * one only. */
static int32_t tier_scan_scalar(const eplb__layout_t *lay, int32_t g,
                                const int32_t *by_load, const double *bl,
                                swap_t *best) {
  int32_t per = lay->per, best_k = -1;
  double lg = lay->load[g];
  const double *gw = lay->w + (size_t)g * per;
  const uint64_t inf = eplb__wbits(HUGE_VAL);
  for (int32_t k = 0; k < lay->G - 1; k++) {
    int32_t h = by_load[k];
    double lh = bl[k], gap = lg - lh;
    if (gap <= 0 || lg - gap / 2 >= best->nmax)
      break;
    const double *hw = lay->w + (size_t)h * per;
    double mn = HUGE_VAL;
    int32_t am = 0;
    for (int32_t a = 0; a < per; a++) {
      double d = gw[a] - hw[a];
      double nm = lg - d > lh + d ? lg - d : lh + d;
      /* An invalid swap weighs +inf, by a mask: as a condition the
       * compiler made it a branch again. */
      uint64_t ok = 0 - (uint64_t)((d > 0) & (d < gap)), nb = eplb__wbits(nm);
      nb = (nb & ok) | (inf & ~ok);
      memcpy(&nm, &nb, sizeof(nm));
      int take = nm < mn;
      mn = take ? nm : mn;
      am = take ? a : am;
    }
    if (mn < best->nmax) {
      int32_t before = best->h;
      tier_take(lay, g, h, am, mn, best);
      if (best->h != before)
        best_k = k;
    }
  }
  return best_k;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same with AVX2, where the CPU has it (tier_scan_for): the per
 * candidates of an h side by side, 4 to a register, g's weights loaded once
 * per iteration, where the scalar loop carries mn and am from slot to slot
 * (docs/planner.md has what it saved).  AVX-512 (8 to a register) was
 * slower than this where it was tried, so there is none.  Bit for bit the
 * scalar result: MAXPD(x, y) is x > y ? x : y, the
 * scalar select, and the compares are the scalar ones (ordered: false on
 * NaN), so a lane holds the scalar nm.  A lane counts only when valid and
 * below best->nmax: when none does, the scalar mn is not below it either
 * and nothing more is done.  Otherwise the minimum lies among those lanes,
 * and so do all lanes equal to it: the first of them is the scalar am, and
 * mn is read from that lane (the reduction may give the other zero).
 * Lanes past per load 0 on both sides: d = 0, invalid. */
#define EPLB_TIER_SIMD 1

__attribute__((target("avx2"))) static inline __m256d
tier_nm4(__m256d gv, const double *hw, __m256i lanes, __m256d lg, __m256d lh,
         __m256d gap, __m256d bound, __m256d *ok) {
  __m256d d = _mm256_sub_pd(gv, _mm256_maskload_pd(hw, lanes));
  __m256d nm = _mm256_max_pd(_mm256_sub_pd(lg, d), _mm256_add_pd(lh, d));
  *ok = _mm256_and_pd(
      _mm256_and_pd(_mm256_cmp_pd(d, _mm256_setzero_pd(), _CMP_GT_OQ),
                    _mm256_cmp_pd(d, gap, _CMP_LT_OQ)),
      _mm256_cmp_pd(nm, bound, _CMP_LT_OQ));
  return nm;
}

/* Lanes 0..n-1 of 4 on: the mask of _mm256_maskload_pd. */
__attribute__((target("avx2"))) static inline __m256i tier_lanes4(int32_t n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n),
                            _mm256_setr_epi64x(0, 1, 2, 3));
}

__attribute__((target("avx2"))) static inline double tier_hmin4(__m256d v) {
  __m128d m =
      _mm_min_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_min_sd(m, _mm_unpackhi_pd(m, m)));
}

__attribute__((target("avx2"))) static int32_t
tier_scan_avx2(const eplb__layout_t *lay, int32_t g, const int32_t *by_load,
               const double *bl, swap_t *best) {
  int32_t per = lay->per, best_k = -1;
  double lg = lay->load[g];
  const double *gw = lay->w + (size_t)g * per;
  const __m256d vlg = _mm256_set1_pd(lg), inf = _mm256_set1_pd(HUGE_VAL);
  double buf[4];
  /* Up to 8 slots (the usual 5 to 8) in two registers. */
  __m256i l0 = tier_lanes4(per), l1 = tier_lanes4(per - 4);
  __m256d g0 = _mm256_maskload_pd(gw, l0), g1 = g0;
  if (per > 4)
    g1 = _mm256_maskload_pd(gw + 4, l1);
  for (int32_t k = 0; k < lay->G - 1; k++) {
    int32_t h = by_load[k];
    double lh = bl[k], gap = lg - lh;
    if (gap <= 0 || lg - gap / 2 >= best->nmax)
      break;
    const double *hw = lay->w + (size_t)h * per;
    __m256d vlh = _mm256_set1_pd(lh), vgap = _mm256_set1_pd(gap);
    __m256d bound = _mm256_set1_pd(best->nmax), ok, nm;
    double mn = HUGE_VAL;
    int32_t am = -1;
    if (per <= 8) {
      __m256d ok1 = _mm256_setzero_pd(), nm1 = inf;
      nm = tier_nm4(g0, hw, l0, vlg, vlh, vgap, bound, &ok);
      if (per > 4)
        nm1 = tier_nm4(g1, hw + 4, l1, vlg, vlh, vgap, bound, &ok1);
      int c0 = _mm256_movemask_pd(ok), c1 = _mm256_movemask_pd(ok1);
      if ((c0 | c1) == 0)
        continue;
      nm = _mm256_blendv_pd(inf, nm, ok);
      nm1 = _mm256_blendv_pd(inf, nm1, ok1);
      __m256d m = _mm256_set1_pd(tier_hmin4(_mm256_min_pd(nm, nm1)));
      int e = _mm256_movemask_pd(_mm256_cmp_pd(nm, m, _CMP_EQ_OQ)) |
              _mm256_movemask_pd(_mm256_cmp_pd(nm1, m, _CMP_EQ_OQ)) << 4;
      am = __builtin_ctz((unsigned)e);
      _mm256_storeu_pd(buf, am < 4 ? nm : nm1);
      mn = buf[am & 3];
    } else {
      /* Wider GPUs (rare): the minimum over 4-slot blocks, g's weights
       * read again for each h, then its first lane. */
      __m256d acc = inf;
      for (int32_t a = 0; a < per; a += 4) {
        __m256i la = tier_lanes4(per - a);
        __m256d gv = _mm256_maskload_pd(gw + a, la);
        nm = tier_nm4(gv, hw + a, la, vlg, vlh, vgap, bound, &ok);
        acc = _mm256_min_pd(acc, _mm256_blendv_pd(inf, nm, ok));
      }
      if (_mm256_movemask_pd(_mm256_cmp_pd(acc, bound, _CMP_LT_OQ)) == 0)
        continue;
      __m256d m = _mm256_set1_pd(tier_hmin4(acc));
      for (int32_t a = 0;; a += 4) {
        __m256i la = tier_lanes4(per - a);
        __m256d gv = _mm256_maskload_pd(gw + a, la);
        nm = tier_nm4(gv, hw + a, la, vlg, vlh, vgap, bound, &ok);
        int e = _mm256_movemask_pd(
            _mm256_and_pd(ok, _mm256_cmp_pd(nm, m, _CMP_EQ_OQ)));
        if (e) {
          int lane = __builtin_ctz((unsigned)e);
          _mm256_storeu_pd(buf, nm);
          am = a + lane;
          mn = buf[lane];
          break;
        }
      }
    }
    int32_t before = best->h;
    tier_take(lay, g, h, am, mn, best);
    if (best->h != before)
      best_k = k;
  }
  return best_k;
}
#endif

typedef int32_t (*tier_scan_fn)(const eplb__layout_t *, int32_t,
                                const int32_t *, const double *, swap_t *);

/* The widest version this CPU runs, asked once per search: the answer
 * (libgcc's, filled in by a constructor) is only read, so threads may ask
 * together. */
static tier_scan_fn tier_scan_for(void) {
#ifdef EPLB_TIER_SIMD
  if (__builtin_cpu_supports("avx2"))
    return tier_scan_avx2;
#endif
  return tier_scan_scalar;
}

void eplb__local_search_a(eplb__layout_t *lay, int32_t max_iters, int tiered,
                          eplb__arena_t *ar) {
  int32_t G = lay->G, per = lay->per;
  if (G < 2)
    return;
  size_t mark = ar->used;
  int32_t *by_load = eplb__arena_take(ar, sizeof(int32_t) * (size_t)G);
  double *bl = eplb__arena_take(ar, sizeof(double) * (size_t)G);
  if (by_load == NULL || bl == NULL) {
    ar->used = mark;
    return; /* the search only improves a valid layout: skipping is safe */
  }
  tier_scan_fn tier_scan = tiered ? tier_scan_for() : NULL;
  for (int32_t g = 0; g < G; g++) {
    sort_gpu(lay, g);
    by_load[g] = g;
  }
  /* Insertion sort: the order is total, so it is the unique sorted one. */
  for (int32_t i = 1; i < G; i++) {
    int32_t x = by_load[i], j = i;
    for (; j > 0 && lighter(lay->load, x, by_load[j - 1]); j--)
      by_load[j] = by_load[j - 1];
    by_load[j] = x;
  }
  for (int32_t k = 0; k < G; k++)
    bl[k] = lay->load[by_load[k]];
  for (int32_t it = 0; it < max_iters; it++) {
    int32_t g = by_load[G - 1];
    double lg = lay->load[g];
    const double *gw = lay->w + (size_t)g * per;
    swap_t best = {.nmax = lg, .h = -1, .a = -1, .b = -1, .blocked = 0};
    int32_t best_k = -1; /* index of best.h in by_load */
    if (tiered)
      best_k = tier_scan(lay, g, by_load, bl, &best);
    /* Lightest GPUs first, as in tier_scan_scalar. */
    for (int32_t k = 0; !tiered && k < G - 1; k++) {
      int32_t h = by_load[k];
      double lh = bl[k], gap = lg - lh;
      if (gap <= 0 || lg - gap / 2 >= best.nmax)
        break;
      int32_t before = best.h;
      const double *hw = lay->w + (size_t)h * per;
      /* The ideal swap moves gap/2: for each a (heaviest first) the b whose
       * weight is nearest w_a - gap/2; that target only falls as a does, so
       * one pointer sweeps h once.  Only the neighbours on both sides of the
       * target can be best for this a. */
      int32_t j = 0;
      for (int32_t a = 0; a < per; a++) {
        double t = gw[a] - gap / 2;
        while (j < per && hw[j] > t)
          j++;
        if (j > 0)
          consider(lay, g, a, h, j - 1, &best);
        if (j < per)
          consider(lay, g, a, h, j, &best);
      }
      if (best.h != before)
        best_k = k;
    }
    if (best.h < 0 && best.blocked && !tiered) {
      /* Neighbours were ruled out as duplicates: one full scan before
       * giving up, so that shortcut never ends the search early. */
      for (int32_t h = 0; h < G; h++)
        if (h != g && lay->load[h] < lg)
          for (int32_t a = 0; a < per; a++)
            for (int32_t b = 0; b < per; b++)
              consider(lay, g, a, h, b, &best);
    }
    if (best.h < 0)
      break;
    if (best_k < 0 || by_load[best_k] != best.h) /* found by the full scan */
      for (best_k = 0; by_load[best_k] != best.h; best_k++)
        ;
    swap_slots(lay, g, best.a, best.h, best.b);
    resort_slot(lay, g, best.a);
    resort_slot(lay, best.h, best.b);
    /* h first, among the GPUs other than g (still last); then g. */
    reposition(lay->load, by_load, bl, G - 1, best_k);
    reposition(lay->load, by_load, bl, G, G - 1);
  }
  ar->used = mark;
}

double eplb__layout_bound(const eplb__layout_t *lay) {
  int32_t S = lay->G * lay->per, k = lay->per - 1;
  double total = 0, wmax = 0;
  for (int32_t s = 0; s < S; s++) {
    total += lay->w[s];
    wmax = lay->w[s] > wmax ? lay->w[s] : wmax;
  }
  /* The k smallest weights: a buffer kept sorted (k is a GPU's slots less
   * one, small) or, for wide GPUs, one sort. */
  double small = 0;
  if (k > 0 && k <= 64) {
    double buf[64];
    int32_t n = 0;
    for (int32_t s = 0; s < S; s++) {
      double v = lay->w[s];
      if (n == k && v >= buf[n - 1])
        continue;
      int32_t i = n < k ? n++ : n - 1;
      while (i > 0 && buf[i - 1] > v) {
        buf[i] = buf[i - 1];
        i--;
      }
      buf[i] = v;
    }
    for (int32_t i = 0; i < n; i++)
      small += buf[i];
  } else if (k > 0) {
    int32_t *order = malloc(sizeof(int32_t) * (size_t)S);
    if (order == NULL)
      return total / lay->G; /* still a bound, only a weaker one */
    eplb__sort_desc(lay->w, S, order);
    for (int32_t i = S - k; i < S; i++)
      small += lay->w[order[i]];
    free(order);
  }
  double mean = total / lay->G;
  return wmax + small > mean ? wmax + small : mean;
}
