/* plan/robust.c - a layer placement that balances several scenarios at
 * once (eplb_plan_scenarios, docs/planner.md "Scenarios").
 *
 * DESIGN.  A plan is only ever used on traffic that comes after it.  A GPU
 * whose load is balanced for each known workload holds a mix of experts
 * that stays balanced when the mix changes: its load is balanced for every
 * blend of those workloads too, since a GPU's load is linear in the
 * experts' loads.  Balancing the sum of the workloads alone leaves each
 * GPU free to hold a mix that is balanced only for that sum.
 *
 * Each scenario k of a layer is normalised to its own total (x_k, summing
 * to 1) and weighted (w_k, summing to 1).  The objective is the weighted
 * mean over scenarios of each scenario's most loaded GPU,
 *     F = sum_k w_k max_g L_k(g),   L_k(g) = sum over g's slots of
 *                                          x_k[e] / replicas(e),
 * i.e. the weighted mean imbalance (max / mean - 1) plus 1, over G.  The
 * replica counts and the starting placement are the balanced policy's plan
 * of the weighted mean sum_k w_k x_k; since max_g sum_k w_k L_k(g) <= F,
 * lowering F also bounds the imbalance on that mean.
 *
 * The search swaps two slots of two GPUs of one domain (all GPUs, or one
 * node's in a hierarchical plan, which keeps every expert on the node its
 * group was packed to).  A swap that moves the vector d from GPU g to GPU h
 * changes only L(g) and L(h), so its effect on F is known from d, the two
 * GPUs' loads and, per scenario, the largest load of the GPUs other than g
 * and h: the three largest loads per scenario are kept, and updated after
 * a swap only for the scenarios it can have changed.  Only a GPU that is
 * the most loaded in some scenario can lower F; these critical GPUs are
 * tried in order of the weight they carry, each against the PARTNERS
 * GPUs with the most room in its scenarios, a slot against the slot of
 * the same weight tier there, and the best swap of the first one that has
 * an improving swap is made.  Each swap lowers F plus a small multiple of
 * the weighted sum of squared loads (which lets the search go on across
 * ties at the maximum), so the search ends; a budget bounds it, and its
 * result is kept only if F itself went down.
 * With a current placement (`orig`) a swap is charged lambda per replica
 * that arrives on a GPU that did not hold its expert there, and refused
 * past max_moves such replicas. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

/* Weight of the sum of squared loads beside F: only a tie-break. */
#define SQUARES_WEIGHT 1e-3

/* A swap must lower the score by more than this much of the mean GPU
 * load: steps smaller than rounding are not progress. */
#define MIN_GAIN 1e-12

typedef struct {
  const eplb__scenario_layer_t *sc;
  int32_t K, E, S, G, per, dom;
  int32_t *slot;       /* [S] expert of each slot */
  int32_t *cnt;        /* [E] replicas */
  double *v;           /* [S * K] each slot's load in each scenario */
  double *L;           /* [G * K] each GPU's load in each scenario */
  double *top;         /* [3 * K] the three largest loads per scenario */
  int32_t *topg;       /* [3 * K] their GPUs */
  double *crit;        /* [G] weight of the scenarios a GPU is the max of */
  double *ex, *gap;    /* [K] each: pair_setup's */
  double wtop;         /* sum_k w_k (largest load of scenario k) */
  double *hkey;        /* [PARTNERS] partners' room */
  int32_t *hord;       /* [PARTNERS] partners */
  int32_t *ks;         /* [K] a critical GPU's scenarios */
  int32_t *order;      /* [G] critical GPUs, heaviest weight first */
  int32_t *first;      /* [E + 1] expert e's slots: at[first[e]..first[e+1]) */
  int32_t *at;         /* [S] */
  int32_t *atg;        /* [S] the GPU of at[i] */
  double *mw;          /* [S] each slot's weighted mean load (its tier order) */
  int32_t *byrank;     /* [S] GPU g's slots, heaviest mw first, from g * per */
  int32_t *rank;       /* [S] each slot's place in byrank */
  const int32_t *orig; /* [S] placement moves are counted from, or NULL */
  double lambda;       /* score per moved replica */
  int32_t max_moves, moves;
} rob_t;

