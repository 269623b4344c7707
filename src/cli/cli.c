/* cli/cli.c - option helpers shared by every eplb program.
 *
 * Users meet eplb first through its command lines, and a value that is
 * silently truncated ("12abc" -> 12) or wraps around (2^32 + 8 -> 8) gives
 * a plan for the wrong cluster.  So every number goes through the strict
 * parsers here, and every error looks the same in every program:
 * "<prog>: error: <one line>", exit 2 for usage errors, 1 for the rest.
 * See cli.h for the conventions. */
#define _GNU_SOURCE /* program_invocation_short_name */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/fileio.h"

/* Prints "<prog>: error: <fmt...><tail>\n" to stderr. */
static void vreport(const char *prog, const char *tail, const char *fmt,
                    va_list ap) {
  char msg[EPLB_ERROR_MSG_MAX];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  fprintf(stderr, "%s: error: %s%s\n", prog, msg, tail);
}

void eplb_cli_error(const char *prog, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(prog, "", fmt, ap);
  va_end(ap);
}

/* " (see <prog> --help)" into buf. */
static const char *see_help(const char *prog, char *buf, size_t size) {
  snprintf(buf, size, " (see %s --help)", prog);
  return buf;
}

int eplb_cli_usage_error(const char *prog, const char *fmt, ...) {
  char tail[128];
  va_list ap;
  va_start(ap, fmt);
  vreport(prog, see_help(prog, tail, sizeof(tail)), fmt, ap);
  va_end(ap);
  return EPLB_CLI_EXIT_USAGE;
}

/* 1 if text starts like a number (no leading blank, which strto* skip). */
static int starts_numeric(const char *text) {
  return text != NULL && text[0] != '\0' &&
         (text[0] == '-' || text[0] == '+' || text[0] == '.' ||
          (text[0] >= '0' && text[0] <= '9'));
}

int eplb_cli_parse_int64(const char *prog, const char *opt, const char *text,
                         long long min, long long max, int64_t *out) {
  char *end = NULL;
  errno = 0;
  long long v = starts_numeric(text) ? strtoll(text, &end, 10) : 0;
  if (!starts_numeric(text) || end == text || *end != '\0') {
    eplb_cli_usage_error(prog,
                         "%s '%s' is not an integer; expected "
                         "%lld..%lld",
                         opt, text ? text : "", min, max);
    return EPLB_EARG;
  }
  if (errno == ERANGE || v < min || v > max) {
    eplb_cli_usage_error(prog, "%s %s is outside %lld..%lld", opt, text, min,
                         max);
    return EPLB_EARG;
  }
  *out = (int64_t)v;
  return 0;
}

int eplb_cli_parse_int(const char *prog, const char *opt, const char *text,
                       long min, long max, int32_t *out) {
  int64_t v = 0;
  int rc = eplb_cli_parse_int64(prog, opt, text, min, max, &v);
  if (rc == 0)
    *out = (int32_t)v;
  return rc;
}

int eplb_cli_parse_double(const char *prog, const char *opt, const char *text,
                          double min, double max, double *out) {
  char *end = NULL;
  double v = starts_numeric(text) ? strtod(text, &end) : 0.0;
  if (!starts_numeric(text) || end == text || *end != '\0' || !isfinite(v)) {
    eplb_cli_usage_error(prog,
                         "%s '%s' is not a number; expected "
                         "%g..%g",
                         opt, text ? text : "", min, max);
    return EPLB_EARG;
  }
  if (v < min || v > max) {
    eplb_cli_usage_error(prog, "%s %s is outside %g..%g", opt, text, min, max);
    return EPLB_EARG;
  }
  *out = v;
  return 0;
}

int eplb_cli_bad_option(const char *prog, int c, char *const argv[],
                        int index) {
  const char *arg = index > 0 ? argv[index - 1] : "";
  if (c == ':')
    return eplb_cli_usage_error(prog, "option '%s' needs a value", arg);
  return eplb_cli_usage_error(prog, "unknown option '%s'", arg);
}

int eplb_cli_report(const char *prog, const eplb_error_t *err) {
  const char *msg = eplb_error_message(err);
  if (err != NULL && err->code == EPLB_EARG)
    return eplb_cli_usage_error(prog, "%s", msg);
  eplb_cli_error(prog, "%s", msg);
  return EPLB_CLI_EXIT_RUNTIME;
}

double eplb_cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Parses a plain decimal 0..EPLB_MAX_ITER from [p, end); -1 if bad. */
static long iter_number(const char *p, const char *end) {
  long v = 0;
  if (p == end || end - p > 10)
    return -1;
  for (; p < end; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    v = v * 10 + (*p - '0');
  }
  return v <= EPLB_MAX_ITER ? v : -1;
}

