/* report_out.c - eplb-report's outputs for scripts and for eyes: the report
 * as JSON and as a self-contained SVG (heat maps of layer x GPU load before
 * and after a map, and per-GPU bars).
 *
 * Both are pure functions of the report (no time stamps), written through
 * eplb__write_atomic so that a browser or a script never sees half a file.
 * The SVG has no scripts and no external references: it opens from a file
 * anywhere. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "eplb/report.h"
#include "util/fileio.h"

/* ---- JSON ------------------------------------------------------------ */

/* Prints "name": [v, v, ...] for n doubles. */
static void json_doubles(FILE *f, const char *name, const double *v, int32_t n,
                         const char *tail) {
  fprintf(f, "\"%s\": [", name);
  for (int32_t i = 0; i < n; i++)
    fprintf(f, "%s%.10g", i ? ", " : "", v[i]);
  fprintf(f, "]%s", tail);
}

/* One table as a JSON object. */
static void json_table(FILE *f, const eplb_report_t *r,
                       const eplb_report_table_t *t) {
  int32_t L = t->num_layers, G = t->num_gpus;
  fprintf(f, "{\"num_gpus\": %d, ", (int)G);
  json_doubles(f, "mean", t->mean, L, ", ");
  json_doubles(f, "std", t->std, L, ", ");
  json_doubles(f, "imbalance_ratio", t->ratio, L, ", ");
  fprintf(f, "\"gpu_load\": [");
  for (int32_t l = 0; l < L; l++) {
    fprintf(f, "%s[", l ? ", " : "");
    for (int32_t g = 0; g < G; g++)
      fprintf(f, "%s%.10g", g ? ", " : "", t->gpu_load[(size_t)l * G + g]);
    fprintf(f, "]");
  }
  fprintf(f,
          "], \"average\": {\"mean\": %.10g, \"std\": %.10g, "
          "\"imbalance_ratio\": %.10g}, \"worst_layer\": %d}",
          t->avg_mean, t->avg_std, t->avg_ratio,
          (int)r->layer_ids[t->worst_layer]);
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

/* The cross-validation of the scenarios, as a JSON object. */
static void json_cv(FILE *f, const eplb_report_scenarios_t *s) {
  const eplb_report_cv_t *cv = &s->cv;
  fprintf(f, "{\"num_slots\": %d, \"num_gpus\": %d, \"scenarios\": [",
          (int)cv->num_slots, (int)cv->num_gpus);
  for (int32_t k = 0; k < cv->num_scenarios; k++) {
    fprintf(f, "%s\n   {\"name\": ", k ? "," : "");
    json_string(f, s->scenario[k].name);
    fprintf(f,
            ", \"weight\": %.10g, \"robust\": %.10g, \"balanced\": %.10g, "
            "\"deepseek\": %.10g}",
            s->scenario[k].weight, cv->robust[k], cv->balanced[k],
            cv->deepseek[k]);
  }
  fprintf(f,
          "],\n  \"mean\": {\"robust\": %.10g, \"balanced\": %.10g, "
          "\"deepseek\": %.10g}}",
          cv->mean_robust, cv->mean_balanced, cv->mean_deepseek);
}

/* The scenarios of a report: each one's average imbalance ratio before
 * and after, per layer after, their weighted means, the cross-validation. */
static void json_scenarios(FILE *f, const eplb_report_t *r) {
  const eplb_report_scenarios_t *s = r->scenarios;
  fprintf(f, ",\n \"scenarios\": [");
  for (int32_t k = 0; k < s->num_scenarios; k++) {
    const eplb_report_scenario_t *v = &s->scenario[k];
    fprintf(f, "%s\n  {\"name\": ", k ? "," : "");
    json_string(f, v->name);
    fprintf(f, ", \"weight\": %.10g, \"imbalance_before\": %.10g, ", v->weight,
            v->before.avg_ratio);
    if (r->has_after) {
      fprintf(f, "\"imbalance_after\": %.10g, ", v->after.avg_ratio);
      json_doubles(f, "imbalance_ratio_after", v->after.ratio, r->num_layers,
                   "}");
    } else {
      fprintf(f, "\"imbalance_after\": null, ");
      json_doubles(f, "imbalance_ratio_before", v->before.ratio, r->num_layers,
                   "}");
    }
  }
  fprintf(f, "],\n \"scenario_mean\": {\"imbalance_before\": %.10g, ",
          s->mean_before);
  if (r->has_after)
    fprintf(f, "\"imbalance_after\": %.10g},\n", s->mean_after);
  else
    fprintf(f, "\"imbalance_after\": null},\n");
  fprintf(f, " \"cross_validation\": ");
  if (s->has_cv)
    json_cv(f, s);
  else
    fprintf(f, "null");
}

/* eplb__write_fn: the whole report. */
static int write_json(FILE *f, const void *ctx, eplb_error_t *err) {
  (void)err;
  const eplb_report_t *r = ctx;
  int32_t L = r->num_layers;
  fprintf(f,
          "{\"num_layers\": %d, \"num_experts\": %d, \"iterations\": %d, "
          "\"layer_ids\": [",
          (int)L, (int)r->num_experts, (int)r->num_steps);
  for (int32_t l = 0; l < L; l++)
    fprintf(f, "%s%d", l ? ", " : "", (int)r->layer_ids[l]);
  fprintf(f, "],\n \"expert_cv\": {\"average\": %.10g, ", r->avg_cv);
  json_doubles(f, "per_layer", r->cv, L, "},\n");
  fprintf(f,
          " \"hottest_expert\": {\"average_share\": %.10g, "
          "\"max_share\": %.10g, \"max_layer\": %d, \"expert\": [",
          r->avg_hot_share, r->max_hot_share,
          (int)r->layer_ids[r->max_hot_layer]);
  for (int32_t l = 0; l < L; l++)
    fprintf(f, "%s%d", l ? ", " : "", (int)r->hot_expert[l]);
  fprintf(f, "], ");
  json_doubles(f, "share", r->hot_share, L, "},\n");
  fprintf(f, " \"before\": ");
  json_table(f, r, &r->before);
  fprintf(f, ",\n \"after\": ");
  if (r->has_after)
    json_table(f, r, &r->after);
  else
    fprintf(f, "null");
  if (r->scenarios)
    json_scenarios(f, r);
  fprintf(f, "\n}\n");
  return 0;
}

int eplb_report_write_json(const eplb_report_t *r, const char *path,
                           eplb_error_t *err) {
  if (r == NULL || r->num_layers < 1 || path == NULL)
    return eplb_error_set(err, EPLB_EARG, "report: nothing to write");
  if (strcmp(path, "-") != 0)
    return eplb__write_atomic(path, write_json, r, err);
  write_json(stdout, r, err);
  if (fflush(stdout) != 0 || ferror(stdout))
    return eplb_error_set(err, EPLB_EIO,
                          "could not write the JSON report to "
                          "standard output");
  return 0;
}

/* ---- SVG ------------------------------------------------------------- */

/* Text as SVG character data: &, < and > escaped, control characters
 * dropped (a scenario is named after a path). */
static void svg_text(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '&')
      fputs("&amp;", f);
    else if (*p == '<')
      fputs("&lt;", f);
    else if (*p == '>')
      fputs("&gt;", f);
    else if (*p >= 0x20)
      fputc(*p, f);
  }
}

