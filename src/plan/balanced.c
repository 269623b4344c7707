/* plan/balanced.c - eplb's default policy.
 *
 * DESIGN.  Three differences from DeepSeek's algorithm, each closing a gap
 * measured on real DeepSeek-V3 statistics (bench/bench_plan):
 *  - no GPU holds one expert twice: a second copy on the same GPU balances
 *    nothing and wastes a slot (DeepSeek's EPLB can place one; vllm-ascend
 *    rejects such maps).  Replication caps each expert at one replica per
 *    GPU and packing avoids duplicates;
 *  - after greedy packing, a local search swaps slots between the most
 *    loaded GPU and the others (local_search.c), which matters most when
 *    there are few or no redundant slots.  It swaps a slot only with the
 *    slot of the same weight rank on the other GPU first: greedy packing
 *    gives every GPU one replica of each weight tier (the G heaviest, the
 *    next G, ...), and keeping that mix keeps the GPUs alike on the
 *    traffic that follows, not only on the window planned for; it is also
 *    less than half the work (one candidate per slot instead of a sweep).
 *    General swaps follow only where the tiered search stays more than
 *    GENERAL_ABOVE above the lower bound - typically a hot expert whose
 *    GPU must take the lightest replicas, which no tier-preserving swap
 *    can give it;
 *  - the result is compared with DeepSeek's own plan, improved the same way,
 *    and the better one is kept, so this policy is never worse than
 *    `deepseek` on the loads it plans for.
 * Hierarchical plans keep DeepSeek's structure (whole groups per node), with
 * the group-to-node packing and each node's packing improved likewise. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

/* Imbalance above which a layer is refined with replica-count moves. */
#define REFINE_ABOVE 0.002

/* How far above the lower bound (eplb__layout_bound) the tier-preserving
 * local search may leave the most loaded GPU before general swaps are
 * allowed too. */
#define GENERAL_ABOVE 0.002

/* GPUs beyond which the searches find their swaps through the index of
 * experts by weight (swap_index.c) instead of scanning the GPUs: below,
 * the scan is cheaper. */
#define INDEX_ABOVE 256

/* Upper bound on local-search swaps for a problem of S slots: far above
 * what real loads need (tens), there only to bound the worst case. */
static int32_t ls_budget(int32_t S) { return 64 + 8 * S; }

/* Builds a layout from phy2log[S] (weights: load / replicas), repairs
 * duplicates, runs the local search and writes the result back.  Returns 0,
 * or 1 if duplicates remain (then phy2log is left unchanged), or an error.
 * On 0, *max_out (may be NULL) is eplb__max_gpu_load of the result: the
 * same weights summed in the same slot order, without counting again.
 * no_dups: phy2log is known to hold no GPU with an expert twice (the
 * repair, which would find nothing, is skipped). */
