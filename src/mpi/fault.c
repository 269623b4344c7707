/* fault.c - the EPLB_FAULT parser and queries (see fault.h).
 *
 * The environment is parsed once into a small table; queries are lookups.
 * Parsing is strict (unknown kinds or phases, ranks that are not decimal
 * integers, empty parts are errors) because a silently ignored fault makes
 * a fault test pass for the wrong reason. */
#include "mpi/fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FAULT_MAX 64

static const char *const phases[] = {
    "read",     "shape",  "reduce", "plan",   "distribute", "verify",
    "transfer", "commit", "apply",  "rename", NULL};

typedef struct {
  int loaded, rc;
  eplb_error_t err;
  int n_corrupt, corrupt[FAULT_MAX];
  int n_crash, crash_rank[FAULT_MAX];
  const char *crash_phase[FAULT_MAX];
  int n_hang, hang_rank[FAULT_MAX]; /* hang:<phase>:<rank> */
  const char *hang_phase[FAULT_MAX];
  int n_write, write_rank[FAULT_MAX], write_kind[FAULT_MAX];
  int n_row, row_rank[FAULT_MAX]; /* corrupt-row:<rank> */
} fault_table_t;

static fault_table_t table;

/* Parses a decimal rank 0..2^30 from [s, end).  Returns -1 if it is not. */
static int parse_rank(const char *s, const char *end) {
  if (s == end || end - s > 10)
    return -1;
  long v = 0;
  for (const char *p = s; p < end; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    v = v * 10 + (*p - '0');
  }
  return v > (1L << 30) ? -1 : (int)v;
}

/* "3,5" -> table.corrupt. */
static int parse_corrupt(const char *list, const char *end, eplb_error_t *err) {
  const char *p = list;
  while (p <= end) {
    const char *q = p;
    while (q < end && *q != ',')
      q++;
    int r = parse_rank(p, q);
    if (r < 0 || table.n_corrupt >= FAULT_MAX)
      return eplb_error_set(err, EPLB_EARG,
                            "EPLB_FAULT: corrupt-plan wants a list of ranks "
                            "such as corrupt-plan:3,5, got '%.*s'",
                            (int)(end - list), list);
    table.corrupt[table.n_corrupt++] = r;
    p = q + 1;
  }
  return 0;
}

/* "transfer:2" -> *phase (one of phases[]) and *rank; -1 if not. */
static int parse_phase_rank(const char *s, const char *end, const char **phase,
                            int *rank) {
  const char *colon = memchr(s, ':', (size_t)(end - s));
  int which = -1;
  for (int i = 0; colon && phases[i]; i++)
    if ((size_t)(colon - s) == strlen(phases[i]) &&
        strncmp(s, phases[i], strlen(phases[i])) == 0)
      which = i;
  *rank = colon ? parse_rank(colon + 1, end) : -1;
  *phase = which >= 0 ? phases[which] : NULL;
  return which < 0 || *rank < 0 ? -1 : 0;
}

/* "transfer:2" after crash: or hang: -> the table. */
static int parse_crash_hang(int hang, const char *s, const char *end,
                            eplb_error_t *err) {
  const char *ph = NULL;
  int r = -1;
  int *n = hang ? &table.n_hang : &table.n_crash;
  if (parse_phase_rank(s, end, &ph, &r) || *n >= FAULT_MAX)
    return eplb_error_set(err, EPLB_EARG,
                          "EPLB_FAULT: %s wants %s:<phase>:<rank> with phase "
                          "read, shape, reduce, plan, distribute, verify, "
                          "transfer, commit, apply or rename, got '%s:%.*s'",
                          hang ? "hang" : "crash", hang ? "hang" : "crash",
                          hang ? "hang" : "crash", (int)(end - s), s);
  (hang ? table.hang_phase : table.crash_phase)[*n] = ph;
  (hang ? table.hang_rank : table.crash_rank)[(*n)++] = r;
  return 0;
}

/* "2" after enospc:, lose-write: (kind 1, 2) or corrupt-row: (kind 0)
 * -> table.write_* or table.row_rank. */
static int parse_write(int kind, const char *what, const char *s,
                       const char *end, eplb_error_t *err) {
  int r = parse_rank(s, end);
  if (r < 0 || (kind ? table.n_write : table.n_row) >= FAULT_MAX)
    return eplb_error_set(err, EPLB_EARG,
                          "EPLB_FAULT: %s wants %s:<rank>, got '%s:%.*s'",
                          what, what, what, (int)(end - s), s);
  if (kind == 0) {
    table.row_rank[table.n_row++] = r;
    return 0;
  }
  table.write_kind[table.n_write] = kind;
  table.write_rank[table.n_write++] = r;
  return 0;
}

