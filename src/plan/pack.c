/* plan/pack.c - putting replicas onto GPUs: greedy packing (each replica,
 * heaviest first, to the lightest GPU with room), with or without keeping
 * two replicas of one expert apart.  What it leaves is removed by
 * local_search.c. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

/* Tournament (winner) tree over the bins, for greedy packing: leaf P + b
 * holds bin b (leaves past the last bin hold the sentinel bin P); each
 * inner node holds the lighter of its children, its index in ni[] and its
 * effective weight in nw[] (ties: lower bin), so node 1 is the lightest bin
 * with room.  A bin that is full, or set aside, weighs +inf.  Weights are
 * kept as their IEEE-754 bit patterns, which order like the values for the
 * finite non-negative sums and +inf seen here (bins start at +0.0).  Every
 * bin of a left subtree has a lower index than every bin of the right one,
 * so a tie goes to the left child: the match of a node is one integer
 * compare, `sibling < current + (current is the right child)`, and a
 * select.  Re-weighing a bin replays log2(P) such matches reading only the
 * sibling (weight and index side by side, no dependent load). */
typedef struct {
  uint64_t *nw; /* [2P] winner's weight (bits) per node */
  int32_t *ni;  /* [2P] winner's bin per node */
  int32_t P;
} bin_tree_t;

/* Sets bin b's effective weight to v and replays its matches, carrying the
 * winner in registers; returns the new overall winner (node 1), so that the
 * next pick need not reload it through a store.  The sibling wins a match
 * when sw < cw + r (r: current is the right child), i.e. when
 * cw >= sw + 1 - r: that limit comes from the sibling alone (loaded off the
 * chain), leaving one compare and one cmov per level on the chain from
 * level to level instead of an add, a compare and a cmov.  (No overflow:
 * weights are finite or +inf, far below 2^64 - 1.)  docs/planner.md
 * ("Speed") has what each of these choices saved. */
static int32_t tree_set(bin_tree_t *t, int32_t b, double v) {
  uint64_t *nw = t->nw;
  int32_t *ni = t->ni;
  uint64_t cw = eplb__wbits(v);
  int32_t ci = b;
  uint32_t i = (uint32_t)t->P + (uint32_t)b;
  nw[i] = cw;
  while (i > 1) {
    uint64_t sw = nw[i ^ 1];
    int32_t si = ni[i ^ 1];
    uint64_t lim = sw + 1 - (i & 1);
    /* Not ?: - the compiler turned those into a branch that the predictor
     * gets wrong every other level.  On x86-64 two conditional moves (GCC
     * will not emit cmov here itself); elsewhere masks. */
#if defined(__x86_64__) && defined(__GNUC__)
    __asm__("cmpq %[lim], %[cw]\n\t"
            "cmovaeq %[sw], %[cw]\n\t"
            "cmovael %[si], %[ci]"
            : [cw] "+r"(cw), [ci] "+r"(ci)
            : [sw] "r"(sw), [si] "r"(si), [lim] "r"(lim)
            : "cc");
#else
    uint64_t take = 0 - (uint64_t)(cw >= lim);
    cw = (sw & take) | (cw & ~take);
    ci = (int32_t)(((uint32_t)si & (uint32_t)take) |
                   ((uint32_t)ci & ~(uint32_t)take));
#endif
    i >>= 1;
    nw[i] = cw;
    ni[i] = ci;
  }
  return ci;
}

/* Effective weight of bin b (bits). */
static inline uint64_t tree_weight(const bin_tree_t *t, int32_t b) {
  return t->nw[t->P + b];
}

static void tree_init(bin_tree_t *t, int32_t bins) {
  for (int32_t i = 0; i < t->P; i++) {
    t->nw[t->P + i] = eplb__wbits(i < bins ? 0.0 : HUGE_VAL);
    t->ni[t->P + i] = i < bins ? i : t->P;
  }
  for (int32_t i = t->P - 1; i >= 1; i--) {
    int right = t->nw[2 * i + 1] < t->nw[2 * i];
    t->nw[i] = t->nw[2 * i + right];
    t->ni[i] = t->ni[2 * i + right];
  }
}

/* Which bins hold an item of each key, for keeping an expert's replicas
 * apart.  Up to 64 bins the bins holding key k are a bit set, kset[k]: a
 * clash test is one load and a shift, not a walk along the chain of the
 * items placed with k, whose varying length the branch predictor
 * misses; 8 bytes a key, no more than the chains' 4 a key and 4 an item.
 * Beyond 64 bins the items placed with key k are chained from head[k]
 * through next[] (usually zero or one). */