static int improve(const double *load, int32_t E, int32_t *phy2log, int32_t S,
                   int32_t G, int no_dups, double *max_out, eplb__arena_t *ar,
                   eplb_error_t *err) {
  eplb__layout_t lay = {.G = G, .per = S / G};
  size_t mark = ar->used;
  double tokens = 0;
  for (int32_t e = 0; e < E; e++)
    tokens += load[e];
  lay.stop_at = eplb__noise_stop(tokens, G);
  int32_t *cnt = eplb__arena_take(ar, sizeof(int32_t) * (size_t)E);
  lay.expert = eplb__arena_take(ar, sizeof(int32_t) * (size_t)S);
  lay.w = eplb__arena_take(ar, sizeof(double) * (size_t)S);
  lay.load = eplb__arena_take(ar, sizeof(double) * (size_t)G);
  int rc = 0;
  if (!cnt || !lay.expert || !lay.w || !lay.load) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    goto done;
  }
  memset(cnt, 0, sizeof(int32_t) * (size_t)E);
  memset(lay.load, 0, sizeof(double) * (size_t)G); /* +0.0 */
  for (int32_t s = 0; s < S; s++)
    cnt[phy2log[s]]++;
  for (int32_t s = 0; s < S; s++) {
    lay.expert[s] = phy2log[s];
    lay.w[s] = load[phy2log[s]] / cnt[phy2log[s]];
    lay.load[s / lay.per] += lay.w[s];
  }
  /* no_dups: the packing put no item with one of its key, so the repair's
   * check would find nothing: skipped. */
  if (!no_dups && eplb__repair_duplicates_a(&lay, ar) != 0) {
    rc = 1;
    goto done;
  }
  /* Tier-preserving swaps first; general swaps only where they are needed
   * to come near the bound (a hot expert whose GPU must take the lightest
   * slots: no tier-preserving swap gives it those).  Beyond one block of
   * GPUs the same searches find each swap through the index of experts by
   * weight (swap_index.c) instead of a scan of the GPUs. */
  int big = G > INDEX_ABOVE;
  if (big) {
    eplb__local_search_index_a(&lay, ls_budget(S), 1, ar);
    eplb__local_search_index_a(&lay, ls_budget(S), 0, ar);
  } else {
    eplb__local_search_a(&lay, ls_budget(S), 1, ar);
  }
  double worst = lay.load[eplb__argmax(lay.load, G)], total = 0;
  for (int32_t g = 0; g < G; g++)
    total += lay.load[g];
  /* The bound is at least the mean: within GENERAL_ABOVE of the mean
   * needs no bound computed. */
  if (worst > (1.0 + GENERAL_ABOVE) * (total / G) &&
      worst > (1.0 + GENERAL_ABOVE) * eplb__layout_bound(&lay) && !big)
    eplb__local_search_a(&lay, ls_budget(S), 0, ar);
  memcpy(phy2log, lay.expert, sizeof(int32_t) * (size_t)S);
  if (max_out) {
    /* lay.load[] drifted through the swaps' updates; sum afresh. */
    double most = 0;
    for (int32_t g = 0; g < G; g++) {
      double sum = 0;
      for (int32_t j = 0; j < lay.per; j++)
        sum += lay.w[g * lay.per + j];
      if (g == 0 || sum > most)
        most = sum;
    }
    *max_out = most;
  }
done:
  ar->used = mark;
  return rc;
}

/* Bytes of scratch a flat plan of E experts into S slots on G GPUs takes
 * at most at once, so that one block holds it: its arrays, then the
 * largest of what the chain below takes and gives back in turn -
 * replication (20E) with the larger of its sort (20E + 4nb) and its tree
 * (68E); packing (bins, a tree of < 4G nodes, held bins, key index);
 * improve (its layout, then the repair's stamps or the search's order) -
 * and room for the rounding of every take.  Anything more is a malloc of
 * its own (eplb__arena_take): slower, never wrong. */
static size_t flat_arena_bytes(int32_t E, int32_t S, int32_t G) {
  size_t szE = (size_t)E, szS = (size_t)S, szG = (size_t)G, nb = 1;
  while (nb < 4 * szE)
    nb *= 2;
  size_t chain = 20 * szE + 68 * szE + 4 * nb;
  size_t pack = 88 * szG + 8 * szE + 8 * szS;
  size_t imp = 8 * szE + 12 * szS + 8 * szG +
               (G > INDEX_ABOVE ? eplb__swap_index_bytes(S, G, E)
                                : eplb__order_bytes(G));
  chain = chain > pack ? chain : pack;
  chain = chain > imp ? chain : imp;
  return 4 * szE + 28 * szS + chain + 64 * 16;
}

/* A flat plan's replicas and the arrays its steps share. */
typedef struct {
  const double *load;
  int32_t E, S, G, per;
  int32_t *cnt;            /* [E] replicas of each expert */
  int32_t *key;            /* [S] expert of each replica */
  int32_t *order;          /* [S] replicas, heaviest first */
  int32_t *bin;            /* [S] GPU of each replica */
  int32_t *rank;           /* [S] its slot on that GPU */
  int32_t *alt;            /* [S] DeepSeek's plan */
  double *w;               /* [S] weight of each replica */
  int same_order;          /* the replicas sort as DeepSeek's do */
  eplb__pack_info_t keyed; /* the packing that avoids duplicates */
} flat_t;

/* Replication, greedy packing that keeps an expert's replicas apart, and
 * improve: phy2log[S] and *mine, its most loaded GPU. */
