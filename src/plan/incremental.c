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
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

/* Overlap of every GPU of plan with every GPU of current: ov[n * G + o]
 * counts the slots of new GPU n whose expert GPU o holds (a replica each),
 * through a list of the old slots of each expert (next_slot[S] chains,
 * heads in head[E], E above every expert of both maps). */
static void gpu_overlap(const int32_t *current, const int32_t *plan, int32_t S,
                        int32_t G, int32_t E, int32_t *head, int32_t *next_slot,
                        int32_t *ov) {
  int32_t per = S / G;
  for (int32_t e = 0; e < E; e++)
    head[e] = -1;
  for (int32_t s = S - 1; s >= 0; s--) {
    next_slot[s] = head[current[s]];
    head[current[s]] = s;
  }
  memset(ov, 0, sizeof(int32_t) * (size_t)G * (size_t)G);
  for (int32_t n = 0; n < G; n++)
    for (int32_t j = 0; j < per; j++)
      for (int32_t s = head[plan[n * per + j]]; s >= 0; s = next_slot[s])
        ov[n * G + s / per]++;
}

/* Greedy matching of new GPUs to old ones, largest overlap first (ties:
 * lower indices): map[n] is new GPU n's old GPU.  used[G]: scratch. */
static void match_gpus(const int32_t *ov, int32_t G, int32_t *map,
                       int32_t *used) {
  for (int32_t n = 0; n < G; n++) {
    map[n] = -1;
    used[n] = 0;
  }
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
}

/* The slots of one GPU: src[per] (the new plan's) into dst[per] where
 * old[per] (the GPU it takes the place of) had them.  An expert that stays
 * keeps its slot; the newcomers fill the freed slots in order.  Each slot
 * of src is matched at most once (used[per], scratch), so duplicates in
 * the current map cannot overfill. */
static void fill_slots(const int32_t *old, const int32_t *src, int32_t per,
                       int32_t *dst, int32_t *used) {
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

/* Relabels plan's GPUs (and slots inside them) to overlap current[S] as
 * much as possible; the set of experts per GPU is unchanged. */
static int align(const int32_t *current, int32_t *plan, int32_t S, int32_t G,
                 eplb_error_t *err) {
  int32_t per = S / G, E = 0;
  for (int32_t s = 0; s < S; s++) {
    E = current[s] + 1 > E ? current[s] + 1 : E;
    E = plan[s] + 1 > E ? plan[s] + 1 : E;
  }
  /* ov[G * G], map[G], used[max(G, per)], out[S], next_slot[S], head[E] */
  size_t nused = (size_t)(G > per ? G : per);
  size_t n =
      (size_t)G * (size_t)G + (size_t)G + nused + 2 * (size_t)S + (size_t)E;
  int32_t *ov = malloc(sizeof(int32_t) * n);
  if (ov == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  int32_t *map = ov + (size_t)G * (size_t)G, *used = map + G;
  int32_t *out = used + nused, *next_slot = out + S, *head = next_slot + S;
  gpu_overlap(current, plan, S, G, E, head, next_slot, ov);
  match_gpus(ov, G, map, used);
  for (int32_t g = 0; g < G; g++)
    fill_slots(current + (size_t)map[g] * per, plan + (size_t)g * per, per,
               out + (size_t)map[g] * per, used);
  memcpy(plan, out, sizeof(int32_t) * (size_t)S);
  free(ov);
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
  double mean = total / G, cur_max = eplb__search_max(&c);
  memcpy(phy2log, current, sizeof(int32_t) * (size_t)S);
  if (total <= 0 || cur_max <= mean * (1.0 + opts->keep_threshold))
    goto done; /* balanced enough (or idle): keep it as it is */

  double lambda = opts->move_cost * mean;
  int32_t moves = 0;
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
