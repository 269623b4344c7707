/* plan/internal.h - building blocks shared by the planner's policies.
 *
 * Names carry `eplb__` (internal, not part of the public API).  Everything
 * here is deterministic: ties break towards the lower index, always. */
#ifndef EPLB_PLAN_INTERNAL_H
#define EPLB_PLAN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "eplb/error.h"
#include "eplb/plan.h"

/* Order of two items (replicas by weight, experts by load): heavier first,
 * then lower index.  A total order, so every correct sort gives the same
 * permutation. */
static inline int eplb__before(const double *w, int32_t a, int32_t b) {
  return w[a] > w[b] || (w[a] == w[b] && a < b);
}

/* The IEEE-754 bit pattern of v: for finite non-negative values and +inf
 * it orders like the values, so weights compare as integers (one compare,
 * a conditional move). */
static inline uint64_t eplb__wbits(double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof(u));
  return u;
}

/* Scratch memory for one call chain (a layer's plan): taken in order from
 * one block, given back all at once, so a layer costs one malloc instead of
 * some thirty.  What does not fit in the block gets a malloc of its own,
 * chained and freed by eplb__arena_done, so a short block is slower, never
 * wrong.  A part of the block is given back by restoring `used`. */
typedef struct eplb__arena_s {
  unsigned char *buf; /* may be NULL: every take is a malloc */
  size_t cap, used;
  void *spill; /* the takes that did not fit, chained */
} eplb__arena_t;

/* An arena over buf[cap] (buf may be NULL). */
void eplb__arena_init(eplb__arena_t *a, void *buf, size_t cap);

/* `bytes` of scratch, aligned as malloc's, or NULL when out of memory. */
void *eplb__arena_take(eplb__arena_t *a, size_t bytes);

/* Frees what eplb__arena_take allocated on its own (not buf). */
void eplb__arena_done(eplb__arena_t *a);

/* The range of eplb_plan_opts_t.threads, for the options and the
 * warm-up: 0 or EPLB_EARG. */
int eplb__plan_check_threads(int32_t threads, eplb_error_t *err);

/* Chooses how many replicas each of E experts gets so that the S slots are
 * used and the largest load per replica is as small as possible: every
 * expert starts with one, then each further slot goes to the expert with the
 * highest load per replica (ties: fewer replicas, then lower index), never
 * beyond max_replicas (0 = unbounded).  count[E] out.  DeepSeek's rule; it
 * is optimal for the min-max per-replica load.  S < E or S > E*max_replicas
 * is EPLB_EARG. */
int eplb__replicate(const double *load, int32_t E, int32_t S,
                    int32_t max_replicas, int32_t *count, eplb_error_t *err);

/* eplb__replicate, and the replicas in packing order: replica p of expert
 * e is p = (replicas of experts before e) + r; key[S] its expert, w[S] its
 * weight load[e] / count[e], order[S] the p sorted as eplb__sort_desc(w)
 * sorts them (heavier first, ties lower p) - the same arrays as
 * eplb__replicate, a loop and eplb__sort_desc give, with one sort of E
 * experts instead of a heap and a sort of S replicas.  Scratch from ar
 * (given back on return).  *same_order (may be NULL) is set to
 * 1 when DeepSeek's global plan (eplb__plan_deepseek, one node) equals
 * the keyless greedy packing of these replicas (max_replicas > 0, the cap
 * as G), found from the experts' order without walking the replicas.
 * DeepSeek does not cap replicas, so no expert may have reached the cap;
 * it numbers first replicas before redundant ones, so the sorted orders
 * name the same experts in the same sequence unless a run of equal
 * weights mixes several experts of which one has more than one replica.
 * When the packing with keys met no clash it is that same packing; the
 * local search never raises the maximum, so then the balanced plan is at
 * least as good as DeepSeek's.  (tests/test_plan.c checks it against a
 * walk of the replicas.) */
