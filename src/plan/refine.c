/* plan/refine.c - the move search: a layer placement improved one move
 * at a time, where a move may change how many replicas an expert has
 * (which the slot-swap local search of local_search.c cannot).  With a
 * price per moved replica it is the migration-aware re-plan and the spill
 * of incremental.c; free of that price it is eplb__refine, the last step
 * of the balanced policy.
 *
 * DESIGN.  The objective is
 *     max GPU load + lambda * (replicas that arrive on a GPU that did not
 *                              hold that expert before)
 * with lambda = move_cost * mean GPU load (move_cost is in imbalance units
 * per moved replica; 0 for eplb__refine).  A move's gain is the load above
 * the mean it removes, summed over GPUs (unlike the maximum alone it
 * credits a move that lowers one of several equally loaded GPUs), less
 * lambda per moved replica.  Each step looks at the most loaded GPU g (the
 * next of the four most loaded when g has no move) and tries:
 *  - swap: a slot of g with a lighter slot of a GPU below the mean, the
 *    lightest first (loads of two GPUs change; replica counts do not);
 *  - replicate in: give one of g's heaviest experts another replica on a
 *    light GPU, in a slot whose expert has replicas to spare;
 *  - replace: turn one of g's slots whose expert has replicas to spare into
 *    a replica of one of the hottest experts per replica that g lacks;
 * and applies the one with the largest net gain, until none gains or the
 * move budget (max_moves) is spent.
 *
 * Scale.  The GPUs are kept in load order (order.c), moved only when a
 * move changes their load; a replica-count move is judged on the GPUs
 * holding the two experts whose weights change (a list of each expert's
 * slots), after an upper bound on its gain from counts kept up to date
 * (try_replace) has not ruled it out; the experts are kept in order of
 * load per replica for the replace candidates; where the original
 * placement had each expert is an index, not a row scan (a bit per GPU up
 * to 64 GPUs). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "plan/internal.h"

static double pos(double v) { return v > 0 ? v : 0; }

/* The load of GPU g: its slots' weights summed in slot order. */
static double gpu_sum(const eplb__search_t *c, int32_t g) {
  double sum = 0;
  for (int32_t j = 0; j < c->per; j++)
    sum += c->sw[g * c->per + j];
  return sum;
}

/* Slot s joins, or leaves, expert e's list. */
static void list_add(eplb__search_t *c, int32_t e, int32_t s) {
  c->prv[s] = -1;
  c->nxt[s] = c->head[e];
  if (c->head[e] >= 0)
    c->prv[c->head[e]] = s;
  c->head[e] = s;
}

static void list_del(eplb__search_t *c, int32_t e, int32_t s) {
  if (c->prv[s] >= 0)
    c->nxt[c->prv[s]] = c->nxt[s];
  else
    c->head[e] = c->nxt[s];
  if (c->nxt[s] >= 0)
    c->prv[c->nxt[s]] = c->prv[s];
}

/* GPU g's load is summed afresh and moved in the order. */
static void gpu_update(eplb__search_t *c, int32_t g) {
  c->gl[g] = gpu_sum(c, g);
  eplb__order_set(&c->gpus, g, c->gl[g]);
}

/* Expert e's replica count changed: its weight on every slot, the loads of
 * the GPUs holding it (each once: stamped), its place among the hot. */
static void expert_update(eplb__search_t *c, int32_t e) {
  c->ew[e] = c->load[e] / c->cnt[e];
  eplb__order_set(&c->hot, e, -c->ew[e]);
  for (int32_t s = c->head[e]; s >= 0; s = c->nxt[s])
    c->sw[s] = c->ew[e];
}

/* GPU g's slots leave (-1) or join (+1) the counts of slots above the
 * mean, when it is above it (with_above). */
static void above_add(eplb__search_t *c, int32_t g, int32_t sign) {
  if (!c->with_above || !(c->gl[g] > c->mean))
    return;
  for (int32_t j = 0; j < c->per; j++)
    c->above[c->slot[g * c->per + j]] += sign;
}

/* After the counts of experts a and b changed (b may be -1): every GPU
 * holding either is summed afresh, each once; `pre` the same GPUs before
 * the change (their part of the above-mean counts is taken out). */
static void each_holder(eplb__search_t *c, int32_t a, int32_t b, int pre) {
  int32_t t = ++c->tick;
  for (int k = 0; k < 2; k++) {
    int32_t e = k == 0 ? a : b;
    for (int32_t s = e >= 0 ? c->head[e] : -1; s >= 0; s = c->nxt[s]) {
      int32_t g = s / c->per;
      if (c->stamp[g] != t) {
        c->stamp[g] = t;
        if (pre) {
          above_add(c, g, -1);
        } else {
          gpu_update(c, g);
          above_add(c, g, +1);
        }
      }
    }
  }
}

