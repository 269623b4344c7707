/* online_example.c - a training worker that rebalances in-process
 * (docs/online.md shows it; CTest runs it under mpiexec).
 *
 * Every rank "trains": each step it routes tokens to experts (a skewed
 * distribution whose hot experts drift half-way through), feeds its counts
 * to the rebalancer, and every STEPS_PER_ROUND steps asks the ranks to
 * decide together.  The pause/resume hooks stand for stopping the forward
 * pass at a step boundary while experts move.
 *
 * What it checks (it is also the test of eplb/rebalance.h):
 *   - the first round rebalances, the rounds on steady traffic do not, and
 *     the drift triggers a rebalance again;
 *   - pause and resume run in pairs, on every rank, only around changes;
 *   - every rank holds the same placement after every round;
 *   - a rank whose observe failed makes every rank's step fail with that
 *     rank named, and the placement stays as it was. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "eplb/eplb.h"
#include "eplb/rebalance.h"

#define LAYERS 4
#define EXPERTS 32
#define SLOTS 40
#define GPUS 8
#define STEPS 60
#define STEPS_PER_ROUND 10

static int g_rank, g_failures;

#define CHECK(cond, ...)                                                    \
  do {                                                                      \
    if (!(cond)) {                                                          \
      g_failures++;                                                         \
      fprintf(stderr, "online_example: rank %d: line %d: %s: ", g_rank,     \
              __LINE__, #cond);                                             \
      fprintf(stderr, __VA_ARGS__);                                         \
      fprintf(stderr, "\n");                                                \
    }                                                                       \
  } while (0)

/* The consumer of the weights: counts pauses and resumes. */
typedef struct {
  int paused, pauses, resumes;
} worker_t;

static int on_pause(void *ctx, const eplb_placement_t *next, eplb_error_t *err) {
  worker_t *w = ctx;
  (void)next;
  (void)err;
  w->paused = 1; /* a real worker finishes its step and stops here */
  w->pauses++;
  return 0;
}

static int on_resume(void *ctx, const eplb_placement_t *now, eplb_error_t *err) {
  worker_t *w = ctx;
  (void)now;
  (void)err;
  w->paused = 0; /* ... and reloads its expert map here */
  w->resumes++;
  return 0;
}

/* The tokens this rank routed in one step: a few hot experts per layer,
 * which change after the drift. */
static void route_step(eplb_stats_t *c, int step) {
  int drift = step >= STEPS / 2;
  for (int l = 0; l < LAYERS; l++)
    for (int e = 0; e < EXPERTS; e++) {
      int hot = drift ? (e + l * 5 + 11) % EXPERTS < 3 : (e + l * 5) % EXPERTS < 3;
      c->load[l * EXPERTS + e] = hot ? 400 + g_rank : 20 + (e * 7 + g_rank) % 13;
    }
}

/* Same placement on every rank? */
static int same_everywhere(const eplb_placement_t *p) {
  size_t n = sizeof(int32_t) * (size_t)p->num_layers * (size_t)p->num_slots;
  int32_t *root = malloc(n);
  memcpy(root, p->phy2log, n);
  MPI_Bcast(root, (int)(n / sizeof(int32_t)), MPI_INT32_T, 0, MPI_COMM_WORLD);
  int same = memcmp(root, p->phy2log, n) == 0, all = 0;
  MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  free(root);
  return all;
}

int main(int argc, char *argv[]) {
  MPI_Init(&argc, &argv);
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  worker_t w = {0};
  eplb_rebalancer_opts_t o;
  eplb_rebalancer_opts_default(&o);
  o.online.plan.num_slots = SLOTS;
  o.online.plan.num_gpus = GPUS;
  o.online.ema_alpha = 1.0;   /* react to the last round only */
  o.online.threshold = 0.1;
  o.pause = on_pause;
  o.resume = on_resume;
  o.hook_ctx = &w;
  o.quiet = 1;

  eplb_error_t err = {0};
  eplb_rebalancer_t *rb = NULL;
  int rc = eplb_rebalancer_create(MPI_COMM_WORLD, &o, NULL, LAYERS, EXPERTS,
                                  &rb, &err);
  CHECK(rc == 0, "create: %s", err.msg);
  eplb_stats_t counts = {0};
  eplb_stats_init(&counts, LAYERS, EXPERTS, NULL);
  int rebalances = 0, rounds = 0, rebalanced_at[STEPS / STEPS_PER_ROUND] = {0};

  for (int step = 0; rc == 0 && step < STEPS; step++) {
    route_step(&counts, step);
    CHECK(!w.paused, "step %d ran while paused", step);
    rc = eplb_rebalancer_observe(rb, &counts, 0, &err);
    CHECK(rc == 0, "observe: %s", err.msg);
    if ((step + 1) % STEPS_PER_ROUND != 0)
      continue;
    eplb_round_t round;
    rc = eplb_rebalancer_step(rb, &round, &err); /* at a step boundary */
    CHECK(rc == 0, "step: %s", err.msg);
    if (rc)
      break;
    rebalanced_at[rounds++] = round.rebalanced;
    rebalances += round.rebalanced;
    CHECK(round.had_traffic, "round %d saw no traffic", rounds);
    CHECK(same_everywhere(eplb_rebalancer_current(rb)), "placements differ");
  }
  /* Rounds 1-6: steps 0-59, the drift at step 30 (round 4). */
  CHECK(rebalanced_at[0] == 1, "round 1 did not rebalance");
  CHECK(rebalanced_at[1] == 0 && rebalanced_at[2] == 0,
        "steady rounds rebalanced (%d, %d)", rebalanced_at[1], rebalanced_at[2]);
  CHECK(rebalanced_at[3] == 1, "the drift did not trigger a rebalance");
  CHECK(w.pauses == rebalances && w.resumes == rebalances,
        "%d pauses, %d resumes for %d rebalances", w.pauses, w.resumes,
        rebalances);
  CHECK(eplb_rebalancer_generation(rb) == (uint64_t)rebalances,
        "generation %llu", (unsigned long long)eplb_rebalancer_generation(rb));

  /* A bad observation on the last rank fails every rank's step, named. */
  eplb_placement_t before = {0};
  eplb_placement_copy(&before, eplb_rebalancer_current(rb), NULL);
  route_step(&counts, 0);
  if (g_rank == size - 1)
    counts.load[3] = -1;
  eplb_error_t local = {0};
  eplb_rebalancer_observe(rb, &counts, 0, &local);
  eplb_round_t round;
  rc = eplb_rebalancer_step(rb, &round, &err);
  char who[32];
  snprintf(who, sizeof(who), "rank %d:", size - 1);
  CHECK(rc == EPLB_ECOUNT, "code %d: %s", rc, err.msg);
  CHECK(strstr(err.msg, who) != NULL, "'%s' not in '%s'", who, err.msg);
  CHECK(memcmp(before.phy2log, eplb_rebalancer_current(rb)->phy2log,
               sizeof(int32_t) * LAYERS * SLOTS) == 0,
        "the placement changed after a failed step");

  int total = 0;
  MPI_Allreduce(&g_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (g_rank == 0)
    printf("online_example: %d ranks, %d rounds, %d rebalances, %d failed "
           "checks\n", size, rounds, rebalances, total);
  eplb_placement_cleanup(&before);
  eplb_stats_cleanup(&counts);
  eplb_rebalancer_destroy(rb);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
