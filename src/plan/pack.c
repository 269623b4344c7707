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
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "plan/internal.h"

int32_t eplb__argmax(const double *load, int32_t G) {
  int32_t best = 0;
  for (int32_t g = 1; g < G; g++)
    if (load[g] > load[best])
      best = g;
  return best;
}

/* Takes are rounded up to this, the alignment malloc gives (16 on the
 * 64-bit ABIs), and a spilled take sits that far into its block, behind
 * the chain pointer. */
#define ARENA_ALIGN 16

void eplb__arena_init(eplb__arena_t *a, void *buf, size_t cap) {
  a->buf = buf;
  a->cap = buf ? cap : 0;
  a->used = 0;
  a->spill = NULL;
}

void *eplb__arena_take(eplb__arena_t *a, size_t bytes) {
  size_t n = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
  if (n < bytes)
    return NULL; /* overflow */
  /* Under AddressSanitizer every take is a malloc of its own, so that an
   * overrun of one piece is caught and not hidden in the next. */
#if !defined(__SANITIZE_ADDRESS__)
  if (n <= a->cap - a->used) {
#else
  if (0) {
#endif
    void *p = a->buf + a->used;
    a->used += n;
    return p;
  }
  if (n > SIZE_MAX - ARENA_ALIGN)
    return NULL;
  void **blk = malloc(ARENA_ALIGN + n);
  if (blk == NULL)
    return NULL;
  blk[0] = a->spill;
  a->spill = blk;
  return (unsigned char *)blk + ARENA_ALIGN;
}

void eplb__arena_done(eplb__arena_t *a) {
  while (a->spill != NULL) {
    void **blk = a->spill;
    a->spill = blk[0];
    free(blk);
  }
}

/* Tournament (winner) tree over the bins, for greedy packing: leaf P + b
 * holds bin b (leaves past the last bin hold the sentinel bin P); each
 * inner node holds the lighter of its children, its index in ni[] and its
 * effective weight in nw[] (ties: lower bin), so node 1 is the lightest bin
 * with room.  A bin that is full, or set aside, weighs +inf.  Weights are
 * kept as their IEEE-754 bit patterns, which order like the values for the
 * finite non-negative sums and +inf seen here (bins start at +0.0).  Every
 * bin of a left subtree has a lower index than every bin of the right one,
 * so a tie goes to the left child: the match of a node is one integer
 * compare, `sibling < current + (current is the right child)`, and a
 * select.  Re-weighing a bin replays log2(P) such matches reading only the
 * sibling (weight and index side by side, no dependent load). */
typedef struct {
  uint64_t *nw; /* [2P] winner's weight (bits) per node */
  int32_t *ni;  /* [2P] winner's bin per node */
  int32_t P;
} bin_tree_t;

static inline uint64_t wbits(double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof(u));
  return u;
}

/* Sets bin b's effective weight to v and replays its matches, carrying the
 * winner in registers; returns the new overall winner (node 1), so that the
 * next pick need not reload it through a store.  The sibling wins a match
 * when sw < cw + r (r: current is the right child), i.e. when
 * cw >= sw + 1 - r: that limit comes from the sibling alone (loaded off the
 * chain), leaving one compare and one cmov per level on the chain from
 * level to level instead of an add, a compare and a cmov.  (No overflow:
 * weights are finite or +inf, far below 2^64 - 1.)  With the winner
 * returned: a balanced plan (1 thread, DeepSeek-V3 statistics) on 288
 * slots / 36 GPUs 1.091 to 1.069 ms (2%), 256 / 32 1.525 to 1.503 ms,
 * 320 / 64 the same within noise; DeepSeek's plan on 288 / 36 0.468 to
 * 0.437 ms (7%). */
static int32_t tree_set(bin_tree_t *t, int32_t b, double v) {
  uint64_t *nw = t->nw;
  int32_t *ni = t->ni;
  uint64_t cw = wbits(v);
  int32_t ci = b;
  uint32_t i = (uint32_t)t->P + (uint32_t)b;
  nw[i] = cw;
  while (i > 1) {
    uint64_t sw = nw[i ^ 1];
    int32_t si = ni[i ^ 1];
    uint64_t lim = sw + 1 - (i & 1);
    /* Not ?: - the compiler turned those into a branch that the predictor
     * gets wrong every other level.  On x86-64 two conditional moves (GCC
     * will not emit cmov here itself): 8% of a whole balanced plan.
     * Elsewhere masks. */
#if defined(__x86_64__) && defined(__GNUC__)
    __asm__("cmpq %[lim], %[cw]\n\t"
            "cmovaeq %[sw], %[cw]\n\t"
            "cmovael %[si], %[ci]"
            : [cw] "+r"(cw), [ci] "+r"(ci)
            : [sw] "r"(sw), [si] "r"(si), [lim] "r"(lim)
            : "cc");
#else
    uint64_t take = 0 - (uint64_t)(cw >= lim);
    cw = (sw & take) | (cw & ~take);
    ci = (int32_t)(((uint32_t)si & (uint32_t)take) | ((uint32_t)ci & ~(uint32_t)take));
#endif
    i >>= 1;
    nw[i] = cw;
    ni[i] = ci;
  }
  return ci;
}

