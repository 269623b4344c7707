/* test_rebalance.c - edges of the in-process rebalancer (eplb/rebalance.h)
 * that the example does not walk through:
 *   - cumulative counters: only what is new since the previous call counts,
 *     and a counter that went down (the trainer restarted) counts in full;
 *   - a round with nothing observed changes nothing;
 *   - a pause hook that fails on one rank cancels the change on every rank,
 *     names that rank, and a later round can still rebalance;
 *   - observe refuses counts of another shape;
 *   - a failure found before observe (eplb_rebalancer_observe_failed) fails
 *     every rank's next step;
 *   - history 2: the last two rounds are the decision's windows, and the
 *     rebalance balances each of them; a rank with another history is
 *     named at create. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#define MPI_CHECK_NAME "test_rebalance"
#include "mpi_check.h"

#include "eplb/eplb.h"
#include "eplb/rebalance.h"

#define LAYERS 3
#define EXPERTS 16
#define SLOTS 24
#define GPUS 4


typedef struct {
  int fail_on_rank, pauses, resumes;
} hooks_t;

static int pause_hook(void *ctx, const eplb_placement_t *next, eplb_error_t *err) {
  hooks_t *h = ctx;
  (void)next;
  h->pauses++;
  if (h->fail_on_rank == g_rank)
    return eplb_error_set(err, EPLB_EIO, "the worker could not stop");
  return 0;
}

static int resume_hook(void *ctx, const eplb_placement_t *now, eplb_error_t *err) {
  hooks_t *h = ctx;
  (void)now;
  (void)err;
  h->resumes++;
  return 0;
}

/* Skewed counts: expert `hot` of every layer gets `weight` times more. */
static void fill(eplb_stats_t *c, int hot, double weight, double scale) {
  for (int l = 0; l < LAYERS; l++)
    for (int e = 0; e < EXPERTS; e++)
      c->load[l * EXPERTS + e] = scale * (e == (hot + l) % EXPERTS ? weight : 10.0 + e % 3);
}

static eplb_rebalancer_t *make(hooks_t *h, double alpha) {
  eplb_rebalancer_opts_t o;
  eplb_rebalancer_opts_default(&o);
  o.online.plan.num_slots = SLOTS;
  o.online.plan.num_gpus = GPUS;
  o.online.ema_alpha = alpha;
  o.online.threshold = 0.05;
  o.pause = pause_hook;
  o.resume = resume_hook;
  o.hook_ctx = h;
  o.quiet = 1;
  eplb_rebalancer_t *r = NULL;
  eplb_error_t err = {0};
  int rc = eplb_rebalancer_create(MPI_COMM_WORLD, &o, NULL, LAYERS, EXPERTS, &r, &err);
  CHECK(rc == 0, "create: %s", err.msg);
  return r;
}

static void test_cumulative(void) {
  hooks_t h = {.fail_on_rank = -1};
  eplb_rebalancer_t *r = make(&h, 1.0);
  eplb_stats_t c = {0};
  eplb_stats_init(&c, LAYERS, EXPERTS, NULL);
  eplb_error_t err = {0};
  eplb_round_t x;
  fill(&c, 0, 200, 1);
  eplb_rebalancer_observe(r, &c, 1, &err);
  CHECK(eplb_rebalancer_step(r, &x, &err) == 0, "%s", err.msg);
  CHECK(x.had_traffic && x.rebalanced, "first cumulative round: %d %d",
        x.had_traffic, x.rebalanced);
  /* The same counters again: nothing new. */
  eplb_rebalancer_observe(r, &c, 1, &err);
  CHECK(eplb_rebalancer_step(r, &x, &err) == 0, "%s", err.msg);
  CHECK(!x.had_traffic && !x.rebalanced, "unchanged counters: %d %d",
        x.had_traffic, x.rebalanced);
  /* Nothing observed at all: nothing changes either. */
  CHECK(eplb_rebalancer_step(r, &x, &err) == 0, "%s", err.msg);
  CHECK(!x.had_traffic, "empty round saw traffic");
  /* The trainer restarts its counters with another hot expert: the new
   * values are the round (not negative deltas), and they rebalance. */
  fill(&c, 7, 200, 0.5);
  CHECK(eplb_rebalancer_observe(r, &c, 1, &err) == 0, "%s", err.msg);
  CHECK(eplb_rebalancer_step(r, &x, &err) == 0, "%s", err.msg);
  CHECK(x.had_traffic && x.rebalanced, "after a restart: %d %d", x.had_traffic,
        x.rebalanced);
  CHECK(eplb_rebalancer_generation(r) == 2, "generation %llu",
        (unsigned long long)eplb_rebalancer_generation(r));
  CHECK(h.pauses == 2 && h.resumes == 2, "%d pauses %d resumes", h.pauses,
        h.resumes);
  eplb_stats_cleanup(&c);
  eplb_rebalancer_destroy(r);
}

