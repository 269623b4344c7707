/* cli/eplb_synth_stats.c - deterministic synthetic MoE statistics for demos,
 * benchmarks and tests (`eplb-synth-stats`).
 *
 * Real routing is skewed (a few hot experts per layer, a long tail), differs
 * from layer to layer, and is split over the ranks that saw the tokens.
 * This writes such histograms in MindSpeed-RL or SGLang form, one file per
 * rank, from a seed: the same arguments give the same bytes everywhere.
 *
 *   eplb-synth-stats --out PATTERN [--ranks R] [--layers L] [--experts E]
 *                    [--tokens T] [--skew X] [--seed N] [--format F]
 * PATTERN contains %r (the rank).  The per-rank counts are integers.
 * Each file is written atomically (util/fileio.h): a full disk leaves the
 * old file or none, never half of one. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/eplb.h"
#include "util/checksum.h"
#include "util/fileio.h"

/* Uniform in (0, 1] from a key. */
static double unit(uint64_t key) {
  return ((double)(eplb__mix64(key) >> 11) + 1.0) / 9007199254740992.0;
}

static int parse_long(const char *opt, const char *s, long lo, long hi,
                      long *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr,
            "eplb-synth-stats: error: %s '%s' is not an integer in %ld..%ld\n",
            opt, s, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: eplb-synth-stats --out PATTERN [options]\n"
          "  --out PATTERN   output file per rank; %%r becomes the rank\n"
          "  --ranks R       files to write, 1..4096 (default 1)\n"
          "  --layers L      MoE layers, 1..%d (default 58)\n"
          "  --experts E     experts per layer, 1..%d (default 256)\n"
          "  --tokens T      routed tokens per rank per layer, 1..1e12 "
          "(default 100000)\n"
          "  --skew X        0..3, how concentrated on hot experts (default "
          "0.8)\n"
          "  --seed N        0..2^31-1 (default 1)\n"
          "  --format F      mindspeed | sglang (default mindspeed)\n",
          EPLB_MAX_LAYERS, EPLB_MAX_EXPERTS);
}

/* What one rank's file holds. */
typedef struct {
  long rank, layers, experts, tokens, seed;
  double skew;
  int sglang;
  double *w; /* [experts] scratch */
} synth_t;

/* Writes rank r's histogram (an eplb__write_fn for eplb__write_atomic). */
static int write_rank(FILE *f, const void *ctx, eplb_error_t *err) {
  const synth_t *g = ctx;
  int sglang = g->sglang;
  long r = g->rank, seed = g->seed;
  double *w = g->w;
  fputs(sglang ? "{\"logical_count\": [" : "{", f);
  for (long l = 0; l < g->layers; l++) {
    /* Layer popularity: shared by all ranks (the model's routing);
     * rank noise on top (which tokens this rank saw). */
    double lskew = g->skew * (0.5 + unit((uint64_t)seed * 7919 + (uint64_t)l));
    double sum = 0;
    for (long e = 0; e < g->experts; e++) {
      double base =
          pow(unit(((uint64_t)seed << 40) ^ ((uint64_t)l << 20) ^ (uint64_t)e),
              -lskew);
      double noise =
          0.8 + 0.4 * unit(((uint64_t)seed << 40) ^ ((uint64_t)(r + 1) << 52) ^
                           ((uint64_t)l << 20) ^ (uint64_t)e);
      w[e] = base * noise;
      sum += w[e];
    }
    fprintf(f, sglang ? "%s[" : "%s\"%ld\": {", l ? ", " : "", l);
    for (long e = 0; e < g->experts; e++) {
      long long cnt = (long long)floor((double)g->tokens * w[e] / sum);
      if (sglang)
        fprintf(f, "%s%lld", e ? ", " : "", cnt);
      else
        fprintf(f, "%s\"%ld\": %lld", e ? ", " : "", e, cnt);
    }
    fputs(sglang ? "]" : "}", f);
  }
  fputs(sglang ? "]}\n" : "}\n", f);
  (void)err; /* eplb__write_atomic checks the stream and names the file */
  return 0;
}

int main(int argc, char **argv) {
  long ranks = 1, layers = 58, experts = 256, tokens = 100000, seed = 1;
  double skew = 0.8;
  const char *out = NULL, *format = "mindspeed";
  static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                       {"ranks", required_argument, 0, 'r'},
                                       {"layers", required_argument, 0, 'l'},
                                       {"experts", required_argument, 0, 'e'},
                                       {"tokens", required_argument, 0, 't'},
                                       {"skew", required_argument, 0, 'k'},
                                       {"seed", required_argument, 0, 's'},
                                       {"format", required_argument, 0, 'f'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    int bad = 0;
    switch (c) {
    case 'o': out = optarg; break;
    case 'r': bad = parse_long("--ranks", optarg, 1, 4096, &ranks); break;
    case 'l':
      bad = parse_long("--layers", optarg, 1, EPLB_MAX_LAYERS, &layers);
      break;
    case 'e':
      bad = parse_long("--experts", optarg, 1, EPLB_MAX_EXPERTS, &experts);
      break;
    case 't':
      bad = parse_long("--tokens", optarg, 1, 1000000000000L, &tokens);
      break;
    case 's': bad = parse_long("--seed", optarg, 0, 2147483647L, &seed); break;
    case 'k': {
      char *end;
      skew = strtod(optarg, &end);
      if (*end != '\0' || !(skew >= 0 && skew <= 3)) {
        fprintf(stderr, "eplb-synth-stats: error: --skew '%s' is not in 0..3\n",
                optarg);
        bad = -1;
      }
      break;
    }
    case 'f': format = optarg; break;
    case 'h': usage(stdout); return 0;
    default: bad = -1;
    }
    if (bad) {
      fprintf(stderr, "(see eplb-synth-stats --help)\n");
      return 2;
    }
  }
  int sglang = strcmp(format, "sglang") == 0;
  if (out == NULL || (!sglang && strcmp(format, "mindspeed") != 0) ||
      optind != argc || (ranks > 1 && strstr(out, "%r") == NULL)) {
    fprintf(stderr,
            "eplb-synth-stats: error: need --out PATTERN (with %%r when "
            "--ranks > 1) and --format mindspeed|sglang (see --help)\n");
    return 2;
  }
  synth_t g = {.layers = layers,
               .experts = experts,
               .tokens = tokens,
               .seed = seed,
               .skew = skew,
               .sglang = sglang,
               .w = malloc(sizeof(double) * (size_t)experts)};
  if (g.w == NULL)
    return 1;
  int rc = 0;
  for (long r = 0; r < ranks && rc == 0; r++) {
    char path[4096];
    const char *p = strstr(out, "%r");
    if (p)
      snprintf(path, sizeof(path), "%.*s%ld%s", (int)(p - out), out, r, p + 2);
    else
      snprintf(path, sizeof(path), "%s", out);
    eplb_error_t err;
    eplb_error_clear(&err);
    g.rank = r;
    rc = eplb__write_atomic(path, write_rank, &g, &err);
    if (rc)
      fprintf(stderr, "eplb-synth-stats: error: %s\n", err.msg);
  }
  free(g.w);
  return rc ? 1 : 0;
}