/* Effective weight of bin b (bits). */
static inline uint64_t tree_weight(const bin_tree_t *t, int32_t b) {
  return t->nw[t->P + b];
}

static void tree_init(bin_tree_t *t, int32_t bins) {
  for (int32_t i = 0; i < t->P; i++) {
    t->nw[t->P + i] = wbits(i < bins ? 0.0 : HUGE_VAL);
    t->ni[t->P + i] = i < bins ? i : t->P;
  }
  for (int32_t i = t->P - 1; i >= 1; i--) {
    int right = t->nw[2 * i + 1] < t->nw[2 * i];
    t->nw[i] = t->nw[2 * i + right];
    t->ni[i] = t->ni[2 * i + right];
  }
}

/* 1 when bin b already holds an item with key k: bit b of kset[k] when
 * there is a set (up to 64 bins), else the items placed with key k are
 * chained from head[k] through next[] (usually zero or one). */
static int bin_has_key(const uint64_t *kset, const int32_t *head,
                       const int32_t *next, const int32_t *bin_of, int32_t b,
                       int32_t k) {
  if (kset != NULL) /* up to 64 bins: bit b of kset[k] is bin b */
    return (int)(kset[k] >> b & 1);
  for (int32_t it = head[k]; it >= 0; it = next[it])
    if (bin_of[it] == b)
      return 1;
  return 0;
}

/* Picks the lightest bin with room for item i, without a key clash when
 * some bin allows (bins that clash are set aside in held[] and restored),
 * else the lightest of all.  ++*nclash when a clash moved the item off the
 * plain lightest bin, ++*nforced when it goes to a bin with its key.
 * bin_w[] are the true weights. */
static int32_t pick_bin(bin_tree_t *t, const double *bin_w, const int32_t *key,
                        const uint64_t *kset, const int32_t *head,
                        const int32_t *next, const int32_t *bin_of,
                        int32_t i, int32_t *held, int32_t root,
                        int32_t *nclash, int32_t *nforced) {
  int32_t best = root, nheld = 0;
  if (key == NULL)
    return best;
  while (best < t->P && bin_has_key(kset, head, next, bin_of, best, key[i])) {
    held[nheld++] = best;
    best = tree_set(t, best, HUGE_VAL);
    if (tree_weight(t, best) == wbits(HUGE_VAL))
      best = t->P; /* no bin with room is left */
  }
  for (int32_t j = 0; j < nheld; j++)
    tree_set(t, held[j], bin_w[held[j]]);
  if (nheld > 0)
    (*nclash)++;
  if (best >= t->P) { /* every bin with room clashes: take the lightest */
    (*nforced)++;
    best = held[0];
    for (int32_t j = 1; j < nheld; j++)
      if (bin_w[held[j]] < bin_w[best] ||
          (bin_w[held[j]] == bin_w[best] && held[j] < best))
        best = held[j];
  }
  return best;
}

int eplb__pack_greedy(const double *w, const int32_t *order, int32_t n,
                      int32_t bins, int32_t cap, const int32_t *key,
                      int32_t *bin_of, int32_t *rank_of, int32_t *clashes,
                      eplb_error_t *err) {
  eplb__pack_info_t info;
  eplb__arena_t ar;
  eplb__arena_init(&ar, NULL, 0);
  int rc = eplb__pack_greedy_from(w, order, n, bins, cap, key, 0, HUGE_VAL,
                                  bin_of, rank_of, &info, &ar, err);
  eplb__arena_done(&ar);
  if (rc == 0 && clashes)
    *clashes = info.clashes;
  return rc;
}

