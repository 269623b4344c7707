/* error.c - codes, names and messages of the eplb error model.
 *
 * The tables are generated from EPLB_ERRNO_MAP in eplb/error.h so that a
 * new code needs one line and nothing else. */
#include "eplb/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *eplb_strerror(int code) {
  switch (code) {
  case EPLB_OK: return "success";
#define EPLB_STRERROR_CASE_(name, val, msg)                                    \
  case EPLB_E##name: return msg;
    EPLB_ERRNO_MAP(EPLB_STRERROR_CASE_)
#undef EPLB_STRERROR_CASE_
  default: return "unknown error";
  }
}

const char *eplb_err_name(int code) {
  switch (code) {
  case EPLB_OK: return "EPLB_OK";
#define EPLB_NAME_CASE_(name, val, msg)                                        \
  case EPLB_E##name: return "EPLB_E" #name;
    EPLB_ERRNO_MAP(EPLB_NAME_CASE_)
#undef EPLB_NAME_CASE_
  default: return "EPLB_EUNKNOWN";
  }
}

int eplb_error_set(eplb_error_t *err, int code, const char *fmt, ...) {
  if (err == NULL)
    return code;
  err->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
  va_end(ap);
  /* One line: a stray newline from a caller's string would break that. */
  for (char *p = err->msg; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  return code;
}

int eplb_error_prefix(eplb_error_t *err, const char *fmt, ...) {
  if (err == NULL)
    return 0;
  char prefix[EPLB_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof(prefix), fmt, ap);
  va_end(ap);
  char old[EPLB_ERROR_MSG_MAX];
  memcpy(old, err->msg, sizeof(old));
  const char *rest = old[0] ? old : eplb_strerror(err->code);
  /* Built piecewise: the result is truncated to the buffer, never overrun. */
  size_t n = strlen(prefix);
  if (n > sizeof(err->msg) - 1)
    n = sizeof(err->msg) - 1;
  memcpy(err->msg, prefix, n);
  size_t room = sizeof(err->msg) - 1 - n;
  size_t m = strlen(rest) + 2;
  char *p = err->msg + n;
  if (room >= 2) {
    memcpy(p, ": ", 2);
    p += 2;
    room -= 2;
    m -= 2;
    size_t k = m < room ? m : room;
    memcpy(p, rest, k);
    p += k;
  }
  *p = '\0';
  return err->code;
}

void eplb_error_clear(eplb_error_t *err) {
  if (err == NULL)
    return;
  err->code = 0;
  err->msg[0] = '\0';
}

const char *eplb_error_message(const eplb_error_t *err) {
  if (err == NULL)
    return "";
  return err->msg[0] ? err->msg : eplb_strerror(err->code);
}
