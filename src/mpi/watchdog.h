/* mpi/watchdog.h - every collective of the engine bounded in time.
 *
 * The agreement (agree.h) keeps a rank that FAILED from hanging the
 * others; it cannot help with a rank that HANGS (a stuck file system, a
 * planner that never returns, a rank stopped by a debugger): its peers
 * wait in the next collective forever.  So every collective of the engine
 * is started non-blocking and polled against a deadline, `timeout_s`
 * (--timeout); when it passes, the waiting rank asks the others where
 * they are (a census: tagged point-to-point messages that every waiting
 * rank answers from its poll loop, so it costs nothing until a timeout),
 * prints one line naming its phase, the ranks that did not answer and
 * the ranks waiting elsewhere, and calls MPI_Abort, which ends the whole
 * job.  Nothing is agreed after a timeout: the peers cannot be told in
 * an orderly way.
 *
 * The state is per process (the engine runs one collective at a time):
 * the timeout, the phase (for messages) and what to say and remove on an
 * abort. */
#ifndef EPLB_WATCHDOG_H
#define EPLB_WATCHDOG_H

#include <mpi.h>

#include "eplb/error.h"
#include "mpi/agree.h"

#define EPLB_WATCH_DEFAULT_TIMEOUT_S 600

/* Sets the timeout of every later wait (1..86400 s; 0: the default).
 * Returns the previous one, so that a caller can restore it. */
int eplb__watch_timeout(int timeout_s);

/* The phase the process is in ("read", "shape", "reduce", "plan",
 * "distribute", "verify", "transfer", "commit", "rename"; a static
 * string), named by a timeout.  Returns the previous one. */
const char *eplb__watch_phase(const char *phase);

/* On an abort: remove `path` (a temporary file of this rank, or NULL),
 * and end the message with `hint` (what to run; NULL: a generic one).
 * Both are copied; NULL clears. */
void eplb__watch_on_abort(const char *path, const char *hint);

/* Polls *req until it completes (0) or the timeout passes (then aborts
 * the job as the header says: never returns).  `what` names the
 * collective ("MPI_Bcast of the plan").  An MPI failure is EPLB_EMPI. */
int eplb__wait(MPI_Comm comm, MPI_Request *req, const char *what,
               eplb_error_t *err);

/* The collectives of the engine, each started non-blocking and waited
 * for with eplb__wait. */
int eplb__allgather(const void *sbuf, int scount, MPI_Datatype stype,
                    void *rbuf, int rcount, MPI_Datatype rtype, MPI_Comm comm,
                    const char *what, eplb_error_t *err);
int eplb__allgatherv(const void *sbuf, int scount, MPI_Datatype stype,
                     void *rbuf, const int *rcounts, const int *displs,
                     MPI_Datatype rtype, MPI_Comm comm, const char *what,
                     eplb_error_t *err);
int eplb__allreduce(const void *sbuf, void *rbuf, int count, MPI_Datatype type,
                    MPI_Op op, MPI_Comm comm, const char *what,
                    eplb_error_t *err);
int eplb__bcast(void *buf, int count, MPI_Datatype type, int root,
                MPI_Comm comm, const char *what, eplb_error_t *err);
int eplb__barrier(MPI_Comm comm, const char *what, eplb_error_t *err);

/* The two tags the census uses on every communicator are the largest
 * ones, this and the next: the engine's own point-to-point traffic stays
 * below it. */
int eplb__watch_tag_limit(MPI_Comm comm);

/* Answers the census of ranks that timed out, for poll loops of their own
 * (the transfer): where this rank waits (`what`). */
void eplb__watch_poll(MPI_Comm comm, const char *what);

#endif /* EPLB_WATCHDOG_H */