/* The three largest loads of scenario k (ties: lower GPU). */
static void rank_scenario(rob_t *r, int32_t k) {
  int32_t K = r->K, G = r->G;
  double t0 = -1, t1 = -1, t2 = -1;
  int32_t g0 = -1, g1 = -1, g2 = -1;
  for (int32_t g = 0; g < G; g++) {
    double x = r->L[(size_t)g * K + k];
    if (x > t0) {
      t2 = t1, g2 = g1, t1 = t0, g1 = g0, t0 = x, g0 = g;
    } else if (x > t1) {
      t2 = t1, g2 = g1, t1 = x, g1 = g;
    } else if (x > t2) {
      t2 = x, g2 = g;
    }
  }
  r->top[k] = t0, r->top[K + k] = t1, r->top[2 * K + k] = t2;
  r->topg[k] = g0, r->topg[K + k] = g1, r->topg[2 * K + k] = g2;
}

/* Each GPU's critical weight (the weights of the scenarios whose most
 * loaded GPU it is) and wtop, from top[]. */
static void weigh_critical(rob_t *r) {
  memset(r->crit, 0, sizeof(double) * (size_t)r->G);
  r->wtop = 0;
  for (int32_t k = 0; k < r->K; k++) {
    r->crit[r->topg[k]] += r->sc->w[k];
    r->wtop += r->sc->w[k] * r->top[k];
  }
}

/* The three largest loads of every scenario, and the critical weights. */
static void rank_gpus(rob_t *r) {
  for (int32_t k = 0; k < r->K; k++)
    rank_scenario(r, k);
  weigh_critical(r);
}

/* After GPUs g and h changed: a scenario's three largest loads change
 * only when one of them was g's or h's, or g or h now passes the third. */
static void rerank_after(rob_t *r, int32_t g, int32_t h) {
  int32_t K = r->K;
  for (int32_t k = 0; k < K; k++) {
    const int32_t *tg = r->topg + k;
    double lg = r->L[(size_t)g * K + k], lh = r->L[(size_t)h * K + k];
    double t2 = r->top[2 * K + k];
    if (tg[0] == g || tg[0] == h || tg[K] == g || tg[K] == h ||
        tg[2 * K] == g || tg[2 * K] == h || lg > t2 || lh > t2)
      rank_scenario(r, k);
  }
  weigh_critical(r);
}

/* The largest load in scenario k of the GPUs other than g and h. */
static inline double other_max(const rob_t *r, int32_t k, int32_t g,
                               int32_t h) {
  int32_t K = r->K;
  for (int32_t t = 0; t < 3; t++) {
    int32_t x = r->topg[t * K + k];
    if (x != g && x != h)
      return r->top[t * K + k];
  }
  return 0; /* fewer than three GPUs: none other */
}

/* 1 when GPU g holds expert e in a slot other than `skip`: a walk of e's
 * replicas, few. */
static inline int holds(const rob_t *r, int32_t g, int32_t e, int32_t skip) {
  for (int32_t i = r->first[e]; i < r->first[e + 1]; i++)
    if (r->atg[i] == g && r->at[i] != skip)
      return 1;
  return 0;
}

/* 1 when the original placement put expert e on GPU g. */
static int was_on(const rob_t *r, int32_t g, int32_t e) {
  const int32_t *row = r->orig + (size_t)g * r->per;
  for (int32_t j = 0; j < r->per; j++)
    if (row[j] == e)
      return 1;
  return 0;
}

/* Change in moved replicas when slots a (on g) and b (on h) swap. */
static int32_t move_change(const rob_t *r, int32_t a, int32_t g, int32_t b,
                           int32_t h) {
  int32_t ea = r->slot[a], eb = r->slot[b];
  return (was_on(r, g, ea) - was_on(r, h, ea)) +
         (was_on(r, h, eb) - was_on(r, g, eb));
}

/* What a scan of swaps between GPUs g and h shares: per scenario, the
 * largest load of the other GPUs, and h's load less g's. */
static void pair_setup(rob_t *r, int32_t g, int32_t h) {
  int32_t K = r->K;
  const double *Lg = r->L + (size_t)g * K, *Lh = r->L + (size_t)h * K;
  for (int32_t k = 0; k < K; k++) {
    r->ex[k] = other_max(r, k, g, h);
    r->gap[k] = Lh[k] - Lg[k];
  }
}

/* The score of swapping slot a (on g) with slot b (on h), pair_setup(g,
 * h) done, less the constant sum_k w_k max_k: moving d = v_a - v_b from g
 * to h makes scenario k's maximum max(L_g - d, L_h + d, ex), and the
 * squares change by 2 d (d + L_h - L_g). */
