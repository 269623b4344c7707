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
 * per moved replica; 0 for eplb__refine).  Each step looks at the most
 * loaded GPU g and tries:
 *  - swap: a slot of g with a lighter slot of another GPU (loads of two GPUs
 *    change; replica counts do not);
 *  - replicate in: give one of g's heaviest experts another replica on a
 *    light GPU, in a slot whose expert has replicas to spare;
 *  - replace: turn one of g's slots whose expert has replicas to spare into
 *    a replica of the hottest expert per replica that g lacks;
 * and applies the one with the largest net gain, until none gains or the
 * move budget (max_moves) is spent. */
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

static double wt(const eplb__search_t *c, int32_t e) {
  return c->load[e] / c->cnt[e];
}

/* Recomputes the GPU loads and the slots-by-expert index after a change. */
static void recompute(eplb__search_t *c) {
  for (int32_t e = 0; e < c->E; e++)
    c->ew[e] = wt(c, e); /* as the search always did, also for cnt 0 */
  for (int32_t s = 0; s < c->S; s++)
    c->sw[s] = c->ew[c->slot[s]];
  for (int32_t g = 0; g < c->G; g++) {
    double sum = 0;
    for (int32_t j = 0; j < c->per; j++)
      sum += c->sw[g * c->per + j];
    c->gl[g] = sum;
  }
  /* Counting sort of the slots by expert (cnt[] is the histogram). */
  int32_t *first = c->first, *fill = c->at;
  first[0] = 0;
  for (int32_t e = 0; e < c->E; e++)
    first[e + 1] = first[e] + c->cnt[e];
  for (int32_t s = 0; s < c->S; s++) {
    int32_t e = c->slot[s];
    fill[first[e]++] = s;
  }
  for (int32_t e = c->E; e > 0; e--)
    first[e] = first[e - 1];
  first[0] = 0;
}

/* Allocates the working arrays of c (E, S, G set); 0 or EPLB_ENOMEM. */
int eplb__search_alloc(eplb__search_t *c, eplb_error_t *err) {
  c->slot = malloc(sizeof(int32_t) * (size_t)c->S);
  c->cnt = calloc((size_t)c->E, sizeof(int32_t));
  c->gl = calloc((size_t)c->G, sizeof(double));
  c->scratch = malloc(sizeof(double) * (size_t)c->G);
  c->first = malloc(sizeof(int32_t) * ((size_t)c->E + 1));
  c->at = malloc(sizeof(int32_t) * (size_t)c->S);
  c->ew = malloc(sizeof(double) * (size_t)c->E);
  c->sw = malloc(sizeof(double) * (size_t)c->S);
  c->mark = calloc((size_t)c->E, 1);
  if (!c->slot || !c->cnt || !c->gl || !c->scratch || !c->first || !c->at ||
      !c->ew || !c->sw || !c->mark)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  return 0;
}

void eplb__search_free(eplb__search_t *c) {
  free(c->slot);
  free(c->cnt);
  free(c->gl);
  free(c->scratch);
  free(c->first);
  free(c->at);
  free(c->ew);
  free(c->sw);
  free(c->mark);
}

/* Load above the mean, summed over GPUs: the part of the imbalance a move
 * can remove.  Unlike the maximum alone it credits a move that lowers one
 * of several equally loaded GPUs. */
static double excess(const eplb__search_t *c, double mean) {
  double x = 0;
  for (int32_t g = 0; g < c->G; g++)
    if (c->gl[g] > mean)
      x += c->gl[g] - mean;
  return x;
}

static double pos(double v) { return v > 0 ? v : 0; }

double eplb__search_max(const eplb__search_t *c) {
  double m = c->gl[0];
  for (int32_t g = 1; g < c->G; g++)
    m = c->gl[g] > m ? c->gl[g] : m;
  return m;
}

