/* plan/replicate.c - how many replicas each expert gets.
 *
 * Replication is a tournament tree over experts keyed by load per replica:
 * each redundant slot goes to the winner, whose key then drops and whose
 * path is replayed.  O(E + R log E) for R = S - E redundant slots, with
 * branch-free matches. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

/* 1 when expert a (load la, ca replicas) should get the next replica
 * before expert b. */
static inline int rep_before(double la, int32_t ca, int32_t a, double lb,
                             int32_t cb, int32_t b) {
  /* Compare la/ca with lb/cb by cross-multiplying: exact for the
   * integer-valued loads we see, and no division ties. */
  double ka = la * (double)cb, kb = lb * (double)ca;
  return (ka > kb) | ((ka == kb) & ((ca < cb) | ((ca == cb) & (a < b))));
}

/* Tournament tree over the experts: leaf P + i holds candidate i (or the
 * sentinel E, load -1 and 1 replica, which loses every match, once the
 * expert is full or for padding); each inner node holds the winner of its
 * children under rep_before, so node 1 is the next expert to replicate.
 * A node keeps its winner's load and count beside its index, so a match
 * reads the sibling only, at a fixed place: the winner's own values stay
 * in registers instead of being loaded again through its index at every
 * level.  After a count changes only that leaf's path is replayed. */
typedef struct {
  double *ld;  /* [2P] winner's load */
  int32_t *c;  /* [2P] winner's replicas */
  int32_t *id; /* [2P] winner */
  int32_t P;
} rep_tree_t;

static inline void rep_leaf(rep_tree_t *t, int32_t i, double ld, int32_t c,
                            int32_t id) {
  t->ld[i] = ld;
  t->c[i] = c;
  t->id[i] = id;
}

static void rep_replay(rep_tree_t *t, int32_t i) {
  double cl = t->ld[i];
  int32_t cc = t->c[i], ci = t->id[i];
  for (; i > 1; i /= 2) {
    double sl = t->ld[i ^ 1];
    int32_t sc = t->c[i ^ 1], si = t->id[i ^ 1];
    int take = rep_before(sl, sc, si, cl, cc, ci);
    cl = take ? sl : cl;
    cc = take ? sc : cc;
    ci = take ? si : ci;
    rep_leaf(t, i / 2, cl, cc, ci);
  }
}

/* The top n experts by eplb__before(), into top[0..n) (in no order): a heap
 * of the n best so far whose root is the worst of them. */
static void top_experts(const double *ld, int32_t E, int32_t n, int32_t *top) {
  for (int32_t e = 0; e < E; e++) {
    int32_t i;
    if (e < n) { /* sift up */
      for (i = e; i > 0 && eplb__before(ld, top[(i - 1) / 2], e);
           i = (i - 1) / 2)
        top[i] = top[(i - 1) / 2];
      top[i] = e;
      continue;
    }
    if (!eplb__before(ld, e, top[0]))
      continue;
    for (i = 0;;) { /* replace the root, sift down */
      int32_t c = 2 * i + 1;
      if (c >= n)
        break;
      if (c + 1 < n && eplb__before(ld, top[c], top[c + 1]))
        c++;
      if (!eplb__before(ld, e, top[c]))
        break;
      top[i] = top[c];
      i = c;
    }
    top[i] = e;
  }
}

/* Argument checks of eplb__replicate; 0 when S and max_replicas fit. */
static int check_slots(int32_t E, int32_t S, int32_t max_replicas,
                       eplb_error_t *err) {
  if (S < E)
    return eplb_error_set(err, EPLB_EARG, "%d slots cannot hold %d experts",
                          (int)S, (int)E);
  if (max_replicas > 0 && (int64_t)E * max_replicas < S)
    return eplb_error_set(err, EPLB_EARG,
                          "%d slots need more than %d replicas of some expert",
                          (int)S, (int)max_replicas);
  return 0;
}

/* Redundant replicas the greedy gives before its key (load per replica)
 * falls to tau, for an expert of load l under the cap (0: none): the c
 * with l / c > tau, c >= 1. */
static int64_t above_tau(double l, double tau, int32_t cap) {
  if (!(l > tau))
    return 0;
  double m = ceil(l / tau) - 1;
  if (m < 1)
    m = 1; /* l > tau: c = 1 at least */
  if (cap > 0 && m > cap - 1)
    m = cap - 1;
  return m > 2e9 ? (int64_t)2e9 : (int64_t)m;
}

/* When many redundant slots are to be given (extra > 8 n): most of them
 * at once.  The greedy gives replicas in falling order of load per
 * replica, so every replica whose key is above a threshold tau comes
 * before every one below it: tau is searched so that those number at
 * most extra - n, count[] takes them, and the tree gives the rest.  That
 * the set taken is a prefix of the greedy's own order is checked with its
 * own comparison (the last replica taken against the next candidate of
 * every expert); when it is not (ties, rounding), nothing is taken.
 * Returns how many were given; t's leaves (built with one replica each)
 * take the counts.  Not inlined: the common path keeps its code. */