int eplb__pack_greedy_from(const double *w, const int32_t *order, int32_t n,
                           int32_t bins, int32_t cap, const int32_t *key,
                           int32_t from, double stop_at, int32_t *bin_of,
                           int32_t *rank_of, eplb__pack_info_t *info,
                           eplb__arena_t *ar, eplb_error_t *err) {
  int32_t P = 1, kmax = 0;
  while (P < bins)
    P *= 2;
  if (key != NULL)
    for (int32_t i = 0; i < n; i++)
      kmax = key[i] > kmax ? key[i] : kmax;
  size_t mark = ar->used;
  double *bin_w = eplb__arena_take(ar, sizeof(double) * (size_t)bins);
  int32_t *bin_n = eplb__arena_take(ar, sizeof(int32_t) * (size_t)bins);
  int32_t *ni = eplb__arena_take(ar, sizeof(int32_t) * 2 * (size_t)P);
  uint64_t *nw = eplb__arena_take(ar, sizeof(uint64_t) * 2 * (size_t)P);
  int32_t *held = eplb__arena_take(ar, sizeof(int32_t) * (size_t)bins);
  /* Up to 64 bins, the bins holding key k are a bit set kset[k]: a clash
   * test is one load and a shift, not a walk along the chain of the
   * items placed with k, whose varying length the branch predictor
   * missed (about a quarter of the packing's time in perf).  A balanced
   * plan (1 thread, DeepSeek-V3 statistics) went from 1.103 to 1.078 ms on
   * 288 slots / 36 GPUs (2.3%), 2.24 to 2.17 ms on 320 / 64, 256 / 32 the
   * same within noise.  8 bytes a key, no more than the chains' 4 a key
   * and 4 an item that plan_flat's arena is sized for. */
  int use_set = key != NULL && bins <= 64;
  uint64_t *kset =
      use_set ? eplb__arena_take(ar, sizeof(uint64_t) * ((size_t)kmax + 1))
              : NULL;
  int32_t *head =
      key && !use_set
          ? eplb__arena_take(ar, sizeof(int32_t) * ((size_t)kmax + 1))
          : NULL;
  int32_t *next = key && !use_set
                      ? eplb__arena_take(ar, sizeof(int32_t) * (size_t)n)
                      : NULL;
  int rc = 0;
  if (!bin_w || !bin_n || !ni || !nw || !held || (use_set && !kset) ||
      (key && !use_set && (!head || !next))) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory packing %d items",
                        (int)n);
    goto done;
  }
  memset(bin_w, 0, sizeof(double) * (size_t)bins); /* +0.0 */
  memset(bin_n, 0, sizeof(int32_t) * (size_t)bins);
  if (key != NULL) {
    for (int32_t k = 0; k <= kmax; k++) {
      if (use_set)
        kset[k] = 0;
      else
        head[k] = -1;
    }
    for (int32_t k = 0; k < from; k++) {
      int32_t i = order[k];
      if (use_set) {
        kset[key[i]] |= (uint64_t)1 << bin_of[i];
      } else {
        next[i] = head[key[i]];
        head[key[i]] = i;
      }
    }
  }
  /* The first `from` items as given: their weights added in the same
   * order give the same sums, and a winner tree is a function of its
   * leaves (ties to the left child both in tree_init and tree_set), so
   * the state is the one packing them would have left. */
  for (int32_t k = 0; k < from; k++) {
    int32_t i = order[k];
    bin_n[bin_of[i]]++;
    bin_w[bin_of[i]] += w[i];
  }
  bin_tree_t t = {.nw = nw, .ni = ni, .P = P};
  tree_init(&t, bins);
  for (int32_t b = 0; from > 0 && b < bins; b++)
    if (bin_n[b] > 0)
      tree_set(&t, b, bin_n[b] < cap ? bin_w[b] : HUGE_VAL);
  int32_t nclash = 0, nforced = 0, first = n, k = from, root = ni[1];
  info->stopped = 0;
  for (; k < n; k++) {
    int32_t i = order[k];
    int32_t best =
        pick_bin(&t, bin_w, key, kset, head, next, bin_of, i, held,
                 root, &nclash, &nforced);
    if (nclash == 1 && first == n)
      first = k;
    bin_of[i] = best;
    rank_of[i] = bin_n[best];
    if (use_set) {
      kset[key[i]] |= (uint64_t)1 << best;
    } else if (key != NULL) {
      next[i] = head[key[i]];
      head[key[i]] = i;
    }
    bin_n[best]++;
    bin_w[best] += w[i];
    root = tree_set(&t, best, bin_n[best] < cap ? bin_w[best] : HUGE_VAL);
    if (bin_w[best] >= stop_at) { /* sums only grow: the end is no lower */
      info->stopped = 1;
      info->max = bin_w[best];
      break;
    }
  }
  info->clashes = nclash;
  info->forced = nforced;
  info->first_clash = first;
  if (!info->stopped) {
    double most = 0;
    for (int32_t b = 0; b < bins; b++)
      most = b == 0 || bin_w[b] > most ? bin_w[b] : most;
    info->max = most;
  }
done:
  ar->used = mark;
  return rc;
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
  const uint64_t inf = wbits(HUGE_VAL);
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
      uint64_t ok = 0 - (uint64_t)((d > 0) & (d < gap)), nb = wbits(nm);
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
 * per iteration.  The scalar loop carries mn and am from slot to slot;
 * this took a balanced plan (1 thread, DeepSeek-V3 statistics, 288 slots on
 * 36 GPUs and 320 on 64) from 1.53 to 1.36 ms and 2.86 to 2.54 ms, 9 to
 * 11%; 256 on 32, where the general search is most of the time, 0 to 3%.
 * AVX-512 (8 to a register) was 3% slower than this on Zen 5, so there is
 * none.  Bit for bit the scalar result: MAXPD(x, y) is x > y ? x : y, the
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
  __m128d m = _mm_min_pd(_mm256_castpd256_pd128(v),
                         _mm256_extractf128_pd(v, 1));
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

void eplb__local_search(eplb__layout_t *lay, int32_t max_iters,
                        int tiered) {
  eplb__arena_t ar;
  eplb__arena_init(&ar, NULL, 0);
  eplb__local_search_a(lay, max_iters, tiered, &ar);
  eplb__arena_done(&ar);
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
