/* plan/order.c - items kept in order of a key that changes a few at a time
 * (GPUs by load for the searches, experts by load per replica).
 *
 * DESIGN.  The searches look at the most loaded GPU and at the lightest
 * ones, lightest first, and after a move only the few GPUs it touched
 * change their load.  A sorted array moves an item in O(distance), which
 * at tens of thousands of GPUs is most of the array for every move; a heap
 * does not give the lightest ones in order.  Here the order is cut into
 * blocks of at most EPLB__ORDER_CAP items, each a sorted array with the keys
 * beside the items (a scan compares without a dependent load): moving an
 * item is a binary search over the blocks' last items and a shift inside
 * one or two blocks, and a scan in order walks the blocks one after the
 * other.  A full block splits in two, an emptied one is dropped; when no
 * block is left to split into, the items are dealt again, EPLB__ORDER_FILL
 * to a block (O(n), at most once every n / EPLB__ORDER_FILL splits).  Up to
 * EPLB__ORDER_CAP items there is one block, storage block 0: a sorted
 * array, and the items' keys are not kept apart (eplb__order_move). */
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

/* (ka, a) before (kb, b): smaller key, ties lower index. */
static inline int ord_before(double ka, int32_t a, double kb, int32_t b) {
  return ka < kb || (ka == kb && a < b);
}

static inline int32_t *blk_items(const eplb__order_t *o, int32_t s) {
  return o->items + (size_t)s * EPLB__ORDER_CAP;
}

static inline double *blk_keys(const eplb__order_t *o, int32_t s) {
  return o->keys + (size_t)s * EPLB__ORDER_CAP;
}

/* The places in bid[] of the blocks from the b-th on, after bid changed. */
static void renumber(eplb__order_t *o, int32_t b) {
  for (; b < o->nb; b++)
    o->border[o->bid[b]] = b;
}

/* Deals o->spare[0..n) (in order) into blocks of EPLB__ORDER_FILL (one
 * block when they fit in one). */
static void deal(eplb__order_t *o) {
  int32_t n = o->n, nb = (n + EPLB__ORDER_FILL - 1) / EPLB__ORDER_FILL;
  if (n <= EPLB__ORDER_CAP || nb == 0)
    nb = 1;
  o->nfree = 0;
  for (int32_t s = o->maxb - 1; s >= nb; s--)
    o->free_[o->nfree++] = s;
  o->nb = nb;
  for (int32_t b = 0, k = 0; b < nb; b++) {
    int32_t m = (n - k) / (nb - b);
    o->bid[b] = b;
    o->bn[b] = m;
    o->border[b] = b;
    for (int32_t j = 0; j < m; j++, k++) {
      blk_items(o, b)[j] = o->spare[k];
      blk_keys(o, b)[j] = o->key[o->spare[k]];
      o->blk[o->spare[k]] = b;
    }
  }
}

/* Merge sort of ids[n] by (key, index); tmp[n] scratch. */
static void sort_ids(const double *key, int32_t *ids, int32_t *tmp,
                     int32_t n) {
  for (int32_t w = 1; w < n; w *= 2) {
    for (int32_t lo = 0; lo < n; lo += 2 * w) {
      int32_t mid = lo + w < n ? lo + w : n;
      int32_t hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        tmp[k++] = ord_before(key[ids[j]], ids[j], key[ids[i]], ids[i])
                       ? ids[j++]
                       : ids[i++];
      while (i < mid)
        tmp[k++] = ids[i++];
      while (j < hi)
        tmp[k++] = ids[j++];
    }
    memcpy(ids, tmp, sizeof(int32_t) * (size_t)n);
  }
}

/* Storage blocks for n items: one when they fit in one (it never splits),
 * else twice what dealing takes, and some. */
static int32_t max_blocks(int32_t n) {
  return n <= EPLB__ORDER_CAP ? 1 : 2 * (n / EPLB__ORDER_FILL) + 3;
}

size_t eplb__order_bytes(int32_t n) {
  size_t b = (size_t)max_blocks(n);
  return b * EPLB__ORDER_CAP * (sizeof(int32_t) + sizeof(double)) +
         4 * b * sizeof(int32_t) + (size_t)n * (sizeof(double) + 8) + 5 * 16;
}

