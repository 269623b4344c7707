/* bench_sync.c - where eplb-sync's time goes, against bare collectives.
 *
 * Usage (under mpirun; bench/run_sync.sh runs it at 8 and 64 ranks):
 *   bench_sync --stats PATTERN --num-slots S --num-gpus G [--reps N]
 * Runs the whole engine (eplb_sync_run_files: read, agree, reduce, plan,
 * broadcast, verify; no output file, so write is the empty step) N times and
 * prints the median of each phase on rank 0, then - in the same run, on the
 * same communicator - a bare MPI_Allreduce of the same L x E doubles and a
 * bare MPI_Bcast of the same plan bytes, followed by a barrier so that
 * both timings run until every rank holds the plan (rank 0's MPI_Bcast
 * returns as soon as its sends are out; the engine's verify waits for every
 * rank).  The engine's collective overhead is (shape + reduce + distribute +
 * verify) / (bare allreduce + bare bcast + barrier).
 * Prints figures (OSU-style table); asserts nothing about time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "eplb/eplb.h"
#include "eplb/sync.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char *argv[]) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1, reps = 20;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *pattern = NULL;
  eplb_sync_opts_t o;
  eplb_sync_opts_default(&o);
  o.quiet = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--stats") == 0)
      pattern = argv[i + 1];
    else if (strcmp(argv[i], "--num-slots") == 0)
      o.plan.num_slots = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--num-gpus") == 0)
      o.plan.num_gpus = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--reps") == 0)
      reps = atoi(argv[i + 1]);
  }
  if (pattern == NULL || reps < 1 || reps > 10000) {
    if (rank == 0)
      fprintf(stderr, "usage: bench_sync --stats PATTERN --num-slots S "
                      "--num-gpus G [--reps 1..10000]\n");
    MPI_Finalize();
    return 2;
  }
  double *ph = calloc((size_t)reps * EPLB_NUM_PHASES, sizeof(double));
  double *bare_r = calloc((size_t)reps, sizeof(double));
  double *bare_b = calloc((size_t)reps, sizeof(double));
  int32_t L = 0, E = 0, S = 0;
  for (int k = 0; k < reps; k++) {
    eplb_sync_result_t res;
    eplb_error_t err = {0};
    const char *pats[1] = {pattern};
    if (eplb_sync_run_files(MPI_COMM_WORLD, pats, 1, EPLB_STATS_AUTO, &o, &res,
                            &err) != 0) {
      if (rank == 0)
        fprintf(stderr, "bench_sync: %s\n", err.msg);
      MPI_Finalize();
      return 1;
    }
    for (int p = 0; p < EPLB_NUM_PHASES; p++)
      ph[p * reps + k] = res.seconds[p];
    L = res.placement.num_layers;
    E = res.placement.num_experts;
    S = res.placement.num_slots;
    eplb_sync_result_cleanup(&res);
  }
  /* The bare collectives on the same bytes. */
  size_t nr = (size_t)L * (size_t)E, nb = (size_t)L * ((size_t)S + 1) * 4 + 64;
  double *buf = calloc(nr, sizeof(double));
  char *plan = calloc(nb, 1);
  for (int k = 0; k < reps; k++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)nr, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    double t1 = MPI_Wtime();
    MPI_Bcast(plan, (int)nb, MPI_BYTE, 0, MPI_COMM_WORLD);
    /* Until every rank holds the plan, as the engine's verify waits for:
     * rank 0's own MPI_Bcast returns once its sends are out. */
    MPI_Barrier(MPI_COMM_WORLD);
    double t2 = MPI_Wtime();
    bare_r[k] = t1 - t0;
    bare_b[k] = t2 - t1;
  }
  if (rank == 0) {
    double med[EPLB_NUM_PHASES];
    for (int p = 0; p < EPLB_NUM_PHASES; p++)
      med[p] = median(ph + p * reps, reps);
    double r = median(bare_r, reps), b = median(bare_b, reps);
    double coll = med[EPLB_PHASE_SHAPE] + med[EPLB_PHASE_REDUCE] +
                  med[EPLB_PHASE_DISTRIBUTE] + med[EPLB_PHASE_VERIFY];
    printf("# eplb-sync phases, %d ranks, %d layers x %d experts -> %d slots, "
           "median of %d runs\n", size, (int)L, (int)E, (int)S, reps);
    printf("# %-22s %12s\n", "phase", "time (ms)");
    for (int p = 0; p < EPLB_NUM_PHASES; p++)
      if (p != EPLB_PHASE_TRANSFER && p != EPLB_PHASE_COMMIT)
        printf("  %-22s %12.3f\n", eplb_sync_phase_name((eplb_sync_phase_t)p),
               1e3 * med[p]);
    printf("  %-22s %12.3f\n", "bare allreduce", 1e3 * r);
    printf("  %-22s %12.3f\n", "bare bcast+barrier", 1e3 * b);
    printf("# collective overhead: shape+reduce+distribute+verify %.3f ms vs "
           "bare allreduce+bcast+barrier %.3f ms = %.2fx\n",
           1e3 * coll, 1e3 * (r + b), coll / (r + b));
  }
  free(ph);
  free(bare_r);
  free(bare_b);
  free(buf);
  free(plan);
  MPI_Finalize();
  return 0;
}
