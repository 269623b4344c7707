/* plan/metrics.c - imbalance, balancedness and the floor of a placement;
 * the planner's own yardsticks (max GPU load, replicas moved). */
#include "eplb/metrics.h"

#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

int eplb_gpu_loads(const double *load, int32_t E, const int32_t *phy2log,
                   int32_t S, int32_t G, double *gpu_load, eplb_error_t *err) {
  int32_t *cnt = calloc((size_t)E, sizeof(int32_t));
  if (cnt == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t s = 0; s < S; s++) {
    if (phy2log[s] < 0 || phy2log[s] >= E) {
      free(cnt);
      return eplb_error_set(err, EPLB_EMAP,
                            "slot %d: expert %d is outside 0..%d", (int)s,
                            (int)phy2log[s], (int)E - 1);
    }
    cnt[phy2log[s]]++;
  }
  int32_t per = S / G;
  for (int32_t g = 0; g < G; g++) {
    double sum = 0;
    for (int32_t j = 0; j < per; j++) {
      int32_t e = phy2log[g * per + j];
      sum += load[e] / cnt[e];
    }
    gpu_load[g] = sum;
  }
  free(cnt);
  return 0;
}

/* max/mean - 1 and mean/max of gpu_load[G] (0 and 1 for an idle layer). */
static void spread(const double *gpu_load, int32_t G, double *imb,
                   double *bal) {
  double sum = 0, mx = 0;
  for (int32_t g = 0; g < G; g++) {
    sum += gpu_load[g];
    if (gpu_load[g] > mx)
      mx = gpu_load[g];
  }
  if (mx <= 0) {
    *imb = 0;
    *bal = 1;
    return;
  }
  double mean = sum / G;
  *imb = mx / mean - 1.0;
  *bal = mean / mx;
}

double eplb_layer_imbalance(const double *load, int32_t E,
                            const int32_t *phy2log, int32_t S, int32_t G) {
  double *gl = malloc(sizeof(double) * (size_t)G);
  if (gl == NULL || eplb_gpu_loads(load, E, phy2log, S, G, gl, NULL) != 0) {
    free(gl);
    return -1.0;
  }
  double imb, bal;
  spread(gl, G, &imb, &bal);
  free(gl);
  return imb;
}

/* Sum of the k smallest of v[0..n) (k <= n); v is reordered. */
static double sum_smallest(double *v, int32_t n, int32_t k) {
  /* Partial selection: k is a GPU's slot count, small in practice. */
  double sum = 0;
  for (int32_t i = 0; i < k; i++) {
    int32_t m = i;
    for (int32_t j = i + 1; j < n; j++)
      if (v[j] < v[m])
        m = j;
    double t = v[i];
    v[i] = v[m];
    v[m] = t;
    sum += v[i];
  }
  return sum;
}

double eplb_layer_floor(const double *load, int32_t E, int32_t S, int32_t G) {
  double total = 0;
  for (int32_t e = 0; e < E; e++)
    total += load[e];
  if (total <= 0 || S < E || G < 1 || S % G != 0)
    return 0;
  int32_t per = S / G;
  int32_t *cnt = malloc(sizeof(int32_t) * (size_t)E);
  double *least = malloc(sizeof(double) * (size_t)E);
  if (cnt == NULL || least == NULL) {
    free(cnt);
    free(least);
    return 0;
  }
  /* At most one replica per GPU: more cannot lower a GPU's share. */
  int32_t cap = G;
  if ((int64_t)E * cap < S)
    cap = 0;
  double bound = 0;
  if (eplb__replicate(load, E, S, cap, cnt, NULL) == 0) {
    /* m: the smallest possible largest load per replica (greedy
     * replication is optimal for it).  Some GPU carries a replica of at
     * least m, and fills its other per - 1 slots with distinct experts,
     * each carrying at least its load over the most replicas it can have
     * (min(G, 1 + S - E)). */
    double m = 0;
    for (int32_t e = 0; e < E; e++)
      if (load[e] / cnt[e] > m)
        m = load[e] / cnt[e];
    int32_t most = 1 + (S - E) < G ? 1 + (S - E) : G;
    for (int32_t e = 0; e < E; e++)
      least[e] = load[e] / most;
    int32_t k = per - 1 < E ? per - 1 : E;
    bound = m + sum_smallest(least, E, k);
  }
  free(cnt);
  free(least);
  double f = bound * G / total - 1.0;
  return f > 0 ? f : 0;
}

