/* plan/swap_index.c - the local search and the refinement beyond 256
 * GPUs, their swap partners found through an index of the experts by
 * weight instead of a scan of the GPUs.
 *
 * DESIGN.  The local search (local_search.c) takes the most loaded GPU g
 * and looks for the swap (a on g, b on h) that makes max(load_g', load_h')
 * smallest.  Scanning the GPUs for it costs O(G) a swap, and at thousands
 * of GPUs a plan makes about as many swaps as there are GPUs: O(G^2) a
 * layer.  But every slot of one expert weighs the same (its load over its
 * replicas), so a swap of slot a (weight w_a; g's load lg) with a replica
 * of expert y (weight w_y) on GPU h leaves
 *     max(lg - w_a + w_y, lh + w_a - w_y),
 * which for a given y only grows with lh: the best partner holding y is
 * the lightest GPU that holds it (and not a's expert).  So each class -
 * an expert, or with tiers an (expert, rank on its GPU) - keeps its GPUs
 * in a heap by load, whose top m gives k = w_y - m, and the experts
 * sorted by weight carry k in a max segment tree (one per rank with
 * tiers).  Over the experts lighter than w_a, the first term grows with
 * w_y and the second, minimised over a prefix of them, is w_a minus the
 * prefix's largest k, which falls: the best partner is at their crossing,
 * found by one descent of the tree (O(log E)), the prefix's best before
 * it or the expert there.  A candidate on g (it would be there twice) or
 * whose lightest GPU holds a's expert has its leaf lowered to what it
 * really gives and the descent is repeated (the tree's k only overstate,
 * so valid candidates are the best).  A swap changes two GPUs' loads: 2 x
 * per heap entries and leaves move.  The swap made is the best one for g
 * (ties may go to another GPU than the scan's), so the search stops where
 * the scan would - but for one bound (VISITS) on how far a slot's search
 * looks past GPUs holding its own expert.
 *
 * The refinement (eplb__refine_index) is refine.c's search without move
 * costs: each step, for the most loaded GPU that has one (of the top
 * four), the move that removes the most load above the mean - the swap
 * found by branch and bound over the same tree, or one of refine.c's
 * replica-count moves, judged from sums kept per expert.  A count move
 * changes the replicas of two experts, so their heaps have room to grow
 * (laid out again when one is full), and every GPU holding either is
 * moved. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

typedef struct {
  eplb__layout_t *lay;
  int32_t per, ny, ne;
  int tiered;        /* a slot swaps only with the slot of its rank */
  int32_t ncls;      /* heaps: one per expert, or per (rank, expert) */
  int32_t *ys;       /* [ne] experts present, by weight ascending */
  double *yw;        /* [ne] their weights */
  int32_t *ypos;     /* [ne] each expert's place in ys (-1: none) */
  int32_t *hoff;     /* [ncls + 1] class c's heap: from hoff[c], room up to
                        hoff[c + 1] */
  int32_t *hn;       /* [ncls] its size */
  int32_t *hslot;    /* [cap] the heaps: slots, lightest GPU first */
  double *hkey;      /* [cap] their GPUs' loads */
  int32_t *hpos;     /* [S] where slot s sits in hslot */
  int32_t *fill;     /* [ncls] scratch of relayout */
  int room;          /* heaps have room to grow (count moves; tiered: a
                        swap moves slots between ranks) */
  unsigned char *on; /* [ne] experts of the GPU being relieved */
  int32_t P;         /* leaves of a tree: a power of two >= ne */
  double *tk;        /* [trees x 2P] largest k below each node; tree t
                        (rank t when tiered, else 0) from tk + 2P t */
  int32_t *ta;       /* [trees x 2P] where it is (a place in ys) */
  eplb__order_t ord; /* the GPUs by load */
  int32_t visits;    /* heap entries a slot's search may still visit for a
                        partner without its expert */
  /* the refinement (count moves; not tiered) */
  const double *eload; /* [ne] each expert's load */
  double mean;         /* mean GPU load */
  int32_t *stamp;      /* [G] GPUs listed for a count move */
  int32_t *touched;    /* [G] */
  int32_t tick;
  int32_t *above;      /* [ne] GPUs above the mean holding each expert */
  int defer;           /* leaves left to one tree_build (a count move) */
  double *dch[2];      /* [ne] each expert's weight change if it gained
                          (0) or lost (1) a replica */
  double *gsum[2];     /* [ne] load above the mean its GPUs would lose by
                          that change (lose < 0: gain), kept up to date */
} sx_t;

static double pos(double v) { return v > 0 ? v : 0; }

/* The heap class of slot s: its expert, and its rank when tiered (slots
 * kept heaviest first). */
static inline int32_t cls_of(const sx_t *x, int32_t s) {
  int32_t e = x->lay->expert[s];
  return x->tiered ? (s % x->per) * x->ne + e : e;
}

/* Leaf p of tree t takes k (-HUGE_VAL: masked, or none); the path to the
 * root follows (ties: the left, lighter, one). */
static void leaf_set(sx_t *x, int32_t t, int32_t p, double k) {
  double *tk = x->tk + (size_t)2 * x->P * t;
  int32_t *ta = x->ta + (size_t)2 * x->P * t, i = x->P + p;
  tk[i] = k;
  ta[i] = p;
  for (i /= 2; i >= 1; i /= 2) {
    int32_t l = 2 * i, r = l + 1, w = tk[r] > tk[l] ? r : l;
    if (tk[i] == tk[w] && ta[i] == ta[w])
      break; /* the rest of the path holds already */
    tk[i] = tk[w];
    ta[i] = ta[w];
  }
}

/* Class c's leaf from its heap's top. */
static void leaf_of(sx_t *x, int32_t c) {
  int32_t t = c / x->ne, e = c % x->ne, p = x->ypos[e];
  leaf_set(x, t, p, x->hn[c] > 0 ? x->yw[p] - x->hkey[x->hoff[c]] : -HUGE_VAL);
}