/* One ';'-separated part. */
static int parse_part(const char *s, const char *end, eplb_error_t *err) {
  static const char corrupt[] = "corrupt-plan:", crash[] = "crash:",
                    hang[] = "hang:", nospc[] = "enospc:",
                    lose[] = "lose-write:", row[] = "corrupt-row:";
  size_t n = (size_t)(end - s);
  if (n > strlen(row) && strncmp(s, row, strlen(row)) == 0)
    return parse_write(0, "corrupt-row", s + strlen(row), end, err);
  if (n > strlen(nospc) && strncmp(s, nospc, strlen(nospc)) == 0)
    return parse_write(1, "enospc", s + strlen(nospc), end, err);
  if (n > strlen(lose) && strncmp(s, lose, strlen(lose)) == 0)
    return parse_write(2, "lose-write", s + strlen(lose), end, err);
  if (n > strlen(corrupt) && strncmp(s, corrupt, strlen(corrupt)) == 0)
    return parse_corrupt(s + strlen(corrupt), end, err);
  if (n > strlen(crash) && strncmp(s, crash, strlen(crash)) == 0)
    return parse_crash_hang(0, s + strlen(crash), end, err);
  if (n > strlen(hang) && strncmp(s, hang, strlen(hang)) == 0)
    return parse_crash_hang(1, s + strlen(hang), end, err);
  return eplb_error_set(err, EPLB_EARG,
                        "EPLB_FAULT: unknown fault '%.*s'; use "
                        "corrupt-plan:<ranks>, crash:<phase>:<rank>, "
                        "hang:<phase>:<rank>, enospc:<rank>, "
                        "lose-write:<rank> or corrupt-row:<rank>, separated "
                        "by ';' (or unset EPLB_FAULT)",
                        (int)n, s);
}

int eplb__fault_load(eplb_error_t *err) {
  if (!table.loaded) {
    table.loaded = 1;
    const char *env = getenv("EPLB_FAULT");
    /* Empty parts ("a;;b", a trailing ';') are errors too. */
    const char *p = env && *env ? env : NULL;
    while (p && table.rc == 0) {
      const char *q = strchr(p, ';');
      if (q == NULL)
        q = p + strlen(p);
      table.rc = parse_part(p, q, &table.err);
      p = *q ? q + 1 : NULL;
    }
  }
  if (table.rc && err)
    *err = table.err;
  return table.rc;
}

int eplb__fault_corrupt_plan(int rank) {
  if (eplb__fault_load(NULL))
    return 0;
  for (int i = 0; i < table.n_corrupt; i++)
    if (table.corrupt[i] == rank)
      return 1;
  return 0;
}

int eplb__fault_crash_here(const char *phase, int rank) {
  if (eplb__fault_load(NULL))
    return 0;
  for (int i = 0; i < table.n_crash; i++)
    if (table.crash_rank[i] == rank && strcmp(table.crash_phase[i], phase) == 0)
      return 1;
  return 0;
}

void eplb__fault_crash_point(const char *phase, int rank) {
  if (!eplb__fault_crash_here(phase, rank))
    return;
  fprintf(stderr, "eplb: rank %d: EPLB_FAULT: crashing at %s\n", rank, phase);
  fflush(stderr);
  _exit(1);
}

int eplb__fault_hang_here(const char *phase, int rank) {
  if (eplb__fault_load(NULL))
    return 0;
  for (int i = 0; i < table.n_hang; i++)
    if (table.hang_rank[i] == rank && strcmp(table.hang_phase[i], phase) == 0)
      return 1;
  return 0;
}

void eplb__fault_hang_point(const char *phase, int rank, const char *where) {
  if (!eplb__fault_hang_here(phase, rank))
    return;
  fprintf(stderr,
          "eplb: rank %d: EPLB_FAULT: hanging at %s (%s) until killed\n", rank,
          phase, where);
  fflush(stderr);
  /* Neither die (mpirun would then end the job itself: that is the crash
   * test) nor return: only the peers' timeout may end this job. */
  for (;;)
    nanosleep(&(struct timespec){3600, 0}, NULL);
}

int eplb__fault_write(int rank) {
  if (eplb__fault_load(NULL))
    return 0;
  for (int i = 0; i < table.n_write; i++)
    if (table.write_rank[i] == rank)
      return table.write_kind[i];
  return 0;
}

int eplb__fault_corrupt_row(int rank) {
  if (eplb__fault_load(NULL))
    return 0;
  for (int i = 0; i < table.n_row; i++)
    if (table.row_rank[i] == rank)
      return 1;
  return 0;
}

void eplb__fault_point(const char *phase, int rank, const char *where) {
  eplb__fault_crash_point(phase, rank);
  eplb__fault_hang_point(phase, rank, where);
}

void eplb__fault_reset(void) { memset(&table, 0, sizeof(table)); }
