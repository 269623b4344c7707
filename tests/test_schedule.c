/* test_schedule.c - the transfer schedule: invariants on random old/new
 * maps (each rank receives each missing expert exactly once, the minimum;
 * unchanged slots kept; every copy's source holds the expert; the same
 * result every time), sender spreading, node preference, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "eplb/migrate.h"

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (uint32_t)((rng_state >> 33) % n);
}

/* A random valid placement: every expert once, the rest random, shuffled. */
static void random_map(eplb_placement_t *p, int32_t L, int32_t E, int32_t R,
                       int32_t P) {
  assert_int_equal(eplb_placement_init(p, L, E, R * P, R, NULL), 0);
  int32_t S = R * P;
  for (int32_t l = 0; l < L; l++) {
    int32_t *row = p->phy2log + (size_t)l * (size_t)S;
    for (int32_t s = 0; s < S; s++)
      row[s] = s < E ? s : (int32_t)rnd((uint32_t)E);
    for (int32_t s = S - 1; s > 0; s--) {
      int32_t j = (int32_t)rnd((uint32_t)s + 1), x = row[s];
      row[s] = row[j];
      row[j] = x;
    }
  }
}

/* 1 if rank r holds expert e in row (P slots per rank). */
static int holds(const int32_t *row, int32_t r, int32_t P, int32_t e) {
  for (int32_t j = 0; j < P; j++)
    if (row[r * P + j] == e)
      return 1;
  return 0;
}

/* The minimum receives: per layer and rank, new experts not held before. */
static int64_t min_receives(const eplb_placement_t *o, const eplb_placement_t *n,
                            int32_t P) {
  int64_t sum = 0;
  int32_t S = o->num_slots;
  for (int32_t l = 0; l < o->num_layers; l++)
    for (int32_t r = 0; r < o->num_gpus; r++)
      for (int32_t j = 0; j < P; j++) {
        const int32_t *nr = n->phy2log + (size_t)l * (size_t)S;
        int32_t e = nr[r * P + j];
        int first = 1;
        for (int32_t k = 0; k < j; k++)
          first &= nr[r * P + k] != e;
        sum += first && !holds(o->phy2log + (size_t)l * (size_t)S, r, P, e);
      }
  return sum;
}

/* Checks every invariant of s for old o and new n. */
static void check_invariants(const eplb_schedule_t *s, const eplb_placement_t *o,
                             const eplb_placement_t *n) {
  int32_t S = o->num_slots, P = s->slots_per_rank;
  assert_int_equal(s->num_xfers, min_receives(o, n, P));
  int64_t kept = 0, local = 0;
  for (int32_t l = 0; l < o->num_layers; l++) {
    const int32_t *orow = o->phy2log + (size_t)l * (size_t)S;
    const int32_t *nrow = n->phy2log + (size_t)l * (size_t)S;
    for (int64_t i = s->layer_start[l]; i < s->layer_start[l + 1]; i++) {
      const eplb_xfer_t *x = &s->xfers[i];
      assert_int_equal(x->layer, l);
      assert_int_not_equal(x->src_rank, x->dst_rank);
      assert_int_equal(orow[x->src_rank * P + x->src_slot], x->expert);
      assert_int_equal(nrow[x->dst_rank * P + x->dst_slot], x->expert);
      assert_false(holds(orow, x->dst_rank, P, x->expert));
      for (int64_t k = s->layer_start[l]; k < i; k++) /* at most once */
        assert_false(s->xfers[k].dst_rank == x->dst_rank && s->xfers[k].expert == x->expert);
    }
    for (int32_t g = 0; g < S; g++) {
      int8_t a = s->action[(size_t)l * (size_t)S + (size_t)g];
      int32_t src = s->source[(size_t)l * (size_t)S + (size_t)g], r = g / P;
      assert_int_equal(a == EPLB_SLOT_KEEP, orow[g] == nrow[g]);
      if (a == EPLB_SLOT_LOCAL)
        assert_int_equal(orow[r * P + src], nrow[g]);
      if (a == EPLB_SLOT_DUP) {
        assert_int_equal(nrow[r * P + src], nrow[g]);
        assert_int_equal(s->action[(size_t)l * (size_t)S + (size_t)(r * P + src)], EPLB_SLOT_RECV);
      }
      kept += a == EPLB_SLOT_KEEP;
      local += a == EPLB_SLOT_LOCAL || a == EPLB_SLOT_DUP;
    }
  }
  assert_int_equal(kept, s->kept);
  assert_int_equal(local, s->local_copies);
}

static void test_random_invariants(void **state) {
  (void)state;
  rng_state = 12345;
  for (int it = 0; it < 60; it++) {
    int32_t R = 1 + (int32_t)rnd(8), P = 1 + (int32_t)rnd(6), L = 1 + (int32_t)rnd(4);
    int32_t E = 1 + (int32_t)rnd((uint32_t)(R * P));
    int32_t nodes = (R % 2 == 0 && rnd(2)) ? 2 : 1;
    eplb_placement_t o, n;
    random_map(&o, L, E, R, P);
    random_map(&n, L, E, R, P);
    if (it % 5 == 0) /* partly unchanged */
      memcpy(n.phy2log, o.phy2log, sizeof(int32_t) * (size_t)(R * P));
    eplb_schedule_t s1, s2;
    eplb_error_t err;
    assert_int_equal(eplb_schedule_build(&o, &n, nodes, &s1, &err), 0);
    check_invariants(&s1, &o, &n);
    assert_int_equal(eplb_schedule_build(&o, &n, nodes, &s2, &err), 0);
    assert_int_equal(s1.num_xfers, s2.num_xfers);
    assert_memory_equal(s1.xfers, s2.xfers, sizeof(eplb_xfer_t) * (size_t)(s1.num_xfers ? s1.num_xfers : 0) + 0);
    assert_memory_equal(s1.action, s2.action, (size_t)(L * R * P));
    eplb_schedule_cleanup(&s1);
    eplb_schedule_cleanup(&s2);
    eplb_schedule_cleanup(&s2); /* idempotent */
    eplb_placement_cleanup(&o);
    eplb_placement_cleanup(&n);
  }
}

