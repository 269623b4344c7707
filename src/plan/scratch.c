/* plan/scratch.c - what every step of the planner leans on: scratch
 * memory taken from one block per layer (the arena), the deterministic
 * descending sort, and the argmax.  Ties always break towards the lower
 * index, so any two runs, on any thread, give the same permutation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plan/internal.h"

int32_t eplb__argmax(const double *load, int32_t G) {
  int32_t best = 0;
  for (int32_t g = 1; g < G; g++)
    if (load[g] > load[best])
      best = g;
  return best;
}

/* Takes are rounded up to this, the alignment malloc gives (16 on the
 * 64-bit ABIs), and a spilled take sits that far into its block, behind
 * the chain pointer. */
#define ARENA_ALIGN 16

void eplb__arena_init(eplb__arena_t *a, void *buf, size_t cap) {
  a->buf = buf;
  a->cap = buf ? cap : 0;
  a->used = 0;
  a->spill = NULL;
}

void *eplb__arena_take(eplb__arena_t *a, size_t bytes) {
  size_t n = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
  if (n < bytes)
    return NULL; /* overflow */
    /* Under AddressSanitizer every take is a malloc of its own, so that an
     * overrun of one piece is caught and not hidden in the next. */
#if !defined(__SANITIZE_ADDRESS__)
  if (n <= a->cap - a->used) {
#else
  if (0) {
#endif
    void *p = a->buf + a->used;
    a->used += n;
    return p;
  }
  if (n > SIZE_MAX - ARENA_ALIGN)
    return NULL;
  void **blk = malloc(ARENA_ALIGN + n);
  if (blk == NULL)
    return NULL;
  blk[0] = a->spill;
  a->spill = blk;
  return (unsigned char *)blk + ARENA_ALIGN;
}

void eplb__arena_done(eplb__arena_t *a) {
  while (a->spill != NULL) {
    void **blk = a->spill;
    a->spill = blk[0];
    free(blk);
  }
}

/* Insertion sort of order[0..n) under eplb__before(): for the few items
 * (groups, nodes) where a radix sort's tables cost more than they save. */
static void insertion_sort(const double *w, int32_t *order, int32_t n) {
  for (int32_t i = 1; i < n; i++) {
    int32_t x = order[i], j = i;
    while (j > 0 && eplb__before(w, x, order[j - 1])) {
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
 * entry, so equal weights stay in index order: exactly eplb__before()'s order).
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

/* Largest bucket the bucket sort finishes by insertion; a fuller one
 * (keys bunched far from an outlier) hands the whole sort to the radix
 * sort, which gives the same permutation. */
#define BUCKET_MAX 48

/* Bucket sort of order[0..n) (the identity on entry) into eplb__before()'s
 * order, or 0 when a bucket is too full (order is then unchanged).  A
 * weight's bucket is its bit pattern's offset from the smallest, shifted
 * right until the range fits in nb >= n buckets (a power of two, from the
 * caller): a monotone map (heavier weights never land in a lighter
 * bucket), so placing items bucket by bucket, heaviest bucket first and in
 * index order inside (counting sort, stable), then insertion-sorting each
 * bucket under eplb__before() is exactly eplb__before()'s total order.
 * Bit patterns grow like the logarithm, so skewed expert loads spread over
 * the buckets: a few items each, a few passes over n instead of the radix
 * sort's eight.  keys: 2n; tmp: n + nb + 1. */
static int bucket_sort(const double *w, int32_t *order, int32_t n, int32_t nb,
                       uint64_t *keys, int32_t *tmp) {
  uint64_t lo = UINT64_MAX, hi = 0;
  for (int32_t i = 0; i < n; i++) {
    uint64_t k = ~desc_key(w[i]); /* ascending with the weight */
    keys[i] = k;
    lo = k < lo ? k : lo;
    hi = k > hi ? k : hi;
  }
  if (lo == hi)
    return 1; /* all equal: index order is the order */
  int shift = 0;
  while (((hi - lo) >> shift) >= (uint64_t)nb)
    shift++;
  int32_t *start = tmp + n; /* [nb + 1]: bucket b holds the b-th heaviest */
  memset(start, 0, sizeof(int32_t) * ((size_t)nb + 1));
  int32_t fullest = 0;
  for (int32_t i = 0; i < n; i++) {
    int32_t c = ++start[nb - 1 - (int32_t)((keys[i] - lo) >> shift) + 1];
    fullest = c > fullest ? c : fullest;
  }
  if (fullest > BUCKET_MAX)
    return 0;
  int32_t sum = 0; /* the running sum kept in a register */
  for (int32_t b = 1; b <= nb; b++) {
    sum += start[b];
    start[b] = sum;
  }
  uint64_t *tk = keys + n; /* tk[j]: the key of tmp[j] */
  for (int32_t i = 0; i < n; i++) {
    int32_t pos = start[nb - 1 - (int32_t)((keys[i] - lo) >> shift)]++;
    tmp[pos] = i;
    tk[pos] = keys[i];
  }
  /* Buckets in order, each in index order: one insertion sort of the
   * whole moves items only inside their bucket (the items of earlier
   * buckets come first already) and costs one compare per item besides,
   * instead of a pass over all nb (4n) buckets to find the full ones.  It
   * compares the keys beside the indices (equal keys are equal weights,
   * -0.0 folded; an item passes only strictly lighter ones, so equal
   * weights keep index order): eplb__before()'s order without a load
   * through an index at each step. */
  for (int32_t i = 1; i < n; i++) {
    uint64_t kx = tk[i];
    int32_t x = tmp[i], j = i;
    for (; j > 0 && tk[j - 1] < kx; j--) {
      tk[j] = tk[j - 1];
      tmp[j] = tmp[j - 1];
    }
    tk[j] = kx;
    tmp[j] = x;
  }
  memcpy(order, tmp, sizeof(int32_t) * (size_t)n);
  return 1;
}

/* Below this many items the insertion sort wins. */
#define RADIX_MIN 48

void eplb__sort_desc(const double *w, int32_t n, int32_t *order) {
  eplb__arena_t ar;
  eplb__arena_init(&ar, NULL, 0);
  eplb__sort_desc_a(w, n, order, &ar);
  eplb__arena_done(&ar);
}

void eplb__sort_desc_a(const double *w, int32_t n, int32_t *order,
                       eplb__arena_t *ar) {
  for (int32_t i = 0; i < n; i++)
    order[i] = i;
  if (n < RADIX_MIN) {
    insertion_sort(w, order, n);
    return;
  }
  /* About 4 buckets per item: fewer items share one than with n, so fewer
   * insertion sorts; 8 per item costs more in the prefix sum than it
   * saves. */
  int32_t nb = 1;
  while (nb < 4 * n)
    nb *= 2;
  /* keys: 2n (radix and bucket); indices: n + nb + 1 >= n. */
  size_t mark = ar->used;
  void *scratch =
      eplb__arena_take(ar, sizeof(uint64_t) * 2 * (size_t)n +
                               sizeof(int32_t) * ((size_t)n + (size_t)nb + 1));
  if (scratch == NULL) {
    insertion_sort(w, order, n); /* out of memory: slow, but correct */
    return;
  }
  uint64_t *keys = scratch;
  int32_t *tmp = (int32_t *)(keys + 2 * (size_t)n);
  if (!bucket_sort(w, order, n, nb, keys, tmp))
    radix_sort(w, order, n, keys, tmp);
  ar->used = mark;
}