int eplb__replicate_sorted_ds(const double *load, int32_t E, int32_t S,
                              int32_t max_replicas, int32_t *count,
                              int32_t *key, double *w, int32_t *order,
                              int *same_order, eplb__arena_t *ar,
                              eplb_error_t *err);

/* Fills order[0..n) with 0..n-1 sorted by w descending, ties by index
 * (eplb__before). */
void eplb__sort_desc(const double *w, int32_t n, int32_t *order);

/* eplb__sort_desc with its scratch from ar (given back). */
void eplb__sort_desc_a(const double *w, int32_t n, int32_t *order,
                       eplb__arena_t *ar);

/* Greedy packing of n weighted items into `bins` bins of `cap` items each
 * (n == bins * cap): items in `order`, each to the lightest bin with room
 * (ties: lower bin).  With key != NULL an item avoids bins that already hold
 * an item of the same key when any bin with room does not; *clashes (may be
 * NULL) counts the items that met such a bin, i.e. did not simply go to the
 * lightest bin with room (0: the packing is exactly the keyless one).
 * bin_of[n] and rank_of[n] (position inside the bin, in packing order) out.
 * Returns 0 or EPLB_ENOMEM. */
int eplb__pack_greedy(const double *w, const int32_t *order, int32_t n,
                      int32_t bins, int32_t cap, const int32_t *key,
                      int32_t *bin_of, int32_t *rank_of, int32_t *clashes,
                      eplb_error_t *err);

/* What eplb__pack_greedy_from found. */
typedef struct eplb__pack_info_s {
  int32_t clashes;     /* as eplb__pack_greedy's *clashes */
  int32_t forced;      /* items put with an item of their key (every bin
                          with room held one): 0 means no bin holds a key
                          twice */
  int32_t first_clash; /* position in order of the first clash, n if none:
                          order[0..first_clash) went where the keyless
                          packing puts them */
  int stopped;         /* 1: a bin reached stop_at, packing stopped there */
  double max;          /* heaviest bin (stopped: the one that reached
                          stop_at, a lower bound of the full packing's) */
} eplb__pack_info_t;

/* eplb__pack_greedy resumed at item `from` of order: order[0..from)
 * already placed in bin_of/rank_of as this packing places them (for the
 * keyless packing: the prefix before the first clash of a keyed one), and
 * stopped as soon as a bin weighs stop_at or more (HUGE_VAL: never; bin_of
 * and rank_of are then incomplete).  A bin's weight is the sum of its
 * items' w in packing order, from 0: eplb__max_gpu_load's sum for the map
 * it gives when w[p] = load / count.  Scratch from ar (given back).
 * Returns 0 or EPLB_ENOMEM. */
int eplb__pack_greedy_from(const double *w, const int32_t *order, int32_t n,
                           int32_t bins, int32_t cap, const int32_t *key,
                           int32_t from, double stop_at, int32_t *bin_of,
                           int32_t *rank_of, eplb__pack_info_t *info,
                           eplb__arena_t *ar, eplb_error_t *err);

/* Items 0..n-1 in order of a key (ascending, ties lower index) that
 * changes one item at a time (order.c): GPUs by load for the searches.
 * The order is cut into blocks of at most EPLB__ORDER_CAP items, each a
 * sorted array with its keys beside it; walk it block by block
 * (eplb__order_block).  Memory O(n); init O(n log n); set O(log n +
 * EPLB__ORDER_CAP), amortised. */
#define EPLB__ORDER_CAP 64
#define EPLB__ORDER_FILL 32
typedef struct eplb__order_s {
  int32_t n, nb, maxb, nfree;
  int32_t *bid;   /* [maxb] storage of the b-th block, in order */
  int32_t *bn;    /* [maxb] items in each storage block */
  int32_t *free_; /* [maxb] storage blocks not in use */
  int32_t *items; /* [maxb * CAP] each block's items, in order */
  double *keys;   /* [maxb * CAP] their keys */
  double *key;    /* [n] each item's key (more than one block's worth) */
  int32_t *spare; /* [n] for dealing the items again */
  int32_t *blk;   /* [n] each item's storage block (more than one block) */
  int32_t *border; /* [maxb] each storage block's place in bid[] */
} eplb__order_t;