int eplb__search_alloc(eplb__search_t *c, eplb_error_t *err) {
  size_t E = (size_t)c->E, S = (size_t)c->S, G = (size_t)c->G;
  c->slot = malloc(sizeof(int32_t) * S);
  c->cnt = calloc(E, sizeof(int32_t));
  c->gl = calloc(G, sizeof(double));
  c->head = malloc(sizeof(int32_t) * E);
  c->nxt = malloc(sizeof(int32_t) * 2 * S);
  c->prv = c->nxt ? c->nxt + S : NULL;
  c->ew = malloc(sizeof(double) * E);
  c->sw = malloc(sizeof(double) * S);
  c->ng = malloc(sizeof(double) * G);
  c->stamp = calloc(2 * G, sizeof(int32_t));
  c->touched = c->stamp ? c->stamp + G : NULL;
  c->tick = 0;
  c->mark = calloc(E, 1);
  c->ofirst = malloc(sizeof(int32_t) * (E + 1));
  c->above = malloc(sizeof(int32_t) * E);
  c->with_above = 0;
  c->ogpu = malloc(sizeof(int32_t) * S);
  c->omask = G <= 64 ? malloc(sizeof(uint64_t) * E) : NULL;
  /* the orders; the experts' keys, ids and their sort (2E keys, E + 4E
   * indices at most) */
  size_t need = eplb__order_bytes(c->G) + eplb__order_bytes(c->E) + 48 * E +
                8 * 16;
  eplb__arena_init(&c->ar, malloc(need), need);
  if (!c->slot || !c->cnt || !c->gl || !c->head || !c->nxt || !c->ew ||
      !c->sw || !c->ng || !c->stamp || !c->mark || !c->ofirst || !c->ogpu ||
      !c->above || (G <= 64 && !c->omask))
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  return 0;
}

void eplb__search_free(eplb__search_t *c) {
  free(c->slot);
  free(c->cnt);
  free(c->gl);
  free(c->head);
  free(c->nxt);
  free(c->ew);
  free(c->sw);
  free(c->ng);
  free(c->stamp);
  free(c->mark);
  free(c->ofirst);
  free(c->ogpu);
  free(c->omask);
  free(c->above);
  eplb__arena_done(&c->ar);
  free(c->ar.buf);
  c->ar.buf = NULL;
}

double eplb__search_set(eplb__search_t *c, const int32_t *placement) {
  memcpy(c->slot, placement, sizeof(int32_t) * (size_t)c->S);
  memset(c->cnt, 0, sizeof(int32_t) * (size_t)c->E);
  for (int32_t e = 0; e < c->E; e++)
    c->head[e] = -1;
  for (int32_t s = c->S - 1; s >= 0; s--) {
    c->cnt[placement[s]]++;
    list_add(c, placement[s], s);
  }
  for (int32_t e = 0; e < c->E; e++) /* an expert with no slot: unused */
    c->ew[e] = c->cnt[e] > 0 ? c->load[e] / c->cnt[e] : 0;
  for (int32_t s = 0; s < c->S; s++)
    c->sw[s] = c->ew[c->slot[s]];
  double total = 0;
  for (int32_t g = 0; g < c->G; g++) {
    c->gl[g] = gpu_sum(c, g);
    total += c->gl[g];
  }
  /* Where orig had each expert (a counting sort of its slots). */
  if (c->orig != NULL) {
    memset(c->ofirst, 0, sizeof(int32_t) * ((size_t)c->E + 1));
    for (int32_t s = 0; s < c->S; s++)
      c->ofirst[c->orig[s] + 1]++;
    for (int32_t e = 0; e < c->E; e++)
      c->ofirst[e + 1] += c->ofirst[e];
    for (int32_t s = 0; s < c->S; s++)
      c->ogpu[c->ofirst[c->orig[s]]++] = s / c->per;
    for (int32_t e = c->E; e > 0; e--)
      c->ofirst[e] = c->ofirst[e - 1];
    c->ofirst[0] = 0;
    if (c->omask != NULL) {
      memset(c->omask, 0, sizeof(uint64_t) * (size_t)c->E);
      for (int32_t s = 0; s < c->S; s++)
        c->omask[c->orig[s]] |= (uint64_t)1 << (s / c->per);
    }
  }
  /* The experts' order is keyed by minus the weight: heaviest first. */
  c->ar.used = 0;
  double *key = eplb__arena_take(&c->ar, sizeof(double) * (size_t)c->E);
  int32_t *ids = eplb__arena_take(&c->ar, sizeof(int32_t) * (size_t)c->E);
  if (key == NULL || ids == NULL)
    return -1;
  for (int32_t e = 0; e < c->E; e++)
    key[e] = -c->ew[e];
  /* Heavier first, ties lower expert: eplb__sort_desc's order. */
  eplb__sort_desc_a(c->ew, c->E, ids, &c->ar);
  if (eplb__order_init_sorted(&c->hot, c->E, key, ids, &c->ar) != 0 ||
      eplb__order_init(&c->gpus, c->G, c->gl, &c->ar) != 0)
    return -1;
  return total;
}

double eplb__search_max(const eplb__search_t *c) {
  return c->gl[eplb__order_last(&c->gpus)];
}

/* 1 when row (per slots) holds e outside slot `skip`. */
static int row_has(const int32_t *row, int32_t per, int32_t e, int32_t skip) {
  for (int32_t j = 0; j < per; j++)
    if (j != skip && row[j] == e)
      return 1;
  return 0;
}

/* 1 when orig had expert e on GPU g: one bit up to 64 GPUs, else its few
 * GPUs scanned, or searched when many. */
