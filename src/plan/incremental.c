/* plan/incremental.c - migration-aware planning: start from where the
 * experts are, and move only what buys balance.
 *
 * DESIGN.  Moving an expert costs bytes and stalls serving or training
 * (docs/planner.md), and a from-scratch plan moves nearly every replica
 * even between two similar windows.  Here the plan is the current
 * placement improved by the move search of refine.c, each replica that
 * arrives on a new GPU priced at move_cost x the mean GPU load.  The
 * result is compared with a fresh `balanced` plan whose GPUs and slots are
 * relabelled to overlap the current placement as much as possible
 * (align), and the better of the two under the same objective is
 * returned.  Layers whose current imbalance is at most
 * keep_threshold are left untouched.  The spill of hierarchical plans
 * (eplb__plan_spill) is the same search, a replica away from its group's
 * node priced instead. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

/* Overlap pairs counted per relabelling at most (a budget of PAIR_BUDGET
 * per slot): an expert with c_old replicas in the current placement and
 * c_new in the fresh plan makes c_old x c_new pairs, which for experts with
 * thousands of replicas would be quadratic in the slots.  The experts are
 * taken fewest old replicas first (the most telling overlaps) while the
 * pairs stay within the budget; the others do not count towards overlap.
 * Real shapes (a few replicas per expert) stay far below it: every expert
 * counts. */
#define PAIR_BUDGET 16

/* A (new GPU, old GPU, overlap) triple. */
typedef struct {
  int32_t n, o, ov;
} pair_t;

/* The experts that count towards overlap: use[e] = 1 for the experts with
 * the fewest old replicas (ties: lower expert) while the pairs they make
 * stay within PAIR_BUDGET x S.  cold[E], cnew[E], ord[E]: scratch. */
static void counted_experts(const int32_t *current, const int32_t *plan,
                            int32_t S, int32_t E, int32_t *cold, int32_t *cnew,
                            int32_t *ord, unsigned char *use) {
  memset(cold, 0, sizeof(int32_t) * (size_t)E);
  memset(cnew, 0, sizeof(int32_t) * (size_t)E);
  for (int32_t s = 0; s < S; s++) {
    cold[current[s]]++;
    cnew[plan[s]]++;
  }
  int64_t pairs = 0, cap = (int64_t)PAIR_BUDGET * S;
  for (int32_t e = 0; e < E; e++)
    pairs += (int64_t)cold[e] * cnew[e];
  if (pairs <= cap) { /* all count */
    memset(use, 1, (size_t)E);
    return;
  }
  /* Counting sort of the experts by old replicas (stable: ties lower). */
  int64_t *prod = malloc(sizeof(int64_t) * (size_t)E);
  int32_t *bucket = malloc(sizeof(int32_t) * ((size_t)S + 2));
  memset(use, 0, (size_t)E);
  if (prod == NULL || bucket == NULL) { /* no overlap counted: still valid */
    free(prod);
    free(bucket);
    return;
  }
  for (int32_t e = 0; e < E; e++)
    prod[e] = (int64_t)cold[e] * cnew[e];
  memset(bucket, 0, sizeof(int32_t) * ((size_t)S + 2));
  for (int32_t e = 0; e < E; e++)
    bucket[cold[e] + 1]++;
  for (int32_t c = 0; c <= S; c++)
    bucket[c + 1] += bucket[c];
  for (int32_t e = 0; e < E; e++)
    ord[bucket[cold[e]]++] = e;
  for (int32_t i = 0, total = 0; i < E; i++) {
    int32_t e = ord[i];
    if ((int64_t)total + prod[e] > cap)
      break;
    total += (int32_t)prod[e];
    use[e] = 1;
  }
  free(prod);
  free(bucket);
}

/* Sorts v[n] ascending; tmp[n] scratch. */
static void sort_ints(int32_t *v, int32_t *tmp, int32_t n) {
  if (n <= 32) {
    for (int32_t i = 1; i < n; i++) {
      int32_t x = v[i], k = i;
      for (; k > 0 && v[k - 1] > x; k--)
        v[k] = v[k - 1];
      v[k] = x;
    }
    return;
  }
  for (int32_t w = 1; w < n; w *= 2) {
    for (int32_t lo = 0; lo < n; lo += 2 * w) {
      int32_t mid = lo + w < n ? lo + w : n;
      int32_t hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        tmp[k++] = v[j] < v[i] ? v[j++] : v[i++];
      while (i < mid)
        tmp[k++] = v[i++];
      while (j < hi)
        tmp[k++] = v[j++];
    }
    memcpy(v, tmp, sizeof(int32_t) * (size_t)n);
  }
}

/* Overlap of the GPUs of plan with those of current, as triples (new GPU
 * n, old GPU o, slots of n whose expert o holds, counted once per old
 * replica), n ascending then o ascending, only the experts of use[].
 * head[E]/next_slot[S]: the old slots of each expert, chained; ovc[G] (all
 * 0), olist[G], tmp[G]: scratch.  Returns how many triples. */