/* Items 0..n-1 ordered by key[n] (copied), memory from ar (kept until the
 * caller gives it back).  0 or EPLB_ENOMEM. */
int eplb__order_init(eplb__order_t *o, int32_t n, const double *key,
                     eplb__arena_t *ar);

/* eplb__order_init given the items in order already, ids[n] (NULL: sort
 * them). */
int eplb__order_init_sorted(eplb__order_t *o, int32_t n, const double *key,
                            const int32_t *ids, eplb__arena_t *ar);

/* Bytes eplb__order_init takes from an arena for n items. */
size_t eplb__order_bytes(int32_t n);

/* Item i's key becomes k; it moves to its place. */
void eplb__order_set(eplb__order_t *o, int32_t i, double k);

/* Item at position p of a block's is[m], ks[m] takes key k and is shifted
 * to its place in the block (it stays in the block). */
static inline void eplb__order_shift(int32_t *is, double *ks, int32_t m,
                                     int32_t p, double k) {
  int32_t i = is[p];
  while (p > 0 && (k < ks[p - 1] || (k == ks[p - 1] && i < is[p - 1]))) {
    ks[p] = ks[p - 1];
    is[p] = is[p - 1];
    p--;
  }
  while (p < m - 1 && (ks[p + 1] < k || (ks[p + 1] == k && is[p + 1] < i))) {
    ks[p] = ks[p + 1];
    is[p] = is[p + 1];
    p++;
  }
  ks[p] = k;
  is[p] = i;
}

/* eplb__order_move with several blocks. */
void eplb__order_move_blocks(eplb__order_t *o, int32_t b, int32_t p,
                             double k);

/* eplb__order_set for the item at position p of the b-th block.  Up to
 * EPLB__ORDER_CAP items the order is one block, a sorted array (o->key is
 * not kept then): a shift. */
static inline void eplb__order_move(eplb__order_t *o, int32_t b, int32_t p,
                                    double k) {
  if (o->n > EPLB__ORDER_CAP)
    eplb__order_move_blocks(o, b, p, k);
  else
    eplb__order_shift(o->items, o->keys, o->n, p, k);
}

/* The last item (largest key, ties the higher index). */
static inline int32_t eplb__order_last(const eplb__order_t *o) {
  if (o->n <= EPLB__ORDER_CAP)
    return o->items[o->n - 1];
  int32_t s = o->bid[o->nb - 1];
  return o->items[(size_t)s * EPLB__ORDER_CAP + o->bn[s] - 1];
}

/* The b-th block (0 <= b < o->nb): its items and keys, in order; returns
 * how many. */
static inline int32_t eplb__order_block(const eplb__order_t *o, int32_t b,
                                        const int32_t **items,
                                        const double **keys) {
  int32_t s = o->bid[b];
  *items = o->items + (size_t)s * EPLB__ORDER_CAP;
  *keys = o->keys + (size_t)s * EPLB__ORDER_CAP;
  return o->bn[s];
}

/* A layer's placement on G GPUs of `per` slots, with each slot's weight
 * (its expert's load / replicas), for the local search. */
typedef struct eplb__layout_s {
  int32_t G, per;
  int32_t *expert; /* [G * per] */
  double *w;       /* [G * per] */
  double *load;    /* [G] */
  double stop_at;  /* the search stops once the most loaded GPU is at most
                      this (eplb__noise_stop; 0: never) */
} eplb__layout_t;

