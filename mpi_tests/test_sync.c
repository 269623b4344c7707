/* test_sync.c - the multi-rank engine through the library, at any rank
 * count (CTest runs it at 1, 2, 4, 8 and 64 ranks).
 *
 * Each rank's histogram is a deterministic function of (rank, layer,
 * expert), so every rank can compute the serial sum of all ranks itself
 * and check what the collectives produced:
 *   - the reduced sum equals the serial sum, exactly;
 *   - the agreed plan equals eplb_plan on the serial sum, on every rank;
 *   - re-planning from a current placement equals eplb_plan_from;
 *   - with an MTP layer, from a current placement that holds it too;
 *   - a rank that brings no counts, or counts of another shape, fails every
 *     rank with that rank named;
 *   - EPLB_FAULT=corrupt-plan names exactly the corrupted ranks;
 *   - scenarios (eplb_sync_run_scenarios): every scenario summed in one
 *     MPI_Allreduce (counted through the profiling interface), the plan
 *     and each scenario's metrics equal eplb_plan_scenarios' on the serial
 *     sums, on every rank; a rank with a bad scenario is named.
 * Not CMocka: a failed check on any rank must fail the run on every rank,
 * so checks are counted and summed at the end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#define MPI_CHECK_NAME "test_sync"
#include "mpi_check.h"

#include "eplb/eplb.h"
#include "eplb/sync.h"
#include "mpi/fault.h"
#include "sync/internal.h"

#define L 6
#define E 48
#define S 64
#define G 8
#define GPUS_STEP G /* another valid slot count */
#define K 3         /* scenarios */

/* Every allreduce of this program and of libeplb (linked in statically)
 * goes through here: how many, and the last one's count.  libeplb starts
 * its collectives non-blocking (the watchdog bounds their wait:
 * src/mpi/watchdog.c), so MPI_Iallreduce counts too. */
static int g_allreduces, g_allreduce_count;

int MPI_Allreduce(const void *sendbuf, void *recvbuf, int count,
                  MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  g_allreduces++;
  g_allreduce_count = count;
  return PMPI_Allreduce(sendbuf, recvbuf, count, type, op, comm);
}

int MPI_Iallreduce(const void *sendbuf, void *recvbuf, int count,
                   MPI_Datatype type, MPI_Op op, MPI_Comm comm,
                   MPI_Request *req) {
  g_allreduces++;
  g_allreduce_count = count;
  return PMPI_Iallreduce(sendbuf, recvbuf, count, type, op, comm, req);
}

/* Rank r's count for (l, e): skewed, different on every rank. */
static double count_of(int r, int l, int e) {
  unsigned h = (unsigned)(r * 7919 + l * 104729 + e * 1299709) * 2654435761u;
  double hot = (e * 13 + l * 5 + r) % E < 4 ? 40.0 : 1.0;
  return (double)(h % 1000u) * hot + (double)(r % 3);
}

static void fill_rank(eplb_stats_t *st, int r) {
  for (int l = 0; l < L; l++)
    for (int e = 0; e < E; e++)
      st->load[l * E + e] = count_of(r, l, e);
}

static void default_opts(eplb_sync_opts_t *o) {
  eplb_sync_opts_default(o);
  o->plan.num_slots = S;
  o->plan.num_gpus = G;
  o->quiet = 1;
}

/* The reduced sum against the serial sum. */
static void test_reduce(const eplb_stats_t *local, const eplb_stats_t *serial) {
  eplb_stats_t sum = {0};
  eplb_error_t err = {0};
  int32_t *dropped = NULL, nd = 0;
  eplb_stats_copy(&sum, local, NULL);
  int rc = eplb__reduce_sum(MPI_COMM_WORLD, &sum, 0, &dropped, &nd, &err);
  CHECK(rc == 0, "%s", err.msg);
  if (rc == 0)
    CHECK(memcmp(sum.load, serial->load, sizeof(double) * L * E) == 0,
          "reduced sum differs from the serial sum");
  eplb_stats_cleanup(&sum);
  free(dropped);
}