static void test_pause_fails(void) {
  hooks_t h = {.fail_on_rank = g_size - 1};
  eplb_rebalancer_t *r = make(&h, 1.0);
  eplb_stats_t c = {0};
  eplb_stats_init(&c, LAYERS, EXPERTS, NULL);
  eplb_error_t err = {0};
  eplb_round_t x;
  eplb_placement_t before = {0};
  eplb_placement_copy(&before, eplb_rebalancer_current(r), NULL);
  fill(&c, 3, 300, 1);
  eplb_rebalancer_observe(r, &c, 0, &err);
  int rc = eplb_rebalancer_step(r, &x, &err);
  char who[32];
  snprintf(who, sizeof(who), "rank %d: pause hook", g_size - 1);
  CHECK(rc == EPLB_EIO, "code %d: %s", rc, err.msg);
  CHECK(strstr(err.msg, who) != NULL, "'%s' not in '%s'", who, err.msg);
  CHECK(memcmp(before.phy2log, eplb_rebalancer_current(r)->phy2log,
               sizeof(int32_t) * LAYERS * SLOTS) == 0, "placement changed");
  CHECK(eplb_rebalancer_generation(r) == 0, "generation moved");
  /* The worker recovers: the next round rebalances. */
  h.fail_on_rank = -1;
  eplb_rebalancer_observe(r, &c, 0, &err);
  CHECK(eplb_rebalancer_step(r, &x, &err) == 0, "%s", err.msg);
  CHECK(x.rebalanced, "no rebalance after the hook recovered");
  eplb_placement_cleanup(&before);
  eplb_stats_cleanup(&c);
  eplb_rebalancer_destroy(r);
}

static void test_wrong_shape(void) {
  hooks_t h = {.fail_on_rank = -1};
  eplb_rebalancer_t *r = make(&h, 0.5);
  eplb_stats_t c = {0};
  eplb_stats_init(&c, LAYERS, EXPERTS / 2, NULL);
  eplb_error_t err = {0};
  CHECK(eplb_rebalancer_observe(r, &c, 0, &err) == EPLB_ESHAPE, "%s", err.msg);
  eplb_round_t x;
  CHECK(eplb_rebalancer_step(r, &x, &err) == EPLB_ESHAPE, "step: %s", err.msg);
  CHECK(strstr(err.msg, "8 experts") != NULL, "%s", err.msg);
  eplb_stats_cleanup(&c);
  eplb_rebalancer_destroy(r);
}

/* A failure the caller found before observe (the Python binding's type and
 * shape checks) fails every rank's next step, naming the rank; the step
 * after it is clean again. */
static void test_observe_failed(void) {
  hooks_t h = {.fail_on_rank = -1};
  eplb_rebalancer_t *r = make(&h, 1.0);
  eplb_error_t bad = {0}, err = {0};
  CHECK(eplb_rebalancer_observe_failed(r, NULL) == EPLB_EARG, "NULL accepted");
  CHECK(eplb_rebalancer_observe_failed(r, &bad) == EPLB_EARG, "code 0 accepted");
  if (g_rank == g_size - 1) {
    eplb_error_set(&bad, EPLB_ESHAPE, "counts: 3 dimensions, expected 2");
    CHECK(eplb_rebalancer_observe_failed(r, &bad) == 0, "refused");
    eplb_error_set(&bad, EPLB_ECOUNT, "a later failure");
    CHECK(eplb_rebalancer_observe_failed(r, &bad) == 0, "refused");
  }
  eplb_round_t x;
  int rc = eplb_rebalancer_step(r, &x, &err);
  char who[64];
  snprintf(who, sizeof(who), "rank %d: counts: 3 dimensions", g_size - 1);
  CHECK(rc == EPLB_ESHAPE, "code %d: %s", rc, err.msg);
  CHECK(strstr(err.msg, who) != NULL, "'%s' not in '%s'", who, err.msg);
  CHECK(strstr(err.msg, "later") == NULL, "the first failure is kept: %s", err.msg);
  CHECK(eplb_rebalancer_step(r, &x, &err) == 0, "next step: %s", err.msg);
  eplb_rebalancer_destroy(r);
}

