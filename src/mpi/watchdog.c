/* watchdog.c - time-bounded collectives and the census after a timeout
 * (see watchdog.h).
 *
 * A waiting rank polls its request; with more ranks than cores a rank
 * that spins takes the core from the peer it waits for, so after a few
 * idle polls it yields, then sleeps 20-200 us.  Each poll also answers
 * the census questions of ranks that already timed out, so that those
 * can tell a rank that waits elsewhere from one that does not answer at
 * all (hung in computation, crashed, far slower). */
#include "mpi/watchdog.h"

#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#define GRACE_S 1.5 /* how long a census waits for answers */

typedef struct {
  int64_t seq;     /* the asker's wait number (answers to old ones: stale) */
  char phase[24];  /* where the answering rank waits */
  char what[104];  /* on what */
} census_t;

static int timeout_s = EPLB_WATCH_DEFAULT_TIMEOUT_S;
static const char *phase = "startup";
static const char *what_now = "";
static char *abort_path, *abort_hint;
static int64_t seq;

int eplb__mpi_check(int mpi_rc, const char *what, eplb_error_t *err) {
  if (mpi_rc == MPI_SUCCESS)
    return 0;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(mpi_rc, msg, &len) != MPI_SUCCESS)
    snprintf(msg, sizeof(msg), "MPI error %d", mpi_rc);
  return eplb_error_set(err, EPLB_EMPI, "%s: %s", what, msg);
}

int eplb__watch_timeout(int t) {
  int old = timeout_s;
  timeout_s = t > 0 ? t : EPLB_WATCH_DEFAULT_TIMEOUT_S;
  return old;
}

const char *eplb__watch_phase(const char *p) {
  const char *old = phase;
  phase = p ? p : "startup";
  return old;
}

void eplb__watch_on_abort(const char *path, const char *hint) {
  free(abort_path);
  free(abort_hint);
  abort_path = path ? strdup(path) : NULL;
  abort_hint = hint ? strdup(hint) : NULL;
}

int eplb__watch_tag_limit(MPI_Comm comm) {
  void *v = NULL;
  int flag = 0;
  MPI_Comm_get_attr(comm, MPI_TAG_UB, &v, &flag);
  return flag && v ? *(int *)v - 1 : 32766;
}

/* Answers every census question pending on comm: where this rank waits. */
static void answer(MPI_Comm comm) {
  int tag = eplb__watch_tag_limit(comm);
  for (;;) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, tag + 1, comm, &flag, &st) != MPI_SUCCESS ||
        !flag)
      return;
    int64_t asked = 0;
    MPI_Recv(&asked, 1, MPI_INT64_T, st.MPI_SOURCE, tag + 1, comm,
             MPI_STATUS_IGNORE);
    census_t c;
    memset(&c, 0, sizeof(c));
    c.seq = asked;
    snprintf(c.phase, sizeof(c.phase), "%s", phase);
    snprintf(c.what, sizeof(c.what), "%s", what_now);
    MPI_Request r;
    if (MPI_Isend(&c, (int)sizeof(c), MPI_BYTE, st.MPI_SOURCE, tag, comm, &r) ==
        MPI_SUCCESS)
      MPI_Request_free(&r); /* tiny: sent eagerly; the buffer is copied */
  }
}

void eplb__watch_poll(MPI_Comm comm, const char *what) {
  what_now = what;
  answer(comm);
}

/* Sleeps a little more the longer nothing happens. */
static void backoff(int *idle) {
  if (++*idle > 32)
    nanosleep(&(struct timespec){0, *idle > 1024 ? 200000 : 20000}, NULL);
  else if (*idle > 4)
    sched_yield();
}

/* Appends rank r to a list "1, 5, 9" (at most 16 shown). */
static void add_rank(char *buf, size_t cap, int *n, int r) {
  size_t u = strlen(buf);
  if (*n < 16 && u + 16 < cap)
    snprintf(buf + u, cap - u, "%s%d", *n ? ", " : "", r);
  else if (*n == 16 && u + 8 < cap)
    snprintf(buf + u, cap - u, ", ...");
  (*n)++;
}

/* Asks every other rank where it waits, for GRACE_S, and says who did
 * not answer and who waits elsewhere. */
