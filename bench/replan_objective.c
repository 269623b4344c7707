/* replan_objective.c - what a re-plan minimises, per layer: to compare two
 * versions of eplb_plan_from map by map.
 *
 * Usage: replan_objective STATS CURRENT MAP NUM_GPUS [MOVE_COST]
 *
 * Prints one line per layer: layer id, the imbalance of MAP on STATS
 * (max GPU load / mean - 1, each slot carrying its expert's load divided
 * by its replicas), the replicas MAP moves from CURRENT (arriving on a GPU
 * that did not hold that expert), and the objective eplb_plan_from
 * minimises, max load + move_cost x mean x moves, in units of the mean
 * GPU load (imbalance + move_cost x moves).  MOVE_COST defaults to
 * EPLB_DEFAULT_MOVE_COST, as eplb-plan's --move-cost.  Statistics are
 * read as eplb-plan reads them (all-zero dense layers dropped). */
#include <stdio.h>
#include <stdlib.h>

#include "eplb/eplb.h"

static int fail(const char *what, const eplb_error_t *err) {
  fprintf(stderr, "replan_objective: %s: %s\n", what, err->msg);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 5 || argc > 6) {
    fprintf(stderr,
            "usage: replan_objective STATS CURRENT MAP NUM_GPUS [MOVE_COST]\n");
    return 2;
  }
  int32_t G = (int32_t)atoi(argv[4]);
  double mc = argc > 5 ? atof(argv[5]) : EPLB_DEFAULT_MOVE_COST;
  eplb_error_t err = {0};
  eplb_stats_t st = {0};
  eplb_placement_t cur = {0}, map = {0};
  if (eplb_stats_read(&st, argv[1], EPLB_STATS_AUTO, &err) != 0 ||
      eplb_stats_drop_zero_layers(&st, NULL, &err) != 0)
    return fail(argv[1], &err);
  if (eplb_placement_read_for(&cur, argv[2], &st, 0, G, "current", &err) != 0)
    return fail(argv[2], &err);
  if (eplb_placement_read_for(&map, argv[3], &st, cur.num_slots, G, "map",
                              &err) != 0)
    return fail(argv[3], &err);
  int32_t S = map.num_slots, E = st.num_experts;
  double *gl = malloc(sizeof(double) * (size_t)G);
  if (gl == NULL)
    return 1;
  eplb_placement_t one_c = cur, one_m = map;
  one_c.num_layers = one_m.num_layers = 1;
  for (int32_t l = 0; l < st.num_layers; l++) {
    const double *load = st.load + (size_t)l * E;
    const int32_t *p = map.phy2log + (size_t)l * S;
    if (eplb_gpu_loads(load, E, p, S, G, gl, &err) != 0)
      return fail(argv[3], &err);
    double mx = 0, total = 0;
    for (int32_t g = 0; g < G; g++) {
      total += gl[g];
      mx = gl[g] > mx ? gl[g] : mx;
    }
    one_c.layer_ids = cur.layer_ids + l;
    one_c.phy2log = cur.phy2log + (size_t)l * S;
    one_m.layer_ids = map.layer_ids + l;
    one_m.phy2log = map.phy2log + (size_t)l * S;
    int64_t moves = eplb_placement_moves(&one_c, &one_m);
    double imb = total > 0 ? mx * G / total - 1 : 0;
    printf("%d %.9f %lld %.9f\n", (int)st.layer_ids[l], imb, (long long)moves,
           imb + mc * (double)moves);
  }
  free(gl);
  eplb_placement_cleanup(&cur);
  eplb_placement_cleanup(&map);
  eplb_stats_cleanup(&st);
  return 0;
}