static inline double swap_score(const rob_t *r, int32_t a, int32_t g, int32_t b,
                                int32_t h) {
  int32_t K = r->K;
  const double *va = r->v + (size_t)a * K, *vb = r->v + (size_t)b * K;
  const double *Lg = r->L + (size_t)g * K, *Lh = r->L + (size_t)h * K;
  const double *w = r->sc->w, *ex = r->ex, *gap = r->gap;
  double f = 0, q = 0;
  for (int32_t k = 0; k < K; k++) {
    double d = va[k] - vb[k];
    double lg = Lg[k] - d, lh = Lh[k] + d;
    double m = lg > lh ? lg : lh;
    m = m > ex[k] ? m : ex[k];
    f += w[k] * m;
    q += w[k] * d * (d + gap[k]);
  }
  return f + 2.0 * SQUARES_WEIGHT * r->G * q;
}

/* How far apart in tier (rank by weighted mean load on their GPUs) two
 * slots may be to swap: GPUs of a balanced plan hold one replica of each
 * weight tier, and a swap inside a tier changes a GPU's mix of scenarios
 * while keeping its total.  Wider reaches and more partners (below) found
 * slightly better plans in bench/bench_robust at several times the cost
 * (docs/planner.md). */
#define TIER_REACH 0

/* How many GPUs a critical GPU tries to swap with: those with the most
 * room in the scenarios it is the most loaded in. */
#define PARTNERS 8

/* The partners of critical GPU g: the other GPUs of its domain, the most
 * room (sum over g's scenarios of weight x (max - load)) first, ties to
 * the lower GPU, at most PARTNERS of them into hord[]; returns how many. */
static int32_t partners(rob_t *r, int32_t g) {
  int32_t K = r->K, d0 = g / r->dom * r->dom, nk = 0, n = 0;
  for (int32_t k = 0; k < K; k++)
    if (r->topg[k] == g)
      r->ks[nk++] = k;
  for (int32_t h = d0; h < d0 + r->dom; h++) {
    if (h == g)
      continue;
    double key = 0;
    for (int32_t i = 0; i < nk; i++)
      key += r->sc->w[r->ks[i]] *
             (r->top[r->ks[i]] - r->L[(size_t)h * K + r->ks[i]]);
    if (n == PARTNERS && key <= r->hkey[n - 1])
      continue;
    int32_t i = n < PARTNERS ? n++ : n - 1;
    while (i > 0 && r->hkey[i - 1] < key) {
      r->hkey[i] = r->hkey[i - 1], r->hord[i] = r->hord[i - 1];
      i--;
    }
    r->hkey[i] = key, r->hord[i] = h;
  }
  return n;
}

/* The best swap of a slot of GPU g with a slot of one of its partners
 * within TIER_REACH tiers: *best_score (kept if nothing is better), *ba,
 * *bb. */
static void best_swap_of(rob_t *r, int32_t g, double *best_score, int32_t *ba,
                         int32_t *bb) {
  int32_t per = r->per, n = partners(r, g);
  double best = *best_score + r->wtop;
  for (int32_t q = 0; q < n; q++) {
    int32_t h = r->hord[q];
    pair_setup(r, g, h);
    for (int32_t j = 0; j < per; j++) {
      int32_t a = r->byrank[g * per + j], ea = r->slot[a];
      if (holds(r, h, ea, -1))
        continue;
      int32_t lo = j - TIER_REACH < 0 ? 0 : j - TIER_REACH;
      int32_t hi = j + TIER_REACH >= per ? per - 1 : j + TIER_REACH;
      for (int32_t i = lo; i <= hi; i++) {
        int32_t b = r->byrank[h * per + i], eb = r->slot[b];
        if (eb == ea || holds(r, g, eb, a))
          continue;
        double sc = swap_score(r, a, g, b, h);
        if (sc >= best)
          continue;
        if (r->orig) {
          int32_t dm = move_change(r, a, g, b, h);
          if (r->max_moves >= 0 && dm > 0 && r->moves + dm > r->max_moves)
            continue;
          sc += r->lambda * dm;
          if (sc >= best)
            continue;
        }
        best = sc, *ba = a, *bb = b;
      }
    }
  }
  *best_score = best - r->wtop;
}

/* Re-sorts GPU g's byrank[] after one of its slots changed (insertion
 * sort: one slot is out of place). */