#define CELL_W 12.0
#define CELL_H 8.0
#define MARGIN 60.0
#define BAR_H 160.0

/* Cell sizes adapt so that a heat map is 320..900 pixels wide and 240..700
 * high (12 x 8 px cells when that fits), never below 2 px a cell. */
typedef struct {
  double cw, ch, vmax, x0, width;
} layout_t;

/* Hex colour from white (0) to dark red (1). */
static void heat(double x, char out[8]) {
  if (!(x > 0))
    x = 0;
  if (x > 1)
    x = 1;
  int r = (int)(255 - 75 * x), g = (int)(255 - 255 * x),
      b = (int)(255 - 255 * x);
  snprintf(out, 8, "#%02x%02x%02x", r, g, b);
}

/* Largest per-GPU load over the tables: the shared colour scale. */
static double max_load(const eplb_report_t *r) {
  double m = 0;
  const eplb_report_table_t *ts[2] = {&r->before, &r->after};
  for (int k = 0; k < (r->has_after ? 2 : 1); k++)
    for (size_t i = 0; i < (size_t)ts[k]->num_layers * ts[k]->num_gpus; i++)
      if (ts[k]->gpu_load[i] > m)
        m = ts[k]->gpu_load[i];
  return m;
}

/* One heat map with its title at (x0, MARGIN). */
static void svg_heat(FILE *f, const eplb_report_t *r,
                     const eplb_report_table_t *t, const layout_t *lo,
                     double x0, const char *title) {
  fprintf(f,
          "<g><text x=\"%.1f\" y=\"%.1f\" class=\"title\">%s (mean "
          "imbalance ratio %.3f)</text>\n",
          x0, MARGIN - 10, title, t->avg_ratio);
  for (int32_t l = 0; l < t->num_layers; l++) {
    for (int32_t g = 0; g < t->num_gpus; g++) {
      double v = t->gpu_load[(size_t)l * t->num_gpus + g];
      char col[8];
      heat(lo->vmax > 0 ? v / lo->vmax : 0, col);
      fprintf(f,
              "<rect class=\"cell\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
              "height=\"%.2f\" fill=\"%s\"><title>layer %d GPU %d: %.6g"
              "</title></rect>\n",
              x0 + g * lo->cw, MARGIN + l * lo->ch, lo->cw, lo->ch, col,
              (int)r->layer_ids[l], (int)g, v);
    }
  }
  fprintf(f,
          "<text x=\"%.1f\" y=\"%.1f\">GPU 0..%d (x) by layer %d..%d (y); "
          "white 0 .. dark red %.6g</text></g>\n",
          x0, MARGIN + t->num_layers * lo->ch + 14, (int)t->num_gpus - 1,
          (int)r->layer_ids[0], (int)r->layer_ids[r->num_layers - 1], lo->vmax);
}