static void census(MPI_Comm comm, int me, int size, char *out, size_t cap) {
  int tag = eplb__watch_tag_limit(comm);
  char *seen = calloc((size_t)size, 1);
  census_t *got = calloc((size_t)size, sizeof(census_t));
  int64_t ask = seq;
  for (int r = 0; r < size && seen && got; r++) {
    MPI_Request q;
    if (r != me && MPI_Isend(&ask, 1, MPI_INT64_T, r, tag + 1, comm, &q) ==
                       MPI_SUCCESS)
      MPI_Request_free(&q);
  }
  double end = MPI_Wtime() + GRACE_S;
  int left = size - 1, idle = 0;
  while (seen && got && left > 0 && MPI_Wtime() < end) {
    answer(comm);
    int flag = 0;
    MPI_Status st;
    census_t c;
    if (MPI_Iprobe(MPI_ANY_SOURCE, tag, comm, &flag, &st) != MPI_SUCCESS)
      break;
    if (!flag) {
      backoff(&idle);
      continue;
    }
    MPI_Recv(&c, (int)sizeof(c), MPI_BYTE, st.MPI_SOURCE, tag, comm,
             MPI_STATUS_IGNORE);
    if (c.seq != ask || seen[st.MPI_SOURCE])
      continue;
    seen[st.MPI_SOURCE] = 1;
    got[st.MPI_SOURCE] = c;
    left--;
  }
  char silent[256] = "", here[256] = "", elsewhere[512] = "";
  int ns = 0, nh = 0, ne = 0;
  for (int r = 0; r < size && seen && got; r++) {
    if (r == me)
      continue;
    got[r].phase[sizeof(got[r].phase) - 1] = '\0';
    got[r].what[sizeof(got[r].what) - 1] = '\0';
    if (!seen[r])
      add_rank(silent, sizeof(silent), &ns, r);
    else if (strcmp(got[r].phase, phase) == 0 &&
             strcmp(got[r].what, what_now) == 0)
      add_rank(here, sizeof(here), &nh, r);
    else if (ne < 4) {
      size_t u = strlen(elsewhere);
      snprintf(elsewhere + u, sizeof(elsewhere) - u, "; rank %d waits in %s (%s)",
               r, got[r].phase, got[r].what);
      ne++;
    }
  }
  snprintf(out, cap, "%s%s%s%s%s%s%s", ns ? (ns > 1 ? "ranks " : "rank ") : "",
           silent,
           ns ? " did not answer (hung, crashed or far slower)"
              : "every rank answered",
           nh ? (nh > 1 ? "; also waiting here: ranks "
                        : "; also waiting here: rank ")
              : "",
           here, elsewhere,
           seen && got ? "" : " (out of memory for the census)");
  free(seen);
  free(got);
}

/* The timeout: one line, then MPI_Abort (the peers cannot be told in an
 * orderly way: they may never answer). */
static _Noreturn void timed_out(MPI_Comm comm, const char *what) {
  int me = 0, size = 1;
  MPI_Comm_rank(comm, &me);
  MPI_Comm_size(comm, &size);
  char who[1200];
  census(comm, me, size, who, sizeof(who));
  if (abort_path)
    unlink(abort_path);
  fprintf(stderr,
          "eplb: rank %d: error: %s: %s did not complete within %d s: %s; "
          "aborting the job (MPI_Abort); %s (raise --timeout / timeout_s if "
          "a phase legitimately takes longer)\n",
          me, phase, what, timeout_s, who,
          abort_hint ? abort_hint
                     : "nothing eplb writes is left half-written: the "
                       "shards are untouched or recoverable");
  fflush(stderr);
  MPI_Abort(comm, 1);
  _exit(1);
}

int eplb__wait(MPI_Comm comm, MPI_Request *req, const char *what,
               eplb_error_t *err) {
  double deadline = MPI_Wtime() + timeout_s;
  int idle = 0;
  seq++;
  what_now = what;
  for (;;) {
    int done = 0;
    int rc = eplb__mpi_check(MPI_Test(req, &done, MPI_STATUS_IGNORE), what,
                             err);
    if (rc || done) {
      what_now = "";
      return rc;
    }
    answer(comm);
    if (MPI_Wtime() > deadline)
      timed_out(comm, what);
    backoff(&idle);
  }
}

int eplb__allgather(const void *sbuf, int scount, MPI_Datatype stype,
                    void *rbuf, int rcount, MPI_Datatype rtype, MPI_Comm comm,
                    const char *what, eplb_error_t *err) {
  MPI_Request r;
  int rc = eplb__mpi_check(
      MPI_Iallgather(sbuf, scount, stype, rbuf, rcount, rtype, comm, &r), what,
      err);
  return rc ? rc : eplb__wait(comm, &r, what, err);
}

int eplb__allgatherv(const void *sbuf, int scount, MPI_Datatype stype,
                     void *rbuf, const int *rcounts, const int *displs,
                     MPI_Datatype rtype, MPI_Comm comm, const char *what,
                     eplb_error_t *err) {
  MPI_Request r;
  int rc = eplb__mpi_check(MPI_Iallgatherv(sbuf, scount, stype, rbuf, rcounts,
                                           displs, rtype, comm, &r),
                           what, err);
  return rc ? rc : eplb__wait(comm, &r, what, err);
}

int eplb__allreduce(const void *sbuf, void *rbuf, int count, MPI_Datatype type,
                    MPI_Op op, MPI_Comm comm, const char *what,
                    eplb_error_t *err) {
  MPI_Request r;
  int rc = eplb__mpi_check(
      MPI_Iallreduce(sbuf, rbuf, count, type, op, comm, &r), what, err);
  return rc ? rc : eplb__wait(comm, &r, what, err);
}

int eplb__bcast(void *buf, int count, MPI_Datatype type, int root,
                MPI_Comm comm, const char *what, eplb_error_t *err) {
  MPI_Request r;
  int rc = eplb__mpi_check(MPI_Ibcast(buf, count, type, root, comm, &r), what,
                           err);
  return rc ? rc : eplb__wait(comm, &r, what, err);
}

int eplb__barrier(MPI_Comm comm, const char *what, eplb_error_t *err) {
  MPI_Request r;
  int rc = eplb__mpi_check(MPI_Ibarrier(comm, &r), what, err);
  return rc ? rc : eplb__wait(comm, &r, what, err);
}