typedef struct {
  uint64_t *kset; /* [keys], or NULL: chains */
  int32_t *head;  /* [keys] */
  int32_t *next;  /* [n] */
} key_index_t;

/* An empty key index for n items of keys key[n] on `bins` bins, from ar:
 * 0, or -1 when out of memory.  The helpers below take it by value: by
 * pointer, GCC reloaded kset from the stack at every clash test of the
 * packing loop. */
static int key_index_take(key_index_t *x, const int32_t *key, int32_t n,
                          int32_t bins, eplb__arena_t *ar) {
  int32_t kmax = 0;
  for (int32_t i = 0; i < n; i++)
    kmax = key[i] > kmax ? key[i] : kmax;
  size_t keys = (size_t)kmax + 1;
  *x = (key_index_t){NULL, NULL, NULL};
  if (bins <= 64) {
    x->kset = eplb__arena_take(ar, sizeof(uint64_t) * keys);
    if (x->kset == NULL)
      return -1;
    memset(x->kset, 0, sizeof(uint64_t) * keys);
    return 0;
  }
  x->head = eplb__arena_take(ar, sizeof(int32_t) * keys);
  x->next = eplb__arena_take(ar, sizeof(int32_t) * (size_t)n);
  if (x->head == NULL || x->next == NULL)
    return -1;
  for (size_t k = 0; k < keys; k++)
    x->head[k] = -1;
  return 0;
}

/* 1 when bin b already holds an item with key k (bin_of: the bins of the
 * items placed). */
static inline int key_index_has(key_index_t x, const int32_t *bin_of, int32_t b,
                                int32_t k) {
  if (x.kset != NULL)
    return (int)(x.kset[k] >> b & 1);
  for (int32_t it = x.head[k]; it >= 0; it = x.next[it])
    if (bin_of[it] == b)
      return 1;
  return 0;
}

/* Item i, of key k, went to bin b. */
static inline void key_index_add(key_index_t x, int32_t i, int32_t k,
                                 int32_t b) {
  if (x.kset != NULL) {
    x.kset[k] |= (uint64_t)1 << b;
  } else {
    x.next[i] = x.head[k];
    x.head[k] = i;
  }
}

/* Picks the lightest bin with room for item i, without a key clash when
 * some bin allows (bins that clash are set aside in held[] and restored),
 * else the lightest of all.  ++*nclash when a clash moved the item off the
 * plain lightest bin, ++*nforced when it goes to a bin with its key.
 * bin_w[] are the true weights; ix is unused when key is NULL. */
static int32_t pick_bin(bin_tree_t *t, const double *bin_w, const int32_t *key,
                        key_index_t ix, const int32_t *bin_of, int32_t i,
                        int32_t *held, int32_t root, int32_t *nclash,
                        int32_t *nforced) {
  int32_t best = root, nheld = 0;
  if (key == NULL)
    return best;
  while (best < t->P && key_index_has(ix, bin_of, best, key[i])) {
    held[nheld++] = best;
    best = tree_set(t, best, HUGE_VAL);
    if (tree_weight(t, best) == eplb__wbits(HUGE_VAL))
      best = t->P; /* no bin with room is left */
  }
  for (int32_t j = 0; j < nheld; j++)
    tree_set(t, held[j], bin_w[held[j]]);
  if (nheld > 0)
    (*nclash)++;
  if (best >= t->P) { /* every bin with room clashes: take the lightest */
    (*nforced)++;
    best = held[0];
    for (int32_t j = 1; j < nheld; j++)
      if (bin_w[held[j]] < bin_w[best] ||
          (bin_w[held[j]] == bin_w[best] && held[j] < best))
        best = held[j];
  }
  return best;
}

int eplb__pack_greedy(const double *w, const int32_t *order, int32_t n,
                      int32_t bins, int32_t cap, const int32_t *key,
                      int32_t *bin_of, int32_t *rank_of, int32_t *clashes,
                      eplb_error_t *err) {
  eplb__pack_info_t info;
  eplb__arena_t ar;
  eplb__arena_init(&ar, NULL, 0);
  int rc = eplb__pack_greedy_from(w, order, n, bins, cap, key, 0, HUGE_VAL,
                                  bin_of, rank_of, &info, &ar, err);
  eplb__arena_done(&ar);
  if (rc == 0 && clashes)
    *clashes = info.clashes;
  return rc;
}