static int32_t gpu_overlap(const int32_t *current, const int32_t *plan,
                           int32_t S, int32_t G, int32_t E,
                           const unsigned char *use, int32_t *head,
                           int32_t *next_slot, int32_t *ovc, int32_t *olist,
                           int32_t *tmp, pair_t *pairs) {
  int32_t per = S / G, np = 0;
  for (int32_t e = 0; e < E; e++)
    head[e] = -1;
  for (int32_t s = S - 1; s >= 0; s--) {
    next_slot[s] = head[current[s]];
    head[current[s]] = s;
  }
  for (int32_t n = 0; n < G; n++) {
    int32_t m = 0; /* the old GPUs n meets */
    for (int32_t j = 0; j < per; j++) {
      int32_t e = plan[n * per + j];
      if (!use[e])
        continue;
      for (int32_t s = head[e]; s >= 0; s = next_slot[s])
        if (ovc[s / per]++ == 0)
          olist[m++] = s / per;
    }
    sort_ints(olist, tmp, m);
    for (int32_t i = 0; i < m; i++) {
      pairs[np++] = (pair_t){n, olist[i], ovc[olist[i]]};
      ovc[olist[i]] = 0;
    }
  }
  return np;
}

/* Greedy matching of new GPUs to old ones, largest overlap first (ties:
 * lower new GPU, then lower old GPU), then the GPUs left in order: map[n]
 * is new GPU n's old GPU.  pairs[np] in n, o order; by[np], used[G],
 * bucket[per + 2]: scratch.  The same matching as picking, round after
 * round, the largest overlap among the GPUs not matched yet. */
static void match_gpus(const pair_t *pairs, int32_t np, int32_t G,
                       int32_t per, int32_t *map, int32_t *used, int32_t *by,
                       int32_t *bucket) {
  for (int32_t n = 0; n < G; n++) {
    map[n] = -1;
    used[n] = 0;
  }
  /* Counting sort by overlap, largest first, stable (n, o order kept). */
  memset(bucket, 0, sizeof(int32_t) * ((size_t)per + 2));
  for (int32_t i = 0; i < np; i++)
    bucket[per - pairs[i].ov + 1]++;
  for (int32_t c = 0; c <= per; c++)
    bucket[c + 1] += bucket[c];
  for (int32_t i = 0; i < np; i++)
    by[bucket[per - pairs[i].ov]++] = i;
  for (int32_t i = 0; i < np; i++) {
    const pair_t *p = &pairs[by[i]];
    if (map[p->n] < 0 && !used[p->o]) {
      map[p->n] = p->o;
      used[p->o] = 1;
    }
  }
  for (int32_t n = 0, o = 0; n < G; n++) {
    if (map[n] >= 0)
      continue;
    while (used[o])
      o++;
    map[n] = o;
    used[o] = 1;
  }
}

/* The slots of one GPU: src[per] (the new plan's, no expert twice) into
 * dst[per] where old[per] (the GPU it takes the place of) had them.  An
 * expert that stays keeps its slot (its first slot on old, when the
 * current map holds it twice); the newcomers fill the freed slots in
 * order.  seen[E] (none == stamp on entry, stamp >= 0): scratch. */
static void fill_slots(const int32_t *old, const int32_t *src, int32_t per,
                       int32_t *dst, int32_t *seen, int32_t stamp) {
  for (int32_t i = 0; i < per; i++)
    seen[src[i]] = stamp; /* src[i] is on offer */
  for (int32_t j = 0; j < per; j++) {
    dst[j] = -1;
    if (seen[old[j]] == stamp) {
      dst[j] = old[j];
      seen[old[j]] = -stamp - 1; /* taken */
    }
  }
  int32_t free_j = 0;
  for (int32_t i = 0; i < per; i++) {
    if (seen[src[i]] != stamp)
      continue; /* kept in place */
    while (dst[free_j] >= 0)
      free_j++;
    dst[free_j] = src[i];
  }
}

/* Relabels plan's GPUs (and slots inside them) to overlap current[S] as
 * much as possible; the set of experts per GPU is unchanged.  Memory
 * O(S + E). */