/* Every tree from its leaves. */
static void tree_build(sx_t *x) {
  int32_t trees = x->tiered ? x->per : 1;
  for (int32_t t = 0; t < trees; t++) {
    double *tk = x->tk + (size_t)2 * x->P * t;
    int32_t *ta = x->ta + (size_t)2 * x->P * t;
    for (int32_t i = 0; i < x->P; i++) {
      int32_t c = i < x->ny ? t * x->ne + x->ys[i] : -1;
      tk[x->P + i] = c >= 0 && x->hn[c] > 0 ? x->yw[i] - x->hkey[x->hoff[c]]
                                             : -HUGE_VAL;
      ta[x->P + i] = i;
    }
    for (int32_t i = x->P - 1; i >= 1; i--) {
      int32_t l = 2 * i, r = l + 1, w = tk[r] > tk[l] ? r : l;
      tk[i] = tk[w];
      ta[i] = ta[w];
    }
  }
}

/* (ka, sa) before (kb, sb) in a heap: lighter, ties lower slot. */
static inline int hbefore(double ka, int32_t sa, double kb, int32_t sb) {
  return ka < kb || (ka == kb && sa < sb);
}

static inline void hput(sx_t *x, int32_t i, int32_t s, double k) {
  x->hslot[i] = s;
  x->hkey[i] = k;
  x->hpos[s] = i;
}

/* The entry at index i of the heap [base, base + n) took a new key: moved
 * up or down to its place. */
static void hfix(sx_t *x, int32_t base, int32_t n, int32_t i) {
  int32_t s = x->hslot[i];
  double k = x->hkey[i];
  int32_t j = i - base;
  while (j > 0) {
    int32_t p = (j - 1) / 2;
    if (!hbefore(k, s, x->hkey[base + p], x->hslot[base + p]))
      break;
    hput(x, base + j, x->hslot[base + p], x->hkey[base + p]);
    j = p;
  }
  for (;;) {
    int32_t c = 2 * j + 1;
    if (c >= n)
      break;
    if (c + 1 < n && hbefore(x->hkey[base + c + 1], x->hslot[base + c + 1],
                             x->hkey[base + c], x->hslot[base + c]))
      c++;
    if (!hbefore(x->hkey[base + c], x->hslot[base + c], k, s))
      break;
    hput(x, base + j, x->hslot[base + c], x->hkey[base + c]);
    j = c;
  }
  hput(x, base + j, s, k);
}

/* Slot s (its class c) leaves its heap. */
static void heap_del(sx_t *x, int32_t c, int32_t s) {
  int32_t i = x->hpos[s], last = x->hoff[c] + --x->hn[c];
  if (i != last) {
    hput(x, i, x->hslot[last], x->hkey[last]);
    hfix(x, x->hoff[c], x->hn[c], i);
  }
}

static void relayout(sx_t *x);

/* Slot s joins class c's heap at key k (laid out again when full). */
static void heap_add(sx_t *x, int32_t c, int32_t s, double k) {
  if (x->hoff[c] + x->hn[c] == x->hoff[c + 1]) {
    relayout(x); /* s is in the layout already: placed there */
    return;
  }
  int32_t i = x->hoff[c] + x->hn[c]++;
  hput(x, i, s, k);
  hfix(x, x->hoff[c], x->hn[c], i);
}

/* Lays the heaps out again from the layout (each class's room: its size,
 * and with x->room a quarter and 8 more). */
static void relayout(sx_t *x) {
  const eplb__layout_t *lay = x->lay;
  int32_t S = lay->G * x->per, at = 0;
  memset(x->hn, 0, sizeof(int32_t) * (size_t)x->ncls);
  for (int32_t s = 0; s < S; s++)
    x->hn[cls_of(x, s)]++;
  for (int32_t c = 0; c < x->ncls; c++) {
    x->hoff[c] = at;
    x->fill[c] = at;
    at += x->hn[c] + (x->room ? x->hn[c] / 4 + 8 : 0);
  }
  x->hoff[x->ncls] = at;
  for (int32_t s = 0; s < S; s++) {
    int32_t c = cls_of(x, s), base = x->hoff[c], i = x->fill[c]++;
    hput(x, i, s, lay->load[s / x->per]);
    hfix(x, base, i - base + 1, i);
  }
}

/* Load above the mean a GPU of load l loses when it changes by d. */
static inline double excess_drop(double mean, double l, double d) {
  return pos(l - mean) - pos(l + d - mean);
}

/* Expert e's part of the GPU of load l in gsum, added (sign 1) or taken
 * out (-1). */
static inline void gsum_add(sx_t *x, int32_t e, double l, double sign) {
  x->gsum[0][e] += sign * excess_drop(x->mean, l, x->dch[0][e]);
  x->gsum[1][e] += sign * excess_drop(x->mean, l, x->dch[1][e]);
}

/* Expert e's weight changes and gsum, from its heap (after its count
 * changed, or to start). */
static void gsum_of(sx_t *x, int32_t e) {
  double w = x->yw[x->ypos[e]], l = x->eload[e];
  x->dch[0][e] = l / (x->hn[e] + 1) - w;
  x->dch[1][e] = x->hn[e] > 1 ? l / (x->hn[e] - 1) - w : 0;
  x->gsum[0][e] = x->gsum[1][e] = 0;
  for (int32_t i = x->hoff[e]; i < x->hoff[e] + x->hn[e]; i++)
    gsum_add(x, e, x->hkey[i], 1);
}

/* GPU g's load becomes l: its slots' heap entries, their leaves (unless
 * deferred) and the above-mean counts follow. */
static void gpu_set(sx_t *x, int32_t g, double l) {
  eplb__layout_t *lay = x->lay;
  int cross = x->above != NULL && (lay->load[g] > x->mean) != (l > x->mean);
  int32_t sign = l > x->mean ? 1 : -1;
  double old = lay->load[g];
  lay->load[g] = l;
  for (int32_t j = 0; j < x->per; j++) {
    int32_t s = g * x->per + j, c = cls_of(x, s), i = x->hpos[s];
    if (x->gsum[0] != NULL) {
      gsum_add(x, lay->expert[s], old, -1);
      gsum_add(x, lay->expert[s], l, 1);
    }
    x->hkey[i] = l;
    hfix(x, x->hoff[c], x->hn[c], i);
    if (!x->defer)
      leaf_of(x, c);
    if (cross)
      x->above[lay->expert[s]] += sign;
  }
  eplb__order_set(&x->ord, g, l);
}