int eplb_cli_parse_iter_range(const char *prog, const char *text,
                              eplb_stats_read_opts_t *opts) {
  const char *dash = strchr(text, '-');
  const char *end = text + strlen(text);
  long a = iter_number(text, dash ? dash : end);
  long b = dash ? iter_number(dash + 1, end) : a;
  if (a < 0 || b < 0 || a > b) {
    eplb_cli_usage_error(prog,
                         "--iter-range '%s' is not A-B with "
                         "0 <= A <= B <= %d",
                         text, EPLB_MAX_ITER);
    return EPLB_EARG;
  }
  opts->iter_min = a;
  opts->iter_max = b;
  return 0;
}

int eplb_cli_parse_name(const char *prog, const char *opt, const char *text,
                        int (*from_name)(const char *), const char *choices,
                        int *out) {
  int v = from_name(text);
  if (v < 0)
    return eplb_cli_usage_error(prog, "%s '%s' is unknown; use %s", opt, text,
                                choices);
  *out = v;
  return 0;
}

/* One integer planner option: its field and range. */
typedef struct {
  const char *name;
  size_t offset;
  long min, max;
} int_opt_t;

/* One real-valued planner option. */
typedef struct {
  const char *name;
  size_t offset;
  double min, max;
} real_opt_t;

static const int_opt_t plan_ints[] = {
    {"num-slots", offsetof(eplb_plan_opts_t, num_slots), EPLB_MIN_SLOTS,
     EPLB_MAX_SLOTS},
    {"num-gpus", offsetof(eplb_plan_opts_t, num_gpus), EPLB_MIN_GPUS,
     EPLB_MAX_GPUS},
    {"num-nodes", offsetof(eplb_plan_opts_t, num_nodes), EPLB_MIN_NODES,
     EPLB_MAX_GPUS},
    {"num-groups", offsetof(eplb_plan_opts_t, num_groups), EPLB_MIN_GROUPS,
     EPLB_MAX_EXPERTS},
    {"max-moves", offsetof(eplb_plan_opts_t, max_moves), -1, EPLB_MAX_SLOTS},
    {"threads", offsetof(eplb_plan_opts_t, threads), EPLB_MIN_PLAN_THREADS,
     EPLB_MAX_PLAN_THREADS},
};

static const real_opt_t plan_reals[] = {
    {"move-cost", offsetof(eplb_plan_opts_t, move_cost), 0, 1},
    {"keep-threshold", offsetof(eplb_plan_opts_t, keep_threshold), 0, 100},
    {"spill-cost", offsetof(eplb_plan_opts_t, spill_cost), 0, 1},
};

int eplb_cli_plan_option(const char *prog, const char *name, const char *value,
                         eplb_plan_opts_t *o) {
  char opt[64];
  snprintf(opt, sizeof(opt), "--%s", name);
  for (size_t i = 0; i < sizeof(plan_ints) / sizeof(plan_ints[0]); i++)
    if (strcmp(name, plan_ints[i].name) == 0)
      return eplb_cli_parse_int(prog, opt, value, plan_ints[i].min,
                                plan_ints[i].max,
                                (int32_t *)((char *)o + plan_ints[i].offset))
                 ? EPLB_CLI_EXIT_USAGE
                 : 0;
  for (size_t i = 0; i < sizeof(plan_reals) / sizeof(plan_reals[0]); i++)
    if (strcmp(name, plan_reals[i].name) == 0)
      return eplb_cli_parse_double(prog, opt, value, plan_reals[i].min,
                                   plan_reals[i].max,
                                   (double *)((char *)o + plan_reals[i].offset))
                 ? EPLB_CLI_EXIT_USAGE
                 : 0;
  if (strcmp(name, "policy") == 0) {
    int x = 0;
    int rc = eplb_cli_parse_name(prog, opt, value, eplb_policy_from_name,
                                 "balanced or deepseek", &x);
    if (rc == 0)
      o->policy = (eplb_policy_t)x;
    return rc;
  }
  return -1;
}

const char *eplb_cli_option_name(const struct option *opts, int c) {
  for (const struct option *o = opts; o->name; o++)
    if (o->val == c)
      return o->name;
  return "";
}

int eplb_cli_check_outputs(const char *prog, const eplb_cli_file_t *outputs,
                           int num_outputs, const eplb_cli_file_t *inputs,
                           int num_inputs) {
  eplb_error_t err;
  eplb_error_clear(&err);
  for (int o = 0; o < num_outputs; o++) {
    const eplb_cli_file_t *out = &outputs[o];
    if (out->path == NULL || strcmp(out->path, "-") == 0)
      continue;
    int rc = eplb__check_output(out->opt, out->path, "", NULL, 0, &err);
    for (int i = 0; rc == 0 && i < num_inputs; i++)
      rc = eplb__check_output(out->opt, out->path, inputs[i].opt,
                              &inputs[i].path, 1, &err);
    if (rc)
      return eplb_cli_usage_error(prog, "%s", err.msg);
    for (int p = 0; p < o; p++)
      if (outputs[p].path != NULL && strcmp(outputs[p].path, "-") != 0 &&
          eplb__same_path(outputs[p].path, out->path))
        return eplb_cli_usage_error(prog,
                                    "%s %s and %s %s name the same file; "
                                    "each output needs its own",
                                    outputs[p].opt, outputs[p].path, out->opt,
                                    out->path);
  }
  return 0;
}

