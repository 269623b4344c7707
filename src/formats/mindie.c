/* formats/mindie.c - MindIE's expert-load dump.
 *
 * MindIE writes model_gen_config.json ({"num_moe_layers": 58,
 * "num_of_experts": 256, ...}) and one CSV per stage and NPU,
 * {stage}_{rank}.csv (prefill_0.csv, decode_3.csv), in the directory or in
 * its prefill/ and decode/ subdirectories.  A CSV has no header; every
 * collection interval appends a block of num_moe_layers rows, one column
 * per expert on that NPU, with counts cumulative since start: the last block
 * holds the whole window.  Column j of rank r is expert r*c + j (c columns,
 * contiguous placement) unless the config names an eplb_expert_map_file,
 * whose device r lists the experts of those columns layer by layer.  We sum
 * every stage and rank; layer ids are 0..num_moe_layers-1.
 *
 * As a series (eplb__mindie_read_series), block b of every file is one
 * step: what was counted between blocks b - 1 and b (block 0: since start),
 * so every file must hold the same number of blocks, and a count may not
 * fall from one block to the next (the counters restarted). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eplb/series.h"
#include "formats/formats.h"
#include "util/fileio.h"

typedef struct {
  const char *dir;
  int32_t L, E;
  eplb_placement_t map;  /* num_layers == 0 without a map file */
  eplb_stats_t *out;     /* the last blocks summed, or */
  eplb_series_t *series; /* every block a step (series->num_steps == 0
                            until the first file sets the block count) */
  char first_path[4096]; /* the file that set the block count */
  int32_t cols;          /* columns per row of every CSV (-1: none yet) */
  char cols_path[4096];  /* the file that set them */
  int files;
} mie_t;

/* Reads an integer field of the config. */
static const char *cfg_int(const cJSON *root, const char *name, int64_t max,
                           int64_t *v) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, name);
  return x ? eplb__json_int(x, 1, max, v) : "is missing";
}

/* The map file named by the config, relative to the dump directory. */
static int read_map(mie_t *m, const char *cfg, const char *name,
                    eplb_error_t *err) {
  char path[4096];
  if (name[0] == '/')
    snprintf(path, sizeof(path), "%s", name);
  else
    snprintf(path, sizeof(path), "%s/%s", m->dir, name);
  int rc = eplb_placement_read(&m->map, path, EPLB_MAP_EXPERT_MAP, err);
  if (rc == 0 && (m->map.num_layers != m->L || m->map.num_experts > m->E))
    rc = eplb_error_set(err, EPLB_ESHAPE,
                        "%s: %d layers, experts 0..%d, but "
                        "%s says num_moe_layers %d, num_of_experts %d",
                        path, (int)m->map.num_layers,
                        (int)m->map.num_experts - 1, cfg, (int)m->L, (int)m->E);
  if (rc)
    eplb_error_prefix(err, "eplb_expert_map_file");
  return rc;
}

/* model_gen_config.json. */
static int read_config(mie_t *m, eplb_error_t *err) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/model_gen_config.json", m->dir);
  char *text = NULL;
  size_t len = 0;
  cJSON *root = NULL;
  int64_t L = 0, E = 0;
  const char *why = NULL, *field = "num_moe_layers";
  int rc = eplb__read_file(path, &text, &len, err);
  if (rc == 0)
    rc = eplb__json_parse_bounded(path, text, len, &root, err);
  if (rc == 0)
    rc = eplb__json_unique_keys(path, root, err);
  if (rc == 0 && (why = cfg_int(root, field, EPLB_MAX_LAYERS, &L)) == NULL) {
    field = "num_of_experts";
    why = cfg_int(root, field, EPLB_MAX_EXPERTS, &E);
  }
  if (rc == 0 && why != NULL)
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: \"%s\" %s; expected a "
                        "positive integer",
                        path, field, why);
  m->L = (int32_t)L;
  m->E = (int32_t)E;
  const cJSON *mf =
      rc ? NULL
         : cJSON_GetObjectItemCaseSensitive(root, "eplb_expert_map_file");
  if (rc == 0 && mf != NULL && !cJSON_IsString(mf))
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: \"eplb_expert_map_file\" is "
                        "%s; expected a path",
                        path, eplb__json_kind(mf));
  if (rc == 0 && mf != NULL && mf->valuestring[0] != '\0')
    rc = read_map(m, path, mf->valuestring, err);
  cJSON_Delete(root);
  free(text);
  return rc;
}