static int flat_greedy(flat_t *f, int32_t *phy2log, double *mine,
                       eplb__arena_t *ar, eplb_error_t *err) {
  int rc = eplb__replicate_sorted_ds(f->load, f->E, f->S, f->G, f->cnt, f->key,
                                     f->w, f->order, &f->same_order, ar, err);
  if (rc)
    return rc;
  rc = eplb__pack_greedy_from(f->w, f->order, f->S, f->G, f->per, f->key, 0,
                              HUGE_VAL, f->bin, f->rank, &f->keyed, ar, err);
  if (rc)
    return rc;
  for (int32_t q = 0; q < f->S; q++)
    phy2log[f->bin[q] * f->per + f->rank[q]] = f->key[q];
  rc = improve(f->load, f->E, phy2log, f->S, f->G, f->keyed.forced == 0, mine,
               ar, err);
  /* Duplicates left (1) cannot happen for a layout that packing built with
   * at most G replicas per expert and repair can always fix; treat it as
   * a bug rather than return a map with duplicates. */
  if (rc == 1)
    rc = eplb_error_set(err, EPLB_EINTERNAL, "duplicate repair failed");
  return rc;
}

/* DeepSeek's greedy plan into f->alt and *theirs, its most loaded GPU; 1
 * (f->alt unset) when it is known not to beat `mine`.  With the same
 * replicas in the same order, DeepSeek's plan is their packing without
 * duplicate avoidance, so nothing is replicated or sorted again: it is
 * the keyed packing up to its first clash, so it resumes there (bin and
 * rank still hold the keyed packing), and as GPUs only get heavier it
 * stops once one reaches `mine`.  Its bin weights are eplb__max_gpu_load's
 * sums (same weights, same order). */
static int deepseek_greedy(flat_t *f, double mine, double *theirs,
                           eplb__arena_t *ar, eplb_error_t *err) {
  if (f->same_order) {
    eplb__pack_info_t info;
    int rc = eplb__pack_greedy_from(f->w, f->order, f->S, f->G, f->per, NULL,
                                    f->keyed.first_clash, mine, f->bin, f->rank,
                                    &info, ar, err);
    if (rc || info.stopped)
      return rc ? rc : 1;
    for (int32_t q = 0; q < f->S; q++)
      f->alt[f->bin[q] * f->per + f->rank[q]] = f->key[q];
    *theirs = info.max;
    return 0;
  }
  eplb_plan_opts_t ds = {.num_slots = f->S,
                         .num_gpus = f->G,
                         .num_nodes = 1,
                         .num_groups = 1,
                         .policy = EPLB_POLICY_DEEPSEEK};
  int rc = eplb__plan_deepseek(f->load, f->E, &ds, f->alt, err);
  if (rc)
    return rc;
  *theirs = eplb__max_gpu_load(f->load, f->E, f->alt, f->S, f->G);
  return 0;
}

/* 1 when a GPU of f->alt holds an expert twice (or out of memory). */
static int holds_twice(const flat_t *f, eplb__arena_t *ar) {
  size_t mark = ar->used;
  int32_t *last = eplb__arena_take(ar, sizeof(int32_t) * (size_t)f->E);
  int twice = last == NULL;
  for (int32_t e = 0; !twice && e < f->E; e++)
    last[e] = -1;
  for (int32_t s = 0; !twice && s < f->S; s++) {
    int32_t g = s / f->per, x = f->alt[s];
    twice = last[x] == g;
    last[x] = g;
  }
  ar->used = mark;
  return twice;
}

/* Never worse than DeepSeek: DeepSeek's plan, improved the same way,
 * replaces phy2log when its most loaded GPU is lighter than *mine.  When
 * DeepSeek's greedy plan is the one improved already (same replicas, same
 * order, no clash), the local search did better (it never raises the
 * maximum): nothing to compare. */
static int keep_better_deepseek(flat_t *f, int32_t *phy2log, double *mine,
                                eplb__arena_t *ar, eplb_error_t *err) {
  if (f->keyed.clashes == 0 && f->same_order)
    return 0;
  double theirs_greedy, theirs;
  int rc = deepseek_greedy(f, *mine, &theirs_greedy, ar, err);
  if (rc)
    return rc < 0 ? rc : 0;
  if (!(theirs_greedy < *mine))
    return 0;
  double total = 0;
  for (int32_t e = 0; e < f->E; e++)
    total += f->load[e];
  if (*mine <= eplb__noise_stop(total, f->G)) {
    /* Ours is as good as the statistics can tell (the searches stopped
     * there): DeepSeek's plan can only win by less, so it replaces ours
     * only as it is, when no GPU holds an expert twice - not after a
     * repair and a search of its own (at the top of the range, thousands
     * of duplicates). */
    if (!holds_twice(f, ar)) {
      memcpy(phy2log, f->alt, sizeof(int32_t) * (size_t)f->S);
      *mine = theirs_greedy;
    }
    return 0;
  }
  rc = improve(f->load, f->E, f->alt, f->S, f->G, 0, &theirs, ar, err);
  if (rc < 0)
    return rc;
  if (rc == 0 && theirs < *mine) {
    memcpy(phy2log, f->alt, sizeof(int32_t) * (size_t)f->S);
    *mine = theirs;
  }
  return 0;
}