static int orig_has(const eplb__search_t *c, int32_t g, int32_t e) {
  if (c->omask != NULL)
    return (int)((c->omask[e] >> g) & 1);
  const int32_t *o = c->ogpu + c->ofirst[e];
  int32_t lo = 0, hi = c->ofirst[e + 1] - c->ofirst[e];
  while (hi - lo > 8) { /* the first o >= g stays in [lo, hi) */
    int32_t mid = (lo + hi) / 2;
    if (o[mid] < g)
      lo = mid + 1;
    else
      hi = mid + 1;
  }
  for (; lo < hi; lo++)
    if (o[lo] == g)
      return 1;
  return 0;
}

/* 1 when GPU g holds expert e now, outside slot `skip` (-1: any): the
 * shorter of e's slot list and g's row. */
static int holds(const eplb__search_t *c, int32_t g, int32_t e, int32_t skip) {
  if (c->cnt[e] < c->per) {
    for (int32_t s = c->head[e]; s >= 0; s = c->nxt[s])
      if (s / c->per == g && s != skip)
        return 1;
    return 0;
  }
  return row_has(c->slot + (size_t)g * c->per, c->per, e,
                 skip < 0 ? -1 : skip - g * c->per);
}

/* 1 when expert e on GPU g counts as a moved replica: orig did not have
 * it there (spill mode: g is not on e's home node). */
static inline int32_t away(const eplb__search_t *c, int32_t g, int32_t e) {
  if (c->home != NULL)
    return (int32_t)(c->home[e] != g / c->gpn);
  if (c->omask != NULL)
    return (int32_t)!((c->omask[e] >> g) & 1);
  return (int32_t)!orig_has(c, g, e);
}

/* Change in moved replicas when GPU g's slot turns from expert `from` into
 * expert `to`. */
static int32_t move_delta(const eplb__search_t *c, int32_t g, int32_t from,
                          int32_t to) {
  return away(c, g, to) - away(c, g, from);
}

typedef struct {
  double score; /* net gain: excess removed - lambda * moves */
  int kind;     /* 0 none, 1 swap, 2 replace slot */
  int32_t g, a, h, b, to;
  int32_t moves;
} op_t;

static void offer(op_t *best, double score, int kind, int32_t g, int32_t a,
                  int32_t h, int32_t b, int32_t to, int32_t moves) {
  if (score > best->score) {
    best->score = score;
    best->kind = kind;
    best->g = g;
    best->a = a;
    best->h = h;
    best->b = b;
    best->to = to;
    best->moves = moves;
  }
}

/* The swaps of slot a of g with the slots of h (loads lg, lh, gap = lg -
 * lh, before = excess of the pair): offered in slot order.  The same
 * replica's slots weigh the same (d = 0), so an expert never swaps with
 * itself.  The tests only reject, so their order is free: the cheap ones
 * (the moves come from bits, up to 64 GPUs) before the duplicate checks. */
static inline void swap_one(const eplb__search_t *c, int32_t g, int32_t a,
                            int32_t h, int32_t b, double lg, double lh,
                            double mean, double lambda, int32_t budget,
                            op_t *best) {
  int32_t per = c->per;
  const int32_t *rg = c->slot + (size_t)g * per, *rh = c->slot + (size_t)h * per;
  double d = c->sw[(size_t)g * per + a] - c->sw[(size_t)h * per + b];
  if (d <= 0 || d >= lg - lh)
    return;
  double before = pos(lg - mean) + pos(lh - mean);
  double gain = before - pos(lg - d - mean) - pos(lh + d - mean);
  if (gain <= best->score) /* cannot win even with no moves */
    return;
  int32_t mv = move_delta(c, g, rg[a], rh[b]) + move_delta(c, h, rh[b], rg[a]);
  if (mv > budget || gain - lambda * mv <= best->score)
    return;
  if (holds(c, h, rg[a], h * per + b) || holds(c, g, rh[b], g * per + a))
    return;
  offer(best, gain - lambda * mv, 1, g, a, h, b, -1, mv);
}

static inline void swap_row(const eplb__search_t *c, int32_t g, int32_t a,
                            int32_t h, double lg, double lh, double mean,
                            double lambda, int32_t budget, op_t *best) {
  for (int32_t b = 0; b < c->per; b++)
    swap_one(c, g, a, h, b, lg, lh, mean, lambda, budget, best);
}

