/* cli/scenarios.c - the scenarios a program plans for, from its options:
 * `--stats` (summed into one scenario, as ever), each `--scenario
 * SPEC[@W]` (what SPEC names summed into one scenario of weight W) and
 * `--window N` (every source read as a [steps][L][E] series and cut into
 * one scenario per N steps).  Shared by eplb-plan and eplb-report; the
 * planner's side is eplb_plan_scenarios (docs/planner.md, "Scenarios"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int eplb_cli_parse_scenario(const char *prog, const char *text,
                            eplb_cli_source_t *src) {
  memset(src, 0, sizeof(*src));
  src->weight = 1.0;
  const char *at = strrchr(text, '@');
  size_t n = strlen(text);
  if (at != NULL && at[1] != '\0') {
    char *end = NULL;
    double w = strtod(at + 1, &end);
    if (end != NULL && *end == '\0') {
      if (!(w >= EPLB_MIN_SCENARIO_WEIGHT && w <= EPLB_MAX_SCENARIO_WEIGHT))
        return eplb_cli_usage_error(prog,
                                    "--scenario %s: weight %s is outside "
                                    "%g..%g",
                                    text, at + 1, EPLB_MIN_SCENARIO_WEIGHT,
                                    EPLB_MAX_SCENARIO_WEIGHT);
      src->weight = w;
      n = (size_t)(at - text);
    }
  }
  if (n == 0)
    return eplb_cli_usage_error(prog, "--scenario %s names no statistics",
                                text);
  char *spec = malloc(n + 1);
  if (spec == NULL)
    return eplb_cli_usage_error(prog, "out of memory");
  memcpy(spec, text, n);
  spec[n] = '\0';
  src->owned = spec;
  src->paths = (const char *const *)&src->owned;
  src->num_paths = 1;
  src->label = spec;
  return 0;
}

void eplb_cli_source_cleanup(eplb_cli_source_t *src) {
  if (src != NULL)
    free(src->owned);
}

void eplb_cli_scenarios_cleanup(eplb_cli_scenarios_t *s) {
  if (s == NULL)
    return;
  for (int32_t k = 0; k < s->num; k++)
    eplb_stats_cleanup(&s->stats[k]);
  free(s->stats);
  free(s->weights);
  free(s->names);
  free(s->dropped);
  memset(s, 0, sizeof(*s));
}

/* Room for `more` scenarios in s. */
static int grow(eplb_cli_scenarios_t *s, int32_t more, eplb_error_t *err) {
  int32_t n = s->num + more;
  if (n > EPLB_MAX_SCENARIOS)
    return eplb_error_set(err, EPLB_EARG,
                          "%d scenarios; at most %d (with --window: use "
                          "longer windows)",
                          (int)n, EPLB_MAX_SCENARIOS);
  eplb_stats_t *st = realloc(s->stats, sizeof(*st) * (size_t)n);
  if (st)
    s->stats = st;
  double *w = realloc(s->weights, sizeof(*w) * (size_t)n);
  if (w)
    s->weights = w;
  char(*names)[EPLB_CLI_SCENARIO_NAME] =
      realloc(s->names, sizeof(*names) * (size_t)n);
  if (names)
    s->names = names;
  if (!st || !w || !names)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  return 0;
}

/* Every path of src read as a series and summed step by step (the
 * series must cover the same steps). */
static int read_series(const eplb_cli_source_t *src, eplb_series_t *sum,
                       eplb_error_t *err) {
  int rc = eplb_series_read(sum, src->paths[0], err);
  for (int i = 1; i < src->num_paths && rc == 0; i++) {
    eplb_series_t more;
    rc = eplb_series_read(&more, src->paths[i], err);
    if (rc == 0 && (more.num_steps != sum->num_steps ||
                    more.num_layers != sum->num_layers ||
                    more.num_experts != sum->num_experts))
      rc = eplb_error_set(
          err, EPLB_ESHAPE,
          "%s has %d steps x %d layers x %d experts but %s has %d x %d x "
          "%d; series summed into one source must cover the same steps",
          src->paths[i], (int)more.num_steps, (int)more.num_layers,
          (int)more.num_experts, src->paths[0], (int)sum->num_steps,
          (int)sum->num_layers, (int)sum->num_experts);
    size_t n = (size_t)sum->num_steps * (size_t)sum->num_layers *
               (size_t)sum->num_experts;
    for (size_t c = 0; rc == 0 && c < n; c++)
      sum->load[c] += more.load[c];
    eplb_series_cleanup(&more);
  }
  if (rc)
    eplb_series_cleanup(sum);
  return rc;
}