int eplb__order_init(eplb__order_t *o, int32_t n, const double *key,
                     eplb__arena_t *ar) {
  return eplb__order_init_sorted(o, n, key, NULL, ar);
}

int eplb__order_init_sorted(eplb__order_t *o, int32_t n, const double *key,
                            const int32_t *ids, eplb__arena_t *ar) {
  int32_t maxb = max_blocks(n);
  size_t cells = (size_t)maxb * EPLB__ORDER_CAP;
  *o = (eplb__order_t){.n = n, .maxb = maxb};
  o->items = eplb__arena_take(ar, sizeof(int32_t) * cells);
  o->keys = eplb__arena_take(ar, sizeof(double) * cells);
  o->bid = eplb__arena_take(ar, sizeof(int32_t) * 4 * (size_t)maxb);
  o->key = eplb__arena_take(ar, sizeof(double) * (size_t)n);
  o->spare = eplb__arena_take(ar, sizeof(int32_t) * 2 * (size_t)n);
  if (!o->items || !o->keys || !o->bid || !o->key || !o->spare)
    return EPLB_ENOMEM;
  o->bn = o->bid + maxb;
  o->free_ = o->bn + maxb;
  o->border = o->free_ + maxb;
  o->blk = o->spare + n;
  if (ids != NULL) { /* sorted already */
    memcpy(o->key, key, sizeof(double) * (size_t)n);
    memcpy(o->spare, ids, sizeof(int32_t) * (size_t)n);
    deal(o);
    return 0;
  }
  if (n <= EPLB__ORDER_CAP) { /* one block: insertion sort in place */
    o->nb = 1;
    o->nfree = 0;
    o->bid[0] = 0;
    o->bn[0] = n;
    double *ks = o->keys;
    int32_t *is = o->items;
    for (int32_t i = 0; i < n; i++) {
      double k = key[i];
      int32_t j = i;
      for (; j > 0 && ord_before(k, i, ks[j - 1], is[j - 1]); j--) {
        ks[j] = ks[j - 1];
        is[j] = is[j - 1];
      }
      ks[j] = k;
      is[j] = i;
    }
    return 0;
  }
  memcpy(o->key, key, sizeof(double) * (size_t)n);
  for (int32_t i = 0; i < n; i++)
    o->spare[i] = i;
  /* The block storage is free until dealt: the sort's scratch. */
  sort_ids(key, o->spare, o->items, n);
  deal(o);
  return 0;
}

/* The block (in order) holding (k, i), or where it goes: the first whose
 * last item is not before it; the last block when every one is. */