/* Still visibly unbalanced with spare replicas to move: let the replica
 * counts change too (greedy replication is optimal per replica, not per
 * GPU).  Rare on real loads, so its cost is paid only where it helps. */
static int refine_if_unbalanced(const double *load, int32_t E, int32_t S,
                                int32_t G, int32_t *phy2log, double mine,
                                eplb_error_t *err) {
  double total = 0;
  for (int32_t e = 0; e < E; e++)
    total += load[e];
  if (S > E && total > 0 && mine > (1.0 + REFINE_ABOVE) * total / G &&
      mine > eplb__noise_stop(total, G))
    return G > INDEX_ABOVE ? eplb__refine_index(load, E, S, G, phy2log, err)
                           : eplb__refine(load, E, S, G, phy2log, err);
  return 0;
}

/* Flat (one node) balanced plan of E experts into S slots on G GPUs, its
 * scratch from ar (flat_arena_bytes of it, given back). */
static int flat_plan(const double *load, int32_t E, int32_t S, int32_t G,
                     int32_t *phy2log, eplb__arena_t *ar, eplb_error_t *err) {
  size_t mark = ar->used, szS = sizeof(int32_t) * (size_t)S;
  flat_t f = {.load = load, .E = E, .S = S, .G = G, .per = S / G};
  f.cnt = eplb__arena_take(ar, sizeof(int32_t) * (size_t)E);
  f.key = eplb__arena_take(ar, szS);
  f.order = eplb__arena_take(ar, szS);
  f.bin = eplb__arena_take(ar, szS);
  f.rank = eplb__arena_take(ar, szS);
  f.alt = eplb__arena_take(ar, szS);
  f.w = eplb__arena_take(ar, sizeof(double) * (size_t)S);
  double mine = 0;
  int rc;
  if (!f.cnt || !f.key || !f.order || !f.bin || !f.rank || !f.alt || !f.w)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  else
    rc = flat_greedy(&f, phy2log, &mine, ar, err);
  if (rc == 0)
    rc = keep_better_deepseek(&f, phy2log, &mine, ar, err);
  if (rc == 0)
    rc = refine_if_unbalanced(load, E, S, G, phy2log, mine, err);
  ar->used = mark;
  return rc;
}

/* flat_plan with its scratch in one block of its own. */
static int plan_flat(const double *load, int32_t E, int32_t S, int32_t G,
                     int32_t *phy2log, eplb_error_t *err) {
  size_t need = flat_arena_bytes(E, S, G);
  eplb__arena_t ar;
  eplb__arena_init(&ar, malloc(need), need);
  int rc = flat_plan(load, E, S, G, phy2log, &ar, err);
  eplb__arena_done(&ar);
  free(ar.buf);
  return rc;
}

/* Groups to nodes: each of the K groups' load summed, the groups packed
 * onto the N nodes (K / N each, heaviest first into the lightest), then
 * the local search on node loads.  mlog2log[E] out: the experts in node
 * order, node n's E / N from mlog2log[n * E / N].  Scratch from ar (given
 * back). */
