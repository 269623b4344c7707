/* mpi_check.h - checks for multi-rank test programs.
 *
 * Not CMocka: a failed check on any rank must fail the run on every rank,
 * so each rank counts its failed checks (printing where and why) and
 * mpi_check_finish sums them over MPI_COMM_WORLD.  Define MPI_CHECK_NAME
 * (the program's name, for messages) before including. */
#ifndef EPLB_MPI_CHECK_H
#define EPLB_MPI_CHECK_H

#include <stdio.h>

#include <mpi.h>

static int g_rank, g_size, g_failures;

#define CHECK(cond, ...)                                                    \
  do {                                                                      \
    if (!(cond)) {                                                          \
      g_failures++;                                                         \
      fprintf(stderr, "%s: rank %d: %s:%d: check failed: %s: ",             \
              MPI_CHECK_NAME, g_rank, __FILE__, __LINE__, #cond);           \
      fprintf(stderr, __VA_ARGS__);                                         \
      fprintf(stderr, "\n");                                                \
    }                                                                       \
  } while (0)

/* Sums the failed checks of every rank; rank 0 prints the total.  Returns
 * the exit status for main (0 when no rank failed a check). */
static inline int mpi_check_finish(void) {
  int total = 0;
  MPI_Allreduce(&g_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (g_rank == 0)
    printf("%s: %d ranks, %d failed checks\n", MPI_CHECK_NAME, g_size, total);
  return total == 0 ? 0 : 1;
}

#endif /* EPLB_MPI_CHECK_H */