/* The agreed plan against eplb_plan / eplb_plan_from on the serial sum. */
static void test_plan(const eplb_stats_t *local, const eplb_stats_t *serial,
                      int from_current) {
  eplb_sync_opts_t o;
  eplb_placement_t expect = {0}, current = {0};
  eplb_error_t err = {0};
  default_opts(&o);
  o.generation = 41;
  if (from_current) {
    eplb_placement_init(&current, L, E, S, G, NULL);
    eplb_placement_contiguous(&current, NULL);
    o.current = &current;
  }
  int rc = from_current ? eplb_plan_from(serial, &current, &o.plan, &expect, &err)
                        : eplb_plan(serial, &o.plan, &expect, &err);
  CHECK(rc == 0, "serial plan: %s", err.msg);
  eplb_sync_result_t res;
  rc = eplb_sync_run(MPI_COMM_WORLD, local, &o, &res, &err);
  CHECK(rc == 0, "eplb_sync_run: %s", err.msg);
  if (rc == 0) {
    CHECK(res.generation == 42, "generation %llu", (unsigned long long)res.generation);
    CHECK(res.num_ranks == g_size, "num_ranks %d", (int)res.num_ranks);
    CHECK(res.placement.num_layers == L && res.placement.num_slots == S,
          "shape %d x %d", (int)res.placement.num_layers,
          (int)res.placement.num_slots);
    CHECK(memcmp(res.placement.phy2log, expect.phy2log, sizeof(int32_t) * L * S) == 0,
          "agreed plan differs from eplb_plan on the serial sum");
    CHECK(res.imbalance_after <= res.imbalance_before + 1e-12,
          "imbalance %g -> %g", res.imbalance_before, res.imbalance_after);
    /* Every rank holds the same checksum. */
    unsigned long long c = res.checksum, c0 = c;
    MPI_Bcast(&c0, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    CHECK(c == c0, "checksum %llx vs rank 0's %llx", c, c0);
  }
  eplb_sync_result_cleanup(&res);
  eplb_placement_cleanup(&expect);
  eplb_placement_cleanup(&current);
}

/* MTP layers: a current placement that holds one (as a consumer's map
 * does) is re-planned from its MoE layers, and the agreed plan carries
 * the appended layer on every rank, placed by the rule. */
static void test_mtp(const eplb_stats_t *local, const eplb_stats_t *serial) {
  eplb_sync_opts_t o;
  eplb_placement_t expect = {0}, current = {0}, moe = {0};
  eplb_error_t err = {0};
  default_opts(&o);
  o.mtp_layers = 1;
  o.mtp_from = EPLB_MTP_TRIVIAL;
  eplb_placement_init_contiguous(&moe, L, E, S, G, NULL);
  eplb_placement_copy(&current, &moe, NULL);
  int rc = eplb_placement_append_layers(&current, 1, EPLB_MTP_LAST, &err);
  CHECK(rc == 0 && current.num_layers == L + 1, "append: %s", err.msg);
  o.current = &current;
  rc = eplb_plan_from(serial, &moe, &o.plan, &expect, &err);
  CHECK(rc == 0, "serial plan: %s", err.msg);
  eplb_sync_result_t res;
  rc = eplb_sync_run(MPI_COMM_WORLD, local, &o, &res, &err);
  CHECK(rc == 0, "eplb_sync_run with an MTP layer: %s", err.msg);
  if (rc == 0) {
    CHECK(res.placement.num_layers == L + 1, "%d layers, want %d",
          (int)res.placement.num_layers, L + 1);
    CHECK(res.placement.layer_ids[L] == res.placement.layer_ids[L - 1] + 1,
          "MTP layer id %d", (int)res.placement.layer_ids[L]);
    CHECK(memcmp(res.placement.phy2log, expect.phy2log,
                 sizeof(int32_t) * L * S) == 0,
          "the MoE layers differ from eplb_plan_from's");
    /* trivial: the contiguous placement */
    CHECK(memcmp(res.placement.phy2log + (size_t)L * S, moe.phy2log,
                 sizeof(int32_t) * S) == 0,
          "the MTP layer is not the contiguous placement");
  }
  eplb_sync_result_cleanup(&res);
  /* Out of range: every rank fails the same way. */
  o.mtp_layers = EPLB_MAX_MTP_LAYERS + 1;
  rc = eplb_sync_run(MPI_COMM_WORLD, local, &o, &res, &err);
  CHECK(rc == EPLB_EARG && strstr(err.msg, "mtp_layers") != NULL,
        "mtp_layers out of range: rc %d, %s", rc, err.msg);
  eplb_sync_result_cleanup(&res);
  eplb_placement_cleanup(&expect);
  eplb_placement_cleanup(&current);
  eplb_placement_cleanup(&moe);
}

/* The last rank brings nothing (or another shape): every rank fails with
 * that rank named and the same code. */
static void test_bad_rank(const eplb_stats_t *local, int wrong_shape) {
  int bad = g_size - 1;
  eplb_stats_t other = {0};
  eplb_stats_init(&other, L, E / 2, NULL);
  const eplb_stats_t *mine = local;
  if (g_rank == bad)
    mine = wrong_shape ? &other : NULL;
  eplb_sync_opts_t o;
  default_opts(&o);
  o.stats_name = wrong_shape ? "shape-test" : "null-test";
  eplb_sync_result_t res;
  eplb_error_t err = {0};
  int rc = eplb_sync_run(MPI_COMM_WORLD, mine, &o, &res, &err);
  char who[64];
  snprintf(who, sizeof(who), "rank %d:", bad);
  int expect = wrong_shape ? EPLB_ESHAPE : EPLB_EARG;
  if (g_size == 1 && wrong_shape) {
    CHECK(rc == 0, "a single rank has nothing to disagree with: %s", err.msg);
  } else {
    CHECK(rc == expect, "code %d, want %d (%s)", rc, expect, err.msg);
    CHECK(strstr(err.msg, who) != NULL, "'%s' not in '%s'", who, err.msg);
    CHECK(res.placement.phy2log == NULL, "result not empty on failure");
  }
  eplb_sync_result_cleanup(&res);
  eplb_stats_cleanup(&other);
}

/* The last rank is called with other options (slots, or a summary the
 * others do not write): before, it took another path through the
 * collectives; now every rank fails at the first one, naming it. */
static void test_other_options(const eplb_stats_t *local, int which) {
  eplb_sync_opts_t o;
  default_opts(&o);
  if (g_rank == g_size - 1) {
    if (which == 0)
      o.plan.num_slots = S + GPUS_STEP;
    else
      o.summary = "/nonexistent-dir/summary.json";
  }
  eplb_sync_result_t res;
  eplb_error_t err = {0};
  int rc = eplb_sync_run(MPI_COMM_WORLD, local, &o, &res, &err);
  char who[64];
  snprintf(who, sizeof(who), "rank %d: its options differ", g_size - 1);
  if (g_size == 1 && which == 0) {
    CHECK(rc == 0, "one rank has no one to differ from: %s", err.msg);
  } else if (g_size == 1) {
    CHECK(rc == EPLB_EIO, "summary in a missing directory: %d %s", rc, err.msg);
  } else {
    CHECK(rc == EPLB_EARG, "code %d (%s)", rc, err.msg);
    CHECK(strstr(err.msg, who) != NULL, "'%s' not in '%s'", who, err.msg);
  }
  eplb_sync_result_cleanup(&res);
}

/* EPLB_FAULT=corrupt-plan:<ranks>: exactly those ranks are named. */
static void test_divergence(const eplb_stats_t *local) {
  char fault[64], names[64];
  if (g_size == 1) {
    snprintf(fault, sizeof(fault), "corrupt-plan:0");
    snprintf(names, sizeof(names), "diverged on ranks 0 (");
  } else if (g_size < 4) {
    snprintf(fault, sizeof(fault), "corrupt-plan:1");
    snprintf(names, sizeof(names), "diverged on ranks 1 (");
  } else {
    snprintf(fault, sizeof(fault), "corrupt-plan:1,%d", g_size - 1);
    snprintf(names, sizeof(names), "diverged on ranks 1, %d (", g_size - 1);
  }
  setenv("EPLB_FAULT", fault, 1);
  eplb__fault_reset();
  eplb_sync_opts_t o;
  default_opts(&o);
  eplb_sync_result_t res;
  eplb_error_t err = {0};
  int rc = eplb_sync_run(MPI_COMM_WORLD, local, &o, &res, &err);
  CHECK(rc == EPLB_EDIVERGED, "code %d (%s)", rc, err.msg);
  CHECK(strstr(err.msg, names) != NULL, "'%s' not in '%s'", names, err.msg);
  eplb_sync_result_cleanup(&res);
  unsetenv("EPLB_FAULT");
  eplb__fault_reset();
}

/* ---- scenarios ------------------------------------------------------ */

/* Rank r's counts of scenario k: another hot spot per scenario. */
static void fill_scenario(eplb_stats_t *st, int r, int k) {
  for (int l = 0; l < L; l++)
    for (int e = 0; e < E; e++)
      st->load[l * E + e] = count_of(r + 1000 * k, (l + k) % L, e);
}

/* The same rank r's scenarios and their serial sums over every rank. */
static void make_scenarios(eplb_stats_t *mine, eplb_stats_t *serial) {
  eplb_stats_t one = {0};
  eplb_stats_init(&one, L, E, NULL);
  for (int k = 0; k < K; k++) {
    eplb_stats_init(&mine[k], L, E, NULL);
    eplb_stats_init(&serial[k], L, E, NULL);
    fill_scenario(&mine[k], g_rank, k);
    for (int r = 0; r < g_size; r++) {
      fill_scenario(&one, r, k);
      eplb_stats_add(&serial[k], &one, "serial", "rank", NULL);
    }
  }
  eplb_stats_cleanup(&one);
}

/* Every rank holds rank 0's value of x. */
static int same_everywhere(double x) {
  double x0 = x;
  PMPI_Bcast(&x0, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  return x0 == x;
}

static void check_scenario_result(const eplb_sync_result_t *res,
                                  const eplb_stats_t *serial, const double *w,
                                  const eplb_placement_t *expect,
                                  const eplb_placement_t *before) {
  CHECK(memcmp(res->placement.phy2log, expect->phy2log,
               sizeof(int32_t) * L * S) == 0,
        "agreed plan differs from eplb_plan_scenarios on the serial sums");
  CHECK(res->num_scenarios == K, "num_scenarios %d", (int)res->num_scenarios);
  double wsum = 0, mb = 0, ma = 0;
  for (int k = 0; k < K && res->num_scenarios == K; k++) {
    eplb_balance_t b0, b1;
    eplb_balance(&serial[k], before, &b0, NULL);
    eplb_balance(&serial[k], expect, &b1, NULL);
    CHECK(res->scenario_before[k] == b0.imbalance,
          "scenario %d before %g, "
          "want %g",
          k, res->scenario_before[k], b0.imbalance);
    CHECK(res->scenario_after[k] == b1.imbalance,
          "scenario %d after %g, "
          "want %g",
          k, res->scenario_after[k], b1.imbalance);
    CHECK(res->scenario_weights[k] == w[k], "weight %g",
          res->scenario_weights[k]);
    CHECK(same_everywhere(res->scenario_after[k]),
          "scenario %d after differs "
          "between ranks",
          k);
    wsum += w[k];
    mb += w[k] * b0.imbalance;
    ma += w[k] * b1.imbalance;
  }
  CHECK(fabs(res->scenario_mean_before - mb / wsum) < 1e-12 &&
            fabs(res->scenario_mean_after - ma / wsum) < 1e-12,
        "weighted means %g %g, want %g %g", res->scenario_mean_before,
        res->scenario_mean_after, mb / wsum, ma / wsum);
  CHECK(res->num_scenarios < 2 || strcmp(res->scenario_names[1], "decode") == 0,
        "name '%s'", res->num_scenarios ? res->scenario_names[1] : "");
}

/* The agreed scenario plan against eplb_plan_scenarios(_from) on the
 * serial sums, in one allreduce of K x L x E counts. */
static void test_scenarios(int from_current) {
  eplb_stats_t mine[K], serial[K];
  make_scenarios(mine, serial);
  double w[K] = {1, 2, 0.5};
  const char *names[K] = {"prefill", "decode", "mixed"};
  eplb_scenarios_t local = {K, mine, w}, all = {K, serial, w};
  eplb_sync_opts_t o;
  default_opts(&o);
  eplb_placement_t expect = {0}, current = {0};
  eplb_placement_init(&current, L, E, S, G, NULL);
  eplb_placement_contiguous(&current, NULL);
  if (from_current)
    o.current = &current;
  eplb_error_t err = {0};
  int rc = from_current ? eplb_plan_scenarios_from(&all, &current, &o.plan,
                                                   &expect, &err)
                        : eplb_plan_scenarios(&all, &o.plan, &expect, &err);
  CHECK(rc == 0, "serial plan: %s", err.msg);
  eplb_sync_result_t res;
  g_allreduces = 0;
  rc = eplb_sync_run_scenarios(MPI_COMM_WORLD, &local, names, &o, &res, &err);
  CHECK(rc == 0, "eplb_sync_run_scenarios: %s", err.msg);
  CHECK(g_allreduces == 1 && g_allreduce_count == K * L * E,
        "%d allreduces (last of %d), want one of %d", g_allreduces,
        g_allreduce_count, K * L * E);
  if (rc == 0)
    check_scenario_result(&res, serial, w, &expect, &current);
  eplb_sync_result_cleanup(&res);
  eplb_placement_cleanup(&expect);
  eplb_placement_cleanup(&current);
  for (int k = 0; k < K; k++) {
    eplb_stats_cleanup(&mine[k]);
    eplb_stats_cleanup(&serial[k]);
  }
}

/* The last rank's scenario 2 is of another shape (or it brings none):
 * every rank fails, naming it. */
static void test_bad_scenario(int none) {
  eplb_stats_t mine[K], serial[K];
  make_scenarios(mine, serial);
  int bad = g_size - 1;
  if (g_rank == bad) {
    eplb_stats_cleanup(&mine[2]);
    eplb_stats_init(&mine[2], L - 1, E, NULL);
  }
  eplb_scenarios_t local = {K, mine, NULL};
  eplb_sync_opts_t o;
  default_opts(&o);
  eplb_sync_result_t res;
  eplb_error_t err = {0};
  int rc = eplb_sync_run_scenarios(MPI_COMM_WORLD,
                                   none && g_rank == bad ? NULL : &local, NULL,
                                   &o, &res, &err);
  char who[96];
  snprintf(who, sizeof(who),
           none ? "rank %d: 0 scenarios"
                : "rank %d: scenario 2 (scenario 2) has 5",
           bad);
  CHECK(rc == (none ? EPLB_EARG : EPLB_ESHAPE), "code %d (%s)", rc, err.msg);
  CHECK(strstr(err.msg, who) != NULL, "'%s' not in '%s'", who, err.msg);
  CHECK(res.placement.phy2log == NULL && res.num_scenarios == 0,
        "result not empty on failure");
  eplb_sync_result_cleanup(&res);
  for (int k = 0; k < K; k++) {
    eplb_stats_cleanup(&mine[k]);
    eplb_stats_cleanup(&serial[k]);
  }
}

int main(int argc, char *argv[]) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  eplb_stats_t local = {0}, serial = {0}, one = {0};
  eplb_stats_init(&local, L, E, NULL);
  eplb_stats_init(&serial, L, E, NULL);
  eplb_stats_init(&one, L, E, NULL);
  fill_rank(&local, g_rank);
  for (int r = 0; r < g_size; r++) {
    fill_rank(&one, r);
    eplb_stats_add(&serial, &one, "serial", "rank", NULL);
  }
  test_reduce(&local, &serial);
  test_plan(&local, &serial, 0);
  test_plan(&local, &serial, 1);
  test_mtp(&local, &serial);
  test_bad_rank(&local, 0);
  test_bad_rank(&local, 1);
  test_other_options(&local, 0);
  test_other_options(&local, 1);
  test_divergence(&local);
  test_scenarios(0);
  test_scenarios(1);
  test_bad_scenario(0);
  test_bad_scenario(1);

  int status = mpi_check_finish();
  eplb_stats_cleanup(&local);
  eplb_stats_cleanup(&serial);
  eplb_stats_cleanup(&one);
  MPI_Finalize();
  return status;
}
