/* replicate.c - how many replicas each expert gets, and a deterministic sort.
 *
 * Replication is a max-heap over experts keyed by load per replica: each
 * redundant slot goes to the top expert, whose key then drops.  O(E + R log E)
 * for R = S - E redundant slots. */
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

/* 1 when expert a should get the next replica before expert b. */
static int rep_before(const double *load, const int32_t *count, int32_t a,
                      int32_t b) {
  /* Compare load[a]/count[a] with load[b]/count[b] by cross-multiplying:
   * exact for the integer-valued loads we see, and no division ties. */
  double ka = load[a] * (double)count[b], kb = load[b] * (double)count[a];
  if (ka != kb)
    return ka > kb;
  if (count[a] != count[b])
    return count[a] < count[b];
  return a < b;
}

static void heap_sift_down(int32_t *heap, int32_t n, int32_t i,
                           const double *load, const int32_t *count) {
  for (;;) {
    int32_t l = 2 * i + 1, r = l + 1, best = i;
    if (l < n && rep_before(load, count, heap[l], heap[best]))
      best = l;
    if (r < n && rep_before(load, count, heap[r], heap[best]))
      best = r;
    if (best == i)
      return;
    int32_t t = heap[i];
    heap[i] = heap[best];
    heap[best] = t;
    i = best;
  }
}

int eplb__replicate(const double *load, int32_t E, int32_t S,
                    int32_t max_replicas, int32_t *count, eplb_error_t *err) {
  if (S < E)
    return eplb_error_set(err, EPLB_EARG, "%d slots cannot hold %d experts",
                          (int)S, (int)E);
  if (max_replicas > 0 && (int64_t)E * max_replicas < S)
    return eplb_error_set(err, EPLB_EARG,
                          "%d slots need more than %d replicas of some expert",
                          (int)S, (int)max_replicas);
  for (int32_t e = 0; e < E; e++)
    count[e] = 1;
  int32_t extra = S - E;
  if (extra == 0)
    return 0;
  int32_t *heap = malloc(sizeof(int32_t) * (size_t)E);
  if (heap == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  int32_t n = E;
  for (int32_t e = 0; e < E; e++)
    heap[e] = e;
  for (int32_t i = n / 2 - 1; i >= 0; i--)
    heap_sift_down(heap, n, i, load, count);
  while (extra > 0) {
    int32_t top = heap[0];
    count[top]++;
    extra--;
    if (max_replicas > 0 && count[top] >= max_replicas)
      heap[0] = heap[--n]; /* full: leaves the heap */
    heap_sift_down(heap, n, 0, load, count);
  }
  free(heap);
  return 0;
}

/* Order of two items: heavier first, then lower index.  A total order, so
 * every correct sort gives the same permutation. */
static inline int before(const double *w, int32_t a, int32_t b) {
  return w[a] > w[b] || (w[a] == w[b] && a < b);
}

/* Insertion sort of order[0..n) under before(): for the few items (groups,
 * nodes) where a radix sort's tables cost more than they save. */
static void insertion_sort(const double *w, int32_t *order, int32_t n) {
  for (int32_t i = 1; i < n; i++) {
    int32_t x = order[i], j = i;
    while (j > 0 && before(w, x, order[j - 1])) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = x;
  }
}

/* Sort key of a weight: ascending keys are descending weights.  Weights are
 * finite and >= 0, whose IEEE-754 bit patterns order like the values once
 * -0.0 is folded into +0.0. */
static inline uint64_t desc_key(double v) {
  uint64_t u;
  if (v == 0.0)
    v = 0.0;
  memcpy(&u, &v, sizeof(u));
  return ~u;
}

/* Stable LSD radix sort, 8 bits per pass, of order[0..n) (the identity on
 * entry, so equal weights stay in index order: exactly before()'s order).
 * Passes whose byte is the same for every item are skipped.  scratch holds
 * 2n keys and n indices.  Branch-free, several times faster than a merge
 * sort on the few hundred replicas of a layer. */
static void radix_sort(const double *w, int32_t *order, int32_t n,
                       uint64_t *keys, int32_t *tmp) {
  uint32_t hist[8][256];
  memset(hist, 0, sizeof(hist));
  uint64_t *ka = keys, *kb = keys + n;
  for (int32_t i = 0; i < n; i++) {
    uint64_t k = desc_key(w[i]);
    ka[i] = k;
    for (int d = 0; d < 8; d++)
      hist[d][(k >> (8 * d)) & 0xff]++;
  }
  int32_t *src = order, *dst = tmp;
  for (int d = 0; d < 8; d++) {
    uint32_t *h = hist[d];
    if (h[(ka[0] >> (8 * d)) & 0xff] == (uint32_t)n)
      continue; /* every item has this byte: the pass changes nothing */
    uint32_t sum = 0;
    for (int b = 0; b < 256; b++) {
      uint32_t c = h[b];
      h[b] = sum;
      sum += c;
    }
    for (int32_t i = 0; i < n; i++) {
      uint32_t pos = h[(ka[i] >> (8 * d)) & 0xff]++;
      dst[pos] = src[i];
      kb[pos] = ka[i];
    }
    int32_t *t = src;
    src = dst;
    dst = t;
    uint64_t *tk = ka;
    ka = kb;
    kb = tk;
  }
  if (src != order)
    memcpy(order, src, sizeof(int32_t) * (size_t)n);
}

/* Below this many items the insertion sort wins. */
#define RADIX_MIN 48

void eplb__sort_desc(const double *w, int32_t n, int32_t *order) {
  for (int32_t i = 0; i < n; i++)
    order[i] = i;
  if (n < RADIX_MIN) {
    insertion_sort(w, order, n);
    return;
  }
  void *scratch = malloc((sizeof(uint64_t) * 2 + sizeof(int32_t)) * (size_t)n);
  if (scratch == NULL) {
    insertion_sort(w, order, n); /* out of memory: slow, but correct */
    return;
  }
  uint64_t *keys = scratch;
  radix_sort(w, order, n, keys, (int32_t *)(keys + 2 * (size_t)n));
  free(scratch);
}
