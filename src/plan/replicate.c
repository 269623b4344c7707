/* replicate.c - how many replicas each expert gets, and a deterministic sort.
 *
 * Replication is a max-heap over experts keyed by load per replica: each
 * redundant slot goes to the top expert, whose key then drops.  O(E + R log E)
 * for R = S - E redundant slots. */
#include <stdlib.h>

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
 * the sort below is deterministic whatever the algorithm. */
static inline int before(const double *w, int32_t a, int32_t b) {
  return w[a] > w[b] || (w[a] == w[b] && a < b);
}

/* Bottom-up merge sort of order[0..n) under before(); tmp has n entries.
 * Hand-written rather than qsort: the comparator inlines, which makes the
 * planner's sorts several times faster on the few hundred items per layer. */
static void merge_sort(const double *w, int32_t *order, int32_t *tmp,
                       int32_t n) {
  int32_t *src = order, *dst = tmp;
  for (int32_t width = 1; width < n; width *= 2) {
    for (int32_t lo = 0; lo < n; lo += 2 * width) {
      int32_t mid = lo + width < n ? lo + width : n;
      int32_t hi = lo + 2 * width < n ? lo + 2 * width : n;
      int32_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        dst[k++] = before(w, src[j], src[i]) ? src[j++] : src[i++];
      while (i < mid)
        dst[k++] = src[i++];
      while (j < hi)
        dst[k++] = src[j++];
    }
    int32_t *t = src;
    src = dst;
    dst = t;
  }
  if (src != order)
    for (int32_t i = 0; i < n; i++)
      order[i] = src[i];
}

void eplb__sort_desc(const double *w, int32_t n, int32_t *order) {
  for (int32_t i = 0; i < n; i++)
    order[i] = i;
  int32_t *tmp = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
  if (tmp != NULL) {
    merge_sort(w, order, tmp, n);
    free(tmp);
    return;
  }
  /* Out of memory: insertion sort needs none (slow, but correct). */
  for (int32_t i = 1; i < n; i++) {
    int32_t x = order[i], j = i;
    while (j > 0 && before(w, x, order[j - 1])) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = x;
  }
}