/* What the statistics cannot tell apart (docs/planner.md, "When a plan is
 * good enough"): loads are token counts, so a GPU's load varies from one
 * window to the next by at least a Poisson standard deviation, about
 * sqrt(mean).  A plan whose most loaded GPU is within EPLB__STOP_SIGMA of
 * that above the mean of `total` over G GPUs cannot be told from a better
 * one on the traffic that follows, and the searches stop there.  Returns
 * that load, or 0 (never stop) when the mean is below one count (loads
 * that are not counts: shares, normalised scenarios). */
#define EPLB__STOP_SIGMA 0.005
double eplb__noise_stop(double total, int32_t G);

/* Moves duplicate copies (one GPU holding an expert twice) away by swapping
 * with another GPU's slot, choosing the swap that changes loads least.
 * Returns the number of duplicates left (0 unless no swap exists).
 * Scratch from ar (given back). */
int32_t eplb__repair_duplicates_a(eplb__layout_t *lay, eplb__arena_t *ar);

/* Local search: repeatedly swaps a slot of the most loaded GPU with a
 * lighter slot of another GPU when that lowers the pair's maximum, never
 * creating a duplicate, until no swap helps or `max_iters` swaps were made.
 * Each swap strictly lowers the sum of squared loads, so it terminates.
 * With `tiered`, a slot only swaps with the slot of the same rank (by
 * weight) on the other GPU: the heaviest with the heaviest, and so on, so
 * that every GPU keeps one replica of each weight tier that greedy packing
 * gave it (see balanced.c for why that matters on later traffic).
 * Scratch from ar (given back). */
void eplb__local_search_a(eplb__layout_t *lay, int32_t max_iters, int tiered,
                          eplb__arena_t *ar);

/* eplb__local_search_a (the same stopping rule, the same swap for the most
 * loaded GPU up to ties, but for a bound on how far a slot's search looks
 * past GPUs that hold its expert) with each swap's partner found through
 * an index of the experts by weight, each one's GPUs in a heap by load
 * (per rank when tiered) and a segment tree over the experts (swap_index.c):
 * O(per log E) a swap instead of O(G per).  Every slot of an expert must
 * weigh the same.  Scratch from ar (given back; eplb__swap_index_bytes of
 * it at most for S slots, G GPUs and experts below ne). */
void eplb__local_search_index_a(eplb__layout_t *lay, int32_t max_iters,
                                int tiered, eplb__arena_t *ar);
size_t eplb__swap_index_bytes(int32_t S, int32_t G, int32_t ne);

/* eplb__refine for many GPUs (swap_index.c): at each step the move that
 * removes the most load above the mean for the most loaded GPU that has
 * one, among the swaps (found through the index) and refine.c's
 * replica-count moves.  Keeps the result only if the largest GPU load went
 * down. */
int eplb__refine_index(const double *load, int32_t E, int32_t S, int32_t G,
                       int32_t *phy2log, eplb_error_t *err);

/* A lower bound on the most loaded GPU of any arrangement of lay's slots:
 * the mean GPU load, and the heaviest slot plus the per - 1 lightest ones
 * (the GPU holding the heaviest slot fills its other slots too). */
double eplb__layout_bound(const eplb__layout_t *lay);

/* Largest entry of load[G] (ties: lower index). */
int32_t eplb__argmax(const double *load, int32_t G);

/* DeepSeek's algorithm for one layer, hierarchical when the options say so.
 * load[E] -> phy2log[S]. */
int eplb__plan_deepseek(const double *load, int32_t E,
                        const eplb_plan_opts_t *opts, int32_t *phy2log,
                        eplb_error_t *err);

/* eplb's default policy for one layer. */
int eplb__plan_balanced(const double *load, int32_t E,
                        const eplb_plan_opts_t *opts, int32_t *phy2log,
                        eplb_error_t *err);

/* Migration-aware plan of one layer from current[S] (incremental.c). */
int eplb__plan_incremental(const double *load, int32_t E,
                           const eplb_plan_opts_t *opts, const int32_t *current,
                           int32_t *phy2log, eplb_error_t *err);