/* The state that packing order[0..from) (already in bin_of) leaves: bin
 * weights bin_w[bins] and counts bin_n[bins], the key index ix (empty
 * without keys) and the tree.  The same weights added in the same order
 * give the same sums, and a winner tree is a function of its leaves (ties
 * to the left child both in tree_init and tree_set), so the state is the
 * one packing them would have left. */
static void pack_prefix(const double *w, const int32_t *order, int32_t from,
                        const int32_t *key, const int32_t *bin_of, int32_t cap,
                        key_index_t ix, double *bin_w, int32_t *bin_n,
                        bin_tree_t *t, int32_t bins) {
  memset(bin_w, 0, sizeof(double) * (size_t)bins); /* +0.0 */
  memset(bin_n, 0, sizeof(int32_t) * (size_t)bins);
  for (int32_t k = 0; k < from; k++) {
    int32_t i = order[k];
    if (key != NULL)
      key_index_add(ix, i, key[i], bin_of[i]);
    bin_n[bin_of[i]]++;
    bin_w[bin_of[i]] += w[i];
  }
  tree_init(t, bins);
  for (int32_t b = 0; from > 0 && b < bins; b++)
    if (bin_n[b] > 0)
      tree_set(t, b, bin_n[b] < cap ? bin_w[b] : HUGE_VAL);
}

/* The heaviest of bin_w[bins]. */
static double heaviest_bin(const double *bin_w, int32_t bins) {
  double most = 0;
  for (int32_t b = 0; b < bins; b++)
    most = b == 0 || bin_w[b] > most ? bin_w[b] : most;
  return most;
}

int eplb__pack_greedy_from(const double *w, const int32_t *order, int32_t n,
                           int32_t bins, int32_t cap, const int32_t *key,
                           int32_t from, double stop_at, int32_t *bin_of,
                           int32_t *rank_of, eplb__pack_info_t *info,
                           eplb__arena_t *ar, eplb_error_t *err) {
  int32_t P = 1;
  while (P < bins)
    P *= 2;
  size_t mark = ar->used;
  double *bin_w = eplb__arena_take(ar, sizeof(double) * (size_t)bins);
  int32_t *bin_n = eplb__arena_take(ar, sizeof(int32_t) * (size_t)bins);
  int32_t *ni = eplb__arena_take(ar, sizeof(int32_t) * 2 * (size_t)P);
  uint64_t *nw = eplb__arena_take(ar, sizeof(uint64_t) * 2 * (size_t)P);
  int32_t *held = eplb__arena_take(ar, sizeof(int32_t) * (size_t)bins);
  key_index_t ix = {NULL, NULL, NULL};
  int rc = 0;
  if (!bin_w || !bin_n || !ni || !nw || !held ||
      (key && key_index_take(&ix, key, n, bins, ar) != 0)) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory packing %d items",
                        (int)n);
    goto done;
  }
  bin_tree_t t = {.nw = nw, .ni = ni, .P = P};
  pack_prefix(w, order, from, key, bin_of, cap, ix, bin_w, bin_n, &t, bins);
  int32_t nclash = 0, nforced = 0, first = n, root = ni[1];
  info->stopped = 0;
  for (int32_t k = from; k < n; k++) {
    int32_t i = order[k];
    int32_t best =
        pick_bin(&t, bin_w, key, ix, bin_of, i, held, root, &nclash, &nforced);
    if (nclash == 1 && first == n)
      first = k;
    bin_of[i] = best;
    rank_of[i] = bin_n[best];
    if (key != NULL)
      key_index_add(ix, i, key[i], best);
    bin_n[best]++;
    bin_w[best] += w[i];
    root = tree_set(&t, best, bin_n[best] < cap ? bin_w[best] : HUGE_VAL);
    if (bin_w[best] >= stop_at) { /* sums only grow: the end is no lower */
      info->stopped = 1;
      info->max = bin_w[best];
      break;
    }
  }
  info->clashes = nclash;
  info->forced = nforced;
  info->first_clash = first;
  if (!info->stopped)
    info->max = heaviest_bin(bin_w, bins);
done:
  ar->used = mark;
  return rc;
}