/* The swaps of g with partner h, slot by slot of g. */
static void swap_pair_scalar(const eplb__search_t *c, int32_t g, int32_t h,
                             double lg, double lh, double mean, double lambda,
                             int32_t budget, op_t *best) {
  for (int32_t a = 0; a < c->per; a++)
    swap_row(c, g, a, h, lg, lh, mean, lambda, budget, best);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define EPLB_SWAP_SIMD 1
/* The same with AVX2 for GPUs of up to 8 slots: for each slot a of g the
 * swaps with h's slots, eight at a time in two registers, are put through
 * swap_one's tests but the duplicate checks, computed as swap_one computes
 * them (the same operations in the same order, so the same doubles): 0 <
 * d < lg - lh, a gain above the best score, moves within the budget and a
 * net gain above the best score.  The moves of swapping slot a (expert x)
 * with slot b (expert y) split into a part of a and a part of b:
 *     away(g, y) - away(g, x) + away(h, x) - away(h, y).
 * The best score is read once per slot of g (it only rises, so the test
 * keeps every swap that could win); the lanes left are tried, in slot
 * order, with swap_one, so the same swap wins.  Nearly every lane fails. */
__attribute__((target("avx2"))) static void
swap_pair_avx2(const eplb__search_t *c, int32_t g, int32_t h, double lg,
               double lh, double mean, double lambda, int32_t budget,
               op_t *best) {
  int32_t per = c->per;
  const double *wg = c->sw + (size_t)g * per, *wh = c->sw + (size_t)h * per;
  const int32_t *rg = c->slot + (size_t)g * per, *rh = c->slot + (size_t)h * per;
  __m256i l0 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(per),
                                  _mm256_setr_epi64x(0, 1, 2, 3));
  __m256i l1 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(per),
                                  _mm256_setr_epi64x(4, 5, 6, 7));
  __m256d h0 = _mm256_maskload_pd(wh, l0), h1 = h0;
  if (per > 4)
    h1 = _mm256_maskload_pd(wh + 4, l1);
  const __m256d zero = _mm256_setzero_pd(), gap = _mm256_set1_pd(lg - lh);
  const __m256d vlg = _mm256_set1_pd(lg), vlh = _mm256_set1_pd(lh);
  const __m256d vmean = _mm256_set1_pd(mean), vlam = _mm256_set1_pd(lambda);
  const __m256d before = _mm256_set1_pd(pos(lg - mean) + pos(lh - mean));
  const __m256d vbudget = _mm256_set1_pd((double)budget);
  /* The moves' parts of b (and of a, per slot) once a lane needs them.
   * With less than two moves left (a swap makes two at most), both first:
   * a pair none of whose swaps fits the budget is skipped. */
  double ca[8], cb[8] = {0};
  int have = 0, moves_cheap = c->omask != NULL || c->home != NULL;
  if (budget < 2) {
    int32_t amin = 2, bmin = 2;
    for (int32_t k = 0; k < per; k++) {
      int32_t pa = away(c, h, rg[k]) - away(c, g, rg[k]);
      int32_t pb = away(c, g, rh[k]) - away(c, h, rh[k]);
      ca[k] = (double)pa;
      cb[k] = (double)pb;
      amin = pa < amin ? pa : amin;
      bmin = pb < bmin ? pb : bmin;
    }
    if (amin + bmin > budget)
      return;
    have = 2;
  }
  __m256d cb0 = _mm256_loadu_pd(cb), cb1 = _mm256_loadu_pd(cb + 4);
  int lanes = (1 << per) - 1;
  for (int32_t a = 0; a < per; a++) {
    __m256d wa = _mm256_set1_pd(wg[a]);
    __m256d d0 = _mm256_sub_pd(wa, h0), d1 = _mm256_sub_pd(wa, h1);
    __m256d in0 = _mm256_and_pd(_mm256_cmp_pd(d0, zero, _CMP_GT_OQ),
                                _mm256_cmp_pd(d0, gap, _CMP_LT_OQ));
    __m256d in1 = _mm256_and_pd(_mm256_cmp_pd(d1, zero, _CMP_GT_OQ),
                                _mm256_cmp_pd(d1, gap, _CMP_LT_OQ));
    if (((_mm256_movemask_pd(in0) | _mm256_movemask_pd(in1) << 4) & lanes) ==
        0)
      continue;
    if (have == 0 && moves_cheap) {
      for (int32_t b = 0; b < per; b++)
        cb[b] = (double)(away(c, g, rh[b]) - away(c, h, rh[b]));
      cb0 = _mm256_loadu_pd(cb);
      cb1 = _mm256_loadu_pd(cb + 4);
      have = 1;
    }
    /* Without the bits (and a budget of two moves or more), the moves are
     * left to swap_one: the lanes are tested as if they made none, which
     * keeps every lane the full test keeps. */
    __m256d va = have == 2   ? _mm256_set1_pd(ca[a])
                 : have == 1 ? _mm256_set1_pd((double)(away(c, h, rg[a]) -
                                                       away(c, g, rg[a])))
                             : zero;
    __m256d bs = _mm256_set1_pd(best->score);
    __m256d g0 = _mm256_sub_pd(
        _mm256_sub_pd(before,
                      _mm256_max_pd(_mm256_sub_pd(_mm256_sub_pd(vlg, d0), vmean),
                                    zero)),
        _mm256_max_pd(_mm256_sub_pd(_mm256_add_pd(vlh, d0), vmean), zero));
    __m256d g1 = _mm256_sub_pd(
        _mm256_sub_pd(before,
                      _mm256_max_pd(_mm256_sub_pd(_mm256_sub_pd(vlg, d1), vmean),
                                    zero)),
        _mm256_max_pd(_mm256_sub_pd(_mm256_add_pd(vlh, d1), vmean), zero));
    __m256d m0 = _mm256_add_pd(va, cb0), m1 = _mm256_add_pd(va, cb1);
    __m256d n0 = _mm256_sub_pd(g0, _mm256_mul_pd(vlam, m0));
    __m256d n1 = _mm256_sub_pd(g1, _mm256_mul_pd(vlam, m1));
    in0 = _mm256_and_pd(in0, _mm256_and_pd(_mm256_cmp_pd(g0, bs, _CMP_GT_OQ),
                                           _mm256_cmp_pd(n0, bs, _CMP_GT_OQ)));
    in1 = _mm256_and_pd(in1, _mm256_and_pd(_mm256_cmp_pd(g1, bs, _CMP_GT_OQ),
                                           _mm256_cmp_pd(n1, bs, _CMP_GT_OQ)));
    in0 = _mm256_and_pd(in0, _mm256_cmp_pd(m0, vbudget, _CMP_LE_OQ));
    in1 = _mm256_and_pd(in1, _mm256_cmp_pd(m1, vbudget, _CMP_LE_OQ));
    int m = _mm256_movemask_pd(in0) | _mm256_movemask_pd(in1) << 4;
    for (m &= lanes; m != 0; m &= m - 1)
      swap_one(c, g, a, h, __builtin_ctz((unsigned)m), lg, lh, mean, lambda,
               budget, best);
  }
}
#endif

