/* plan/deepseek.c - DeepSeek's published EPLB algorithm, made
 * deterministic.
 *
 * Hierarchical form (the global form is the same with one node and one
 * group):
 *  1. sum each expert group's load and pack the groups onto nodes, heaviest
 *     first into the lightest node with room;
 *  2. inside each node, replicate its experts into the node's slots, the
 *     highest load per replica first;
 *  3. pack the node's replicas onto its GPUs, heaviest first into the
 *     lightest GPU with room.  Inside a GPU, slots follow packing order.
 * DeepSeek sorts with an unstable sort; we break every tie by lower index, so
 * every machine computes the same plan. */
#include <stdlib.h>

#include "plan/internal.h"

int eplb__plan_deepseek(const double *load, int32_t E,
                        const eplb_plan_opts_t *opts, int32_t *phy2log,
                        eplb_error_t *err) {
  int hier = eplb_plan_is_hierarchical(opts);
  int32_t S = opts->num_slots, G = opts->num_gpus;
  int32_t N = hier ? opts->num_nodes : 1, K = hier ? opts->num_groups : 1;
  int32_t gsize = E / K, gpn = K / N, epn = E / N, spn = S / N, per = S / G;
  int32_t gpus_pn = G / N;

  size_t big = (size_t)(S > E ? S : E);
  double *w = malloc(sizeof(double) * big);
  int32_t *order = malloc(sizeof(int32_t) * big);
  int32_t *bin = malloc(sizeof(int32_t) * big);
  int32_t *rank = malloc(sizeof(int32_t) * big);
  int32_t *mlog2log = malloc(sizeof(int32_t) * (size_t)E);
  int32_t *cnt = malloc(sizeof(int32_t) * (size_t)epn);
  int32_t *phy2mlog = malloc(sizeof(int32_t) * (size_t)spn);
  double *mload = malloc(sizeof(double) * (size_t)epn);
  int rc = 0;
  if (!w || !order || !bin || !rank || !mlog2log || !cnt || !phy2mlog ||
      !mload) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory planning %d experts",
                        (int)E);
    goto done;
  }

  /* 1. groups -> nodes.  mlog2log: node-major ("meta-logical") order. */
  for (int32_t k = 0; k < K; k++) {
    w[k] = 0;
    for (int32_t j = 0; j < gsize; j++)
      w[k] += load[k * gsize + j];
  }
  eplb__sort_desc(w, K, order);
  rc = eplb__pack_greedy(w, order, K, N, gpn, NULL, bin, rank, NULL, err);
  if (rc)
    goto done;
  for (int32_t k = 0; k < K; k++)
    for (int32_t j = 0; j < gsize; j++)
      mlog2log[(bin[k] * gpn + rank[k]) * gsize + j] = k * gsize + j;

  for (int32_t n = 0; n < N; n++) {
    /* 2. replicate the node's experts into its slots. */
    for (int32_t j = 0; j < epn; j++)
      mload[j] = load[mlog2log[n * epn + j]];
    rc = eplb__replicate(mload, epn, spn, 0, cnt, err);
    if (rc)
      goto done;
    int32_t p = 0;
    for (int32_t j = 0; j < epn; j++)
      phy2mlog[p++] = j; /* first replicas, in order */
    for (int32_t j = 0; j < epn; j++)
      for (int32_t r = 1; r < cnt[j]; r++)
        phy2mlog[p++] = j; /* then the redundant ones */
    /* 3. pack the node's replicas onto its GPUs. */
    for (int32_t q = 0; q < spn; q++)
      w[q] = mload[phy2mlog[q]] / cnt[phy2mlog[q]];
    eplb__sort_desc(w, spn, order);
    rc = eplb__pack_greedy(w, order, spn, gpus_pn, per, NULL, bin, rank, NULL,
                           err);
    if (rc)
      goto done;
    for (int32_t q = 0; q < spn; q++)
      phy2log[n * spn + bin[q] * per + rank[q]] =
          mlog2log[n * epn + phy2mlog[q]];
  }

done:
  free(w);
  free(order);
  free(bin);
  free(rank);
  free(mlog2log);
  free(cnt);
  free(phy2mlog);
  free(mload);
  return rc;
}