__attribute__((noinline)) static int32_t
prefill(const double *load, int32_t E, const int32_t *cand, int32_t n,
        int32_t extra, int32_t cap, int32_t *count, rep_tree_t *t) {
  double lo = 0, hi = 0;
  for (int32_t i = 0; i < n; i++)
    hi = load[cand[i]] > hi ? load[cand[i]] : hi;
  if (!(hi > 0))
    return 0;
  /* to a millionth: the rest, a few more replicas, is the tree's */
  for (int it = 0; it < 100 && hi - lo > 1e-6 * hi; it++) {
    double tau = (lo + hi) / 2;
    int64_t got = 0;
    for (int32_t i = 0; i < n; i++)
      got += above_tau(load[cand[i]], tau, cap);
    if (got > extra - n)
      lo = tau; /* too many: a higher threshold */
    else
      hi = tau;
  }
  /* hi: at most extra - n replicas above it */
  int64_t got = 0;
  int32_t wi = -1, bo = -1; /* the weakest taken, the best not taken */
  for (int32_t i = 0; i < n; i++) {
    int32_t e = cand[i];
    int32_t m = (int32_t)above_tau(load[e], hi, cap);
    got += m;
    if (m > 0 && (wi < 0 || rep_before(load[cand[wi]], count[cand[wi]] - 1,
                                       cand[wi], load[e], m, e)))
      wi = i;
    count[e] = 1 + m;
    if (!(cap > 0 && count[e] >= cap) &&
        (bo < 0 || rep_before(load[e], count[e], e, load[cand[bo]],
                              count[cand[bo]], cand[bo])))
      bo = i;
  }
  /* count[cand[wi]] - 1 replicas had been given to wi when it won its
   * last: that match against bo's next must go to wi. */
  if (got > extra || wi < 0 ||
      (bo >= 0 && !rep_before(load[cand[wi]], count[cand[wi]] - 1, cand[wi],
                              load[cand[bo]], count[cand[bo]], cand[bo]))) {
    for (int32_t i = 0; i < n; i++)
      count[cand[i]] = 1;
    return 0;
  }
  for (int32_t i = 0; i < n; i++) { /* the leaves take the counts given */
    if (cap > 0 && count[cand[i]] >= cap)
      rep_leaf(t, t->P + i, -1.0, 1, E);
    else
      t->c[t->P + i] = count[cand[i]];
  }
  return (int32_t)got;
}

/* The replication of eplb__replicate, given its candidates: cand[0..n),
 * n = min(S - E, E), the n heaviest experts (eplb__before()), in any order -
 * rep_before is a total order, so where a candidate sits in the tree does
 * not change which one wins. */