typedef void (*swap_pair_fn)(const eplb__search_t *, int32_t, int32_t, double,
                             double, double, double, int32_t, op_t *);

/* The widest version this CPU runs for c (local_search.c's tier_scan_for):
 * AVX2 up to 8 slots a GPU. */
static swap_pair_fn swap_pair_for(const eplb__search_t *c) {
#ifdef EPLB_SWAP_SIMD
  if (c->per <= 8 && !c->scalar && __builtin_cpu_supports("avx2"))
    return swap_pair_avx2;
#endif
  (void)c;
  return swap_pair_scalar;
}

/* Swaps of a slot of g with a slot of a GPU below the mean (moving load
 * between two GPUs above the mean removes no excess), lightest first.
 * Such a swap removes at most min(excess of g, deficit of h), so the scan
 * stops once that bound cannot beat the best move found. */
static void try_swaps(const eplb__search_t *c, swap_pair_fn swap_pair,
                      int32_t g, double mean, double lambda, int32_t budget,
                      op_t *best) {
  double lg = c->gl[g];
  for (int32_t blk = 0; blk < c->gpus.nb; blk++) {
    const int32_t *hs;
    const double *ls;
    int32_t n = eplb__order_block(&c->gpus, blk, &hs, &ls);
    for (int32_t k = 0; k < n; k++) {
      int32_t h = hs[k];
      double lh = ls[k];
      if (lh >= mean)
        return;
      double bound = lg - mean < mean - lh ? lg - mean : mean - lh;
      if (bound <= best->score)
        return;
      if (h == g || lg - lh <= 0)
        continue;
      swap_pair(c, g, h, lg, lh, mean, lambda, budget, best);
    }
  }
}

/* GPU g's load under the move being evaluated changes by d. */
static inline void touch(eplb__search_t *c, int32_t g, double d,
                         int32_t *nt) {
  if (c->stamp[g] != c->tick) {
    c->stamp[g] = c->tick;
    c->ng[g] = c->gl[g];
    c->touched[(*nt)++] = g;
  }
  c->ng[g] += d;
}

/* What the replica-count moves that give expert `to` one more replica
 * share: to_away (`to` on the target GPU counts as a moved replica, the
 * same for every slot of it), and an upper bound on the excess the GPUs
 * holding `to` can lose (each loses min(its excess, t_old - t_new) at
 * most; holding `from` too only adds to its load). */
typedef struct {
  int32_t to, to_away;
  double t_old, t_new, relief;
} gift_t;

/* Experts with more replicas than this have the relief of their GPUs
 * bounded from the above-mean count (O(1)) instead of summed over them. */
#define RELIEF_WALK 64

/* The part of gift() that does not depend on the target GPU (to_away is
 * left 0): computed once for every GPU a replica of `to` is tried on. */
static gift_t gift_any(const eplb__search_t *c, int32_t to, double mean) {
  gift_t x = {.to = to};
  x.t_old = c->cnt[to] > 0 ? c->ew[to] : 0;
  x.t_new = c->load[to] / (c->cnt[to] + 1);
  double dt = x.t_old - x.t_new;
  if (c->with_above && c->cnt[to] > RELIEF_WALK) {
    x.relief = dt * c->above[to];
    return x;
  }
  for (int32_t s = c->head[to]; s >= 0; s = c->nxt[s]) {
    double ex = c->gl[s / c->per] - mean;
    x.relief += ex < dt ? pos(ex) : dt;
  }
  return x;
}

/* gift_any's x for target GPU h. */
static gift_t gift_on(const eplb__search_t *c, const gift_t *any, int32_t h) {
  gift_t x = *any;
  x.to_away = c->home != NULL ? 0 : away(c, h, x.to);
  return x;
}

/* Evaluates turning slot (h, b) into a replica of x->to, which GPU h does
 * not hold (the callers pick such GPUs).  The GPUs whose load changes are
 * h and those holding `from` or `to` (their replicas' weights change),
 * reached through the two experts' slot lists; the gain is the excess
 * those GPUs lose.  First an upper bound, the lower of two: `to`'s GPUs
 * lose at most their relief and h changes by its own slot; or every slot
 * of `to` on a GPU above the mean takes t_old - t_new off the excess and
 * every slot of `from` there but h's adds f_new - f_old (above[], counted
 * per slot): a GPU's excess falls at most by what its load falls, one
 * below the mean has none to lose, and h's other slots of `from` (a
 * duplicate of the current map) only add to what `own` counts.  A move
 * whose bound cannot beat the best is not evaluated; the slack keeps
 * rounding from ruling out one that would win. */
