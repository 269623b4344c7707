/* eplb/error.h - the error model shared by every eplb function.
 *
 * Every function that can fail returns int: 0 on success, a negative
 * EPLB_E* code on failure.  One X-macro list below generates both the codes
 * and the tables behind eplb_strerror()/eplb_err_name(), so a code and its
 * message cannot drift apart (the libuv habit).
 *
 * The code says *what kind* of failure; the optional eplb_error_t filled by
 * the failing function says *where* (file, rank, layer, field) and *what to
 * do*, in one line.  Pass NULL when you only want the code.
 */
#ifndef EPLB_ERROR_H
#define EPLB_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, value, generic message) */
#define EPLB_ERRNO_MAP(XX)                                                     \
  XX(ARG, -1, "invalid argument or option out of range")                       \
  XX(NOMEM, -2, "out of memory")                                               \
  XX(IO, -3, "file could not be opened, read or written")                      \
  XX(PARSE, -4, "malformed input")                                             \
  XX(COUNT, -5, "invalid count (negative, not finite or overflowing)")         \
  XX(SHAPE, -6, "shapes disagree")                                             \
  XX(MAP, -7, "invalid expert map")                                            \
  XX(MPI, -8, "MPI call failed")                                               \
  XX(HDF5, -9, "HDF5 call failed")                                             \
  XX(DIVERGED, -10, "plan copies diverged across ranks")                       \
  XX(REMOTE, -11, "another rank failed")                                       \
  XX(CHECKSUM, -12, "checksum mismatch")                                       \
  XX(STATE, -13, "inconsistent on-disk state")                                 \
  XX(INTERNAL, -14, "internal error (a bug in eplb: please report it)")

typedef enum {
  EPLB_OK = 0,
#define EPLB_ERR_ENUM_(name, val, msg) EPLB_E##name = (val),
  EPLB_ERRNO_MAP(EPLB_ERR_ENUM_)
#undef EPLB_ERR_ENUM_
} eplb_errno_t;

/* Room for one line that names the place and says what to do. */
#define EPLB_ERROR_MSG_MAX 1024

typedef struct eplb_error_s {
  int code;                     /* 0 or an EPLB_E* code */
  char msg[EPLB_ERROR_MSG_MAX]; /* "" or one line, no trailing newline */
} eplb_error_t;

/* Generic message for a code ("unknown error" for an unknown code). */
const char *eplb_strerror(int code);
/* Symbolic name for a code, e.g. "EPLB_EPARSE" ("EPLB_OK" for 0). */
const char *eplb_err_name(int code);

/* Records code and a printf-style message in err (which may be NULL) and
 * returns code, so a failing function can `return eplb_error_set(...)`.
 * A later call overwrites an earlier one: set it once, where the failure is
 * seen, and add context on the way up with eplb_error_prefix(). */
int eplb_error_set(eplb_error_t *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prefixes err->msg with "<prefix>: " (for adding context such as a file
 * name or rank on the way up).  Returns err->code.  NULL err: returns 0. */
int eplb_error_prefix(eplb_error_t *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Resets err to success.  NULL is a no-op. */
void eplb_error_clear(eplb_error_t *err);

/* The message to show a user: err->msg if set, else the generic one. */
const char *eplb_error_message(const eplb_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_ERROR_H */