/* Slot s's expert becomes e (its GPU's load unchanged yet): the
 * above-mean counts follow. */
static void slot_expert(sx_t *x, int32_t s, int32_t e) {
  eplb__layout_t *lay = x->lay;
  double l = lay->load[s / x->per];
  if (x->above != NULL && l > x->mean) {
    x->above[lay->expert[s]]--;
    x->above[e]++;
  }
  if (x->gsum[0] != NULL) {
    gsum_add(x, lay->expert[s], l, -1);
    gsum_add(x, e, l, 1);
  }
  lay->expert[s] = e;
}

/* 1 when GPU h holds expert e. */
static inline int row_holds(const eplb__layout_t *lay, int32_t h, int32_t e) {
  const int32_t *row = lay->expert + (size_t)h * lay->per;
  for (int32_t j = 0; j < lay->per; j++)
    if (row[j] == e)
      return 1;
  return 0;
}

/* Heap entries one slot's search visits, at most, looking past GPUs that
 * hold the slot's expert for a partner: an expert on most GPUs would
 * otherwise send it through most of every candidate's heap.  What is not
 * found within counts as no partner (that slot's best swap may be
 * missed, never an invalid one made). */
#define VISITS 64

/* Best swap for g so far. */
typedef struct {
  double nmax;
  int32_t sa, sb;
} best_t;

/* The lightest GPU of a heap (from its entry j on, a subtree) that does
 * not hold expert xa and is lighter than lim: its slot, or -1.  The top
 * nearly always qualifies; otherwise the subtrees are searched, cut where
 * the keys reach lim. */
static int32_t lightest_without(sx_t *x, int32_t base, int32_t n,
                                int32_t j, int32_t xa, double lim) {
  if (j >= n || !(x->hkey[base + j] < lim) || x->visits-- <= 0)
    return -1;
  int32_t s = x->hslot[base + j];
  if (!row_holds(x->lay, s / x->per, xa))
    return s;
  int32_t l = lightest_without(x, base, n, 2 * j + 1, xa, lim);
  double ll = l >= 0 ? x->hkey[x->hpos[l]] : lim;
  int32_t r = lightest_without(x, base, n, 2 * j + 2, xa, ll);
  return r >= 0 ? r : l;
}

/* Swap of slot sa (weight wa) of g (lg) with slot sb (weight wy, its
 * GPU's load lh) as the best so far, when it is better. */
static inline void offer(int32_t sa, double wa, double lg, int32_t sb,
                         double wy, double lh, best_t *b) {
  double d = wa - wy;
  if (!(d > 0) || !(d < lg - lh))
    return;
  double ng = lg - d, nh = lh + d, nm = ng > nh ? ng : nh;
  if (nm < b->nmax) {
    b->nmax = nm;
    b->sa = sa;
    b->sb = sb;
  }
}

/* The partner in class c (expert y, weight wy) for slot sa (expert xa,
 * weight wa) of the GPU of load lg being relieved. */
static inline void try_class(sx_t *x, int32_t c, double wy, int32_t sa,
                             int32_t xa, double wa, double lg, best_t *b) {
  if (x->on[c % x->ne])
    return; /* y would be on g twice (or is a's expert) */
  int32_t sb = lightest_without(x, x->hoff[c], x->hn[c], 0, xa,
                                b->nmax - wa + wy);
  if (sb >= 0)
    offer(sa, wa, lg, sb, wy, x->hkey[x->hpos[sb]], b);
}