int eplb_balance(const eplb_stats_t *stats, const eplb_placement_t *p,
                 eplb_balance_t *out, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  if (stats->num_layers != p->num_layers ||
      stats->num_experts != p->num_experts)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "statistics have %d layers x %d experts but the map "
                          "has %d x %d",
                          (int)stats->num_layers, (int)stats->num_experts,
                          (int)p->num_layers, (int)p->num_experts);
  int32_t L = p->num_layers, E = p->num_experts, S = p->num_slots,
          G = p->num_gpus;
  double *gl = malloc(sizeof(double) * (size_t)G);
  if (gl == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  out->worst_layer = 0;
  for (int32_t l = 0; l < L; l++) {
    const double *ld = stats->load + (size_t)l * E;
    int rc = eplb_gpu_loads(ld, E, p->phy2log + (size_t)l * S, S, G, gl, err);
    if (rc) {
      free(gl);
      return eplb_error_prefix(err, "layer %d", (int)p->layer_ids[l]);
    }
    double imb, bal;
    spread(gl, G, &imb, &bal);
    out->imbalance += imb;
    out->balancedness += bal;
    out->floor += eplb_layer_floor(ld, E, S, G);
    if (l == 0 || imb > out->max_imbalance) {
      out->max_imbalance = imb;
      out->worst_layer = l;
    }
  }
  out->imbalance /= L;
  out->balancedness /= L;
  out->floor /= L;
  free(gl);
  return 0;
}

double eplb_layer_cross_node(const double *load, int32_t E,
                             const int32_t *phy2log, int32_t S, int32_t G,
                             int32_t N, int32_t K) {
  if (N < 1 || G % N != 0 || K < 1 || E % K != 0 || S % G != 0)
    return -1;
  int32_t *cnt = calloc((size_t)E, sizeof(int32_t));
  double *served = calloc((size_t)K * (size_t)N, sizeof(double));
  if (cnt == NULL || served == NULL) {
    free(cnt);
    free(served);
    return -1;
  }
  for (int32_t s = 0; s < S; s++)
    cnt[phy2log[s]]++;
  int32_t per = S / G, gpn = G / N, gsize = E / K;
  double total = 0;
  for (int32_t s = 0; s < S; s++) {
    int32_t e = phy2log[s];
    double w = load[e] / cnt[e];
    served[(e / gsize) * N + (s / per) / gpn] += w;
    total += w;
  }
  double away = 0;
  for (int32_t k = 0; k < K; k++) {
    double best = 0, sum = 0;
    for (int32_t n = 0; n < N; n++) {
      sum += served[k * N + n];
      best = served[k * N + n] > best ? served[k * N + n] : best;
    }
    away += sum - best;
  }
  free(cnt);
  free(served);
  return total > 0 ? away / total : 0;
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

int32_t eplb__count_moves(const int32_t *from, const int32_t *to, int32_t S,
                          int32_t G) {
  int32_t per = S / G, moves = 0;
  for (int32_t g = 0; g < G; g++) {
    const int32_t *row = from + (size_t)g * per;
    for (int32_t j = 0; j < per; j++) {
      int32_t e = to[g * per + j], held = 0;
      for (int32_t k = 0; k < per && !held; k++)
        held = row[k] == e;
      moves += !held;
    }
  }
  return moves;
}