/* GPU g's load summed over the layers of t. */
static double gpu_total(const eplb_report_table_t *t, int32_t g) {
  double s = 0;
  for (int32_t l = 0; l < t->num_layers; l++)
    s += t->gpu_load[(size_t)l * t->num_gpus + g];
  return s;
}

/* The largest GPU total of the tables: the bars' shared scale. */
static double max_total(const eplb_report_t *r) {
  double m = 0;
  const eplb_report_table_t *ts[2] = {&r->before, &r->after};
  for (int k = 0; k < (r->has_after ? 2 : 1); k++)
    for (int32_t g = 0; g < ts[k]->num_gpus; g++)
      m = fmax(m, gpu_total(ts[k], g));
  return m;
}

/* Per-GPU load summed over layers, one bar per GPU, at height y0; bars of
 * before and after share the scale mx (a bar of height BAR_H). */
static void svg_bars(FILE *f, const eplb_report_table_t *t, double x0,
                     double y0, double width, double mx, const char *cls) {
  int32_t G = t->num_gpus;
  double bw = width / G, top = 0;
  for (int32_t g = 0; g < G; g++)
    top = fmax(top, gpu_total(t, g));
  fprintf(f,
          "<g><text x=\"%.1f\" y=\"%.1f\" class=\"title\">%s: GPU load, all "
          "layers (max %.6g)</text>\n",
          x0, y0 - 6, cls, top);
  for (int32_t g = 0; g < G; g++) {
    double s = gpu_total(t, g);
    double h = mx > 0 ? BAR_H * s / mx : 0;
    fprintf(f,
            "<rect class=\"bar %s\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
            "height=\"%.2f\"><title>GPU %d: %.6g</title></rect>\n",
            cls, x0 + g * bw, y0 + BAR_H - h, bw > 1.5 ? bw - 0.5 : bw, h,
            (int)g, s);
  }
  fprintf(f, "</g>\n");
}

/* The scenario panel: a small heat map per scenario (the first SCEN_MAX;
 * all of them are in the JSON), as many to a row as fit. */