static int align(const int32_t *current, int32_t *plan, int32_t S, int32_t G,
                 eplb_error_t *err) {
  int32_t per = S / G, E = 0;
  for (int32_t s = 0; s < S; s++) {
    E = current[s] + 1 > E ? current[s] + 1 : E;
    E = plan[s] + 1 > E ? plan[s] + 1 : E;
  }
  size_t maxp = (size_t)PAIR_BUDGET * S + S;
  /* map, used, ovc, olist, tmp [G]; out, next_slot [S]; head, cold,
   * cnew, ord, seen [E]; by [maxp]; bucket [per + 2] */
  size_t n32 = 5 * (size_t)G + 2 * (size_t)S + 5 * (size_t)E + maxp +
               (size_t)per + 2;
  int32_t *map = malloc(sizeof(int32_t) * n32); /* only ovc starts at 0 */
  pair_t *pairs = malloc(sizeof(pair_t) * maxp);
  unsigned char *use = malloc((size_t)E);
  if (map == NULL || pairs == NULL || use == NULL) {
    free(map);
    free(pairs);
    free(use);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  int32_t *used = map + G, *ovc = used + G, *olist = ovc + G;
  int32_t *tmp = olist + G, *out = tmp + G, *next_slot = out + S;
  int32_t *head = next_slot + S, *cold = head + E, *cnew = cold + E;
  int32_t *ord = cnew + E, *seen = ord + E, *by = seen + E;
  int32_t *bucket = by + maxp;
  memset(ovc, 0, sizeof(int32_t) * (size_t)G);
  counted_experts(current, plan, S, E, cold, cnew, ord, use);
  int32_t np = gpu_overlap(current, plan, S, G, E, use, head, next_slot, ovc,
                           olist, tmp, pairs);
  match_gpus(pairs, np, G, per, map, used, by, bucket);
  for (int32_t e = 0; e < E; e++)
    seen[e] = -1;
  for (int32_t g = 0; g < G; g++)
    fill_slots(current + (size_t)map[g] * per, plan + (size_t)g * per, per,
               out + (size_t)map[g] * per, seen, g);
  memcpy(plan, out, sizeof(int32_t) * (size_t)S);
  free(map);
  free(pairs);
  free(use);
  return 0;
}

int eplb__plan_incremental(const double *load, int32_t E,
                           const eplb_plan_opts_t *opts, const int32_t *current,
                           int32_t *phy2log, eplb_error_t *err) {
  int32_t S = opts->num_slots, G = opts->num_gpus, per = S / G;
  eplb__search_t c = {
      .E = E, .S = S, .G = G, .per = per, .load = load, .orig = current};
  int32_t *fresh = malloc(sizeof(int32_t) * (size_t)S);
  int rc = eplb__search_alloc(&c, err);
  if (rc == 0 && fresh == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc)
    goto done;
  double total = eplb__search_set(&c, current);
  if (total < 0) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    goto done;
  }
  double mean = total / G, cur_max = eplb__search_max(&c);
  memcpy(phy2log, current, sizeof(int32_t) * (size_t)S);
  /* A copy of an expert its GPU already holds serves nothing (consumers
   * drop it): first, as the budget allows, it becomes a useful replica, so
   * a re-plan never keeps a duplicate of its current map. */
  int32_t moves = 0;
  if (eplb__search_repair_duplicates(&c, opts->max_moves, &moves) > 0) {
    memcpy(phy2log, c.slot, sizeof(int32_t) * (size_t)S);
    cur_max = INFINITY; /* not balanced as served: search on */
  }
  if (total <= 0 || cur_max <= mean * (1.0 + opts->keep_threshold))
    goto done; /* balanced enough (or idle): keep it as it is */

  double lambda = opts->move_cost * mean;
  rc = eplb__search_fix_counts(&c, opts->max_moves, &moves, err);
  if (rc)
    goto done;
  eplb__search_run(&c, mean, lambda, opts->max_moves, &moves);
  double inc_obj = eplb__search_max(&c) + lambda * moves;
  memcpy(phy2log, c.slot, sizeof(int32_t) * (size_t)S);

  /* The fresh plan, relabelled to overlap the current one. */
  eplb_plan_opts_t o = *opts;
  o.policy = EPLB_POLICY_BALANCED;
  rc = eplb__plan_balanced(load, E, &o, fresh, err);
  if (rc)
    goto done;
  rc = align(current, fresh, S, G, err);
  if (rc)
    goto done;
  int32_t fm = eplb__count_moves(current, fresh, S, G);
  double fresh_obj = eplb__max_gpu_load(load, E, fresh, S, G) + lambda * fm;
  if ((opts->max_moves < 0 || fm <= opts->max_moves) && fresh_obj < inc_obj)
    memcpy(phy2log, fresh, sizeof(int32_t) * (size_t)S);
done:
  eplb__search_free(&c);
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
  eplb__search_t c = {.E = E,
                      .S = S,
                      .G = G,
                      .per = per,
                      .load = load,
                      .orig = phy2log,
                      .gpn = G / opts->num_nodes};
  int32_t *home = malloc(sizeof(int32_t) * (size_t)E);
  rc = eplb__search_alloc(&c, err);
  if (rc == 0 && home == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc)
    goto done;
  /* In the hierarchical plan every expert lives on one node: its home. */
  for (int32_t s = S - 1; s >= 0; s--)
    home[phy2log[s]] = (s / per) / c.gpn;
  c.home = home;
  double total = eplb__search_set(&c, phy2log);
  if (total < 0) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    goto done;
  }
  double mean = total / G;
  if (total <= 0 || eplb__search_max(&c) <= mean * (1.0 + opts->keep_threshold))
    goto done;
  int32_t spilled = 0;
  eplb__search_run(&c, mean, opts->spill_cost * mean, -1, &spilled);
  memcpy(phy2log, c.slot, sizeof(int32_t) * (size_t)S);
done:
  free(home);
  eplb__search_free(&c);
  return rc;
}