static int groups_to_nodes(const double *load, int32_t E, int32_t N, int32_t K,
                           int32_t *mlog2log, eplb__arena_t *ar,
                           eplb_error_t *err) {
  int32_t gsize = E / K, gpn = K / N;
  size_t mark = ar->used, szK = (size_t)K;
  eplb__layout_t lay = {.G = N, .per = gpn};
  lay.expert = eplb__arena_take(ar, sizeof(int32_t) * szK);
  lay.w = eplb__arena_take(ar, sizeof(double) * szK);
  lay.load = eplb__arena_take(ar, sizeof(double) * (size_t)N);
  double *gw = eplb__arena_take(ar, sizeof(double) * szK);
  int32_t *order = eplb__arena_take(ar, sizeof(int32_t) * szK);
  int32_t *bin = eplb__arena_take(ar, sizeof(int32_t) * szK);
  int32_t *rank = eplb__arena_take(ar, sizeof(int32_t) * szK);
  int rc = 0;
  if (!lay.expert || !lay.w || !lay.load || !gw || !order || !bin || !rank) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    goto done;
  }
  memset(lay.load, 0, sizeof(double) * (size_t)N); /* +0.0 */
  for (int32_t k = 0; k < K; k++) {
    gw[k] = 0;
    for (int32_t j = 0; j < gsize; j++)
      gw[k] += load[k * gsize + j];
  }
  eplb__sort_desc_a(gw, K, order, ar);
  eplb__pack_info_t info;
  rc = eplb__pack_greedy_from(gw, order, K, N, gpn, NULL, 0, HUGE_VAL, bin,
                              rank, &info, ar, err);
  if (rc)
    goto done;
  for (int32_t k = 0; k < K; k++) {
    lay.expert[bin[k] * gpn + rank[k]] = k;
    lay.w[bin[k] * gpn + rank[k]] = gw[k];
    lay.load[bin[k]] += gw[k];
  }
  eplb__local_search_a(&lay, ls_budget(K), 0, ar);
  for (int32_t q = 0; q < K; q++)
    for (int32_t j = 0; j < gsize; j++)
      mlog2log[q * gsize + j] = lay.expert[q] * gsize + j;
done:
  ar->used = mark;
  return rc;
}

/* A flat plan inside every node, of the experts mlog2log[E] puts there
 * (groups_to_nodes): phy2log[S], node n's slots from n * S / N.  mload:
 * [E / N] scratch. */
static int plan_nodes(const double *load, int32_t E,
                      const eplb_plan_opts_t *opts, const int32_t *mlog2log,
                      double *mload, int32_t *phy2log, eplb__arena_t *ar,
                      eplb_error_t *err) {
  int32_t N = opts->num_nodes, epn = E / N, spn = opts->num_slots / N;
  int32_t gpus_pn = opts->num_gpus / N;
  for (int32_t n = 0; n < N; n++) {
    for (int32_t j = 0; j < epn; j++)
      mload[j] = load[mlog2log[n * epn + j]];
    int32_t *out = phy2log + (size_t)n * spn;
    int rc = flat_plan(mload, epn, spn, gpus_pn, out, ar, err);
    if (rc)
      return rc;
    for (int32_t s = 0; s < spn; s++)
      out[s] = mlog2log[n * epn + out[s]];
  }
  return 0;
}

/* improve() on one node's slice[spn] of a hierarchical plan (gpus_pn GPUs),
 * which works on local expert ids: in DeepSeek's plan a node holds whole
 * groups, so its experts are renumbered 0..m-1 through loc[E] (all -1 on
 * entry and on return), names[] and mload[] (the node's experts: at least
 * E / N) holding each one's global id and load.  Returns improve's 0, 1
 * (duplicates left, slice unchanged) or error. */
static int improve_node(const double *load, int32_t *slice, int32_t spn,
                        int32_t gpus_pn, int32_t *loc, int32_t *names,
                        double *mload, eplb__arena_t *ar, eplb_error_t *err) {
  int32_t m = 0;
  for (int32_t s = 0; s < spn; s++)
    if (loc[slice[s]] < 0) {
      names[m] = slice[s];
      mload[m] = load[slice[s]];
      loc[slice[s]] = m++;
    }
  for (int32_t s = 0; s < spn; s++)
    slice[s] = loc[slice[s]];
  int rc = improve(mload, m, slice, spn, gpus_pn, 0, NULL, ar, err);
  for (int32_t s = 0; s < spn; s++)
    slice[s] = names[slice[s]];
  for (int32_t i = 0; i < m; i++)
    loc[names[i]] = -1;
  return rc;
}

/* Never worse than DeepSeek's hierarchical plan, improved per node: it
 * replaces phy2log[S] when its most loaded GPU is lighter.  alt[S],
 * loc[E] (all -1), names[E / N] and mload[E / N]: scratch. */