/* Parses one CSV row of numbers into vals (at most cap); *n = count.
 * Returns NULL or a reason. */
static const char *parse_row(char *line, double *vals, int32_t cap,
                             int32_t *n) {
  *n = 0;
  char *p = line;
  for (;;) {
    char *end;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || errno == ERANGE || !isfinite(v))
      return "is not a number";
    if (*n >= cap)
      return "has more columns than num_of_experts";
    vals[(*n)++] = v;
    while (*end == ' ' || *end == '\t' || *end == '\r')
      end++;
    if (*end == '\0')
      return NULL;
    if (*end != ',')
      return "is not a comma-separated number";
    p = end + 1;
  }
}

/* The expert of column j in row l of rank r's file, or -1. */
static int32_t column_expert(const mie_t *m, int32_t r, int32_t l, int32_t j,
                             int32_t cols) {
  if (m->map.num_layers == 0) {
    int64_t e = (int64_t)r * cols + j;
    return e < m->E ? (int32_t)e : -1;
  }
  int32_t per = m->map.num_slots / m->map.num_gpus;
  if (r >= m->map.num_gpus || cols != per)
    return -1;
  return m->map.phy2log[(size_t)l * (size_t)m->map.num_slots +
                        (size_t)r * (size_t)per + (size_t)j];
}

/* Adds one block (rows[L][cols], dense) to dst[L][E]: itself, or with
 * prev != NULL what it counted since the block before (a step). */
static int add_block(mie_t *m, const char *path, int32_t rank,
                     const double *rows, const double *prev, int32_t cols,
                     int32_t block, double *dst, eplb_error_t *err) {
  for (int32_t l = 0; l < m->L; l++)
    for (int32_t j = 0; j < cols; j++) {
      int32_t e = column_expert(m, rank, l, j, cols);
      if (e < 0)
        return eplb_error_set(err, EPLB_ESHAPE,
                              "%s: rank %d, column %d has "
                              "no expert: %d columns per NPU do not fit %s "
                              "(num_of_experts %d); name the placement in "
                              "eplb_expert_map_file",
                              path, (int)rank, (int)j, (int)cols,
                              m->map.num_layers ? "the expert map"
                                                : "a contiguous placement",
                              (int)m->E);
      size_t k = (size_t)l * (size_t)cols + (size_t)j;
      double v = rows[k] - (prev ? prev[k] : 0.0);
      if (v < 0)
        return eplb_error_set(err, EPLB_ECOUNT,
                              "%s: layer %d, column %d: "
                              "the cumulative count falls from %.0f in block "
                              "%d to %.0f in block %d (counters restarted?); "
                              "read the dump as one window instead",
                              path, (int)l, (int)j, prev[k], (int)block - 1,
                              rows[k], (int)block);
      double *d = &dst[(size_t)l * (size_t)m->E + (size_t)e];
      /* Compared before adding: the rounded sum of 2^53 - 1 and 2 is 2^53
       * (both terms are integers <= 2^53, so the difference is exact). */
      if (v > EPLB_MAX_COUNT - *d)
        return eplb_error_set(err, EPLB_ECOUNT,
                              "%s: layer %d, expert %d: "
                              "the sum passes 2^53",
                              path, (int)l, (int)e);
      *d += v;
    }
  return 0;
}

/* 1 when the n characters at s are only blanks (such lines are skipped). */
static int blank_line(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
    i++;
  return i == n;
}

/* A NUL byte would end the text early (and read as a short row): say so,
 * with its line and column. */
static int check_nul(const char *path, const char *text, size_t len,
                     eplb_error_t *err) {
  size_t nul = strlen(text);
  if (nul == len)
    return 0;
  long line = 1, col = 1;
  for (size_t i = 0; i < nul; i++) {
    col++;
    if (text[i] == '\n') {
      line++;
      col = 1;
    }
  }
  return eplb_error_set(err, EPLB_EPARSE,
                        "%s: line %ld, column %ld: a NUL byte; a MindIE CSV "
                        "is text (is the file corrupted?)",
                        path, line, col);
}

/* Every CSV must have the columns the first one has: column j of NPU r is
 * expert r * columns + j (or the map's j-th), so NPUs with other widths
 * would put one NPU's loads on another's experts. */