#define SCEN_MAX 32
#define SCEN_GAP 40.0

typedef struct {
  double cw, ch, w, h; /* a cell, a map */
  double dev;          /* the colour scale: the largest |load/mean - 1| */
  int32_t cols, shown, rows;
} scen_layout_t;

/* The table a scenario is drawn from: under the map, else before. */
static const eplb_report_table_t *scen_table(const eplb_report_t *r,
                                             int32_t k) {
  const eplb_report_scenario_t *v = &r->scenarios->scenario[k];
  return r->has_after ? &v->after : &v->before;
}

static scen_layout_t scen_layout(const eplb_report_t *r, double width) {
  scen_layout_t lo = {0};
  int32_t L = r->num_layers, G = scen_table(r, 0)->num_gpus;
  lo.cw = fmax(2.0, fmin(8.0, 280.0 / G));
  lo.ch = fmax(2.0, fmin(5.0, 200.0 / L));
  lo.w = G * lo.cw;
  lo.h = L * lo.ch;
  lo.cols = (int32_t)((width + MARGIN) / (lo.w + MARGIN));
  if (lo.cols < 1)
    lo.cols = 1;
  lo.shown = r->scenarios->num_scenarios;
  if (lo.shown > SCEN_MAX)
    lo.shown = SCEN_MAX;
  lo.rows = (lo.shown + lo.cols - 1) / lo.cols;
  lo.dev = 0.01; /* below this, every cell is near white anyway */
  for (int32_t k = 0; k < lo.shown; k++) {
    const eplb_report_table_t *t = scen_table(r, k);
    for (int32_t l = 0; l < L; l++)
      for (int32_t g = 0; t->mean[l] > 0 && g < G; g++)
        lo.dev =
            fmax(lo.dev, fabs(t->gpu_load[(size_t)l * G + g] / t->mean[l] - 1));
  }
  return lo;
}

/* Height of the scenario panel (0 without scenarios). */
static double scen_height(const eplb_report_t *r, double width) {
  if (r->scenarios == NULL)
    return 0;
  scen_layout_t lo = scen_layout(r, width);
  return 30 + SCEN_GAP + lo.rows * (lo.h + SCEN_GAP) +
         (r->scenarios->num_scenarios > lo.shown ? 20 : 0);
}

/* A diverging colour: x in -1..1, blue below the mean, white at it, red
 * above. */
static void diverge(double x, char out[8]) {
  if (!(x >= -1))
    x = -1;
  if (x > 1)
    x = 1;
  int r = 255, g = 255, b = 255;
  if (x > 0) {
    g = b = (int)(255 - 255 * x);
    r = (int)(255 - 75 * x);
  } else {
    r = g = (int)(255 + 200 * x);
    b = (int)(255 + 75 * x);
  }
  snprintf(out, 8, "#%02x%02x%02x", r, g, b);
}

/* One scenario's map at (x0, y0): each cell a GPU's load in a layer over
 * the layer's mean, on the panel's scale. */
static void scen_map(FILE *f, const eplb_report_t *r, int32_t k,
                     const scen_layout_t *lo, double x0, double y0) {
  const eplb_report_scenario_t *v = &r->scenarios->scenario[k];
  const eplb_report_table_t *t = scen_table(r, k);
  int32_t G = t->num_gpus;
  size_t len = strlen(v->name), fit = (size_t)fmax(24, (lo->w + MARGIN) / 7);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s", x0, y0 - 20,
          len > fit ? "..." : "");
  svg_text(f, len > fit ? v->name + len - fit : v->name);
  fprintf(f,
          "</text>\n<text x=\"%.1f\" y=\"%.1f\">weight %g, imbalance "
          "%.4f</text>\n",
          x0, y0 - 6, v->weight, t->avg_ratio);
  for (int32_t l = 0; l < t->num_layers; l++)
    for (int32_t g = 0; g < G; g++) {
      double x =
          t->mean[l] > 0 ? t->gpu_load[(size_t)l * G + g] / t->mean[l] : 1;
      char col[8];
      diverge((x - 1) / lo->dev, col);
      fprintf(f,
              "<rect class=\"scell\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
              "height=\"%.2f\" fill=\"%s\"><title>layer %d GPU %d: %.4f x "
              "the mean</title></rect>\n",
              x0 + g * lo->cw, y0 + l * lo->ch, lo->cw, lo->ch, col,
              (int)r->layer_ids[l], (int)g, x);
    }
}