static void resort(rob_t *r, int32_t g) {
  int32_t per = r->per, *o = r->byrank + (size_t)g * per;
  for (int32_t i = 1; i < per; i++) {
    int32_t x = o[i], j = i;
    while (j > 0 && (r->mw[o[j - 1]] < r->mw[x] ||
                     (r->mw[o[j - 1]] == r->mw[x] && o[j - 1] > x))) {
      o[j] = o[j - 1];
      j--;
    }
    o[j] = x;
  }
  for (int32_t i = 0; i < per; i++)
    r->rank[o[i]] = i;
}

/* In expert e's slot list, slot `from` becomes `to`. */
static void relist(rob_t *r, int32_t e, int32_t from, int32_t to) {
  for (int32_t i = r->first[e]; i < r->first[e + 1]; i++)
    if (r->at[i] == from) {
      r->at[i] = to;
      r->atg[i] = to / r->per;
      return;
    }
}

/* Makes the swap of slots a and b and updates the loads. */
static void apply_swap(rob_t *r, int32_t a, int32_t b) {
  int32_t K = r->K, g = a / r->per, h = b / r->per;
  if (r->orig)
    r->moves += move_change(r, a, g, b, h);
  double *va = r->v + (size_t)a * K, *vb = r->v + (size_t)b * K;
  for (int32_t k = 0; k < K; k++) {
    double d = va[k] - vb[k];
    r->L[(size_t)g * K + k] -= d;
    r->L[(size_t)h * K + k] += d;
    double t = va[k];
    va[k] = vb[k], vb[k] = t;
  }
  int32_t ea = r->slot[a], eb = r->slot[b];
  r->slot[a] = eb, r->slot[b] = ea;
  relist(r, ea, a, b);
  relist(r, eb, b, a);
  double t = r->mw[a];
  r->mw[a] = r->mw[b], r->mw[b] = t;
  resort(r, g);
  resort(r, h);
}

/* Critical GPUs (crit > 0) into order[], heaviest weight first (ties:
 * lower GPU); returns how many. */
static int32_t critical_order(rob_t *r) {
  int32_t n = 0;
  for (int32_t g = 0; g < r->G; g++) {
    if (r->crit[g] <= 0)
      continue;
    int32_t i = n++;
    while (i > 0 && r->crit[r->order[i - 1]] < r->crit[g]) {
      r->order[i] = r->order[i - 1];
      i--;
    }
    r->order[i] = g;
  }
  return n;
}

static void search(rob_t *r, int32_t budget) {
  double floor_gain = MIN_GAIN / r->G;
  rank_gpus(r);
  for (int32_t it = 0; it < budget; it++) {
    int32_t n = critical_order(r), ba = -1, bb = -1;
    for (int32_t c = 0; c < n && ba < 0; c++) {
      double best = -floor_gain;
      best_swap_of(r, r->order[c], &best, &ba, &bb);
    }
    if (ba < 0)
      return;
    apply_swap(r, ba, bb);
    rerank_after(r, ba / r->per, bb / r->per);
  }
}