/* At exit: what the program printed must have reached standard output.
 * exit() flushes stdout after the atexit handlers, too late to change the
 * status, so the handler flushes it itself. */
static void check_stdout(void) {
  int e = fflush(stdout) != 0 ? errno : ferror(stdout) ? EIO : 0;
  if (e == 0)
    return;
  fprintf(stderr, "%s: error: writing to standard output failed: %s\n",
          program_invocation_short_name, strerror(e));
  _exit(EPLB_CLI_EXIT_RUNTIME);
}

__attribute__((constructor)) static void install_check_stdout(void) {
  atexit(check_stdout);
}

void eplb_cli_print_settings(FILE *f, const eplb_placement_t *p,
                             eplb_map_format_t format, const char *path,
                             int32_t mtp_layers) {
  int32_t S = p->num_slots, G = p->num_gpus, E = p->num_experts;
  int32_t L = p->num_layers, first = p->layer_ids[0],
          last = p->layer_ids[L - 1];
  fprintf(f, "settings          what the consumer of this map must be "
             "given:\n");
  switch (format) {
  case EPLB_MAP_EXPERT_MAP:
    fprintf(f, "  vllm-ascend     --enable-expert-parallel --additional-config "
               "'{\"expert_map_path\": \"%s\"}'\n",
            path);
    fprintf(f, "  vLLM            redundant experts %d (slots - experts), "
               "expert-parallel size %d\n",
            (int)(S - E), (int)G);
    fprintf(f, "  MindIE          expert-parallel size %d (the map's "
               "device_count), %d MoE layers%s\n",
            (int)G, (int)L, mtp_layers ? " with the MTP layers" : "");
    fprintf(f, "  MindSpeed-RL    the expert map %s, %d experts per device x "
               "%d devices\n",
            path, (int)(S / G), (int)G);
    break;
  case EPLB_MAP_TRTLLM_YAML:
    fprintf(f, "  TensorRT-LLM    moe_load_balancer: %s in the extra LLM API "
               "options; --ep %d (num_slots %d); layer keys %d..%d\n",
            path, (int)G, (int)S, (int)first, (int)last);
    break;
  case EPLB_MAP_SGLANG:
    fprintf(f, "  SGLang          --init-expert-location %s "
               "--ep-num-redundant-experts %d --ep-size %d\n",
            path, (int)(S - E), (int)G);
    break;
  case EPLB_MAP_DEEPSEEK:
    fprintf(f, "  DeepSeek EPLB   num_replicas %d, num_gpus %d (phy2log [%d, "
               "%d])\n",
            (int)S, (int)G, (int)L, (int)S);
    break;
  case EPLB_MAP_AUTO: break;
  }
  if (mtp_layers > 0)
    fprintf(f, "  MTP layers      %d, the map's last after the MoE layers "
               "(ids %d..%d)\n",
            (int)mtp_layers, (int)(last - mtp_layers + 1), (int)last);
}

int eplb_cli_map_option(const char *prog, const char *name, const char *value,
                        eplb_cli_map_opts_t *o) {
  if (strcmp(name, "mtp-layers") == 0)
    return eplb_cli_parse_int(prog, "--mtp-layers", value, 0,
                              EPLB_MAX_MTP_LAYERS, &o->mtp_layers)
               ? EPLB_CLI_EXIT_USAGE
               : 0;
  if (strcmp(name, "allow-duplicates") == 0) {
    o->allow_dups = 1;
    return 0;
  }
  if (strcmp(name, "mtp-from") != 0)
    return -1;
  if (strcmp(value, "last") == 0)
    o->mtp_from = EPLB_MTP_LAST;
  else if (strcmp(value, "trivial") == 0)
    o->mtp_from = EPLB_MTP_TRIVIAL;
  else if (strcmp(value, "stats") == 0)
    o->mtp_from = EPLB_CLI_MTP_FROM_STATS;
  else
    return eplb_cli_usage_error(prog,
                                "--mtp-from '%s' is unknown; use last, "
                                "trivial or stats",
                                value);
  return 0;
}

int32_t eplb_cli_mtp_appended(const eplb_cli_map_opts_t *o) {
  return o->mtp_from == EPLB_CLI_MTP_FROM_STATS ? 0 : o->mtp_layers;
}

int eplb_cli_check_map_name(const char *prog, const char *path,
                            eplb_map_format_t format) {
  if (path == NULL || format != EPLB_MAP_SGLANG)
    return 0;
  /* SGLang parses a value that does not end in .json or .pt as inline
   * JSON. */
  size_t n = strlen(path);
  if ((n >= 5 && strcmp(path + n - 5, ".json") == 0) ||
      (n >= 3 && strcmp(path + n - 3, ".pt") == 0))
    return 0;
  return eplb_cli_usage_error(prog,
                              "--output %s: SGLang reads "
                              "--init-expert-location as a file only when "
                              "its name ends in .json or .pt; name it so",
                              path);
}