static void try_replace(eplb__search_t *c, int32_t h, int32_t b,
                        const gift_t *x, double mean, double lambda,
                        int32_t budget, op_t *best) {
  int32_t per = c->per, *rh = c->slot + (size_t)h * per, from = rh[b];
  int32_t to = x->to;
  if (from == to || c->cnt[from] < 2)
    return;
  int32_t mv = c->home != NULL ? move_delta(c, h, from, to)
                               : x->to_away - away(c, h, from);
  if (mv > budget)
    return;
  double f_old = c->ew[from], t_new = x->t_new, lh = c->gl[h];
  double f_new = c->load[from] / (c->cnt[from] - 1);
  double own = pos(lh - mean) - pos(lh + t_new - f_old - mean);
  double ub = x->relief + own;
  if (c->with_above) { /* the linear bound, when it is lower */
    int32_t kf = 0; /* h's slots of `from` (more than one: a duplicate of
                       the current map), all left to `own`; it only counts
                       when h is above the mean */
    for (int32_t j = 0; lh > mean && j < per; j++)
      kf += rh[j] == from;
    double lin = (x->t_old - t_new) * c->above[to] -
                 (f_new - f_old) * (c->above[from] - (lh > mean) * kf) + own;
    ub = lin < ub ? lin : ub;
  }
  if (ub - lambda * mv + 1e-9 * mean <= best->score)
    return;
  int32_t target = h * per + b, nt = 0;
  c->tick++;
  for (int32_t s = c->head[from]; s >= 0; s = c->nxt[s])
    touch(c, s / per, s == target ? t_new - f_old : f_new - f_old, &nt);
  for (int32_t s = c->head[to]; s >= 0; s = c->nxt[s])
    touch(c, s / per, t_new - x->t_old, &nt);
  double gain = 0;
  for (int32_t i = 0; i < nt; i++) {
    int32_t g = c->touched[i];
    gain += pos(c->gl[g] - mean) - pos(c->ng[g] - mean);
  }
  offer(best, gain - lambda * mv, 2, -1, -1, h, b, to, mv);
}

/* try_replace on every slot of GPU h, which lacks `to` (any: gift_any of
 * it).  Only the slots whose expert can spare a replica are tried (the
 * others try_replace turns down), and none when no slot's bound in
 * try_replace can beat the best: that bound is at most relief + own, own
 * grows with the weight of the slot given up (so the heaviest of those
 * slots bounds it), and the moves are at least to_away - 1 (the same
 * operations, so the same rounding). */
static void try_replace_gpu(eplb__search_t *c, int32_t h, const gift_t *any,
                            double mean, double lambda, int32_t budget,
                            op_t *best) {
  gift_t x = gift_on(c, any, h);
  int32_t per = c->per, to = x.to, spare[64], ns = 0;
  const int32_t *rh = c->slot + (size_t)h * per;
  const double *w = c->sw + (size_t)h * per;
  double wmax = 0, lh = c->gl[h];
  for (int32_t b = 0; b < per; b++) {
    if (rh[b] == to || c->cnt[rh[b]] < 2)
      continue;
    if (ns == 0 || w[b] > wmax)
      wmax = w[b];
    if (ns < 64)
      spare[ns] = b;
    ns++;
  }
  if (ns == 0)
    return;
  int32_t mv_min = (c->home != NULL ? away(c, h, to) : x.to_away) - 1;
  double own = pos(lh - mean) - pos(lh + x.t_new - wmax - mean);
  if (x.relief + own - lambda * mv_min + 1e-9 * mean <= best->score)
    return;
  if (ns > 64) { /* more than the list holds: every slot */
    for (int32_t b = 0; b < per; b++)
      try_replace(c, h, b, &x, mean, lambda, budget, best);
    return;
  }
  for (int32_t i = 0; i < ns; i++)
    try_replace(c, h, spare[i], &x, mean, lambda, budget, best);
}

/* Indices of the `k` heaviest slots of GPU g (by weight) into out. */
static int32_t heaviest_slots(const eplb__search_t *c, int32_t g, int32_t k,
                              int32_t *out) {
  const double *w = c->sw + (size_t)g * c->per;
  int32_t n = 0;
  for (int32_t j = 0; j < c->per; j++) {
    int32_t p = n < k ? n++ : k;
    if (p == k) {
      if (w[j] <= w[out[k - 1]])
        continue;
      p = k - 1;
    }
    while (p > 0 && w[out[p - 1]] < w[j]) {
      out[p] = out[p - 1];
      p--;
    }
    out[p] = j;
  }
  return n;
}

/* Applies a count move: slot s turns from its expert into a replica of
 * `to`; weights, loads and both orders follow. */
static void apply_replace(eplb__search_t *c, int32_t s, int32_t to) {
  int32_t from = c->slot[s];
  each_holder(c, from, to, 1);
  list_del(c, from, s);
  list_add(c, to, s);
  c->slot[s] = to;
  c->cnt[from]--;
  c->cnt[to]++;
  expert_update(c, from);
  expert_update(c, to);
  each_holder(c, from, to, 0); /* s, now `to`'s, among them */
}