static int32_t find_block(const eplb__order_t *o, double k, int32_t i) {
  int32_t lo = 0, hi = o->nb - 1;
  while (lo < hi) {
    int32_t mid = (lo + hi) / 2, s = o->bid[mid], m = o->bn[s] - 1;
    if (ord_before(blk_keys(o, s)[m], blk_items(o, s)[m], k, i))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Position in block s of the first item not before (k, i). */
static int32_t find_pos(const eplb__order_t *o, int32_t s, double k,
                        int32_t i) {
  const double *ks = blk_keys(o, s);
  const int32_t *is = blk_items(o, s);
  int32_t lo = 0, hi = o->bn[s];
  while (lo < hi) {
    int32_t mid = (lo + hi) / 2;
    if (ord_before(ks[mid], is[mid], k, i))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Every item in order into o->spare. */
static void collect(eplb__order_t *o) {
  int32_t k = 0;
  for (int32_t b = 0; b < o->nb; b++) {
    int32_t s = o->bid[b];
    memcpy(o->spare + k, blk_items(o, s), sizeof(int32_t) * (size_t)o->bn[s]);
    k += o->bn[s];
  }
}

/* Splits the b-th block (full) into two halves; 0, or -1 when no block is
 * free (then nothing changed). */
static int split(eplb__order_t *o, int32_t b) {
  if (o->nfree == 0)
    return -1;
  int32_t s = o->bid[b], t = o->free_[--o->nfree];
  int32_t keep = o->bn[s] / 2, move = o->bn[s] - keep;
  memcpy(blk_items(o, t), blk_items(o, s) + keep, sizeof(int32_t) * move);
  memcpy(blk_keys(o, t), blk_keys(o, s) + keep, sizeof(double) * move);
  o->bn[s] = keep;
  o->bn[t] = move;
  for (int32_t j = 0; j < move; j++)
    o->blk[blk_items(o, t)[j]] = t;
  memmove(o->bid + b + 2, o->bid + b + 1,
          sizeof(int32_t) * (size_t)(o->nb - b - 1));
  o->bid[b + 1] = t;
  o->nb++;
  renumber(o, b + 1);
  return 0;
}

/* Inserts item i with key k (not in the order). */
static void insert(eplb__order_t *o, int32_t i, double k) {
  int32_t b = find_block(o, k, i), s = o->bid[b];
  if (o->bn[s] == EPLB__ORDER_CAP) {
    if (split(o, b) != 0) {
      /* No free block: deal every item again, this one included. */
      collect(o);
      int32_t n = o->n - 1, j = n;
      for (; j > 0 && ord_before(k, i, o->key[o->spare[j - 1]],
                                 o->spare[j - 1]);
           j--)
        o->spare[j] = o->spare[j - 1];
      o->spare[j] = i;
      deal(o);
      return;
    }
    b = find_block(o, k, i);
    s = o->bid[b];
  }
  int32_t p = find_pos(o, s, k, i), m = o->bn[s];
  int32_t *is = blk_items(o, s);
  double *ks = blk_keys(o, s);
  memmove(is + p + 1, is + p, sizeof(int32_t) * (size_t)(m - p));
  memmove(ks + p + 1, ks + p, sizeof(double) * (size_t)(m - p));
  is[p] = i;
  ks[p] = k;
  o->bn[s] = m + 1;
  o->blk[i] = s;
}

void eplb__order_move_blocks(eplb__order_t *o, int32_t b, int32_t p,
                             double k) {
  int32_t s = o->bid[b], m = o->bn[s];
  int32_t *is = blk_items(o, s), i = is[p];
  double *ks = blk_keys(o, s);
  o->key[i] = k;
  /* Blocks cut the order into ranges: it stays in this one when it still
   * falls between the last item of the block before and the first of the
   * block after; then it is shifted into place, as in a sorted array. */
  int inside = 1;
  if (b > 0) {
    int32_t t = o->bid[b - 1], l = o->bn[t] - 1;
    inside = ord_before(blk_keys(o, t)[l], blk_items(o, t)[l], k, i);
  }
  if (inside && b < o->nb - 1) {
    int32_t t = o->bid[b + 1];
    inside = ord_before(k, i, blk_keys(o, t)[0], blk_items(o, t)[0]);
  }
  if (inside) {
    eplb__order_shift(is, ks, m, p, k);
    return;
  }
  /* Out of the block, then in where it goes now. */
  memmove(is + p, is + p + 1, sizeof(int32_t) * (size_t)(m - p - 1));
  memmove(ks + p, ks + p + 1, sizeof(double) * (size_t)(m - p - 1));
  o->bn[s] = m - 1;
  if (m == 1) { /* emptied: dropped */
    memmove(o->bid + b, o->bid + b + 1,
            sizeof(int32_t) * (size_t)(o->nb - b - 1));
    o->nb--;
    o->free_[o->nfree++] = s;
    renumber(o, b);
  }
  insert(o, i, k);
}

void eplb__order_set(eplb__order_t *o, int32_t i, double k) {
  if (o->n <= EPLB__ORDER_CAP) { /* one block, o->key not kept */
    int32_t p = 0;
    while (o->items[p] != i)
      p++;
    eplb__order_shift(o->items, o->keys, o->n, p, k);
    return;
  }
  int32_t sb = o->blk[i]; /* its block, kept: no search over the blocks */
  eplb__order_move(o, o->border[sb], find_pos(o, sb, o->key[i], i), k);
}