static int same_columns(mie_t *m, const char *path, int32_t cols,
                        eplb_error_t *err) {
  if (m->cols < 0) {
    m->cols = cols;
    snprintf(m->cols_path, sizeof(m->cols_path), "%s", path);
    return 0;
  }
  if (cols == m->cols)
    return 0;
  return eplb_error_set(err, EPLB_ESHAPE,
                        "%s has %d columns per row but %s has %d; every "
                        "NPU's CSV must count the same number of experts "
                        "(slots per NPU)",
                        path, (int)cols, m->cols_path, (int)m->cols);
}

/* Series: the number of blocks of a file (its non-blank lines / L) must be
 * the first file's; the first file allocates the series. */
static int series_blocks(mie_t *m, const char *path, const char *text,
                         eplb_error_t *err) {
  long lines = 0;
  for (const char *s = text; *s != '\0';) {
    const char *nl = strchr(s, '\n');
    size_t n = nl ? (size_t)(nl - s) : strlen(s);
    lines += !blank_line(s, n);
    s += n + (nl != NULL);
  }
  long blocks = lines / m->L;
  if (blocks < 1 || lines % m->L != 0)
    return 0; /* the parse below names the torn file */
  if (m->series->num_steps == 0) {
    if (blocks > EPLB_MAX_STEPS)
      return eplb_error_set(err, EPLB_ESHAPE,
                            "%s: %ld blocks; at most %d "
                            "steps are read as a series",
                            path, blocks, EPLB_MAX_STEPS);
    snprintf(m->first_path, sizeof(m->first_path), "%s", path);
    int rc = eplb_series_init(m->series, (int32_t)blocks, m->L, m->E, err);
    if (rc)
      eplb_error_prefix(err, "%s", path);
    return rc;
  }
  if (blocks != m->series->num_steps)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s has %ld blocks but %s has %d; "
                          "as a series every NPU's dump must cover the same "
                          "collection intervals",
                          path, blocks, m->first_path,
                          (int)m->series->num_steps);
  return 0;
}

/* Reads one {stage}_{rank}.csv: every row checked; the last block added
 * to the sums, or every block to the series. */
static int read_csv(mie_t *m, const char *path, int32_t rank,
                    eplb_error_t *err) {
  char *text = NULL;
  size_t len = 0;
  int rc = eplb__read_file(path, &text, &len, err);
  if (rc == 0)
    rc = check_nul(path, text, len, err);
  if (rc) {
    free(text);
    return rc;
  }
  if (m->series != NULL)
    rc = series_blocks(m, path, text, err);
  size_t cells = (size_t)m->L * (size_t)m->E;
  double *rows = calloc(cells + 1, sizeof(double));
  double *prev = m->series ? calloc(cells + 1, sizeof(double)) : NULL;
  if (rc == 0 && (rows == NULL || (m->series && prev == NULL)))
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  int32_t cols = -1, n = 0;
  long line = 0, count = 0;
  for (char *s = text, *nl; rc == 0 && s != NULL && *s != '\0'; s = nl) {
    nl = strchr(s, '\n');
    if (nl != NULL)
      *nl++ = '\0';
    line++;
    if (blank_line(s, strlen(s)))
      continue;
    double *dst = rows + (size_t)(count % m->L) * (size_t)m->E;
    const char *why = parse_row(s, dst, m->E, &n);
    for (int32_t j = 0; why == NULL && j < n; j++)
      if (dst[j] < 0 || dst[j] > EPLB_MAX_COUNT || dst[j] != floor(dst[j]))
        why = "holds a count that is negative, fractional or above 2^53";
    if (why == NULL && cols >= 0 && n != cols)
      why = "has a different number of columns than the rows before";
    if (why)
      rc = eplb_error_set(err, EPLB_EPARSE, "%s: line %ld %s", path, line, why);
    if (rc == 0 && cols < 0)
      rc = same_columns(m, path, n, err);
    cols = n;
    count++;
    if (rc == 0 && count % m->L == 0) { /* compact: keep columns dense */
      for (int32_t l = 0; l < m->L; l++)
        memmove(rows + (size_t)l * (size_t)cols,
                rows + (size_t)l * (size_t)m->E, sizeof(double) * (size_t)cols);
      int32_t b = (int32_t)(count / m->L) - 1;
      if (m->series && b < m->series->num_steps) {
        rc = add_block(m, path, rank, rows, b ? prev : NULL, cols, b,
                       m->series->load + (size_t)b * cells, err);
        memcpy(prev, rows, sizeof(double) * (size_t)m->L * (size_t)cols);
      }
    }
  }
  if (rc == 0 && (count == 0 || count % m->L != 0))
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: %ld rows is not a whole number "
                        "of blocks of num_moe_layers = %d rows (truncated "
                        "file?)",
                        path, count, (int)m->L);
  if (rc == 0 && m->series == NULL)
    rc = add_block(m, path, rank, rows, NULL, cols, 0, m->out->load, err);
  m->files += rc == 0;
  free(rows);
  free(prev);
  free(text);
  return rc;
}