static void set_row(eplb_placement_t *p, const int32_t *v) {
  memcpy(p->phy2log, v, sizeof(int32_t) * (size_t)p->num_slots);
}

static void test_identity_moves_nothing(void **state) {
  (void)state;
  eplb_placement_t o;
  rng_state = 7;
  random_map(&o, 3, 10, 4, 4);
  eplb_schedule_t s;
  assert_int_equal(eplb_schedule_build(&o, &o, 1, &s, NULL), 0);
  assert_int_equal(s.num_xfers, 0);
  assert_int_equal(s.local_copies, 0);
  assert_int_equal(s.kept, 3 * 16);
  eplb_schedule_cleanup(&s);
  eplb_placement_cleanup(&o);
}

static void test_senders_spread(void **state) {
  (void)state;
  eplb_placement_t o, n;
  assert_int_equal(eplb_placement_init(&o, 1, 4, 8, 4, NULL), 0);
  assert_int_equal(eplb_placement_init(&n, 1, 4, 8, 4, NULL), 0);
  set_row(&o, (int32_t[]){0, 1, 0, 1, 2, 3, 2, 3});
  set_row(&n, (int32_t[]){2, 3, 2, 3, 0, 1, 0, 1});
  eplb_schedule_t s;
  assert_int_equal(eplb_schedule_build(&o, &n, 1, &s, NULL), 0);
  assert_int_equal(s.num_xfers, 8);
  int sends[4] = {0};
  for (int64_t i = 0; i < s.num_xfers; i++)
    sends[s.xfers[i].src_rank]++;
  for (int r = 0; r < 4; r++)
    assert_int_equal(sends[r], 2); /* two holders of each: load shared */
  eplb_schedule_cleanup(&s);
  /* a rank needing one expert in two slots receives it once */
  set_row(&n, (int32_t[]){2, 2, 0, 1, 2, 3, 0, 1});
  assert_int_equal(eplb_schedule_build(&o, &n, 1, &s, NULL), 0);
  int from0 = 0;
  for (int64_t i = 0; i < s.num_xfers; i++)
    from0 += s.xfers[i].dst_rank == 0;
  assert_int_equal(from0, 1);
  assert_int_equal(s.action[1], EPLB_SLOT_DUP);
  assert_int_equal(s.action[6], EPLB_SLOT_RECV);
  eplb_schedule_cleanup(&s);
  eplb_placement_cleanup(&o);
  eplb_placement_cleanup(&n);
}

static void test_same_node_preferred(void **state) {
  (void)state;
  eplb_placement_t o, n;
  assert_int_equal(eplb_placement_init(&o, 1, 4, 8, 4, NULL), 0);
  assert_int_equal(eplb_placement_init(&n, 1, 4, 8, 4, NULL), 0);
  set_row(&o, (int32_t[]){0, 1, 2, 3, 0, 1, 2, 3});
  set_row(&n, (int32_t[]){0, 1, 0, 3, 0, 1, 0, 3});
  eplb_schedule_t s;
  assert_int_equal(eplb_schedule_build(&o, &n, 2, &s, NULL), 0);
  assert_int_equal(s.num_xfers, 2);
  for (int64_t i = 0; i < s.num_xfers; i++) /* node = rank / 2 */
    assert_int_equal(s.xfers[i].src_rank / 2, s.xfers[i].dst_rank / 2);
  eplb_schedule_cleanup(&s);
  eplb_placement_cleanup(&o);
  eplb_placement_cleanup(&n);
}

static void test_bad_input(void **state) {
  (void)state;
  eplb_placement_t o, n, m;
  assert_int_equal(eplb_placement_init(&o, 1, 4, 8, 4, NULL), 0);
  assert_int_equal(eplb_placement_init(&n, 1, 5, 8, 4, NULL), 0);
  assert_int_equal(eplb_placement_init(&m, 2, 4, 8, 4, NULL), 0);
  set_row(&o, (int32_t[]){0, 1, 2, 3, 0, 1, 2, 3});
  set_row(&n, (int32_t[]){0, 1, 2, 3, 0, 1, 2, 4}); /* 4 is nowhere */
  eplb_schedule_t s;
  eplb_error_t err;
  assert_int_equal(eplb_schedule_build(&o, &n, 1, &s, &err), EPLB_EMAP);
  assert_non_null(strstr(err.msg, "expert 4"));
  assert_int_equal(eplb_schedule_build(&o, &m, 1, &s, &err), EPLB_ESHAPE);
  assert_int_equal(eplb_schedule_build(&o, &o, 3, &s, &err), EPLB_EARG);
  assert_null(s.xfers);
  eplb_placement_cleanup(&o);
  eplb_placement_cleanup(&n);
  eplb_placement_cleanup(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_invariants),
      cmocka_unit_test(test_identity_moves_nothing),
      cmocka_unit_test(test_senders_spread),
      cmocka_unit_test(test_same_node_preferred),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
