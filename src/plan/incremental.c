/* incremental.c - migration-aware planning: start from where the experts
 * are, and move only what buys balance.
 *
 * DESIGN.  Moving an expert costs bytes and stalls serving or training
 * (0.6-1.8 s per re-plan in vLLM and SGLang), and a from-scratch plan moves
 * nearly every replica even between two similar windows.  Here the plan is
 * the current placement improved by a greedy search whose objective is
 *     max GPU load + lambda * (replicas that arrive on a GPU that did not
 *                              hold that expert before)
 * with lambda = move_cost * mean GPU load (move_cost is in imbalance units
 * per moved replica).  Each step looks at the most loaded GPU g and tries:
 *  - swap: a slot of g with a lighter slot of another GPU (loads of two GPUs
 *    change; replica counts do not);
 *  - replicate in: give one of g's heaviest experts another replica on a
 *    light GPU, in a slot whose expert has replicas to spare;
 *  - replace: turn one of g's slots whose expert has replicas to spare into
 *    a replica of the hottest expert per replica that g lacks;
 * and applies the one with the largest net gain, until none gains or the
 * move budget (max_moves) is spent.  The result is compared with a fresh
 * `balanced` plan whose GPUs and slots are relabelled to overlap the
 * current placement as much as possible, and the better of the two under
 * the same objective is returned.  Layers whose current imbalance is at most
 * keep_threshold are left untouched. */
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

typedef struct {
  int32_t E, S, G, per;
  const double *load;
  int32_t *slot;       /* [S] working placement */
  int32_t *cnt;        /* [E] replicas */
  double *gl;          /* [G] GPU loads */
  double *scratch;     /* [G] loads of a move under evaluation */
  const int32_t *orig; /* [S] placement we started from */
  const int32_t *home; /* [E] home node of each expert (spill mode), or NULL */
  int32_t gpn;         /* GPUs per node (spill mode) */
  int32_t *first;      /* [E + 1] expert e's slots: at[first[e]..first[e+1]) */
  int32_t *at;         /* [S] slots grouped by expert, ascending in each */
  double *ew;          /* [E] load per replica of each expert */
  double *sw;          /* [S] load per replica of each slot's expert */
  unsigned char *mark; /* [E] scratch flags, all 0 between uses */
} inc_t;

static double wt(const inc_t *c, int32_t e) { return c->load[e] / c->cnt[e]; }

