/* cli/cli.h - what every eplb program (eplb-plan, eplb-sync, eplb-report,
 * eplb-shard) does the same way: parse and range-check option values, print
 * one-line errors, map error codes to exit codes, time phases.
 *
 * Conventions they all follow:
 *   - errors go to stderr as "<prog>: error: <one line>";
 *   - exit 0 on success, 1 on a runtime failure (file, parse, count, MPI),
 *     2 on a usage error (unknown option, missing or out-of-range value),
 *     and usage errors end with "(see <prog> --help)";
 *   - every integer option has a documented minimum and maximum, checked
 *     here with a message that names the option, the value and the range.
 * Nothing here calls exit(): MPI programs must agree on failure before
 * they exit, so every helper returns. */
#ifndef EPLB_CLI_CLI_H
#define EPLB_CLI_CLI_H

#include <stdint.h>
#include <stdio.h>

#include <getopt.h>

#include "eplb/error.h"
#include "eplb/formats.h"
#include "eplb/placement.h"
#include "eplb/plan.h"
#include "eplb/series.h"
#include "eplb/stats.h"

#define EPLB_CLI_EXIT_OK 0
#define EPLB_CLI_EXIT_RUNTIME 1
#define EPLB_CLI_EXIT_USAGE 2

/* Parses `text`, the value of option `opt` (e.g. "--num-slots"), as a
 * decimal integer in min..max (both within int32_t).  Rejects an empty
 * value, trailing junk ("12abc", "1.5"), overflow and values out of range.
 * Returns 0 and *out, or EPLB_EARG after printing
 * "<prog>: error: --num-slots 'abc' is not an integer in 1..1048576 (see
 * <prog> --help)" to stderr (*out untouched). */
int eplb_cli_parse_int(const char *prog, const char *opt, const char *text,
                       long min, long max, int32_t *out);

/* The same for 64-bit values (generations, round counts). */
int eplb_cli_parse_int64(const char *prog, const char *opt, const char *text,
                         long long min, long long max, int64_t *out);

/* The same for a finite decimal number in min..max ("0.5", "1e-3"). */
int eplb_cli_parse_double(const char *prog, const char *opt, const char *text,
                          double min, double max, double *out);

/* Parses a named choice (e.g. --policy) with `from_name`; an unknown name
 * is a usage error listing `choices`.  Returns 0 and *out, or
 * EPLB_CLI_EXIT_USAGE (message printed). */
int eplb_cli_parse_name(const char *prog, const char *opt, const char *text,
                        int (*from_name)(const char *), const char *choices,
                        int *out);

/* The planner's options, the same in every program that plans (eplb-plan,
 * eplb-sync): `name` is the long option without "--" (num-slots, num-gpus,
 * num-nodes, num-groups, policy, max-moves, move-cost, keep-threshold,
 * spill-cost), `value` its text, range-checked as eplb/plan.h documents.
 * Returns 0, EPLB_CLI_EXIT_USAGE (message printed), or -1 when `name` is
 * not a planner option. */
int eplb_cli_plan_option(const char *prog, const char *name, const char *value,
                         eplb_plan_opts_t *o);

/* What the maps' consumers need beyond the placement (eplb-plan and
 * eplb-sync): --mtp-layers, --mtp-from, --allow-duplicates. */
#define EPLB_CLI_MTP_FROM_STATS 2 /* the statistics' last N layers are the
                                     MTP layers, planned as any other */
typedef struct {
  int32_t mtp_layers; /* --mtp-layers N (0..EPLB_MAX_MTP_LAYERS) */
  int mtp_from;       /* EPLB_MTP_LAST, EPLB_MTP_TRIVIAL or
                         EPLB_CLI_MTP_FROM_STATS */
  int allow_dups;     /* --allow-duplicates */
} eplb_cli_map_opts_t;

/* Parses `name` (without the dashes) into *o when it is one of the
 * options above: 0 done, 2 usage error (printed), -1 not one of them. */
int eplb_cli_map_option(const char *prog, const char *name, const char *value,
                        eplb_cli_map_opts_t *o);

/* The MTP layers a program appends to its plan (0 with --mtp-from stats,
 * whose layers the statistics hold). */
int32_t eplb_cli_mtp_appended(const eplb_cli_map_opts_t *o);

/* Usage checks of an output map name against its consumer (SGLang reads
 * --init-expert-location as a file only when it ends in .json or .pt).
 * 0 or 2 (printed). */
int eplb_cli_check_map_name(const char *prog, const char *path,
                            eplb_map_format_t format);

