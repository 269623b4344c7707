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
 * and h: the three largest loads per scenario are kept.  Only a GPU that
 * is the most loaded in some scenario can lower F; the critical GPUs are
 * tried in order of the weight they carry, and the best swap of the first
 * one that has an improving swap is made.  Each swap lowers F plus a small
 * multiple of the weighted sum of squared loads (which lets the search go
 * on across ties at the maximum), so the search ends; a budget bounds it.
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
  int32_t *slot;   /* [S] expert of each slot */
  int32_t *cnt;    /* [E] replicas */
  double *v;       /* [S * K] each slot's load in each scenario */
  double *L;       /* [G * K] each GPU's load in each scenario */
  double *top;     /* [3 * K] the three largest loads per scenario */
  int32_t *topg;   /* [3 * K] their GPUs */
  double *crit;    /* [G] weight of the scenarios a GPU is the max of */
  int32_t *order;  /* [G] critical GPUs, heaviest weight first */
  const int32_t *orig; /* [S] placement moves are counted from, or NULL */
  double lambda;   /* score per moved replica */
  int32_t max_moves, moves;
} rob_t;

/* The three largest loads of each scenario, and each GPU's critical
 * weight: the weights of the scenarios whose most loaded GPU it is. */
static void rank_gpus(rob_t *r) {
  int32_t K = r->K, G = r->G;
  for (int32_t k = 0; k < K; k++) {
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
  memset(r->crit, 0, sizeof(double) * (size_t)G);
  for (int32_t k = 0; k < K; k++)
    r->crit[r->topg[k]] += r->sc->w[k];
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

/* 1 when GPU g holds expert e in a slot other than `skip`. */
static int holds(const rob_t *r, int32_t g, int32_t e, int32_t skip) {
  const int32_t *row = r->slot + (size_t)g * r->per;
  for (int32_t j = 0; j < r->per; j++)
    if (row[j] == e && g * r->per + j != skip)
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

/* The score change of swapping slot a (on g) with slot b (on h). */
static double swap_score(const rob_t *r, int32_t a, int32_t g, int32_t b,
                         int32_t h) {
  int32_t K = r->K;
  const double *va = r->v + (size_t)a * K, *vb = r->v + (size_t)b * K;
  const double *Lg = r->L + (size_t)g * K, *Lh = r->L + (size_t)h * K;
  const double *w = r->sc->w;
  double dF = 0, dQ = 0;
  for (int32_t k = 0; k < K; k++) {
    double d = va[k] - vb[k];
    double lg = Lg[k] - d, lh = Lh[k] + d;
    double m = lg > lh ? lg : lh, ex = other_max(r, k, g, h);
    m = m > ex ? m : ex;
    dF += w[k] * (m - r->top[k]);
    dQ += w[k] * 2.0 * d * (d - Lg[k] + Lh[k]);
  }
  return dF + SQUARES_WEIGHT * r->G * dQ;
}

/* The best swap of a slot of GPU g with a slot of another GPU of its
 * domain: *best_score (kept if nothing is better), *ba, *bb. */
static void best_swap_of(const rob_t *r, int32_t g, double *best_score,
                         int32_t *ba, int32_t *bb) {
  int32_t per = r->per, d0 = g / r->dom * r->dom;
  for (int32_t j = 0; j < per; j++) {
    int32_t a = g * per + j, ea = r->slot[a];
    for (int32_t h = d0; h < d0 + r->dom; h++) {
      if (h == g || holds(r, h, ea, -1))
        continue;
      for (int32_t i = 0; i < per; i++) {
        int32_t b = h * per + i, eb = r->slot[b];
        if (eb == ea || holds(r, g, eb, a))
          continue;
        double s = swap_score(r, a, g, b, h);
        if (s >= *best_score)
          continue;
        if (r->orig) {
          int32_t dm = move_change(r, a, g, b, h);
          if (r->max_moves >= 0 && dm > 0 && r->moves + dm > r->max_moves)
            continue;
          s += r->lambda * dm;
          if (s >= *best_score)
            continue;
        }
        *best_score = s, *ba = a, *bb = b;
      }
    }
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
  int32_t t = r->slot[a];
  r->slot[a] = r->slot[b], r->slot[b] = t;
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
  for (int32_t it = 0; it < budget; it++) {
    rank_gpus(r);
    int32_t n = critical_order(r), ba = -1, bb = -1;
    for (int32_t c = 0; c < n && ba < 0; c++) {
      double best = -floor_gain;
      best_swap_of(r, r->order[c], &best, &ba, &bb);
    }
    if (ba < 0)
      return;
    apply_swap(r, ba, bb);
  }
}

/* Sets up r over phy2log[S] (its arrays from ar); 0 or EPLB_ENOMEM. */
static int rob_init(rob_t *r, const eplb__scenario_layer_t *sc, int32_t S,
                    int32_t G, int32_t dom, const int32_t *phy2log,
                    eplb__arena_t *ar) {
  int32_t K = sc->K, E = sc->E;
  *r = (rob_t){.sc = sc, .K = K, .E = E, .S = S, .G = G, .per = S / G,
               .dom = dom};
  r->slot = eplb__arena_take(ar, sizeof(int32_t) * (size_t)S);
  r->cnt = eplb__arena_take(ar, sizeof(int32_t) * (size_t)E);
  r->v = eplb__arena_take(ar, sizeof(double) * (size_t)S * K);
  r->L = eplb__arena_take(ar, sizeof(double) * (size_t)G * K);
  r->top = eplb__arena_take(ar, sizeof(double) * 3 * (size_t)K);
  r->topg = eplb__arena_take(ar, sizeof(int32_t) * 3 * (size_t)K);
  r->crit = eplb__arena_take(ar, sizeof(double) * (size_t)G);
  r->order = eplb__arena_take(ar, sizeof(int32_t) * (size_t)G);
  if (!r->slot || !r->cnt || !r->v || !r->L || !r->top || !r->topg ||
      !r->crit || !r->order)
    return EPLB_ENOMEM;
  memcpy(r->slot, phy2log, sizeof(int32_t) * (size_t)S);
  memset(r->cnt, 0, sizeof(int32_t) * (size_t)E);
  for (int32_t s = 0; s < S; s++)
    r->cnt[phy2log[s]]++;
  memset(r->L, 0, sizeof(double) * (size_t)G * K);
  for (int32_t s = 0; s < S; s++) {
    int32_t e = phy2log[s];
    for (int32_t k = 0; k < K; k++) {
      double x = sc->x[(size_t)k * E + e] / r->cnt[e];
      r->v[(size_t)s * K + k] = x;
      r->L[(size_t)(s / r->per) * K + k] += x;
    }
  }
  return 0;
}

int eplb__robust_search(const eplb__scenario_layer_t *sc, int32_t S, int32_t G,
                        int32_t dom, const int32_t *orig, double lambda,
                        int32_t max_moves, int32_t *phy2log,
                        eplb__arena_t *ar, eplb_error_t *err) {
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
  search(&r, 64 + 4 * S);
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