/* Hierarchical plan whose hottest experts may spill replicas to cooler
 * nodes, each replica away from its group's node costing spill_cost x mean
 * GPU load (incremental.c). */
int eplb__plan_spill(const double *load, int32_t E,
                     const eplb_plan_opts_t *opts, int32_t *phy2log,
                     eplb_error_t *err);

/* The move search (refine.c), shared with incremental.c: a layer placement
 * improved one move at a time - slot swaps, and moves that change replica
 * counts - under max GPU load + lambda x replicas moved away from `orig`.
 * The caller sets E, S, G, per, load, orig (and home, gpn to price a
 * replica away from its home node instead of a move) and calls
 * eplb__search_alloc; eplb__search_free frees, also after a failed alloc.
 * Memory O(E + S + G). */
typedef struct eplb__search_s {
  int32_t E, S, G, per;
  const double *load;
  int32_t *slot;       /* [S] working placement */
  int32_t *cnt;        /* [E] replicas */
  double *gl;          /* [G] GPU loads: its slots' weights summed in order */
  const int32_t *orig; /* [S] placement we started from */
  const int32_t *home; /* [E] home node of each expert (spill), or NULL */
  int32_t gpn;         /* GPUs per node (spill mode) */
  int32_t *head;       /* [E] expert e's slots: a list from head[e] */
  int32_t *nxt, *prv;  /* [S] the lists (-1 ends them) */
  double *ew;          /* [E] load per replica of each expert */
  double *sw;          /* [S] load per replica of each slot's expert */
  double *ng;          /* [G] loads of a move under evaluation (stamped) */
  int32_t *stamp;      /* [G] which evaluation ng[g] belongs to */
  int32_t *touched;    /* [G] GPUs the evaluated move changes */
  int32_t tick;        /* the current evaluation */
  unsigned char *mark; /* [E] scratch flags, all 0 between uses */
  double stop_at;      /* eplb__search_run stops once the most loaded GPU is
                          at most this (0: never) */
  int32_t *above;      /* [E] slots of e on GPUs above `mean` (with_above) */
  double mean;         /* the mean GPU load of the search run */
  int with_above;      /* above[] is kept (during eplb__search_run) */
  int32_t *ofirst;     /* [E + 1] GPUs that held e in orig: */
  int32_t *ogpu;       /*   ogpu[ofirst[e]..ofirst[e+1]), ascending */
  uint64_t *omask;     /* [E] up to 64 GPUs: bit g when orig had e on g
                          (NULL beyond: the lists above) */
  int scalar;          /* 1: the scalar swap scan even where the CPU has
                          AVX2 (tests compare the two) */
  eplb__order_t gpus;  /* GPUs by load, lightest first */
  eplb__order_t hot;   /* experts by load per replica, heaviest first */
  eplb__arena_t ar;    /* memory of the orders */
} eplb__search_t;

/* Allocates the working arrays of c (E, S, G set): 0 or EPLB_ENOMEM. */
int eplb__search_alloc(eplb__search_t *c, eplb_error_t *err);
void eplb__search_free(eplb__search_t *c);

/* Starts c from placement[S] (every expert on some slot): copies it,
 * counts replicas, computes the GPU loads; returns their sum, or -1 when
 * out of memory. */
double eplb__search_set(eplb__search_t *c, const int32_t *placement);

/* The largest GPU load of c's placement. */
double eplb__search_max(const eplb__search_t *c);

/* Brings replica counts to what the loads call for (greedy replication,
 * at most one replica per GPU), as far as max_moves (-1: no limit)
 * allows; *moves is the running count.  0 or EPLB_ENOMEM. */
int eplb__search_fix_counts(eplb__search_t *c, int32_t max_moves,
                            int32_t *moves, eplb_error_t *err);