/* Prints "<prog>: error: <message>\n" to stderr. */
void eplb_cli_error(const char *prog, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prints "<prog>: error: <message> (see <prog> --help)\n" to stderr and
 * returns EPLB_CLI_EXIT_USAGE. */
int eplb_cli_usage_error(const char *prog, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Reports what getopt_long returned for a bad option ('?' or ':', with
 * opterr = 0 and an option string starting with ':'): "unknown option
 * '--foo'" or "option '--stats' needs a value".  `argv` and `index` are
 * getopt's argv and optind after the call.  Returns EPLB_CLI_EXIT_USAGE. */
int eplb_cli_bad_option(const char *prog, int c, char *const argv[], int index);

/* Prints a library error (eplb_error_message) as "<prog>: error: ..." and
 * returns the exit code for it: EPLB_CLI_EXIT_USAGE for EPLB_EARG (with
 * "(see <prog> --help)"), EPLB_CLI_EXIT_RUNTIME otherwise. */
int eplb_cli_report(const char *prog, const eplb_error_t *err);

/* Parses --iter-range "A-B" (0 <= A <= B <= EPLB_MAX_ITER) or "A" (just
 * iteration A) into *opts.  Usage error printed as for
 * eplb_cli_parse_int; returns 0 or EPLB_EARG. */
int eplb_cli_parse_iter_range(const char *prog, const char *text,
                              eplb_stats_read_opts_t *opts);

/* One file a program reads or writes, named by its option ("--stats"). */
typedef struct {
  const char *opt, *path;
} eplb_cli_file_t;

/* Checks, before anything is read or written, that no output is one of
 * the inputs (by identity: eplb__check_output, in util/fileio.h), that no
 * two outputs name the same file, and that no output is a device or a
 * FIFO.  NULL paths and "-" (standard output) are skipped.  Returns 0, or
 * EPLB_CLI_EXIT_USAGE after printing the usage error. */
int eplb_cli_check_outputs(const char *prog, const eplb_cli_file_t *outputs,
                           int num_outputs, const eplb_cli_file_t *inputs,
                           int num_inputs);

/* Every program linked with cli.c checks at exit that what it printed on
 * standard output was written (a full disk, a closed pipe, /dev/full):
 * if not, "<prog>: error: writing to standard output failed: ..." and exit
 * status 1 instead of 0 (an atexit handler installed before main). */

/* Seconds on a monotonic clock (for phase timings; never goes back). */
double eplb_cli_now(void);

/* The long name (without "--") of getopt_long's code c in opts, "" if
 * none: for the planner options every program shares. */
const char *eplb_cli_option_name(const struct option *opts, int c);

/* Prints, after a map was written to `path` in `format`, the settings its
 * consumer needs (one line each; docs/guides/ lists them too): vLLM and
 * vllm-ascend the path and redundant experts = slots - experts, MindIE the
 * expert-parallel size = the map's devices, SGLang
 * --ep-num-redundant-experts, TensorRT-LLM --ep and the layer keys.
 * mtp_layers: how many MTP layers the map's last layers are. */
void eplb_cli_print_settings(FILE *f, const eplb_placement_t *p,
                             eplb_map_format_t format, const char *path,
                             int32_t mtp_layers);

/* ---- scenarios (cli/scenarios.c) ---------------------------------- */

/* One source of statistics on the command line: the paths of --stats
 * (summed), or one --scenario SPEC, with its weight. */
typedef struct {
  const char *const *paths;
  int num_paths;
  double weight; /* EPLB_MIN..MAX_SCENARIO_WEIGHT, 1 by default */
  const char *label; /* how messages and the summary name it */
  char *owned;       /* what eplb_cli_parse_scenario allocated */
} eplb_cli_source_t;

/* Parses --scenario "SPEC[@W]" into *src (W: a number after the last '@';
 * without one, the whole text is SPEC).  Returns 0, or 2 after printing a
 * usage error.  eplb_cli_source_cleanup frees it. */
int eplb_cli_parse_scenario(const char *prog, const char *text,
                            eplb_cli_source_t *src);
void eplb_cli_source_cleanup(eplb_cli_source_t *src);

#define EPLB_CLI_SCENARIO_NAME 256

/* The scenarios read from the sources: stats[num] of one shape, their
 * weights and names, and the dense layers dropped from all of them. */
typedef struct {
  int32_t num;
  eplb_stats_t *stats;
  double *weights;
  char (*names)[EPLB_CLI_SCENARIO_NAME];
  int32_t *dropped;
  int32_t num_dropped;
} eplb_cli_scenarios_t;

/* Reads each source as one scenario (its paths summed, as --stats sums
 * them), or, with window > 0, as a series cut into one scenario per
 * `window` steps; checks them (eplb_scenarios_check) and drops the layers
 * idle in every scenario when a source pads dense layers.  *out is empty
 * on failure. */
int eplb_cli_read_scenarios(const eplb_cli_source_t *src, int num_sources,
                            int32_t window, eplb_stats_format_t format,
                            const eplb_stats_read_opts_t *ropts,
                            eplb_cli_scenarios_t *out, eplb_error_t *err);

/* The same for a program's options: the --stats files (when any) are one
 * more scenario, the first, then each --scenario source. */
int eplb_cli_read_options_scenarios(const char **stats, int num_stats,
                                    const eplb_cli_source_t *scen,
                                    int num_scen, int32_t window,
                                    eplb_stats_format_t format,
                                    const eplb_stats_read_opts_t *ropts,
                                    eplb_cli_scenarios_t *out,
                                    eplb_error_t *err);
void eplb_cli_scenarios_cleanup(eplb_cli_scenarios_t *s);

/* The weighted mean of the scenarios, each layer of each normalised to its
 * own total: the one histogram the metrics of a scenario plan are
 * reported on. */
int eplb_cli_scenarios_sum(const eplb_cli_scenarios_t *s, eplb_stats_t *out,
                           eplb_error_t *err);

#endif /* EPLB_CLI_CLI_H */