/* Sets up r over phy2log[S] (its arrays from ar); 0 or EPLB_ENOMEM. */
static int rob_init(rob_t *r, const eplb__scenario_layer_t *sc, int32_t S,
                    int32_t G, int32_t dom, const int32_t *phy2log,
                    eplb__arena_t *ar) {
  int32_t K = sc->K, E = sc->E;
  *r = (rob_t){
      .sc = sc, .K = K, .E = E, .S = S, .G = G, .per = S / G, .dom = dom};
  r->slot = eplb__arena_take(ar, sizeof(int32_t) * (size_t)S);
  r->cnt = eplb__arena_take(ar, sizeof(int32_t) * (size_t)E);
  r->v = eplb__arena_take(ar, sizeof(double) * (size_t)S * K);
  r->L = eplb__arena_take(ar, sizeof(double) * (size_t)G * K);
  r->top = eplb__arena_take(ar, sizeof(double) * 3 * (size_t)K);
  r->topg = eplb__arena_take(ar, sizeof(int32_t) * 3 * (size_t)K);
  r->crit = eplb__arena_take(ar, sizeof(double) * (size_t)G);
  r->order = eplb__arena_take(ar, sizeof(int32_t) * (size_t)G);
  r->hkey = eplb__arena_take(ar, sizeof(double) * PARTNERS);
  r->hord = eplb__arena_take(ar, sizeof(int32_t) * PARTNERS);
  r->ks = eplb__arena_take(ar, sizeof(int32_t) * (size_t)K);
  r->ex = eplb__arena_take(ar, sizeof(double) * (size_t)K);
  r->gap = eplb__arena_take(ar, sizeof(double) * (size_t)K);
  r->first = eplb__arena_take(ar, sizeof(int32_t) * ((size_t)E + 1));
  r->at = eplb__arena_take(ar, sizeof(int32_t) * (size_t)S);
  r->atg = eplb__arena_take(ar, sizeof(int32_t) * (size_t)S);
  r->mw = eplb__arena_take(ar, sizeof(double) * (size_t)S);
  r->byrank = eplb__arena_take(ar, sizeof(int32_t) * (size_t)S);
  r->rank = eplb__arena_take(ar, sizeof(int32_t) * (size_t)S);
  if (!r->slot || !r->cnt || !r->v || !r->L || !r->top || !r->topg ||
      !r->crit || !r->order || !r->hkey || !r->hord || !r->ks || !r->ex ||
      !r->gap || !r->first || !r->at || !r->atg || !r->mw || !r->byrank ||
      !r->rank)
    return EPLB_ENOMEM;
  memcpy(r->slot, phy2log, sizeof(int32_t) * (size_t)S);
  memset(r->cnt, 0, sizeof(int32_t) * (size_t)E);
  for (int32_t s = 0; s < S; s++)
    r->cnt[phy2log[s]]++;
  memset(r->L, 0, sizeof(double) * (size_t)G * K);
  for (int32_t s = 0; s < S; s++) {
    int32_t e = phy2log[s];
    r->mw[s] = 0;
    for (int32_t k = 0; k < K; k++) {
      double x = sc->x[(size_t)k * E + e] / r->cnt[e];
      r->v[(size_t)s * K + k] = x;
      r->L[(size_t)(s / r->per) * K + k] += x;
      r->mw[s] += sc->w[k] * x;
    }
  }
  /* Slots by expert (a counting sort: cnt is the histogram). */
  r->first[0] = 0;
  for (int32_t e = 0; e < E; e++)
    r->first[e + 1] = r->first[e] + r->cnt[e];
  for (int32_t s = 0; s < S; s++) {
    int32_t i = r->first[phy2log[s]] + --r->cnt[phy2log[s]];
    r->at[i] = s;
    r->atg[i] = s / r->per;
  }
  for (int32_t s = 0; s < S; s++)
    r->cnt[phy2log[s]]++;
  for (int32_t s = 0; s < S; s++)
    r->byrank[s] = s;
  for (int32_t g = 0; g < G; g++)
    resort(r, g);
  return 0;
}

int eplb__robust_search(const eplb__scenario_layer_t *sc, int32_t S, int32_t G,
                        int32_t dom, const int32_t *orig, double lambda,
                        int32_t max_moves, int32_t *phy2log, eplb__arena_t *ar,
                        eplb_error_t *err) {
  size_t mark = ar->used;
  rob_t r;
  int rc = rob_init(&r, sc, S, G, dom, phy2log, ar);
  if (rc) {
    ar->used = mark;
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  if (orig) {
    r.orig = orig;
    r.lambda = lambda;
    r.max_moves = max_moves;
    r.moves = eplb__count_moves(orig, phy2log, S, G);
  }
  double before =
      eplb__scenario_objective(sc, phy2log, S, G) + lambda * r.moves;
  search(&r, 64 + 4 * S);
  /* The search lowers the objective plus a tie-break; keep its result
   * only if the objective itself (counted afresh: the loads drifted
   * through the swaps' updates) went down. */
  if (eplb__scenario_objective(sc, r.slot, S, G) + lambda * r.moves < before)
    memcpy(phy2log, r.slot, sizeof(int32_t) * (size_t)S);
  ar->used = mark;
  return 0;
}

double eplb__scenario_objective(const eplb__scenario_layer_t *sc,
                                const int32_t *phy2log, int32_t S, int32_t G) {
  int32_t K = sc->K, E = sc->E, per = S / G;
  int32_t *cnt = calloc((size_t)E, sizeof(int32_t));
  if (cnt == NULL)
    return HUGE_VAL;
  for (int32_t s = 0; s < S; s++)
    cnt[phy2log[s]]++;
  double f = 0;
  for (int32_t k = 0; k < K; k++) {
    const double *x = sc->x + (size_t)k * E;
    double most = 0;
    for (int32_t g = 0; g < G; g++) {
      double sum = 0;
      for (int32_t j = 0; j < per; j++) {
        int32_t e = phy2log[g * per + j];
        sum += x[e] / cnt[e];
      }
      most = g == 0 || sum > most ? sum : most;
    }
    f += sc->w[k] * most;
  }
  free(cnt);
  return f;
}