/* 1 when row (per slots) holds e outside slot `skip`. */
static int row_has(const int32_t *row, int32_t per, int32_t e, int32_t skip) {
  for (int32_t j = 0; j < per; j++)
    if (j != skip && row[j] == e)
      return 1;
  return 0;
}

static int orig_has(const eplb__search_t *c, int32_t g, int32_t e) {
  return row_has(c->orig + (size_t)g * c->per, c->per, e, -1);
}

/* Change in moved replicas when GPU g's slot turns from expert `from` into
 * expert `to`. */
static int32_t move_delta(const eplb__search_t *c, int32_t g, int32_t from,
                          int32_t to) {
  if (c->home != NULL) { /* spill mode: a replica away from home costs */
    int32_t node = g / c->gpn;
    return (int32_t)(c->home[to] != node) - (int32_t)(c->home[from] != node);
  }
  return (int32_t)!orig_has(c, g, to) - (int32_t)!orig_has(c, g, from);
}

typedef struct {
  double score; /* net gain: max-load reduction - lambda * moves */
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

/* Swaps of a slot of g with a slot of a GPU below the mean (moving load
 * between two GPUs above the mean removes no excess).  Such a swap removes
 * at most min(excess of g, deficit of h), so lighter GPUs come first
 * (`light`, lightest first) and the scan stops once that bound cannot beat
 * the best move found. */
static void try_swaps(const eplb__search_t *c, int32_t g, const int32_t *light,
                      double mean, double lambda, int32_t budget, op_t *best) {
  int32_t per = c->per;
  const int32_t *rg = c->slot + (size_t)g * per;
  double lg = c->gl[g];
  for (int32_t k = 0; k < c->G; k++) {
    int32_t h = light[k];
    double lh = c->gl[h], gap = lg - lh;
    if (lh >= mean)
      break;
    double bound = lg - mean < mean - lh ? lg - mean : mean - lh;
    if (bound <= best->score)
      break;
    if (h == g || gap <= 0)
      continue;
    const int32_t *rh = c->slot + (size_t)h * per;
    const double *wg = c->sw + (size_t)g * per, *wh = c->sw + (size_t)h * per;
    double before = pos(lg - mean) + pos(lh - mean);
    for (int32_t a = 0; a < per; a++) {
      for (int32_t b = 0; b < per; b++) {
        double d = wg[a] - wh[b];
        if (d <= 0 || d >= gap || rg[a] == rh[b])
          continue;
        double gain = before - pos(lg - d - mean) - pos(lh + d - mean);
        if (gain <= best->score) /* cannot win even with no moves */
          continue;
        if (row_has(rh, per, rg[a], b) || row_has(rg, per, rh[b], a))
          continue;
        int32_t mv =
            move_delta(c, g, rg[a], rh[b]) + move_delta(c, h, rh[b], rg[a]);
        if (mv > budget)
          continue;
        offer(best, gain - lambda * mv, 1, g, a, h, b, -1, mv);
      }
    }
  }
}

/* Evaluates turning slot (h, b) into a replica of `to`: the GPUs whose
 * load changes are h and those holding `from` or `to` (their replicas'
 * weights change), found in one pass over the slots. */
static void try_replace(eplb__search_t *c, int32_t h, int32_t b, int32_t to,
                        double mean, double cur, double lambda, int32_t budget,
                        op_t *best) {
  int32_t per = c->per, *rh = c->slot + (size_t)h * per, from = rh[b];
  if (from == to || c->cnt[from] < 2 || row_has(rh, per, to, b))
    return;
  int32_t mv = move_delta(c, h, from, to);
  if (mv > budget)
    return;
  double f_old = c->load[from] / c->cnt[from];
  double f_new = c->load[from] / (c->cnt[from] - 1);
  double t_old = c->cnt[to] ? c->load[to] / c->cnt[to] : 0;
  double t_new = c->load[to] / (c->cnt[to] + 1);
  double *ng = c->scratch;
  memcpy(ng, c->gl, sizeof(double) * (size_t)c->G);
  /* Only the slots of `from` (the target among them) and of `to` change:
   * walk both ascending lists merged, so every GPU adds its changes in slot
   * order. */
  int32_t target = h * per + b;
  const int32_t *fs = c->at + c->first[from], *ts = c->at + c->first[to];
  int32_t nf = c->first[from + 1] - c->first[from];
  int32_t nt = c->first[to + 1] - c->first[to];
  for (int32_t i = 0, k = 0; i < nf || k < nt;) {
    int32_t s;
    double d;
    if (k >= nt || (i < nf && fs[i] < ts[k])) {
      s = fs[i++];
      d = s == target ? t_new - f_old : f_new - f_old;
    } else {
      s = ts[k++];
      d = t_new - t_old;
    }
    ng[s / per] += d;
  }
  double after = 0;
  for (int32_t g = 0; g < c->G; g++)
    after += pos(ng[g] - mean);
  offer(best, (cur - after) - lambda * mv, 2, -1, -1, h, b, to, mv);
}

/* Indices of the `k` heaviest slots of GPU g (by weight) into out. */
static int32_t heaviest_slots(const eplb__search_t *c, int32_t g, int32_t k,
                              int32_t *out) {
  int32_t n = 0;
  for (int32_t j = 0; j < c->per; j++) {
    int32_t pos = n < k ? n++ : k;
    double w = wt(c, c->slot[g * c->per + j]);
    if (pos == k) {
      if (w <= wt(c, c->slot[g * c->per + out[k - 1]]))
        continue;
      pos = k - 1;
    }
    while (pos > 0 && wt(c, c->slot[g * c->per + out[pos - 1]]) < w) {
      out[pos] = out[pos - 1];
      pos--;
    }
    out[pos] = j;
  }
  return n;
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
      int32_t bs = -1;
      for (int32_t s = 0; s < c->S; s++) {
        int32_t d = c->slot[s], g = s / c->per;
        if (c->cnt[d] <= want[d] ||
            row_has(c->slot + (size_t)g * c->per, c->per, r, -1))
          continue;
        if (bs < 0 || c->gl[g] > c->gl[bs / c->per])
          bs = s;
      }
      if (bs < 0)
        break; /* no donor slot without a clash: leave it to the search */
      int32_t g = bs / c->per;
      *moves += move_delta(c, g, c->slot[bs], r);
      c->cnt[c->slot[bs]]--;
      c->cnt[r]++;
      c->slot[bs] = r;
      recompute(c);
    }
  }
  free(want);
  return rc;
}