/* A rank with another threshold would decide... nothing (rank 0 decides),
 * but one with shards or another slot count would take other collectives:
 * create compares the options and names the rank that differs. */
static void test_other_options(int history) {
  eplb_rebalancer_opts_t o;
  eplb_rebalancer_opts_default(&o);
  o.online.plan.num_slots = SLOTS;
  o.online.plan.num_gpus = GPUS;
  o.quiet = 1;
  if (g_rank == g_size - 1 && history)
    o.online.history = 3;
  else if (g_rank == g_size - 1)
    o.online.plan.num_slots = SLOTS + GPUS;
  eplb_rebalancer_t *r = NULL;
  eplb_error_t err = {0};
  int rc = eplb_rebalancer_create(MPI_COMM_WORLD, &o, NULL, LAYERS, EXPERTS, &r, &err);
  char who[64];
  snprintf(who, sizeof(who), "rank %d: its options differ", g_size - 1);
  if (g_size == 1) {
    CHECK(rc == 0, "%s", err.msg);
  } else {
    CHECK(rc == EPLB_EARG && r == NULL, "code %d: %s", rc, err.msg);
    CHECK(strstr(err.msg, who) != NULL, "'%s' not in '%s'", who, err.msg);
  }
  eplb_rebalancer_destroy(r);
}

/* history 2: round 1's traffic is hot on one expert, round 2's on
 * another; their mean hides what each round does.  The second step
 * decides on both windows and the placement it applies balances each one
 * better than the placement of round 1 did. */
static void test_history(void) {
  eplb_rebalancer_opts_t o;
  eplb_rebalancer_opts_default(&o);
  o.online.plan.num_slots = SLOTS;
  o.online.plan.num_gpus = GPUS;
  o.online.threshold = 0.05;
  o.online.history = 2;
  o.quiet = 1;
  eplb_rebalancer_t *r = NULL;
  eplb_error_t err = {0};
  int rc = eplb_rebalancer_create(MPI_COMM_WORLD, &o, NULL, LAYERS, EXPERTS, &r,
                                  &err);
  CHECK(rc == 0, "create: %s", err.msg);
  if (rc)
    return;
  eplb_stats_t c[2] = {{0}, {0}}, all[2] = {{0}, {0}};
  eplb_round_t x;
  eplb_placement_t first = {0};
  for (int k = 0; k < 2; k++) {
    eplb_stats_init(&c[k], LAYERS, EXPERTS, NULL);
    eplb_stats_init(&all[k], LAYERS, EXPERTS, NULL);
    fill(&c[k], 5 * k, 120, 1);
    for (int i = 0; i < LAYERS * EXPERTS; i++) /* every rank's, summed */
      all[k].load[i] = c[k].load[i] * g_size;
    CHECK(eplb_rebalancer_observe(r, &c[k], 0, &err) == 0, "%s", err.msg);
    CHECK(eplb_rebalancer_step(r, &x, &err) == 0, "step %d: %s", k, err.msg);
    CHECK(x.had_traffic && x.rebalanced, "round %d: %d %d", k, x.had_traffic,
          x.rebalanced);
    if (k == 0)
      eplb_placement_copy(&first, eplb_rebalancer_current(r), NULL);
  }
  /* Round 2's imbalance is the mean over both windows, under the
   * placement of round 1. */
  eplb_balance_t b[2], a[2];
  for (int k = 0; k < 2; k++) {
    eplb_balance(&all[k], &first, &b[k], NULL);
    eplb_balance(&all[k], eplb_rebalancer_current(r), &a[k], NULL);
  }
  CHECK(fabs(x.imbalance_before - (b[0].imbalance + b[1].imbalance) / 2) < 1e-9,
        "round 2 weighed %g, the windows' mean is %g", x.imbalance_before,
        (b[0].imbalance + b[1].imbalance) / 2);
  CHECK(a[1].imbalance < b[1].imbalance && a[0].imbalance < 0.05,
        "windows %g %g -> %g %g", b[0].imbalance, b[1].imbalance,
        a[0].imbalance, a[1].imbalance);
  for (int k = 0; k < 2; k++) {
    eplb_stats_cleanup(&c[k]);
    eplb_stats_cleanup(&all[k]);
  }
  eplb_placement_cleanup(&first);
  eplb_rebalancer_destroy(r);
}

int main(int argc, char *argv[]) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  test_cumulative();
  test_pause_fails();
  test_wrong_shape();
  test_observe_failed();
  test_other_options(0);
  test_other_options(1);
  test_history();
  int status = mpi_check_finish();
  MPI_Finalize();
  return status;
}