static int replicate_among(const double *load, int32_t E, int32_t S,
                           int32_t max_replicas, const int32_t *cand, int32_t n,
                           int32_t *count, eplb__arena_t *ar,
                           eplb_error_t *err) {
  for (int32_t e = 0; e < E; e++)
    count[e] = 1;
  int32_t extra = S - E;
  if (extra == 0)
    return 0;
  int32_t P = 1;
  while (P < n)
    P *= 2;
  size_t mark = ar->used;
  rep_tree_t t = {.P = P};
  t.ld = eplb__arena_take(ar, sizeof(double) * 2 * (size_t)P);
  t.c = eplb__arena_take(ar, sizeof(int32_t) * 2 * (size_t)P);
  t.id = eplb__arena_take(ar, sizeof(int32_t) * 2 * (size_t)P);
  int32_t *leaf = eplb__arena_take(ar, sizeof(int32_t) * (size_t)E);
  if (!t.ld || !t.c || !t.id || !leaf) {
    ar->used = mark;
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  for (int32_t i = 0; i < P; i++) {
    if (i < n)
      rep_leaf(&t, P + i, load[cand[i]], 1, cand[i]);
    else
      rep_leaf(&t, P + i, -1.0, 1, E);
  }
  if (extra > 8 * (int64_t)n) /* most of it at once */
    extra -= prefill(load, E, cand, n, extra, max_replicas, count, &t);
  for (int32_t i = P - 1; i >= 1; i--) {
    int32_t l = 2 * i, r = 2 * i + 1;
    int32_t w =
        rep_before(t.ld[r], t.c[r], t.id[r], t.ld[l], t.c[l], t.id[l]) ? r : l;
    rep_leaf(&t, i, t.ld[w], t.c[w], t.id[w]);
  }
  for (int32_t i = 0; i < n; i++) /* candidate e sits in leaf P + leaf[e] */
    leaf[cand[i]] = i;
  while (extra > 0) {
    int32_t top = t.id[1];
    count[top]++;
    extra--;
    int32_t i = leaf[top];
    if (max_replicas > 0 && count[top] >= max_replicas)
      rep_leaf(&t, P + i, -1.0, 1, E); /* full: out of the running */
    else
      t.c[P + i] = count[top];
    rep_replay(&t, P + i);
  }
  ar->used = mark;
  return 0;
}

int eplb__replicate(const double *load, int32_t E, int32_t S,
                    int32_t max_replicas, int32_t *count, eplb_error_t *err) {
  int rc = check_slots(E, S, max_replicas, err);
  if (rc)
    return rc;
  /* Only the `extra` heaviest experts can get a redundant replica: before
   * an expert gets its first, every heavier one (lower index on ties) has
   * had one, since a single replica of it would have won the tie-break
   * first.  So the tree holds those candidates only. */
  int32_t n = S - E < E ? S - E : E;
  eplb__arena_t ar;
  eplb__arena_init(&ar, NULL, 0);
  if (n == 0)
    return replicate_among(load, E, S, max_replicas, NULL, 0, count, &ar, err);
  int32_t *cand = malloc(sizeof(int32_t) * (size_t)E);
  if (cand == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (n < E)
    top_experts(load, E, n, cand);
  else
    for (int32_t e = 0; e < E; e++)
      cand[e] = e;
  rc = replicate_among(load, E, S, max_replicas, cand, n, count, &ar, err);
  eplb__arena_done(&ar);
  free(cand);
  return rc;
}

int eplb__replicate_sorted_ds(const double *load, int32_t E, int32_t S,
                              int32_t max_replicas, int32_t *count,
                              int32_t *key, double *w, int32_t *order,
                              int *same_order, eplb__arena_t *ar,
                              eplb_error_t *err) {
  int rc = check_slots(E, S, max_replicas, err);
  if (rc)
    return rc;
  /* One sort of the experts by load serves twice: its first n are the
   * replication candidates (no heap), and the experts left with one
   * replica are already in replica order, so only the few replicated ones
   * (at most S - E) need sorting before a merge. */
  size_t mark = ar->used;
  int32_t *eorder = eplb__arena_take(ar, sizeof(int32_t) * 3 * (size_t)E);
  double *v = eplb__arena_take(ar, sizeof(double) * (size_t)E);
  if (eorder == NULL || v == NULL) {
    ar->used = mark;
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  int32_t *multi = eorder + E, *merged = eorder + 2 * (size_t)E;
  eplb__sort_desc_a(load, E, eorder, ar);
  int32_t n = S - E < E ? S - E : E;
  rc = replicate_among(load, E, S, max_replicas, eorder, n, count, ar, err);
  if (rc)
    goto done;
  /* Replica p of expert e is start(e) + r (experts in index order, their
   * replicas together), so eplb__before() on the replicas is: by v descending,
   * then expert, then r - the experts' order, each expanded in place. */
  int32_t nm = 0, p = 0;
  int32_t *start = merged; /* [E]: replica number of expert e's first */
  memcpy(v, load, sizeof(double) * (size_t)E); /* load / 1, exactly */
  for (int32_t i = 0; i < n; i++)
    v[eorder[i]] = load[eorder[i]] / count[eorder[i]];
  for (int32_t e = 0; e < E; e++) {
    start[e] = p;
    for (int32_t r = 0; r < count[e]; r++) {
      key[p] = e;
      w[p++] = v[e];
    }
  }
  for (int32_t i = 0; i < n; i++) { /* replicated: among the candidates */
    int32_t x = eorder[i];
    if (count[x] == 1)
      continue;
    int32_t j = nm++; /* insertion sort by replica weight v */
    for (; j > 0 && eplb__before(v, x, multi[j - 1]); j--)
      multi[j] = multi[j - 1];
    multi[j] = x;
  }
  /* For *same_order: no expert at the cap (see below). */
  int ok = max_replicas > 1 || E == 0;
  for (int32_t i = 0; same_order && i < n && ok; i++)
    ok = count[eorder[i]] < max_replicas;
  /* Merge the unreplicated experts (in eorder, skipping the replicated
   * ones) with multi[], both in eplb__before() order on v: E experts in all,
   * each expanded to its replicas as it comes.
   * For *same_order, the walk of tests/test_plan.c's greedy_is_deepseek along:
   * a run of equal weights in `order` is a run of experts of equal v here (each
   * expanded in place), mixed when it holds two experts or more.  Only
   * candidates can have more than one replica; the others have 1, which
   * reaches a cap G <= 1 (above).  Done here, with the expansion, inside
   * the merge: one pass of E experts instead of a walk over the S replicas
   * and two more passes, and no merged[]. */
  int32_t run = 0, many = 0;
  double prev = 0;
  p = 0;
  for (int32_t k = 0, a = 0, b = 0; k < E; k++) {
    while (a < E && count[eorder[a]] > 1)
      a++; /* in multi[] */
    int take_a = b >= nm || (a < E && eplb__before(v, eorder[a], multi[b]));
    int32_t e = take_a ? eorder[a++] : multi[b++];
    for (int32_t r = 0; r < count[e]; r++)
      order[p++] = start[e] + r;
    if (k > 0 && v[e] == prev) {
      run++;
      many |= count[e] > 1;
    } else {
      ok &= !(run > 1 && many);
      run = 1;
      many = count[e] > 1;
    }
    prev = v[e];
  }
  ok &= !(run > 1 && many);
  if (same_order)
    *same_order = ok;
done:
  ar->used = mark;
  return rc;
}
