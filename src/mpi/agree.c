/* agree.c - agreeing on success or failure across ranks (see agree.h).
 *
 * Two collectives: an allgather of every rank's code, and - only when some
 * rank failed - an allgatherv of the failing ranks' messages, so that rank 0
 * (and every other rank) can say who failed and why.  Both are bounded in
 * time (watchdog.h): a rank that never arrives ends the job. */
#include "mpi/agree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/watchdog.h"


/* Ranks that failed with the same message as rank r (from r on) into
 * buf as "3" or "ranks 3, 5, 9" or "all 4 ranks"; marks them done. */
static void same_ranks(const int *codes, const int *lens, const int *displs,
                       const char *all, int size, int r, char *done, char *buf,
                       size_t cap) {
  int n = 0;
  size_t used = 0;
  for (int q = r; q < size; q++) {
    if (codes[q] == 0 || done[q] || lens[q] != lens[r] ||
        memcmp(all + displs[q], all + displs[r], (size_t)lens[r]) != 0)
      continue;
    done[q] = 1;
    int w = snprintf(buf + used, cap - used, "%s%d", n ? ", " : "", q);
    if (w > 0 && used + (size_t)w + 8 < cap)
      used += (size_t)w;
    n++;
  }
  char list[200];
  snprintf(list, sizeof(list), "%.*s", (int)sizeof(list) - 1, buf);
  if (n == size && size > 1)
    snprintf(buf, cap, "all %d ranks", size);
  else
    snprintf(buf, cap, "%s %.190s", n > 1 ? "ranks" : "rank", list);
}

/* "rank 3: why; ranks 5, 6: why", ranks with the same message grouped,
 * truncated to one message of `cap` bytes. */
static void format_failures(const int *codes, const int *lens,
                            const int *displs, const char *all, int size,
                            char *out, size_t cap) {
  char *done = calloc((size_t)size, 1);
  size_t used = 0;
  int shown = 0, failed = 0, left = 0;
  for (int r = 0; r < size; r++)
    failed += codes[r] != 0;
  for (int r = 0; r < size && done; r++) {
    if (codes[r] == 0 || done[r])
      continue;
    char who[256], one[EPLB_ERROR_MSG_MAX];
    same_ranks(codes, lens, displs, all, size, r, done, who, sizeof(who));
    int n = snprintf(one, sizeof(one), "%s%s: %.*s", shown ? "; " : "", who,
                     lens[r], all + displs[r]);
    if (n < 0 || used + (size_t)n + 32 >= cap) {
      left++;
      continue;
    }
    memcpy(out + used, one, (size_t)n);
    used += (size_t)n;
    shown++;
  }
  if (left > 0 || done == NULL) {
    int n = snprintf(out + used, cap - used, " (and more: %d ranks failed)",
                     failed);
    if (n > 0)
      used += (size_t)n;
  }
  out[used < cap ? used : cap - 1] = '\0';
  free(done);
}

int eplb__agree(MPI_Comm comm, int local_rc, eplb_error_t *err) {
  int size = 0, rank = 0;
  int rc = eplb__mpi_check(MPI_Comm_size(comm, &size), "MPI_Comm_size", err);
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank", err);
  if (rc)
    return rc;
  /* Keep the local message: err is rewritten below. */
  char mine[EPLB_ERROR_MSG_MAX] = "";
  if (local_rc != 0)
    snprintf(mine, sizeof(mine), "%s",
             err && err->msg[0] ? err->msg : eplb_strerror(local_rc));

  int *codes = malloc(sizeof(int) * (size_t)size);
  int *lens = malloc(sizeof(int) * (size_t)size);
  int *displs = malloc(sizeof(int) * (size_t)size);
  char *all = NULL;
  if (!codes || !lens || !displs) {
    /* Cannot even agree: abort rather than let other ranks wait. */
    fprintf(stderr, "eplb: rank %d: out of memory while agreeing; aborting\n",
            rank);
    MPI_Abort(comm, 1);
    return EPLB_ENOMEM;
  }
  rc = eplb__allgather(&local_rc, 1, MPI_INT, codes, 1, MPI_INT, comm,
                       "the agreement (MPI_Allgather of every rank's status)",
                       err);
  if (rc)
    goto done;
  int first = -1;
  for (int r = 0; r < size; r++)
    if (codes[r] != 0 && first < 0)
      first = r;
  if (first < 0)
    goto done; /* everyone succeeded */

  int mylen = local_rc != 0 ? (int)strlen(mine) : 0;
  rc = eplb__allgather(&mylen, 1, MPI_INT, lens, 1, MPI_INT, comm,
                       "MPI_Allgather of error lengths", err);
  if (rc)
    goto done;
  long total = 0;
  for (int r = 0; r < size; r++) {
    displs[r] = (int)total;
    total += lens[r];
  }
  all = malloc((size_t)total + 1);
  if (all == NULL) {
    fprintf(stderr, "eplb: rank %d: out of memory while agreeing; aborting\n",
            rank);
    MPI_Abort(comm, 1);
    rc = EPLB_ENOMEM;
    goto done;
  }
  rc = eplb__allgatherv(mine, mylen, MPI_CHAR, all, lens, displs, MPI_CHAR,
                        comm, "MPI_Allgatherv of error messages", err);
  if (rc)
    goto done;

  rc = eplb_error_set(err, codes[first], "%s", "");
  format_failures(codes, lens, displs, all, size, err->msg, sizeof(err->msg));

done:
  free(codes);
  free(lens);
  free(displs);
  free(all);
  return rc;
}

/* Dup the communicator with MPI_ERRORS_RETURN so every MPI failure comes
 * back as a code the engine can agree on or report. */
int eplb__dup_comm(MPI_Comm comm, MPI_Comm *out, eplb_error_t *err) {
  MPI_Request r; /* non-blocking, so that the watchdog bounds it too */
  int rc = eplb__mpi_check(MPI_Comm_idup(comm, out, &r), "MPI_Comm_idup", err);
  if (rc == 0)
    rc = eplb__wait(comm, &r, "MPI_Comm_idup (the engine's communicator)",
                    err);
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN),
                         "MPI_Comm_set_errhandler", err);
  return rc;
}