/* Fills light[0..G) with GPU ids, lightest first (ties: lower id). */
static void by_load(const eplb__search_t *c, int32_t *light) {
  for (int32_t i = 0; i < c->G; i++) {
    int32_t j = i;
    while (j > 0 && c->gl[light[j - 1]] > c->gl[i]) {
      light[j] = light[j - 1];
      j--;
    }
    light[j] = i;
  }
}

/* The best move that relieves GPU g (see the DESIGN note). */
static void best_for(eplb__search_t *c, int32_t g, const int32_t *light,
                     double mean, double cur, double lambda, int32_t budget,
                     op_t *best) {
  int32_t G = c->G, per = c->per;
  try_swaps(c, g, light, mean, lambda, budget, best);
  /* Replicate in: g's two heaviest experts, onto the 4 lightest GPUs that
   * lack them, in any slot whose expert can spare a replica. */
  int32_t hot[2];
  int32_t nh = heaviest_slots(c, g, 2, hot);
  for (int32_t k = 0; k < nh; k++) {
    int32_t z = c->slot[g * per + hot[k]], tried = 0;
    for (int32_t i = 0; i < G && tried < 4; i++) {
      int32_t h = light[i];
      if (h == g || row_has(c->slot + (size_t)h * per, per, z, -1))
        continue;
      tried++;
      for (int32_t b = 0; b < per; b++)
        try_replace(c, h, b, z, mean, cur, lambda, budget, best);
    }
  }
  /* Replace on g: a slot of g whose expert can spare a replica becomes a
   * replica of one of the 3 hottest experts (per replica) g lacks. */
  int32_t cand[3] = {-1, -1, -1};
  const int32_t *rg = c->slot + (size_t)g * per;
  for (int32_t j = 0; j < per; j++)
    c->mark[rg[j]] = 1;
  for (int32_t e = 0; e < c->E; e++) {
    if (c->mark[e])
      continue;
    for (int32_t k = 0; k < 3; k++) {
      if (cand[k] < 0 || c->ew[e] > c->ew[cand[k]]) {
        for (int32_t m = 2; m > k; m--)
          cand[m] = cand[m - 1];
        cand[k] = e;
        break;
      }
    }
  }
  for (int32_t j = 0; j < per; j++)
    c->mark[rg[j]] = 0;
  for (int32_t k = 0; k < 3; k++)
    if (cand[k] >= 0)
      for (int32_t a = 0; a < per; a++)
        try_replace(c, g, a, cand[k], mean, cur, lambda, budget, best);
}

