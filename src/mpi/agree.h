/* agree.h - agreeing on success or failure across the ranks of a job.
 *
 * The rule that keeps eplb from hanging: before every collective phase the
 * ranks agree on whether every rank is ready.  A rank that failed (bad file,
 * bad count, I/O error) still takes part in the agreement, so the others
 * learn of it instead of waiting in a collective it will never reach; then
 * every rank returns the same error, whose message names the failing
 * rank(s) and their reasons. */
#ifndef EPLB_AGREE_H
#define EPLB_AGREE_H

#include <mpi.h>

#include "eplb/error.h"

/* Collective over `comm`, bounded by the watchdog's timeout (a rank that
 * does not arrive in time ends the job: mpi/watchdog.h).  Each rank
 * passes its own result (0 or an EPLB_E*
 * code) with its err (its message says why).  Returns 0 on every rank when
 * every rank passed 0.  Otherwise returns, on every rank, the code of the
 * lowest failing rank, and sets err->msg on every rank to
 * "rank 3: <its message>; rank 5: <its message>" (truncated with "..." to
 * fit).  An MPI failure inside the agreement is EPLB_EMPI. */
int eplb__agree(MPI_Comm comm, int local_rc, eplb_error_t *err);

/* Turns an MPI return code into 0 or EPLB_EMPI with MPI's own message:
 * "<what>: <MPI_Error_string>" (defined in watchdog.c, whose collectives
 * agree.c uses). */
int eplb__mpi_check(int mpi_rc, const char *what, eplb_error_t *err);

/* Duplicates comm and sets MPI_ERRORS_RETURN on the copy, so every MPI
 * failure comes back as a code the ranks can agree on.  Collective. */
int eplb__dup_comm(MPI_Comm comm, MPI_Comm *out, eplb_error_t *err);

#endif /* EPLB_AGREE_H */
