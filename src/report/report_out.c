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
  double H = y_bars + BAR_H + 40;
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
  fprintf(f, "</svg>\n");
  return 0;
}

int eplb_report_write_svg(const eplb_report_t *r, const char *path,
                          eplb_error_t *err) {
  if (r == NULL || r->num_layers < 1 || path == NULL || path[0] == '\0')
    return eplb_error_set(err, EPLB_EARG, "report: nothing to draw");
  return eplb__write_atomic(path, write_svg, r, err);
}