/* Per scenario, the GPU loads under the map (or the placement before,
 * without one): a layer x GPU map of each GPU's load over its layer's
 * mean, blue below, white even, red above, on one scale for all. */
static void svg_scenarios(FILE *f, const eplb_report_t *r, double x0, double y0,
                          double width) {
  scen_layout_t lo = scen_layout(r, width);
  fprintf(f,
          "<g><text x=\"%.1f\" y=\"%.1f\" class=\"title\">per scenario: "
          "GPU load under %s / the layer's mean (GPU x, layer y; blue %.3f, "
          "white 1, dark red %.3f)</text>\n",
          x0, y0, r->has_after ? "the map" : "the placement before",
          fmax(0, 1 - lo.dev), 1 + lo.dev);
  for (int32_t k = 0; k < lo.shown; k++)
    scen_map(f, r, k, &lo, x0 + (k % lo.cols) * (lo.w + MARGIN),
             y0 + 30 + SCEN_GAP - 6 + (k / lo.cols) * (lo.h + SCEN_GAP));
  if (r->scenarios->num_scenarios > lo.shown)
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\">... and %d more scenarios "
            "(all of them in --json)</text>\n",
            x0, y0 + 30 + lo.rows * (lo.h + SCEN_GAP) + 10,
            (int)(r->scenarios->num_scenarios - lo.shown));
  fprintf(f, "</g>\n");
}

/* eplb__write_fn: the picture. */
static int write_svg(FILE *f, const void *ctx, eplb_error_t *err) {
  (void)err;
  const eplb_report_t *r = ctx;
  const eplb_report_table_t *b = &r->before;
  int32_t maps = r->has_after ? 2 : 1;
  int32_t G = b->num_gpus > r->after.num_gpus ? b->num_gpus : r->after.num_gpus;
  layout_t lo = {.vmax = max_load(r)};
  lo.cw = fmax(2.0, fmax(320.0, fmin(900.0, G * CELL_W)) / G);
  lo.ch = fmax(2.0, fmax(240.0, fmin(700.0, r->num_layers * CELL_H)) /
                        r->num_layers);
  double wb = b->num_gpus * lo.cw;
  double wa = r->has_after ? r->after.num_gpus * lo.cw : 0;
  double heat_h = r->num_layers * lo.ch;
  double W = MARGIN * 3 + wb + wa, y_bars = MARGIN + heat_h + 50;
  double y_scen = y_bars + BAR_H + 40;
  double H = y_scen + scen_height(r, W - 2 * MARGIN);
  fprintf(f,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
          "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n"
          "<style>text{font:12px sans-serif}.title{font-weight:bold}"
          ".bar.before{fill:#888}.bar.after{fill:#c33}</style>\n"
          "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
          W, H, W, H);
  svg_heat(f, r, b, &lo, MARGIN, "before");
  if (maps == 2)
    svg_heat(f, r, &r->after, &lo, MARGIN * 2 + wb, "after");
  svg_bars(f, b, MARGIN, y_bars, wb, max_total(r), "before");
  if (maps == 2)
    svg_bars(f, &r->after, MARGIN * 2 + wb, y_bars, wa, max_total(r), "after");
  if (r->scenarios)
    svg_scenarios(f, r, MARGIN, y_scen + 10, W - 2 * MARGIN);
  fprintf(f, "</svg>\n");
  return 0;
}

int eplb_report_write_svg(const eplb_report_t *r, const char *path,
                          eplb_error_t *err) {
  if (r == NULL || r->num_layers < 1 || path == NULL || path[0] == '\0')
    return eplb_error_set(err, EPLB_EARG, "report: nothing to draw");
  return eplb__write_atomic(path, write_svg, r, err);
}