/* Applies the swap of slots s (on g) and t (on h). */
static void apply_swap(eplb__search_t *c, int32_t s, int32_t t) {
  int32_t x = c->slot[s], y = c->slot[t];
  above_add(c, s / c->per, -1);
  above_add(c, t / c->per, -1);
  list_del(c, x, s);
  list_del(c, y, t);
  list_add(c, x, t);
  list_add(c, y, s);
  c->slot[s] = y;
  c->slot[t] = x;
  double w = c->sw[s];
  c->sw[s] = c->sw[t];
  c->sw[t] = w;
  gpu_update(c, s / c->per);
  gpu_update(c, t / c->per);
  above_add(c, s / c->per, +1);
  above_add(c, t / c->per, +1);
}

/* The donor for a replica of r: a slot whose expert has more replicas than
 * `want` asks, on the most loaded GPU that lacks r (ties: the lowest GPU),
 * its lowest such slot; -1 if none. */
static int32_t donor_slot(const eplb__search_t *c, const int32_t *want,
                          int32_t r) {
  const eplb__order_t *o = &c->gpus;
  int32_t per = c->per, best = -1;
  double best_l = 0;
  for (int32_t blk = o->nb - 1; blk >= 0; blk--) {
    const int32_t *hs;
    const double *ls;
    int32_t n = eplb__order_block(o, blk, &hs, &ls);
    for (int32_t k = n - 1; k >= 0; k--) {
      if (best >= 0 && ls[k] < best_l)
        return best; /* lighter: the lowest of the equal ones is found */
      int32_t g = hs[k];
      const int32_t *row = c->slot + (size_t)g * per;
      if (holds(c, g, r, -1))
        continue;
      for (int32_t j = 0; j < per; j++)
        if (c->cnt[row[j]] > want[row[j]]) {
          best = g * per + j; /* equal loads come highest GPU first */
          best_l = ls[k];
          break;
        }
    }
  }
  return best;
}

/* Brings replica counts to what the new loads call for (greedy replication,
 * at most one replica per GPU): a replica of an expert that has more than
 * it needs is turned into a replica of one that has fewer, picking the
 * donor slot on the most loaded GPU that lacks the receiving expert.  Hot
 * experts that drifted then get their replicas, which makes the plan hold
 * up on later traffic instead of fitting this window's noise with swaps. */