/* src cut into windows of `window` steps, appended to s. */
static int add_windows(const eplb_cli_source_t *src, int32_t window,
                       eplb_cli_scenarios_t *s, eplb_error_t *err) {
  eplb_series_t series;
  int rc = read_series(src, &series, err);
  if (rc)
    return rc;
  eplb_stats_t *w = NULL;
  int32_t n = 0;
  rc = eplb_series_windows(&series, window, &w, &n, err);
  if (rc == 0)
    rc = grow(s, n, err);
  for (int32_t i = 0; i < n; i++) {
    if (rc) {
      eplb_stats_cleanup(&w[i]);
      continue;
    }
    int32_t first = i * window, last = first + window - 1;
    if (last >= series.num_steps)
      last = series.num_steps - 1;
    s->stats[s->num] = w[i];
    s->weights[s->num] = src->weight;
    snprintf(s->names[s->num], EPLB_CLI_SCENARIO_NAME, "%.200s[%d-%d]",
             src->label, (int)first, (int)last);
    s->num++;
  }
  free(w);
  eplb_series_cleanup(&series);
  return rc;
}

/* src summed into one scenario, appended to s. */
static int add_sum(const eplb_cli_source_t *src, eplb_stats_format_t format,
                   const eplb_stats_read_opts_t *ropts,
                   eplb_cli_scenarios_t *s, eplb_error_t *err) {
  int rc = grow(s, 1, err);
  if (rc)
    return rc;
  rc = eplb_stats_read_many(&s->stats[s->num], src->paths, src->num_paths,
                            format, ropts, err);
  if (rc)
    return rc;
  s->weights[s->num] = src->weight;
  snprintf(s->names[s->num], EPLB_CLI_SCENARIO_NAME, "%.250s", src->label);
  s->num++;
  return 0;
}

int eplb_cli_read_scenarios(const eplb_cli_source_t *src, int num_sources,
                            int32_t window, eplb_stats_format_t format,
                            const eplb_stats_read_opts_t *ropts,
                            eplb_cli_scenarios_t *out, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  int rc = 0;
  for (int i = 0; i < num_sources && rc == 0; i++)
    rc = window > 0 ? add_windows(&src[i], window, out, err)
                    : add_sum(&src[i], format, ropts, out, err);
  if (rc == 0 && out->num > 0) {
    eplb_scenarios_t sc = {out->num, out->stats, out->weights};
    rc = eplb_scenarios_check(&sc, err);
  }
  /* SGLang pads dense layers with zero rows: a layer idle in every
   * scenario is dropped from all (one with traffic anywhere stays). */
  int dense = 0;
  for (int32_t k = 0; k < out->num; k++)
    dense |= out->stats[k].dense_rows;
  if (rc == 0 && dense)
    rc = eplb_stats_drop_idle_layers(out->stats, out->num, &out->dropped,
                                     &out->num_dropped, err);
  if (rc)
    eplb_cli_scenarios_cleanup(out);
  return rc;
}

int eplb_cli_scenarios_sum(const eplb_cli_scenarios_t *s, eplb_stats_t *out,
                           eplb_error_t *err) {
  const eplb_stats_t *s0 = &s->stats[0];
  int32_t L = s0->num_layers, E = s0->num_experts;
  int rc = eplb_stats_init(out, L, E, err);
  if (rc)
    return rc;
  memcpy(out->layer_ids, s0->layer_ids, sizeof(int32_t) * (size_t)L);
  for (int32_t l = 0; l < L; l++) {
    double wsum = 0;
    for (int32_t k = 0; k < s->num; k++) {
      const double *x = s->stats[k].load + (size_t)l * E;
      double t = 0;
      for (int32_t e = 0; e < E; e++)
        t += x[e];
      if (t <= 0)
        continue;
      wsum += s->weights[k];
      for (int32_t e = 0; e < E; e++)
        out->load[(size_t)l * E + e] += s->weights[k] * x[e] / t;
    }
    for (int32_t e = 0; wsum > 0 && e < E; e++)
      out->load[(size_t)l * E + e] /= wsum;
  }
  return 0;
}

int eplb_cli_read_options_scenarios(const char **stats, int num_stats,
                                    const eplb_cli_source_t *scen,
                                    int num_scen, int32_t window,
                                    eplb_stats_format_t format,
                                    const eplb_stats_read_opts_t *ropts,
                                    eplb_cli_scenarios_t *out,
                                    eplb_error_t *err) {
  int n = (num_stats > 0) + num_scen, i = 0;
  eplb_cli_source_t *src = calloc((size_t)n, sizeof(*src));
  if (src == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (num_stats > 0)
    src[i++] = (eplb_cli_source_t){.paths = (const char *const *)stats,
                                   .num_paths = num_stats,
                                   .weight = 1,
                                   .label = num_stats == 1 ? stats[0]
                                                           : "--stats"};
  for (int j = 0; j < num_scen; j++)
    src[i++] = scen[j];
  int rc = eplb_cli_read_scenarios(src, n, window, format, ropts, out, err);
  free(src);
  return rc;
}