static int keep_better_hier_deepseek(const double *load, int32_t E,
                                     const eplb_plan_opts_t *opts,
                                     int32_t *phy2log, int32_t *alt,
                                     int32_t *loc, int32_t *names,
                                     double *mload, eplb__arena_t *ar,
                                     eplb_error_t *err) {
  int32_t S = opts->num_slots, G = opts->num_gpus, N = opts->num_nodes;
  int32_t spn = S / N, gpus_pn = G / N;
  int rc = eplb__plan_deepseek(load, E, opts, alt, err);
  if (rc)
    return rc;
  double mine = eplb__max_gpu_load(load, E, phy2log, S, G);
  if (!(eplb__max_gpu_load(load, E, alt, S, G) < mine))
    return 0;
  for (int32_t n = 0; n < N; n++) {
    rc = improve_node(load, alt + (size_t)n * spn, spn, gpus_pn, loc, names,
                      mload, ar, err);
    if (rc)
      return rc < 0 ? rc : 0;
  }
  if (eplb__max_gpu_load(load, E, alt, S, G) < mine)
    memcpy(phy2log, alt, sizeof(int32_t) * (size_t)S);
  return 0;
}

/* Bytes of scratch plan_hier takes at most at once (see
 * flat_arena_bytes): its arrays (mlog2log, loc, alt, mload), then the
 * largest of the groups' step (their layout and packing, the sort of K
 * weights, packing on N bins), a node's flat plan, and improve on a
 * node; room for the rounding of every take. */
static size_t hier_arena_bytes(int32_t E, int32_t S, int32_t G, int32_t N,
                               int32_t K) {
  size_t szE = (size_t)E, szK = (size_t)K, szN = (size_t)N, nb = 1;
  size_t epn = szE / szN, spn = (size_t)S / szN, gpn = (size_t)G / szN;
  while (nb < 4 * szK)
    nb *= 2;
  size_t step =
      36 * szK + 8 * szN +
      (20 * szK + 4 * nb + 4 > 88 * szN ? 20 * szK + 4 * nb + 4 : 88 * szN);
  size_t ord = 36 * szK + 8 * szN + eplb__order_bytes(N); /* its search */
  step = step > ord ? step : ord;
  size_t flat = flat_arena_bytes((int32_t)epn, (int32_t)spn, (int32_t)gpn);
  size_t imp = 8 * epn + 12 * spn + 8 * gpn + eplb__order_bytes((int32_t)gpn);
  step = step > flat ? step : flat;
  step = step > imp ? step : imp;
  return 8 * szE + 4 * (size_t)S + 8 * epn + step + 16 * 16;
}

/* Hierarchical balanced plan: groups to nodes (greedy + local search on
 * node loads), then a flat plan inside every node; then DeepSeek's
 * hierarchical plan, if better.  Scratch in one block. */
static int plan_hier(const double *load, int32_t E,
                     const eplb_plan_opts_t *opts, int32_t *phy2log,
                     eplb_error_t *err) {
  int32_t S = opts->num_slots, N = opts->num_nodes, epn = E / N;
  size_t need = hier_arena_bytes(E, S, opts->num_gpus, N, opts->num_groups);
  eplb__arena_t ar;
  eplb__arena_init(&ar, malloc(need), need);
  int32_t *mlog2log = eplb__arena_take(&ar, sizeof(int32_t) * (size_t)E);
  int32_t *loc = eplb__arena_take(&ar, sizeof(int32_t) * (size_t)E);
  int32_t *alt = eplb__arena_take(&ar, sizeof(int32_t) * (size_t)S);
  double *mload = eplb__arena_take(&ar, sizeof(double) * (size_t)epn);
  int rc;
  if (!mlog2log || !loc || !alt || !mload) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  } else {
    for (int32_t e = 0; e < E; e++)
      loc[e] = -1;
    rc = groups_to_nodes(load, E, N, opts->num_groups, mlog2log, &ar, err);
  }
  if (rc == 0)
    rc = plan_nodes(load, E, opts, mlog2log, mload, phy2log, &ar, err);
  if (rc == 0)
    rc = keep_better_hier_deepseek(load, E, opts, phy2log, alt, loc, mlog2log,
                                   mload, &ar, err);
  eplb__arena_done(&ar);
  free(ar.buf);
  return rc;
}

int eplb__plan_balanced(const double *load, int32_t E,
                        const eplb_plan_opts_t *opts, int32_t *phy2log,
                        eplb_error_t *err) {
  if (eplb_plan_is_hierarchical(opts))
    return plan_hier(load, E, opts, phy2log, err);
  return plan_flat(load, E, opts->num_slots, opts->num_gpus, phy2log, err);
}