/* First place of ys whose weight is >= t. */
static int32_t first_at_least(const sx_t *x, double t) {
  int32_t lo = 0, hi = x->ny;
  while (lo < hi) {
    int32_t mid = (lo + hi) / 2;
    if (x->yw[mid] < t)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The walk for slot sa (expert xa, weight wa; classes of tree t) of g
 * (lg), l0 the lightest GPU's load: the experts outward from the weight
 * that splits the gap with the lightest GPU evenly, each direction until
 * even the lightest GPU cannot beat the best swap found. */
static void walk(sx_t *x, int32_t t, int32_t sa, int32_t xa, double wa,
                 double lg, double l0, best_t *b) {
  int32_t p0 = first_at_least(x, wa - (lg - l0) / 2);
  for (int32_t p = p0 - 1; p >= 0; p--) { /* lighter: h's side grows */
    double wy = x->yw[p];
    if (!(l0 + wa - wy < b->nmax))
      break;
    try_class(x, t * x->ne + x->ys[p], wy, sa, xa, wa, lg, b);
  }
  for (int32_t p = p0; p < x->ny; p++) { /* heavier, below wa: g's grows */
    double wy = x->yw[p];
    if (!(wy < wa) || !(lg - wa + wy < b->nmax))
      break;
    try_class(x, t * x->ne + x->ys[p], wy, sa, xa, wa, lg, b);
  }
}

/* Classes whose leaf one slot's descent corrected (g holds the expert, or
 * its lightest GPU holds the slot's) before the walk is taken instead. */
#define MAX_FIXES 16

/* The first place p below lim in tree t where d0 + w_p reaches wa minus
 * the largest k up to p: *am gets the place of the largest k before p (-1:
 * none); -1 when there is no such p (*am: the largest below lim). */
static int32_t crossing(const sx_t *x, int32_t t, int32_t lim, double d0,
                        double wa, int32_t *am) {
  const double *tk = x->tk + (size_t)2 * x->P * t;
  const int32_t *ta = x->ta + (size_t)2 * x->P * t;
  double m = -HUGE_VAL;
  int32_t node = 1, lo = 0, span = x->P;
  *am = -1;
  while (node < x->P) {
    int32_t half = span / 2, mid = lo + half, l = 2 * node;
    span = half;
    if (mid >= lim) { /* the right half is no lighter than wa */
      node = l;
      continue;
    }
    double ml = tk[l] > m ? tk[l] : m;
    if (d0 + x->yw[mid - 1] + ml >= wa) {
      node = l;
    } else {
      if (tk[l] > m) {
        m = tk[l];
        *am = ta[l];
      }
      node = l + 1;
      lo = mid;
    }
  }
  double mk = tk[node] > m ? tk[node] : m;
  if (d0 + x->yw[lo] + mk >= wa)
    return lo;
  if (tk[node] > m)
    *am = lo;
  return -1;
}

/* The best partner of slot sa (expert xa, weight wa) of g (lg) through the
 * tree (see the DESIGN note): the candidates are the best k before the
 * crossing and the expert at it.  The tree's k are those of each class's
 * lightest GPU, so they can only overstate what a partner gives: a
 * candidate that g holds, or whose lightest GPU holds xa, has its leaf
 * set to what it really gives (its lightest GPU without xa), and the
 * descent is made again; once both candidates are valid, they are the
 * best.  The leaves are put back afterwards. */
static void descend(sx_t *x, int32_t sa, int32_t xa, double wa, double lg,
                    double l0, best_t *b) {
  int32_t lim = first_at_least(x, wa); /* places below: lighter than wa */
  if (lim == 0)
    return;
  int32_t t = x->tiered ? sa % x->per : 0, tc = t * x->ne;
  int32_t fixed[MAX_FIXES], fslot[MAX_FIXES], nf = 0, cand[2], ok = 0;
  while (!ok) {
    int32_t am, p = crossing(x, t, lim, lg - wa, wa, &am);
    cand[0] = am;
    cand[1] = p;
    ok = 1;
    for (int k = 0; k < 2 && ok; k++) {
      int32_t q = cand[k];
      if (q < 0 || x->tk[(size_t)2 * x->P * t + x->P + q] == -HUGE_VAL)
        continue;
      int32_t f = 0;
      while (f < nf && fixed[f] != q)
        f++;
      if (f < nf)
        continue; /* corrected already: its leaf is its true partner */
      int32_t y = x->ys[q], c = tc + y, base = x->hoff[c];
      if (!x->on[y] && !row_holds(x->lay, x->hslot[base] / x->per, xa))
        continue;
      ok = 0;
      if (nf == MAX_FIXES) { /* many clashes: the walk */
        for (f = 0; f < nf; f++)
          leaf_of(x, tc + x->ys[fixed[f]]);
        walk(x, t, sa, xa, wa, lg, l0, b);
        return;
      }
      /* A GPU at lh >= nmax - wa + w_y cannot beat the best found. */
      int32_t sb = x->on[y] ? -1
                            : lightest_without(x, base, x->hn[c], 0, xa,
                                               b->nmax - wa + x->yw[q]);
      fixed[nf] = q;
      fslot[nf++] = sb;
      leaf_set(x, t, q,
               sb < 0 ? -HUGE_VAL : x->yw[q] - x->hkey[x->hpos[sb]]);
    }
  }
  for (int k = 0; k < 2; k++) {
    int32_t q = cand[k];
    if (q < 0 || x->tk[(size_t)2 * x->P * t + x->P + q] == -HUGE_VAL)
      continue;
    int32_t sb = x->hslot[x->hoff[tc + x->ys[q]]];
    for (int32_t f = 0; f < nf; f++)
      if (fixed[f] == q)
        sb = fslot[f];
    offer(sa, wa, lg, sb, x->yw[q], x->hkey[x->hpos[sb]], b);
  }
  for (int32_t f = 0; f < nf; f++)
    leaf_of(x, tc + x->ys[fixed[f]]);
}

/* The best swap relieving GPU g (lg) over every slot of g, l0 the lightest
 * GPU's load.  A slot whose expert every GPU holds has no partner. */
static void best_swap(sx_t *x, int32_t g, double lg, double l0, best_t *b) {
  const eplb__layout_t *lay = x->lay;
  const int32_t *row = lay->expert + (size_t)g * x->per;
  for (int32_t j = 0; j < x->per; j++)
    x->on[row[j]] = 1;
  for (int32_t j = 0; j < x->per; j++) {
    int32_t s = g * x->per + j;
    x->visits = VISITS;
    if (x->tiered || x->hn[row[j]] < lay->G)
      descend(x, s, row[j], lay->w[s], lg, l0, b);
  }
  for (int32_t j = 0; j < x->per; j++)
    x->on[row[j]] = 0;
}

/* The place in ys where expert e of weight w goes among ys[0..n) (by
 * weight, ties: the higher expert first). */
static int32_t place_for(const sx_t *x, int32_t n, double w, int32_t e) {
  int32_t lo = 0, hi = n;
  while (lo < hi) {
    int32_t mid = (lo + hi) / 2;
    if (x->yw[mid] < w || (x->yw[mid] == w && x->ys[mid] > e))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Tiered: GPU g's slots kept heaviest first (insertion sort). */
static void row_sort(eplb__layout_t *lay, int32_t g) {
  int32_t per = lay->per, *e = lay->expert + (size_t)g * per;
  double *w = lay->w + (size_t)g * per;
  for (int32_t i = 1; i < per; i++) {
    double wi = w[i];
    int32_t ei = e[i], j = i;
    for (; j > 0 && w[j - 1] < wi; j--) {
      w[j] = w[j - 1];
      e[j] = e[j - 1];
    }
    w[j] = wi;
    e[j] = ei;
  }
}

/* The index over lay (experts below ne; with eload[ne], their loads, room
 * for count moves): experts by weight, the heaps, the trees, the GPUs in
 * load order.  0 or -1 (out of memory). */
static int sx_init(sx_t *x, eplb__layout_t *lay, int32_t ne, int tiered,
                   const double *eload, eplb__arena_t *ar) {
  int32_t S = lay->G * lay->per, G = lay->G;
  *x = (sx_t){.lay = lay, .per = lay->per, .ne = ne, .tiered = tiered,
              .eload = eload, .room = eload != NULL || tiered};
  x->ncls = tiered ? lay->per * ne : ne;
  size_t szE = (size_t)ne, szC = (size_t)x->ncls, trees = tiered ? lay->per : 1;
  size_t cap = (size_t)S + (x->room ? (size_t)S / 4 + 8 * szC : 0);
  for (x->P = 1; x->P < ne; x->P *= 2)
    ;
  x->ys = eplb__arena_take(ar, sizeof(int32_t) * szE);
  x->yw = eplb__arena_take(ar, sizeof(double) * szE);
  x->ypos = eplb__arena_take(ar, sizeof(int32_t) * szE);
  x->hoff = eplb__arena_take(ar, sizeof(int32_t) * (szC + 1));
  x->hn = eplb__arena_take(ar, sizeof(int32_t) * szC);
  x->fill = eplb__arena_take(ar, sizeof(int32_t) * szC);
  x->hslot = eplb__arena_take(ar, sizeof(int32_t) * cap);
  x->hkey = eplb__arena_take(ar, sizeof(double) * cap);
  x->hpos = eplb__arena_take(ar, sizeof(int32_t) * (size_t)S);
  x->on = eplb__arena_take(ar, szE);
  x->tk = eplb__arena_take(ar, sizeof(double) * 2 * (size_t)x->P * trees);
  x->ta = eplb__arena_take(ar, sizeof(int32_t) * 2 * (size_t)x->P * trees);
  int32_t *order = eplb__arena_take(ar, sizeof(int32_t) * szE);
  double *ew = eplb__arena_take(ar, sizeof(double) * szE);
  int32_t *cnt = eplb__arena_take(ar, sizeof(int32_t) * szE);
  if (!x->ys || !x->yw || !x->ypos || !x->hoff || !x->hn || !x->fill ||
      !x->hslot || !x->hkey || !x->hpos || !x->on || !x->tk || !x->ta ||
      !order || !ew || !cnt)
    return -1;
  if (tiered)
    for (int32_t g = 0; g < G; g++)
      row_sort(lay, g);
  memset(x->on, 0, szE);
  memset(cnt, 0, sizeof(int32_t) * szE);
  for (int32_t s = 0; s < S; s++) {
    cnt[lay->expert[s]]++;
    ew[lay->expert[s]] = lay->w[s];
  }
  /* The experts present by weight, lightest first (ties: the higher
   * expert; the sort takes non-negative weights, heaviest first). */
  int32_t ny = 0;
  for (int32_t e = 0; e < ne; e++) {
    x->ypos[e] = -1;
    if (cnt[e] > 0) {
      cnt[ny] = e; /* in place: e >= ny */
      ew[ny++] = ew[e];
    }
  }
  x->ny = ny;
  eplb__sort_desc_a(ew, ny, order, ar);
  for (int32_t i = 0; i < ny; i++) {
    x->ys[i] = cnt[order[ny - 1 - i]];
    x->yw[i] = ew[order[ny - 1 - i]];
    x->ypos[x->ys[i]] = i;
  }
  relayout(x);
  tree_build(x);
  return eplb__order_init(&x->ord, G, lay->load, ar) == 0 ? 0 : -1;
}

size_t eplb__swap_index_bytes(int32_t S, int32_t G, int32_t ne) {
  size_t per = (size_t)(S / G), P = 1, szE = (size_t)ne;
  while (P < szE)
    P *= 2;
  /* slots' heaps; tiered classes (per x ne); experts and their sort; the
   * trees; the GPUs' order; the rounding of every take */
  return 16 * (size_t)S + 12 * per * szE + 100 * szE + 24 * P * per +
         eplb__order_bytes(G) + 32 * 16;
}

/* Swaps slots sa and sb (on two GPUs): experts, weights, loads, heaps
 * (tiered: both GPUs' entries out, rows sorted again, back in). */
static void do_swap(sx_t *x, int32_t sa, int32_t sb) {
  eplb__layout_t *lay = x->lay;
  int32_t per = x->per, g = sa / per, h = sb / per;
  int32_t ea = lay->expert[sa], eb = lay->expert[sb];
  double wa = lay->w[sa], wb = lay->w[sb], d = wa - wb;
  if (x->tiered) {
    /* A slot whose class (rank, expert) stays keeps its heap entry, at
     * its GPU's new load; the others (the two swapped, and those the
     * sort shifts) leave their class's heap for their new one - or, when
     * a heap is full, all of them are laid out again. */
    int32_t gh[2] = {g, h}, was[2 * 64], full = 0;
    for (int k = 0; k < 2; k++)
      for (int32_t j = 0; j < per; j++)
        was[k * per + j] = cls_of(x, gh[k] * per + j);
    lay->expert[sa] = eb;
    lay->expert[sb] = ea;
    lay->w[sa] = wb;
    lay->w[sb] = wa;
    lay->load[g] -= d;
    lay->load[h] += d;
    row_sort(lay, g);
    row_sort(lay, h);
    for (int32_t k = 0; k < 2 * per; k++) {
      int32_t q = gh[k / per], s = q * per + k % per, c = cls_of(x, s);
      if (c != was[k]) {
        heap_del(x, was[k], s);
        leaf_of(x, was[k]);
      }
    }
    for (int32_t k = 0; k < 2 * per && !full; k++) {
      int32_t q = gh[k / per], s = q * per + k % per, c = cls_of(x, s);
      if (c == was[k]) {
        x->hkey[x->hpos[s]] = lay->load[q];
        hfix(x, x->hoff[c], x->hn[c], x->hpos[s]);
      } else if (x->hoff[c] + x->hn[c] < x->hoff[c + 1]) {
        int32_t i = x->hoff[c] + x->hn[c]++;
        hput(x, i, s, lay->load[q]);
        hfix(x, x->hoff[c], x->hn[c], i);
      } else {
        full = 1;
      }
      leaf_of(x, c);
    }
    if (full) {
      relayout(x);
      tree_build(x);
    }
    eplb__order_set(&x->ord, g, lay->load[g]);
    eplb__order_set(&x->ord, h, lay->load[h]);
    return;
  }
  /* The two slots trade experts: each heap entry now names the other
   * slot. */
  int32_t ia = x->hpos[sa], ib = x->hpos[sb];
  hput(x, ia, sb, x->hkey[ia]);
  hput(x, ib, sa, x->hkey[ib]);
  slot_expert(x, sa, eb);
  slot_expert(x, sb, ea);
  lay->w[sa] = wb;
  lay->w[sb] = wa;
  gpu_set(x, g, lay->load[g] - d);
  gpu_set(x, h, lay->load[h] + d);
}

/* Swaps (best_swap) until none lowers the most loaded GPU, the noise
 * stop is reached or *left swaps were made (*left counts down). */
static void swaps(sx_t *x, int32_t *left) {
  eplb__layout_t *lay = x->lay;
  for (; *left > 0; (*left)--) {
    int32_t g = eplb__order_last(&x->ord);
    double lg = lay->load[g];
    if (lg <= lay->stop_at)
      return; /* as good as the statistics can tell */
    const int32_t *hs;
    const double *ls;
    eplb__order_block(&x->ord, 0, &hs, &ls);
    best_t b = {.nmax = lg, .sa = -1, .sb = -1};
    best_swap(x, g, lg, ls[0], &b);
    if (b.sa < 0)
      return;
    do_swap(x, b.sa, b.sb);
  }
}

void eplb__local_search_index_a(eplb__layout_t *lay, int32_t max_iters,
                                int tiered, eplb__arena_t *ar) {
  if (lay->G < 2)
    return;
  int32_t S = lay->G * lay->per, emax = 0;
  for (int32_t s = 0; s < S; s++)
    emax = lay->expert[s] > emax ? lay->expert[s] : emax;
  size_t mark = ar->used;
  sx_t x;
  /* Tiers for up to 64 slots a GPU (the swap's bookkeeping holds two
   * GPUs' classes); wider GPUs take free swaps only. */
  if (sx_init(&x, lay, emax + 1, tiered && lay->per <= 64, NULL, ar) == 0)
    swaps(&x, &max_iters);
  /* else: the search only improves a valid layout, skipping is safe */
  ar->used = mark;
}

/* ---- The refinement: replica-count moves (eplb__refine_index) ---- */

/* Load above the mean that expert e's GPUs lose when each changes by d,
 * summed afresh over its heap. */
static double holders_change(const sx_t *x, int32_t e, double d) {
  const double *key = x->hkey + x->hoff[e];
  double sum = 0;
  for (int32_t i = 0; i < x->hn[e]; i++)
    sum += excess_drop(x->mean, key[i], d);
  return sum;
}

/* The load above the mean removed by turning slot sb (expert f, with
 * replicas to spare) into a replica of `to` (not on sb's GPU h): f's GPUs
 * change by df = f_new - f_old and to's by dt = t_new - t_old (each
 * expert's share kept up to date in gsum; summed afresh when exact), h by
 * t_new - f_old instead of df, and - exact only - a GPU holding both by df
 * + dt, which differs from the two counted apart only when its excess
 * lies in (-df, -dt) (found on the shorter list), and then removes more:
 * pos is convex, so without it the gain is a lower bound. */
static double judge(sx_t *x, int32_t sb, int32_t to, int exact) {
  const eplb__layout_t *lay = x->lay;
  int32_t f = lay->expert[sb], h = sb / x->per;
  double mean = x->mean, lh = lay->load[h];
  double f_old = x->yw[x->ypos[f]], f_new = x->eload[f] / (x->hn[f] - 1);
  double t_old = x->yw[x->ypos[to]], t_new = x->eload[to] / (x->hn[to] + 1);
  double df = f_new - f_old, dt = t_new - t_old;
  double gain = exact ? holders_change(x, to, dt) + holders_change(x, f, df)
                      : x->gsum[0][to] + x->gsum[1][f];
  gain += pos(lh + df - mean) - pos(lh + t_new - f_old - mean);
  if (!exact)
    return gain;
  int32_t e = x->hn[f] <= x->hn[to] ? f : to, o = e == f ? to : f;
  for (int32_t i = x->hoff[e]; i < x->hoff[e] + x->hn[e]; i++) {
    double a = x->hkey[i] - mean;
    if (a <= -df || a >= -dt)
      continue;
    int32_t q = x->hslot[i] / x->per;
    if (q == h || !row_holds(lay, q, o))
      continue;
    gain += pos(a + df) + pos(a + dt) - pos(a) - pos(a + df + dt);
  }
  return gain;
}

/* A move: a swap of slots sa and sb (to < 0), or slot sb turned into a
 * replica of `to`; gain: the load above the mean it removes. */
typedef struct {
  double gain;
  int32_t sa, sb, to;
} cmove_t;

/* judge() on every slot of GPU h (which lacks `to`) whose expert can spare
 * a replica. */
static void judge_gpu(sx_t *x, int32_t h, int32_t to, cmove_t *m) {
  for (int32_t j = 0; j < x->per; j++) {
    int32_t sb = h * x->per + j, f = x->lay->expert[sb];
    if (f == to || x->hn[f] < 2)
      continue;
    double gain = judge(x, sb, to, 0);
    if (gain > m->gain) {
      m->gain = gain;
      m->sa = -1;
      m->sb = sb;
      m->to = to;
    }
  }
}

/* The best count move relieving GPU g (refine.c's candidates): g's two
 * heaviest experts that some GPU lacks onto the 4 lightest GPUs that lack
 * them, in a slot
 * whose expert can spare a replica; a slot of g turned into one of the 3
 * heaviest experts (per replica) g lacks. */
static void count_move_for(sx_t *x, int32_t g, cmove_t *m) {
  const eplb__layout_t *lay = x->lay;
  int32_t per = x->per, G = lay->G;
  const int32_t *row = lay->expert + (size_t)g * per;
  int32_t hot[2] = {-1, -1};
  for (int32_t j = 0; j < per; j++) { /* the two heaviest, first on ties, */
    double w = lay->w[g * per + j];
    if (x->hn[row[j]] >= G)
      continue; /* of those not on every GPU already */
    if (hot[0] < 0 || w > lay->w[g * per + hot[0]]) {
      hot[1] = hot[0];
      hot[0] = j;
    } else if (hot[1] < 0 || w > lay->w[g * per + hot[1]]) {
      hot[1] = j;
    }
  }
  for (int k = 0; k < 2 && hot[k] >= 0; k++) {
    int32_t z = row[hot[k]], tried = 0;
    for (int32_t blk = 0; blk < x->ord.nb && tried < 4; blk++) {
      const int32_t *hs;
      const double *ls;
      int32_t n = eplb__order_block(&x->ord, blk, &hs, &ls);
      for (int32_t i = 0; i < n && tried < 4; i++) {
        if (hs[i] == g || row_holds(lay, hs[i], z))
          continue;
        tried++;
        judge_gpu(x, hs[i], z, m);
      }
    }
  }
  for (int32_t j = 0; j < per; j++)
    x->on[row[j]] = 1;
  for (int32_t p = x->ny - 1, nc = 0; p >= 0 && nc < 3; p--) {
    if (x->on[x->ys[p]])
      continue;
    nc++;
    judge_gpu(x, g, x->ys[p], m);
  }
  for (int32_t j = 0; j < per; j++)
    x->on[row[j]] = 0;
}

/* The load above the mean removed by moving d from g (lg) to h (lh). */
static inline double swap_gain(double mean, double lg, double lh, double d) {
  return pos(lg - mean) + pos(lh - mean) - pos(lg - d - mean) -
         pos(lh + d - mean);
}

/* What a search for the swap of slot sa removing the most load above the
 * mean knows. */
typedef struct {
  int32_t sa, xa, lim;
  double wa, lg;
} bnb_t;

/* Branch and bound over the tree's node (places lo .. lo + span) for the
 * partner of q->sa removing the most load above the mean: a partner of
 * weight w_y on a GPU of load lh removes X - pos(u) - pos(v), g's excess
 * u = lg - wa + w_y - mean growing with w_y and h's v = lh + wa - w_y -
 * mean with lh, so the node's lightest weight and largest k = w_y - m_y
 * bound what it holds. */
static void bnb(sx_t *x, const bnb_t *q, int32_t node, int32_t lo,
                int32_t span, cmove_t *m) {
  if (lo >= q->lim || x->tk[node] == -HUGE_VAL)
    return;
  double mean = x->mean, lg = q->lg, wa = q->wa;
  double ub = pos(lg - mean) - pos(lg - wa + x->yw[lo] - mean) -
              pos(wa - x->tk[node] - mean);
  if (!(ub > m->gain))
    return;
  if (span > 1) {
    int32_t half = span / 2;
    bnb(x, q, 2 * node + 1, lo + half, half, m); /* heavier: larger moves */
    bnb(x, q, 2 * node, lo, half, m);
    return;
  }
  int32_t y = x->ys[lo], base = x->hoff[y], sb = x->hslot[base];
  if (x->on[y])
    return;
  if (row_holds(x->lay, sb / x->per, q->xa)) {
    /* Only a GPU lighter than lim can remove more than the best: h's
     * excess after the swap, v, must stay below X - pos(u) - best. */
    double wy = x->yw[lo], u = lg - wa + wy - mean;
    double lim = mean - wa + wy + pos(lg - mean) - pos(u) - m->gain;
    sb = lightest_without(x, base, x->hn[y], 0, q->xa, lim);
    if (sb < 0)
      return;
  }
  double lh = x->lay->load[sb / x->per], d = wa - x->yw[lo];
  if (!(d > 0) || !(d < lg - lh))
    return;
  double gain = swap_gain(mean, lg, lh, d);
  if (gain > m->gain) {
    m->gain = gain;
    m->sa = q->sa;
    m->sb = sb;
    m->to = -1;
  }
}

/* The best move relieving GPU g: the swap removing the most load above the
 * mean (branch and bound over the tree, started from the best swap for
 * g's load), and count_move_for's unless that swap takes g to the mean. */
static void move_for(sx_t *x, int32_t g, cmove_t *m) {
  const eplb__layout_t *lay = x->lay;
  double lg = lay->load[g];
  const int32_t *hs;
  const double *ls;
  eplb__order_block(&x->ord, 0, &hs, &ls);
  best_t b = {.nmax = lg, .sa = -1, .sb = -1};
  best_swap(x, g, lg, ls[0], &b);
  if (b.sa >= 0) {
    double d = lay->w[b.sa] - lay->w[b.sb], lh = lay->load[b.sb / x->per];
    double gain = swap_gain(x->mean, lg, lh, d);
    if (gain > m->gain) {
      m->gain = gain;
      m->sa = b.sa;
      m->sb = b.sb;
      m->to = -1;
    }
  }
  const int32_t *row = lay->expert + (size_t)g * x->per;
  for (int32_t j = 0; j < x->per; j++)
    x->on[row[j]] = 1;
  for (int32_t j = 0; j < x->per; j++) {
    int32_t e = row[j], sa = g * x->per + j;
    if (x->hn[e] >= lay->G)
      continue;
    bnb_t q = {.sa = sa, .xa = e, .wa = lay->w[sa], .lg = lg};
    q.lim = first_at_least(x, q.wa);
    x->visits = VISITS;
    bnb(x, &q, 1, 0, x->P, m);
  }
  for (int32_t j = 0; j < x->per; j++)
    x->on[row[j]] = 0;
  if (m->to < 0 && m->sb >= 0 && m->gain >= (lg - x->mean) * (1 - 1e-12))
    return; /* g to the mean by a swap: no count move */
  count_move_for(x, g, m);
}

/* Expert e's weight became w: its slots, its place in ys. */
static void reweight(sx_t *x, int32_t e, double w) {
  for (int32_t i = x->hoff[e]; i < x->hoff[e] + x->hn[e]; i++)
    x->lay->w[x->hslot[i]] = w;
  int32_t p = x->ypos[e], n = x->ny - 1;
  memmove(x->ys + p, x->ys + p + 1, sizeof(int32_t) * (size_t)(n - p));
  memmove(x->yw + p, x->yw + p + 1, sizeof(double) * (size_t)(n - p));
  int32_t q = place_for(x, n, w, e);
  memmove(x->ys + q + 1, x->ys + q, sizeof(int32_t) * (size_t)(n - q));
  memmove(x->yw + q + 1, x->yw + q, sizeof(double) * (size_t)(n - q));
  x->ys[q] = e;
  x->yw[q] = w;
  for (int32_t i = p < q ? p : q; i <= (p > q ? p : q); i++)
    x->ypos[x->ys[i]] = i;
}

/* Applies count move m: the slot leaves its expert's heap for the new
 * one's, both experts' weights change, every GPU holding either is summed
 * afresh and moved (its loads change by little, so its heap entries and
 * its place in the order move little: cheaper than building them again
 * when even half the GPUs change). */
static void apply_count(sx_t *x, const cmove_t *m) {
  eplb__layout_t *lay = x->lay;
  int32_t sb = m->sb, to = m->to, f = lay->expert[sb], h = sb / x->per;
  heap_del(x, f, sb);
  slot_expert(x, sb, to);
  heap_add(x, to, sb, lay->load[h]);
  reweight(x, f, x->eload[f] / x->hn[f]);
  reweight(x, to, x->eload[to] / x->hn[to]);
  /* The GPUs holding either (h among them: it is in to's heap now),
   * listed first: moving one reorders the heaps. */
  int32_t nt = 0;
  x->tick++;
  for (int k = 0; k < 2; k++) {
    int32_t e = k == 0 ? f : to;
    for (int32_t j = x->hoff[e]; j < x->hoff[e] + x->hn[e]; j++) {
      int32_t g = x->hslot[j] / x->per;
      if (x->stamp[g] != x->tick) {
        x->stamp[g] = x->tick;
        x->touched[nt++] = g;
      }
    }
  }
  x->defer = 1; /* each summed afresh and moved */
  for (int32_t k = 0; k < nt; k++) {
    int32_t g = x->touched[k];
    double sum = 0;
    for (int32_t q = 0; q < x->per; q++)
      sum += lay->w[g * x->per + q];
    gpu_set(x, g, sum);
  }
  x->defer = 0;
  gsum_of(x, f); /* their weight changes changed */
  gsum_of(x, to);
  tree_build(x);
}

int eplb__refine_index(const double *load, int32_t E, int32_t S, int32_t G,
                       int32_t *phy2log, eplb_error_t *err) {
  int32_t per = S / G;
  eplb__layout_t lay = {.G = G, .per = per};
  eplb__arena_t ar;
  eplb__arena_init(&ar, NULL, 0); /* every piece a malloc of its own */
  int32_t *cnt = eplb__arena_take(&ar, sizeof(int32_t) * (size_t)E);
  lay.expert = eplb__arena_take(&ar, sizeof(int32_t) * (size_t)S);
  lay.w = eplb__arena_take(&ar, sizeof(double) * (size_t)S);
  lay.load = eplb__arena_take(&ar, sizeof(double) * (size_t)G);
  int32_t *stamp = eplb__arena_take(&ar, sizeof(int32_t) * 2 * (size_t)G);
  double *sums = eplb__arena_take(&ar, sizeof(double) * 4 * (size_t)E);
  sx_t x;
  int rc = 0;
  if (!cnt || !lay.expert || !lay.w || !lay.load || !stamp || !sums) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    goto done;
  }
  memset(cnt, 0, sizeof(int32_t) * (size_t)E);
  for (int32_t s = 0; s < S; s++)
    cnt[phy2log[s]]++;
  double total = 0, before = 0;
  for (int32_t g = 0; g < G; g++) {
    double sum = 0;
    for (int32_t j = 0; j < per; j++) {
      int32_t s = g * per + j, e = phy2log[s];
      lay.expert[s] = e;
      lay.w[s] = load[e] / cnt[e];
      sum += lay.w[s];
    }
    lay.load[g] = sum;
    total += sum;
    before = g == 0 || sum > before ? sum : before;
  }
  lay.stop_at = eplb__noise_stop(total, G);
  if (sx_init(&x, &lay, E, 0, load, &ar) != 0) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    goto done;
  }
  x.mean = total / G;
  x.stamp = stamp;
  x.touched = stamp + G;
  memset(stamp, 0, sizeof(int32_t) * (size_t)G);
  x.dch[0] = sums;
  x.dch[1] = sums + E;
  x.gsum[0] = sums + 2 * (size_t)E;
  x.gsum[1] = sums + 3 * (size_t)E;
  for (int32_t e = 0; e < E; e++)
    if (x.ypos[e] >= 0)
      gsum_of(&x, e);
  x.above = cnt; /* cnt is done with: the above-mean counts */
  memset(x.above, 0, sizeof(int32_t) * (size_t)E);
  for (int32_t s = 0; s < S; s++)
    x.above[lay.expert[s]] += lay.load[s / per] > x.mean;
  /* Each step: the move that removes the most load above the mean, for
   * the most loaded GPU that has one (of the top four). */
  for (int32_t it = 0; it < 4 * S + 64; it++) {
    if (lay.load[eplb__order_last(&x.ord)] <= lay.stop_at)
      break; /* as good as the statistics can tell */
    cmove_t m = {.gain = 1e-9 * x.mean, .sa = -1, .sb = -1, .to = -1};
    int32_t n = 0;
    for (int32_t blk = x.ord.nb - 1; blk >= 0 && n < 4 && m.sb < 0; blk--) {
      const int32_t *hs;
      const double *ls;
      int32_t k = eplb__order_block(&x.ord, blk, &hs, &ls);
      for (int32_t i = k - 1; i >= 0 && n < 4 && m.sb < 0; i--, n++)
        if (ls[i] > x.mean)
          move_for(&x, hs[i], &m);
    }
    if (m.sb < 0)
      break;
    if (m.to < 0)
      do_swap(&x, m.sa, m.sb);
    else if (judge(&x, m.sb, m.to, 1) > 1e-9 * x.mean)
      apply_count(&x, &m);
    else
      break;
  }
  /* Kept only when the most loaded GPU, summed afresh, went down. */
  double after = 0;
  for (int32_t g = 0; g < G; g++) {
    double sum = 0;
    for (int32_t j = 0; j < per; j++)
      sum += lay.w[g * per + j];
    after = g == 0 || sum > after ? sum : after;
  }
  if (after < before)
    memcpy(phy2log, lay.expert, sizeof(int32_t) * (size_t)S);
done:
  eplb__arena_done(&ar);
  return rc;
}