/* Replaces every later copy of an expert a GPU already holds (a slot the
 * expert-map JSON's consumers drop: a current placement made by DeepSeek's
 * algorithm has them) by a replica of the expert with the most load per
 * replica that the GPU lacks, as far as max_moves (-1: no limit) allows;
 * *moves is the running count.  Returns how many were replaced. */
int32_t eplb__search_repair_duplicates(eplb__search_t *c, int32_t max_moves,
                                       int32_t *moves);

/* The greedy search: relieves the most loaded GPU that some move relieves
 * at a net gain (load above `mean` removed, less lambda per moved
 * replica), until none gains or max_moves (-1: no limit) is spent. */
void eplb__search_run(eplb__search_t *c, double mean, double lambda,
                      int32_t max_moves, int32_t *moves);

/* One layer's scenarios for the robust search (robust.c): K scenarios of
 * E experts, x[k * E + e] each normalised to sum 1, w[k] > 0 summing to
 * 1. */
typedef struct eplb__scenario_layer_s {
  int32_t K, E;
  const double *x;
  const double *w;
} eplb__scenario_layer_t;

/* Improves phy2log[S] (G GPUs; swaps stay inside domains of `dom`
 * consecutive GPUs) for the weighted mean over scenarios of each
 * scenario's most loaded GPU; replica counts are kept.  With orig[S] (or
 * NULL) a swap pays lambda per replica that arrives on a GPU that did not
 * hold its expert in orig, and at most max_moves (-1: any) such replicas
 * are allowed.  Scratch from ar (given back).  0 or EPLB_ENOMEM. */
int eplb__robust_search(const eplb__scenario_layer_t *sc, int32_t S, int32_t G,
                        int32_t dom, const int32_t *orig, double lambda,
                        int32_t max_moves, int32_t *phy2log, eplb__arena_t *ar,
                        eplb_error_t *err);

/* The weighted mean over sc's scenarios of each one's most loaded GPU
 * under phy2log[S] on G GPUs (its imbalance: G x this - 1); HUGE_VAL when
 * out of memory. */
double eplb__scenario_objective(const eplb__scenario_layer_t *sc,
                                const int32_t *phy2log, int32_t S, int32_t G);

/* Improves a layer placement with the moves of the re-planning search,
 * free of move cost, including moves that change replica counts (which the
 * slot-swap local search cannot).  Keeps the result only if the largest GPU
 * load went down. */
int eplb__refine(const double *load, int32_t E, int32_t S, int32_t G,
                 int32_t *phy2log, eplb_error_t *err);

/* Replicas of `to` that sit on a GPU which does not hold them in `from`. */
int32_t eplb__count_moves(const int32_t *from, const int32_t *to, int32_t S,
                          int32_t G);

/* Max GPU load of a layer placement (GPU s / per), loads split evenly over
 * replicas (-1 when out of memory); used to compare candidate plans. */
double eplb__max_gpu_load(const double *load, int32_t E, const int32_t *phy2log,
                          int32_t S, int32_t G);

/* The planner's worker threads (pool.c).  eplb__pool_run runs fn(arg) on
 * the calling thread and on up to `extra` workers (started when missing),
 * and returns once every one that took it is done; fn must share its work
 * through arg, as any number of threads may run it, and a worker that
 * wakes late may take none.  When another thread is running a job on the
 * pool, fn runs on threads started for this call alone.
 * eplb__pool_warm_up starts n workers ahead of a plan, has each new one
 * run warm() (may be NULL) and then spin for a while (pool.c's
 * WARM_SPIN_S); returns how many there are. */
void eplb__pool_run(int32_t extra, void *(*fn)(void *), void *arg);
int32_t eplb__pool_warm_up(int32_t n, void (*warm)(void));

/* CPUs this thread may run on (its affinity mask: an MPI rank bound to one
 * core has one), or the online CPUs when that is unknown. */
int32_t eplb__usable_cpus(void);

#endif /* EPLB_PLAN_INTERNAL_H */