/* Recomputes the GPU loads and the slots-by-expert index after a change. */
static void recompute(inc_t *c) {
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
static int inc_alloc(inc_t *c, eplb_error_t *err) {
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

static void inc_free(inc_t *c) {
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
static double excess(const inc_t *c, double mean) {
  double x = 0;
  for (int32_t g = 0; g < c->G; g++)
    if (c->gl[g] > mean)
      x += c->gl[g] - mean;
  return x;
}

static double pos(double v) { return v > 0 ? v : 0; }

static double max_load(const inc_t *c) {
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

static int orig_has(const inc_t *c, int32_t g, int32_t e) {
  return row_has(c->orig + (size_t)g * c->per, c->per, e, -1);
}

/* Change in moved replicas when GPU g's slot turns from expert `from` into
 * expert `to`. */
static int32_t move_delta(const inc_t *c, int32_t g, int32_t from, int32_t to) {
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
static void try_swaps(const inc_t *c, int32_t g, const int32_t *light,
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
        int32_t mv = move_delta(c, g, rg[a], rh[b]) +
                     move_delta(c, h, rh[b], rg[a]);
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
static void try_replace(inc_t *c, int32_t h, int32_t b, int32_t to,
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
static int32_t heaviest_slots(const inc_t *c, int32_t g, int32_t k,
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
static int fix_counts(inc_t *c, int32_t max_moves, int32_t *moves,
                      eplb_error_t *err) {
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
static void by_load(const inc_t *c, int32_t *light) {
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
static void best_for(inc_t *c, int32_t g, const int32_t *light, double mean,
                     double cur, double lambda, int32_t budget, op_t *best) {
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
static void search(inc_t *c, double mean, double lambda, int32_t max_moves,
                   int32_t *moves) {
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

int32_t eplb__count_moves(const int32_t *from, const int32_t *to, int32_t S,
                          int32_t G) {
  int32_t per = S / G, moves = 0;
  for (int32_t g = 0; g < G; g++)
    for (int32_t j = 0; j < per; j++)
      moves += !row_has(from + (size_t)g * per, per, to[g * per + j], -1);
  return moves;
}

int eplb__align(const int32_t *current, int32_t *plan, int32_t S, int32_t G,
                eplb_error_t *err) {
  int32_t per = S / G;
  int32_t *ov = malloc(sizeof(int32_t) * (size_t)G * (size_t)G);
  int32_t *map = malloc(sizeof(int32_t) * (size_t)G); /* new GPU -> old */
  /* used: first as old GPUs taken (G), then as slots matched (per) */
  int32_t *used = calloc((size_t)(G > per ? G : per), sizeof(int32_t));
  int32_t *out = malloc(sizeof(int32_t) * (size_t)S);
  if (!ov || !map || !used || !out) {
    free(ov);
    free(map);
    free(used);
    free(out);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  /* Overlap of every new GPU with every old one, through a list of the old
   * slots of each expert (next_slot chains, heads in head[]); then a greedy
   * matching, largest overlap first (ties: lower indices). */
  int32_t E = 0;
  for (int32_t s = 0; s < S; s++)
    E = current[s] + 1 > E ? current[s] + 1 : E;
  for (int32_t s = 0; s < S; s++)
    E = plan[s] + 1 > E ? plan[s] + 1 : E;
  int32_t *head = malloc(sizeof(int32_t) * (size_t)E);
  int32_t *next_slot = malloc(sizeof(int32_t) * (size_t)S);
  if (!head || !next_slot) {
    free(head);
    free(next_slot);
    free(ov);
    free(map);
    free(used);
    free(out);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  for (int32_t e = 0; e < E; e++)
    head[e] = -1;
  for (int32_t s = S - 1; s >= 0; s--) {
    next_slot[s] = head[current[s]];
    head[current[s]] = s;
  }
  memset(ov, 0, sizeof(int32_t) * (size_t)G * (size_t)G);
  for (int32_t n = 0; n < G; n++) {
    map[n] = -1;
    for (int32_t j = 0; j < per; j++)
      for (int32_t s = head[plan[n * per + j]]; s >= 0; s = next_slot[s])
        ov[n * G + s / per]++;
  }
  free(head);
  free(next_slot);
  for (int32_t round = 0; round < G; round++) {
    int32_t bn = -1, bo = -1, bk = -1;
    for (int32_t n = 0; n < G; n++) {
      if (map[n] >= 0)
        continue;
      for (int32_t o = 0; o < G; o++)
        if (!used[o] && ov[n * G + o] > bk) {
          bk = ov[n * G + o];
          bn = n;
          bo = o;
        }
    }
    map[bn] = bo;
    used[bo] = 1;
  }
  /* Inside each GPU, an expert that stays keeps its slot; the newcomers
   * fill the freed slots in order.  Each slot of the new GPU is matched at
   * most once (`used`), so duplicates in the current map cannot overfill. */
  for (int32_t n = 0; n < G; n++) {
    const int32_t *old = current + (size_t)map[n] * per;
    const int32_t *src = plan + (size_t)n * per;
    int32_t *dst = out + (size_t)map[n] * per;
    memset(used, 0, sizeof(int32_t) * (size_t)per);
    for (int32_t j = 0; j < per; j++) {
      dst[j] = -1;
      for (int32_t i = 0; i < per; i++)
        if (!used[i] && src[i] == old[j]) {
          used[i] = 1;
          dst[j] = old[j];
          break;
        }
    }
    int32_t free_j = 0;
    for (int32_t i = 0; i < per; i++) {
      if (used[i])
        continue;
      while (dst[free_j] >= 0)
        free_j++;
      dst[free_j] = src[i];
    }
  }
  memcpy(plan, out, sizeof(int32_t) * (size_t)S);
  free(ov);
  free(map);
  free(used);
  free(out);
  return 0;
}

int eplb__plan_incremental(const double *load, int32_t E,
                           const eplb_plan_opts_t *opts, const int32_t *current,
                           int32_t *phy2log, eplb_error_t *err) {
  int32_t S = opts->num_slots, G = opts->num_gpus, per = S / G;
  inc_t c = {.E = E, .S = S, .G = G, .per = per, .load = load,
             .orig = current};
  int32_t *fresh = malloc(sizeof(int32_t) * (size_t)S);
  int rc = inc_alloc(&c, err);
  if (rc == 0 && fresh == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc)
    goto done;
  memcpy(c.slot, current, sizeof(int32_t) * (size_t)S);
  for (int32_t s = 0; s < S; s++)
    c.cnt[current[s]]++;
  recompute(&c);
  double total = 0;
  for (int32_t g = 0; g < G; g++)
    total += c.gl[g];
  double mean = total / G, cur_max = max_load(&c);
  memcpy(phy2log, current, sizeof(int32_t) * (size_t)S);
  if (total <= 0 || cur_max <= mean * (1.0 + opts->keep_threshold))
    goto done; /* balanced enough (or idle): keep it as it is */

  double lambda = opts->move_cost * mean;
  int32_t moves = 0;
  rc = fix_counts(&c, opts->max_moves, &moves, err);
  if (rc)
    goto done;
  search(&c, mean, lambda, opts->max_moves, &moves);
  double inc_obj = max_load(&c) + lambda * moves;
  memcpy(phy2log, c.slot, sizeof(int32_t) * (size_t)S);

  /* The fresh plan, relabelled to overlap the current one. */
  eplb_plan_opts_t o = *opts;
  o.policy = EPLB_POLICY_BALANCED;
  rc = eplb__plan_balanced(load, E, &o, fresh, err);
  if (rc)
    goto done;
  rc = eplb__align(current, fresh, S, G, err);
  if (rc)
    goto done;
  int32_t fm = eplb__count_moves(current, fresh, S, G);
  double fresh_obj = eplb__max_gpu_load(load, E, fresh, S, G) + lambda * fm;
  if ((opts->max_moves < 0 || fm <= opts->max_moves) && fresh_obj < inc_obj)
    memcpy(phy2log, fresh, sizeof(int32_t) * (size_t)S);
done:
  inc_free(&c);
  free(fresh);
  return rc;
}

int eplb__plan_spill(const double *load, int32_t E,
                     const eplb_plan_opts_t *opts, int32_t *phy2log,
                     eplb_error_t *err) {
  int32_t S = opts->num_slots, G = opts->num_gpus, per = S / G;
  int rc = eplb__plan_balanced(load, E, opts, phy2log, err);
  if (rc)
    return rc;
  inc_t c = {.E = E, .S = S, .G = G, .per = per, .load = load,
             .orig = phy2log, .gpn = G / opts->num_nodes};
  int32_t *home = malloc(sizeof(int32_t) * (size_t)E);
  rc = inc_alloc(&c, err);
  if (rc == 0 && home == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc)
    goto done;
  /* In the hierarchical plan every expert lives on one node: its home. */
  for (int32_t s = S - 1; s >= 0; s--)
    home[phy2log[s]] = (s / per) / c.gpn;
  c.home = home;
  memcpy(c.slot, phy2log, sizeof(int32_t) * (size_t)S);
  for (int32_t s = 0; s < S; s++)
    c.cnt[phy2log[s]]++;
  recompute(&c);
  double total = 0;
  for (int32_t g = 0; g < G; g++)
    total += c.gl[g];
  double mean = total / G;
  if (total <= 0 || max_load(&c) <= mean * (1.0 + opts->keep_threshold))
    goto done;
  int32_t spilled = 0;
  search(&c, mean, opts->spill_cost * mean, -1, &spilled);
  memcpy(phy2log, c.slot, sizeof(int32_t) * (size_t)S);
done:
  free(home);
  inc_free(&c);
  return rc;
}

int eplb__refine(const double *load, int32_t E, int32_t S, int32_t G,
                 int32_t *phy2log, eplb_error_t *err) {
  int32_t per = S / G;
  inc_t c = {.E = E, .S = S, .G = G, .per = per, .load = load,
             .orig = phy2log};
  int rc = inc_alloc(&c, err);
  if (rc)
    goto done;
  memcpy(c.slot, phy2log, sizeof(int32_t) * (size_t)S);
  for (int32_t s = 0; s < S; s++)
    c.cnt[phy2log[s]]++;
  recompute(&c);
  double total = 0;
  for (int32_t g = 0; g < G; g++)
    total += c.gl[g];
  double before = max_load(&c);
  int32_t moves = 0;
  search(&c, total / G, 0.0, -1, &moves);
  /* The search lowers the load above the mean; keep its result only if the
   * maximum, which the imbalance measures, did not rise. */
  if (max_load(&c) < before)
    memcpy(phy2log, c.slot, sizeof(int32_t) * (size_t)S);
done:
  inc_free(&c);
  return rc;
}