/* The greedy search of the DESIGN note: relieve the most loaded GPU that
 * some move can relieve at a net gain (the top few are tried), apply that
 * move, repeat.  *moves is the running count. */
void eplb__search_run(eplb__search_t *c, double mean, double lambda,
                      int32_t max_moves, int32_t *moves) {
  int32_t G = c->G;
  int32_t iters = 4 * c->S + 64;
  int32_t *light = malloc(sizeof(int32_t) * (size_t)G);
  if (light == NULL)
    return; /* the search only improves; skipping it is safe */
  for (int32_t it = 0; it < iters; it++) {
    by_load(c, light);
    int32_t budget = max_moves < 0 ? c->S : max_moves - *moves;
    double cur = excess(c, mean);
    op_t best = {.score = 1e-9 * mean, .kind = 0};
    for (int32_t k = 0; k < 4 && k < G && best.kind == 0; k++) {
      int32_t g = light[G - 1 - k];
      if (c->gl[g] <= mean)
        break;
      best_for(c, g, light, mean, cur, lambda, budget, &best);
    }
    if (best.kind == 0)
      break;
    int32_t per = c->per;
    if (best.kind == 1) {
      int32_t *rg = c->slot + (size_t)best.g * per;
      int32_t *rh = c->slot + (size_t)best.h * per;
      int32_t t = rg[best.a];
      rg[best.a] = rh[best.b];
      rh[best.b] = t;
    } else {
      int32_t *rh = c->slot + (size_t)best.h * per;
      c->cnt[rh[best.b]]--;
      c->cnt[best.to]++;
      rh[best.b] = best.to;
    }
    *moves += best.moves;
    recompute(c);
  }
  free(light);
}

double eplb__search_set(eplb__search_t *c, const int32_t *placement) {
  memcpy(c->slot, placement, sizeof(int32_t) * (size_t)c->S);
  memset(c->cnt, 0, sizeof(int32_t) * (size_t)c->E);
  for (int32_t s = 0; s < c->S; s++)
    c->cnt[placement[s]]++;
  recompute(c);
  double total = 0;
  for (int32_t g = 0; g < c->G; g++)
    total += c->gl[g];
  return total;
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
  double before = eplb__search_max(&c);
  int32_t moves = 0;
  eplb__search_run(&c, total / G, 0.0, -1, &moves);
  /* The search lowers the load above the mean; keep its result only if the
   * maximum, which the imbalance measures, did not rise. */
  if (eplb__search_max(&c) < before)
    memcpy(phy2log, c.slot, sizeof(int32_t) * (size_t)S);
done:
  eplb__search_free(&c);
  return rc;
}