int eplb__search_fix_counts(eplb__search_t *c, int32_t max_moves,
                            int32_t *moves, eplb_error_t *err) {
  int32_t *want = malloc(sizeof(int32_t) * (size_t)c->E);
  if (want == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  int rc = eplb__replicate(c->load, c->E, c->S, c->G, want, err);
  for (int32_t r = 0; rc == 0 && r < c->E; r++) {
    while (c->cnt[r] < want[r] && (max_moves < 0 || *moves < max_moves)) {
      int32_t bs = donor_slot(c, want, r);
      if (bs < 0)
        break; /* no donor slot without a clash: leave it to the search */
      *moves += move_delta(c, bs / c->per, c->slot[bs], r);
      apply_replace(c, bs, r);
    }
  }
  free(want);
  return rc;
}

/* The best move that relieves GPU g (see the DESIGN note). */
static void best_for(eplb__search_t *c, swap_pair_fn swap_pair, int32_t g,
                     double mean, double lambda, int32_t budget, op_t *best) {
  int32_t per = c->per;
  try_swaps(c, swap_pair, g, mean, lambda, budget, best);
  /* Replicate in: g's two heaviest experts, onto the 4 lightest GPUs that
   * lack them, in any slot whose expert can spare a replica. */
  int32_t hot[2];
  int32_t nh = heaviest_slots(c, g, 2, hot);
  for (int32_t k = 0; k < nh; k++) {
    int32_t z = c->slot[g * per + hot[k]], tried = 0;
    gift_t any = gift_any(c, z, mean);
    for (int32_t blk = 0; blk < c->gpus.nb && tried < 4; blk++) {
      const int32_t *hs;
      const double *ls;
      int32_t n = eplb__order_block(&c->gpus, blk, &hs, &ls);
      for (int32_t i = 0; i < n && tried < 4; i++) {
        int32_t h = hs[i];
        if (h == g || holds(c, h, z, -1))
          continue;
        tried++;
        try_replace_gpu(c, h, &any, mean, lambda, budget, best);
      }
    }
  }
  /* Replace on g: a slot of g whose expert can spare a replica becomes a
   * replica of one of the 3 hottest experts (per replica) g lacks. */
  int32_t cand[3], nc = 0;
  const int32_t *rg = c->slot + (size_t)g * per;
  for (int32_t j = 0; j < per; j++)
    c->mark[rg[j]] = 1;
  for (int32_t blk = 0; blk < c->hot.nb && nc < 3; blk++) {
    const int32_t *es;
    const double *ks;
    int32_t n = eplb__order_block(&c->hot, blk, &es, &ks);
    for (int32_t i = 0; i < n && nc < 3; i++)
      if (!c->mark[es[i]])
        cand[nc++] = es[i];
  }
  for (int32_t j = 0; j < per; j++)
    c->mark[rg[j]] = 0;
  for (int32_t k = 0; k < nc; k++) {
    gift_t any = gift_any(c, cand[k], mean);
    try_replace_gpu(c, g, &any, mean, lambda, budget, best);
  }
}

/* The (up to) 4 most loaded GPUs, heaviest first, into top[]: how many. */
static int32_t top_gpus(const eplb__search_t *c, int32_t *top) {
  int32_t n = 0;
  for (int32_t blk = c->gpus.nb - 1; blk >= 0 && n < 4; blk--) {
    const int32_t *hs;
    const double *ls;
    int32_t m = eplb__order_block(&c->gpus, blk, &hs, &ls);
    for (int32_t k = m - 1; k >= 0 && n < 4; k--)
      top[n++] = hs[k];
  }
  return n;
}

/* The greedy search of the DESIGN note: relieve the most loaded GPU that
 * some move can relieve at a net gain (the top few are tried), apply that
 * move, repeat.  *moves is the running count. */
/* Sets up above[] for the run at `mean`. */
static void above_init(eplb__search_t *c, double mean) {
  c->mean = mean;
  c->with_above = 1;
  memset(c->above, 0, sizeof(int32_t) * (size_t)c->E);
  for (int32_t g = 0; g < c->G; g++)
    above_add(c, g, +1);
}

void eplb__search_run(eplb__search_t *c, double mean, double lambda,
                      int32_t max_moves, int32_t *moves) {
  above_init(c, mean);
  int32_t iters = 4 * c->S + 64, per = c->per;
  swap_pair_fn swap_pair = swap_pair_for(c);
  for (int32_t it = 0; it < iters; it++) {
    int32_t budget = max_moves < 0 ? c->S : max_moves - *moves, top[4];
    op_t best = {.score = 1e-9 * mean, .kind = 0};
    int32_t nt = top_gpus(c, top);
    if (nt == 0 || c->gl[top[0]] <= c->stop_at)
      break; /* as good as the statistics can tell */
    for (int32_t k = 0; k < nt && best.kind == 0; k++) {
      int32_t g = top[k];
      if (c->gl[g] <= mean)
        break;
      best_for(c, swap_pair, g, mean, lambda, budget, &best);
    }
    if (best.kind == 0)
      break;
    if (best.kind == 1)
      apply_swap(c, best.g * per + best.a, best.h * per + best.b);
    else
      apply_replace(c, best.h * per + best.b, best.to);
    *moves += best.moves;
  }
  c->with_above = 0;
}

int eplb__refine(const double *load, int32_t E, int32_t S, int32_t G,
                 int32_t *phy2log, eplb_error_t *err) {
  int32_t per = S / G;
  eplb__search_t c = {
      .E = E, .S = S, .G = G, .per = per, .load = load, .orig = phy2log};
  int rc = eplb__search_alloc(&c, err);
  if (rc)
    goto done;
  double total = eplb__search_set(&c, phy2log);
  if (total < 0) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    goto done;
  }
  double before = eplb__search_max(&c);
  int32_t moves = 0;
  c.stop_at = eplb__noise_stop(total, G);
  eplb__search_run(&c, total / G, 0.0, -1, &moves);
  /* The search lowers the load above the mean; keep its result only if the
   * maximum, which the imbalance measures, did not rise. */
  if (eplb__search_max(&c) < before)
    memcpy(phy2log, c.slot, sizeof(int32_t) * (size_t)S);
done:
  eplb__search_free(&c);
  return rc;
}

/* 1 when GPU g holds expert e in a slot other than `skip`. */
static int gpu_holds(const eplb__search_t *c, int32_t g, int32_t e,
                     int32_t skip) {
  for (int32_t j = 0; j < c->per; j++) {
    int32_t s = g * c->per + j;
    if (s != skip && c->slot[s] == e)
      return 1;
  }
  return 0;
}

/* 1 when GPU g holds expert e in one of its slots before slot s. */
static int gpu_holds_before(const eplb__search_t *c, int32_t g, int32_t e,
                            int32_t s) {
  for (int32_t t = g * c->per; t < s; t++)
    if (c->slot[t] == e)
      return 1;
  return 0;
}

int32_t eplb__search_repair_duplicates(eplb__search_t *c, int32_t max_moves,
                                       int32_t *moves) {
  int32_t fixed = 0;
  for (int32_t s = 0; s < c->S; s++) {
    int32_t g = s / c->per, x = c->slot[s];
    /* The second (and later) copy of x on g: a slot its consumers drop. */
    if (!gpu_holds_before(c, g, x, s))
      continue;
    if (max_moves >= 0 && *moves >= max_moves)
      break;
    /* Its replacement: the expert g lacks with the most load per replica
     * (ties: the lower id), the one a replica relieves most. */
    int32_t to = -1;
    for (int32_t e = 0; e < c->E; e++)
      if ((to < 0 || c->ew[e] > c->ew[to]) && !gpu_holds(c, g, e, -1))
        to = e;
    if (to < 0)
      break; /* g holds every expert: nothing can replace the copy */
    *moves += move_delta(c, g, x, to);
    apply_replace(c, s, to);
    fixed++;
  }
  return fixed;
}