/* For a name `<stage>_<digits>.csv`: 1 and the rank in *r; 0 for a name
 * of another form (not MindIE's: skipped); -1 when the digits are not a
 * rank eplb can read (decode_01.csv, a rank above 2^20), which would
 * otherwise be skipped silently. */
static int csv_rank(const char *nm, int32_t *r) {
  const char *us = strrchr(nm, '_');
  size_t k = strlen(nm);
  if (us == NULL || us == nm || k < 6 || strcmp(nm + k - 4, ".csv") != 0)
    return 0;
  const char *d = us + 1, *end = nm + k - 4;
  if (d == end)
    return 0;
  for (const char *p = d; p < end; p++)
    if (*p < '0' || *p > '9')
      return 0;
  char num[16];
  if ((size_t)(end - d) >= sizeof(num))
    return -1;
  memcpy(num, d, (size_t)(end - d));
  num[end - d] = '\0';
  return eplb__parse_index(num, 1 << 20, r) == 0 ? 1 : -1;
}

/* Reads every {stage}_{rank}.csv of one directory (missing dir: none), in
 * name order (so messages name the same files on every run). */
static int read_csvs(mie_t *m, const char *dir, eplb_error_t *err) {
  struct dirent **names = NULL;
  int n = scandir(dir, &names, NULL, alphasort);
  if (n < 0)
    return 0;
  int rc = 0;
  for (int i = 0; i < n; i++) {
    const char *nm = names[i]->d_name;
    char path[4096];
    int32_t r = 0;
    int kind = rc == 0 ? csv_rank(nm, &r) : 0;
    snprintf(path, sizeof(path), "%s/%s", dir, nm);
    if (kind < 0)
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "%s: the rank in the name is not a plain decimal "
                          "0..%d (no leading zeros); MindIE writes "
                          "{stage}_{rank}.csv: rename the file or move it out "
                          "of the dump",
                          path, 1 << 20);
    else if (kind > 0)
      rc = read_csv(m, path, r, err);
  }
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return rc;
}

/* Reads the config and every CSV of the dump (the directory, prefill/,
 * decode/) into m's sums or series. */
static int read_dump(mie_t *m, eplb_error_t *err) {
  char sub[4096];
  int rc = read_config(m, err);
  if (rc == 0 && m->out != NULL)
    rc = eplb_stats_init(m->out, m->L, m->E, err);
  if (rc == 0)
    rc = read_csvs(m, m->dir, err);
  snprintf(sub, sizeof(sub), "%s/prefill", m->dir);
  if (rc == 0)
    rc = read_csvs(m, sub, err);
  snprintf(sub, sizeof(sub), "%s/decode", m->dir);
  if (rc == 0)
    rc = read_csvs(m, sub, err);
  if (rc == 0 && m->files == 0)
    rc = eplb_error_set(err, EPLB_EIO,
                        "%s: no {stage}_{rank}.csv file here "
                        "or in prefill/ or decode/",
                        m->dir);
  eplb_placement_cleanup(&m->map);
  return rc;
}

int eplb__mindie_read(eplb_stats_t *out, const char *dir, eplb_error_t *err) {
  mie_t m = {.dir = dir, .out = out, .cols = -1};
  memset(out, 0, sizeof(*out));
  int rc = read_dump(&m, err);
  if (rc)
    eplb_stats_cleanup(out);
  return rc;
}

int eplb__mindie_read_series(eplb_series_t *out, const char *dir,
                             eplb_error_t *err) {
  mie_t m = {.dir = dir, .series = out, .cols = -1};
  memset(out, 0, sizeof(*out));
  int rc = read_dump(&m, err);
  if (rc)
    eplb_series_cleanup(out);
  return rc;
}
