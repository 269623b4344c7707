/* cli/eplb_shard.c - `eplb-shard`: create, inspect and verify the per-rank
 * HDF5 shards of expert weights, and import them from / export them to
 * Hugging Face safetensors checkpoints (docs/shards.md).
 *
 * A migration must move every byte of every expert row to the right slot;
 * the only way to prove that is content a verifier can recompute.  `create`
 * writes R shards whose every byte is a function of (layer, expert,
 * dataset, byte index) (eplb_shard_fill_row), `verify` reads all shards of
 * a directory and checks every row against the expert its expert_ids
 * names, that the shards agree with each other and that their union is a
 * valid map, and `inspect` prints what is there.  `import`, `export` and
 * `verify --checkpoint` are thin wrappers over eplb/checkpoint.h.  A
 * single-process program:
 * it reads every rank's file itself.  Exit codes: 0 ok, 1 runtime error
 * (file, format, content), 2 usage error. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "eplb/checkpoint.h"
#include "eplb/eplb.h"
#include "eplb/shard.h"
#include "h5/shard_writer.h"
#include "mpi/fault.h"
#include "util/fileio.h"

#define PROG "eplb-shard"
#define MAX_RANKS 4096

typedef struct {
  const char *cmd, *dir, *map, *expect_map;
  const char *checkpoint, *pattern, *out;
  int32_t layer_min, layer_max, file_mb, logical;
  int32_t ranks, layers, experts, slots;
  int64_t generation;
  int32_t num_datasets;
  const char *names[EPLB_SHARD_MAX_DATASETS];
  char name_buf[EPLB_SHARD_MAX_DATASETS][EPLB_SHARD_NAME_MAX];
  eplb_dtype_t types[EPLB_SHARD_MAX_DATASETS];
  int32_t nd[EPLB_SHARD_MAX_DATASETS];
  int64_t dims[EPLB_SHARD_MAX_DATASETS][EPLB_SHARD_MAX_DIMS];
  int quiet;
  int checksums; /* verify --checksums */
} args_t;

/* --help: every option with its range. */
static void usage(FILE *f) {
  fprintf(
      f,
      "usage: eplb-shard create --dir D --ranks R --layers L --experts E\n"
      "                         --slots-per-rank P [--dataset NAME:TYPE:DIMS "
      "...]\n"
      "                         [--map FILE] [--generation G]\n"
      "       eplb-shard inspect --dir D\n"
      "       eplb-shard verify --dir D [--experts E] [--expect-map FILE]\n"
      "                         [--checkpoint CKPT | --checksums]\n"
      "       eplb-shard checksum --dir D\n"
      "       eplb-shard import --checkpoint CKPT --dir D --ranks R\n"
      "                         (--slots-per-rank P | --map FILE)\n"
      "                         [--pattern PAT] [--layers A-B]\n"
      "       eplb-shard export --dir D --out DIR [--format safetensors]\n"
      "                         [--logical [--file-size-mb N]]\n"
      "\n"
      "Per-rank HDF5 shards of expert weights (shard_00000.h5 ...; format in\n"
      "docs/shards.md).  create writes test shards whose every byte is a "
      "function\n"
      "of (layer, expert, dataset, byte), so verify can prove that every row "
      "of\n"
      "every slot belongs to the expert its expert_ids names.  import makes "
      "the\n"
      "shards of a Hugging Face safetensors checkpoint (DeepSeek-V3/R1, "
      "Qwen2/3-MoE,\n"
      "Mixtral, or --pattern), export writes them back as safetensors, verify\n"
      "--checkpoint compares every slot with the checkpoint.  Every row's\n"
      "at-rest checksum (xxh3-64) is checked by every read; verify --checksums\n"
      "checks them alone (any shard), checksum adds them to shards without.\n"
      "\n"
      "  --dir D              the shard directory (create and import make it "
      "if\n"
      "                       missing)\n"
      "  --ranks R            ranks (shards), 1..%d\n"
      "  --layers L           create: MoE layers, 1..%d; import: the model "
      "layer\n"
      "                       ids to take, A-B or A (0..%d; default all)\n"
      "  --experts E          logical experts per layer, 1..%d, at most R*P; "
      "for\n"
      "                       verify: check ids are < E (default: largest id + "
      "1)\n"
      "  --slots-per-rank P   slots per rank per layer, 1..%d\n"
      "  --dataset N:T:D      a weight dataset per layer: name N, type T "
      "(int8,\n"
      "                       uint8, int16, uint16, int32, uint32, int64, "
      "uint64,\n"
      "                       float16, float32, float64), per-slot shape D\n"
      "                       ('4x16', '64', or '' for one element); repeat, "
      "up to\n"
      "                       %d; default w:float32:64\n"
      "  --map FILE           place experts as this expert map says (R "
      "devices,\n"
      "                       P slots each, L layers); default contiguous\n"
      "  --generation G       generation to write, 0..2^53-1 (default 0)\n"
      "  --expect-map FILE    verify: the shards' map must equal this expert "
      "map\n"
      "  --checkpoint CKPT    a Hugging Face checkpoint directory "
      "(model.safetensors.\n"
      "                       index.json + files, or *.safetensors)\n"
      "  --pattern PAT        import: expert tensor names, with {layer}, "
      "{expert}\n"
      "                       and {name} at the end (default: DeepSeek/Qwen\n"
      "                       %s,\n"
      "                       then Mixtral)\n"
      "  --out DIR            export: the output directory (made if missing)\n"
      "  --format F           export: safetensors (the only one)\n"
      "  --logical            export: one copy of each logical expert, as a\n"
      "                       checkpoint (default: rank_<r>.safetensors per "
      "rank)\n"
      "  --file-size-mb N     export --logical: MiB per file, %d..%ld\n"
      "                       (default %d)\n"
      "  --quiet              print nothing on success\n"
      "  --help, --version\n"
      "\n"
      "exit status: 0 ok, 1 runtime error (file, format, content), 2 usage "
      "error\n",
      MAX_RANKS, EPLB_MAX_LAYERS, EPLB_MAX_LAYERS - 1, EPLB_MAX_EXPERTS,
      EPLB_SHARD_MAX_SLOTS, EPLB_SHARD_MAX_DATASETS, EPLB_CKPT_PATTERN_DEEPSEEK,
      EPLB_CKPT_MIN_FILE_MB, EPLB_CKPT_MAX_FILE_MB, EPLB_CKPT_DEFAULT_FILE_MB);
}

enum {
  OPT_DIR = 256,
  OPT_RANKS,
  OPT_LAYERS,
  OPT_EXPERTS,
  OPT_SLOTS,
  OPT_DATASET,
  OPT_MAP,
  OPT_GEN,
  OPT_EXPECT,
  OPT_QUIET,
  OPT_CHECKSUMS,
  OPT_CKPT,
  OPT_PATTERN,
  OPT_OUT,
  OPT_FORMAT,
  OPT_LOGICAL,
  OPT_FILE_MB,
  OPT_HELP,
  OPT_VERSION
};

static const struct option long_opts[] = {
    {"dir", required_argument, 0, OPT_DIR},
    {"ranks", required_argument, 0, OPT_RANKS},
    {"layers", required_argument, 0, OPT_LAYERS},
    {"experts", required_argument, 0, OPT_EXPERTS},
    {"slots-per-rank", required_argument, 0, OPT_SLOTS},
    {"dataset", required_argument, 0, OPT_DATASET},
    {"map", required_argument, 0, OPT_MAP},
    {"generation", required_argument, 0, OPT_GEN},
    {"expect-map", required_argument, 0, OPT_EXPECT},
    {"quiet", no_argument, 0, OPT_QUIET},
    {"checksums", no_argument, 0, OPT_CHECKSUMS},
    {"checkpoint", required_argument, 0, OPT_CKPT},
    {"pattern", required_argument, 0, OPT_PATTERN},
    {"out", required_argument, 0, OPT_OUT},
    {"format", required_argument, 0, OPT_FORMAT},
    {"logical", no_argument, 0, OPT_LOGICAL},
    {"file-size-mb", required_argument, 0, OPT_FILE_MB},
    {"help", no_argument, 0, OPT_HELP},
    {"version", no_argument, 0, OPT_VERSION},
    {0, 0, 0, 0}};

/* Parses the DIMS part of --dataset ("4x16", "64", "") into a->dims[d]. */
static int parse_dims(args_t *a, int32_t d, const char *text,
                      const char *spec) {
  a->nd[d] = 0;
  const char *p = text;
  while (*p) {
    char *end = NULL;
    long long v = strtoll(p, &end, 10);
    if (end == p || v < 1 || v > (1LL << 32) ||
        a->nd[d] >= EPLB_SHARD_MAX_DIMS - 1 || (*end != 'x' && *end != '\0') ||
        (*end == 'x' && end[1] == '\0'))
      return eplb_cli_usage_error(PROG,
                                  "--dataset '%s': dimensions must be like "
                                  "4x16 (1..2^32 each, at most %d)",
                                  spec, EPLB_SHARD_MAX_DIMS - 1);
    a->dims[d][a->nd[d]++] = v;
    p = *end == 'x' ? end + 1 : end;
  }
  return 0;
}

/* Parses one --dataset NAME:TYPE:DIMS. */
static int parse_dataset(args_t *a, const char *spec) {
  if (a->num_datasets >= EPLB_SHARD_MAX_DATASETS)
    return eplb_cli_usage_error(PROG, "more than %d --dataset options",
                                EPLB_SHARD_MAX_DATASETS);
  int32_t d = a->num_datasets;
  const char *c1 = strchr(spec, ':');
  const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
  char type[32];
  if (c1 == NULL || c2 == NULL || c1 == spec ||
      (size_t)(c1 - spec) >= EPLB_SHARD_NAME_MAX ||
      (size_t)(c2 - c1 - 1) >= sizeof(type))
    return eplb_cli_usage_error(PROG,
                                "--dataset '%s' is not NAME:TYPE:DIMS "
                                "(e.g. w1:float16:4x16)",
                                spec);
  snprintf(a->name_buf[d], EPLB_SHARD_NAME_MAX, "%.*s", (int)(c1 - spec), spec);
  snprintf(type, sizeof(type), "%.*s", (int)(c2 - c1 - 1), c1 + 1);
  int t = eplb_dtype_from_name(type);
  if (t < 0)
    return eplb_cli_usage_error(
        PROG,
        "--dataset '%s': type '%s' is unknown; use "
        "int8, uint8, int16, uint16, int32, uint32, int64, "
        "uint64, float16, float32 or float64",
        spec, type);
  a->types[d] = (eplb_dtype_t)t;
  a->names[d] = a->name_buf[d];
  int rc = parse_dims(a, d, c2 + 1, spec);
  if (rc == 0)
    a->num_datasets++;
  return rc;
}

/* Parses --generation (0..2^53-1). */
static int parse_gen(args_t *a, const char *v) {
  char *end = NULL;
  unsigned long long g = strtoull(v, &end, 10);
  if (*v == '\0' || *v == '-' || *end != '\0' || g >= (1ULL << 53))
    return eplb_cli_usage_error(PROG,
                                "--generation '%s' is not an integer in "
                                "0..9007199254740991",
                                v);
  a->generation = (int64_t)g;
  return 0;
}

/* import's --layers: "A-B" or "A", model layer ids 0..EPLB_MAX_LAYERS-1. */
static int parse_layer_range(args_t *a, const char *v) {
  char lo[32], *dash = strchr(v, '-');
  size_t n = dash ? (size_t)(dash - v) : strlen(v);
  if (n == 0 || n >= sizeof(lo))
    return eplb_cli_usage_error(PROG,
                                "--layers '%s' is not A-B or A (model layer "
                                "ids 0..%d)",
                                v, EPLB_MAX_LAYERS - 1);
  snprintf(lo, sizeof(lo), "%.*s", (int)n, v);
  if (eplb_cli_parse_int(PROG, "--layers", lo, 0, EPLB_MAX_LAYERS - 1,
                         &a->layer_min) ||
      eplb_cli_parse_int(PROG, "--layers", dash ? dash + 1 : lo, a->layer_min,
                         EPLB_MAX_LAYERS - 1, &a->layer_max))
    return 2;
  return 0;
}

/* --format: safetensors is the one export format. */
static int parse_format(const char *v) {
  if (strcmp(v, "safetensors") == 0)
    return 0;
  return eplb_cli_usage_error(PROG, "--format '%s': only safetensors", v);
}

/* Handles one option.  0, 2 (usage error) or -1 (--help/--version). */
static int parse_one(args_t *a, int c, char *argv[]) {
  switch (c) {
  case OPT_DIR: a->dir = optarg; return 0;
  case OPT_MAP: a->map = optarg; return 0;
  case OPT_EXPECT: a->expect_map = optarg; return 0;
  case OPT_QUIET: a->quiet = 1; return 0;
  case OPT_CHECKSUMS: a->checksums = 1; return 0;
  case OPT_DATASET: return parse_dataset(a, optarg);
  case OPT_CKPT: a->checkpoint = optarg; return 0;
  case OPT_PATTERN: a->pattern = optarg; return 0;
  case OPT_OUT: a->out = optarg; return 0;
  case OPT_FORMAT: return parse_format(optarg);
  case OPT_LOGICAL: a->logical = 1; return 0;
  case OPT_FILE_MB:
    return eplb_cli_parse_int(PROG, "--file-size-mb", optarg,
                              EPLB_CKPT_MIN_FILE_MB, EPLB_CKPT_MAX_FILE_MB,
                              &a->file_mb)
               ? 2
               : 0;
  case OPT_GEN: return parse_gen(a, optarg);
  case OPT_RANKS:
    return eplb_cli_parse_int(PROG, "--ranks", optarg, 1, MAX_RANKS, &a->ranks)
               ? 2
               : 0;
  case OPT_LAYERS:
    if (strcmp(a->cmd, "import") == 0)
      return parse_layer_range(a, optarg);
    return eplb_cli_parse_int(PROG, "--layers", optarg, 1, EPLB_MAX_LAYERS,
                              &a->layers)
               ? 2
               : 0;
  case OPT_EXPERTS:
    return eplb_cli_parse_int(PROG, "--experts", optarg, 1, EPLB_MAX_EXPERTS,
                              &a->experts)
               ? 2
               : 0;
  case OPT_SLOTS:
    return eplb_cli_parse_int(PROG, "--slots-per-rank", optarg, 1,
                              EPLB_SHARD_MAX_SLOTS, &a->slots)
               ? 2
               : 0;
  case OPT_HELP: usage(stdout); return -1;
  case OPT_VERSION: printf("eplb-shard %s\n", eplb_version()); return -1;
  default: return eplb_cli_bad_option(PROG, c, argv, optind);
  }
}

/* Options that belong to one command only. */
static int check_only(const args_t *a) {
  int imp = strcmp(a->cmd, "import") == 0, exp = strcmp(a->cmd, "export") == 0;
  if (a->checkpoint && !imp && strcmp(a->cmd, "verify") != 0)
    return eplb_cli_usage_error(PROG, "--checkpoint is for import and verify");
  if (a->pattern && !imp)
    return eplb_cli_usage_error(PROG, "--pattern is for import");
  if ((a->out || a->logical) && !exp)
    return eplb_cli_usage_error(PROG, "--out and --logical are for export");
  if (a->file_mb && !a->logical)
    return eplb_cli_usage_error(PROG, "--file-size-mb is for export --logical");
  if (a->checksums && (strcmp(a->cmd, "verify") != 0 || a->checkpoint))
    return eplb_cli_usage_error(PROG, "--checksums is for verify, without "
                                      "--checkpoint");
  if (a->checkpoint && a->experts)
    return eplb_cli_usage_error(PROG, "verify --checkpoint takes the experts "
                                      "from the checkpoint: no --experts");
  return 0;
}

/* import: a checkpoint, ranks, and slots or a map (not both). */
static int check_import(const args_t *a) {
  if (a->checkpoint == NULL || a->ranks == 0 || (a->slots == 0) == !a->map)
    return eplb_cli_usage_error(PROG,
                                "import needs --checkpoint, --dir, --ranks "
                                "and either --slots-per-rank or --map");
  return 0;
}

/* Checks what each command needs. */
static int check_args(args_t *a) {
  if (a->dir == NULL || a->dir[0] == '\0')
    return eplb_cli_usage_error(PROG, "--dir D is required");
  int rc = check_only(a);
  if (rc)
    return rc;
  if (strcmp(a->cmd, "import") == 0)
    return check_import(a);
  if (strcmp(a->cmd, "export") == 0 && a->out == NULL)
    return eplb_cli_usage_error(PROG, "export needs --out DIR");
  if (strcmp(a->cmd, "create") != 0)
    return 0;
  if (a->ranks == 0 || a->layers == 0 || a->experts == 0 || a->slots == 0)
    return eplb_cli_usage_error(PROG,
                                "create needs --ranks, --layers, --experts "
                                "and --slots-per-rank");
  if ((int64_t)a->ranks * a->slots < a->experts ||
      (int64_t)a->ranks * a->slots > EPLB_MAX_SLOTS)
    return eplb_cli_usage_error(PROG,
                                "--ranks %d x --slots-per-rank %d = %lld slots "
                                "must hold the %d experts and be at most %d",
                                a->ranks, a->slots,
                                (long long)a->ranks * a->slots, a->experts,
                                EPLB_MAX_SLOTS);
  if (a->num_datasets == 0)
    return parse_dataset(a, "w:float32:64");
  return 0;
}

/* Parses argv (argv[1] is the command).  0, 2, or -1 (help printed). */
static int parse_args(int argc, char *argv[], args_t *a) {
  if (argc < 2)
    return eplb_cli_usage_error(
        PROG, "a command is required: create, inspect, verify, checksum, "
              "import or export");
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
    return usage(stdout), -1;
  if (strcmp(argv[1], "--version") == 0)
    return printf("eplb-shard %s\n", eplb_version()), -1;
  a->cmd = argv[1];
  a->layer_min = a->layer_max = -1;
  if (strcmp(a->cmd, "create") && strcmp(a->cmd, "inspect") &&
      strcmp(a->cmd, "verify") && strcmp(a->cmd, "import") &&
      strcmp(a->cmd, "export") && strcmp(a->cmd, "checksum"))
    return eplb_cli_usage_error(PROG,
                                "unknown command '%s'; use create, inspect, "
                                "verify, checksum, import or export",
                                a->cmd);
  opterr = 0;
  optind = 2;
  int c;
  while ((c = getopt_long(argc, argv, ":", long_opts, NULL)) != -1) {
    int rc = parse_one(a, c, argv);
    if (rc)
      return rc;
  }
  if (optind < argc)
    return eplb_cli_usage_error(PROG, "unexpected argument '%s'", argv[optind]);
  return check_args(a);
}

/* ---- create -------------------------------------------------------- */

/* Makes directory `dir` if it is missing (one level). */
static int mkdir_p(const char *dir, eplb_error_t *err) {
  struct stat st;
  if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
    return 0;
  if (mkdir(dir, 0777) != 0)
    return eplb_error_set(err, EPLB_EIO, "--dir %s: cannot create it: %s", dir,
                          strerror(errno));
  return 0;
}

/* The placement to create: --map or contiguous. */
static int create_map(const args_t *a, eplb_placement_t *p, eplb_error_t *err) {
  int32_t S = a->ranks * a->slots;
  if (a->map == NULL) {
    return eplb_placement_init_contiguous(p, a->layers, a->experts, S, a->ranks,
                                          err);
  }
  int rc = eplb_placement_read(p, a->map, EPLB_MAP_AUTO, err);
  if (rc)
    return rc;
  if (p->num_layers != a->layers || p->num_slots != S ||
      p->num_experts > a->experts ||
      (p->num_gpus != a->ranks && p->num_gpus != 1)) {
    rc = eplb_error_set(
        err, EPLB_ESHAPE,
        "--map %s has %d layers x %d slots on %d devices (experts "
        "< %d); the options say %d layers x %d slots on %d ranks, "
        "%d experts",
        a->map, p->num_layers, p->num_slots, p->num_gpus, p->num_experts,
        a->layers, S, a->ranks, a->experts);
    eplb_placement_cleanup(p);
  }
  p->num_gpus = a->ranks;
  p->num_experts = a->experts;
  return rc;
}

/* Writes rank r's shard of placement p. */
static int create_one(const args_t *a, eplb_shard_info_t *info,
                      const eplb_placement_t *p, int32_t r, eplb_error_t *err) {
  char path[4096];
  int rc = eplb_shard_path(a->dir, r, path, sizeof(path), err);
  size_t stride = (size_t)info->row_bytes;
  unsigned char *buf = rc ? NULL : malloc(stride * (size_t)a->slots + 1);
  eplb_shard_writer_t *w = NULL;
  if (rc == 0 && buf == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory for one layer of %s",
                        path);
  info->rank = r;
  if (rc == 0)
    rc = eplb_shard_writer_create(path, info, &w, err);
  for (int32_t l = 0; rc == 0 && l < a->layers; l++) {
    const int32_t *ids = p->phy2log + (size_t)l * (size_t)p->num_slots +
                         (size_t)r * (size_t)a->slots;
    for (int32_t s = 0; s < a->slots; s++)
      eplb_shard_fill_row(info, l, ids[s], buf + (size_t)s * stride);
    rc = eplb_shard_writer_put_layer(w, l, ids, buf, stride, err);
  }
  if (rc == 0 && eplb__fault_write(r)) /* tests: EPLB_FAULT=enospc:<r> */
    eplb__shard_writer_inject(w, eplb__fault_write(r));
  if (rc == 0)
    rc = eplb_shard_writer_finish(w, 1, err);
  else
    eplb_shard_writer_abort(w);
  free(buf);
  return rc;
}

static int cmd_create(const args_t *a, eplb_error_t *err) {
  eplb_shard_info_t *info = calloc(1, sizeof(*info));
  eplb_placement_t p = {0};
  if (info == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  int rc = eplb__fault_load(err); /* a malformed EPLB_FAULT is an error */
  if (rc == 0)
    rc = eplb_shard_info_make(info, a->ranks, a->layers, a->slots,
                              (uint64_t)a->generation, a->num_datasets,
                              a->names, a->types, a->nd,
                              (const int64_t(*)[EPLB_SHARD_MAX_DIMS])a->dims,
                              err);
  if (rc == 0)
    rc = create_map(a, &p, err);
  if (rc == 0)
    rc = eplb_placement_check(&p, 0, a->map ? a->map : "the contiguous map",
                              err);
  if (rc == 0 && mkdir_p(a->dir, err) != 0)
    rc = EPLB_EIO;
  for (int32_t r = 0; rc == 0 && r < a->ranks; r++)
    rc = create_one(a, info, &p, r, err);
  if (rc == 0 && !a->quiet)
    printf("created %d shards in %s: %d layers, %d slots per rank, %d experts, "
           "%d datasets, %lld bytes per slot, generation %lld\n",
           a->ranks, a->dir, a->layers, a->slots, a->experts, a->num_datasets,
           (long long)info->row_bytes, (long long)a->generation);
  eplb_placement_cleanup(&p);
  free(info);
  return rc;
}

/* ---- reading every shard of a directory ------------------------------ */

typedef struct {
  int32_t n;
  eplb_shard_t **sh;
  eplb_placement_t map; /* union of the expert ids */
} dirset_t;

static void dirset_cleanup(dirset_t *d) {
  for (int32_t r = 0; r < d->n && d->sh; r++)
    eplb_shard_close(d->sh[r]);
  free(d->sh);
  eplb_placement_cleanup(&d->map);
  memset(d, 0, sizeof(*d));
}

/* Opens shard r of dir; checks its rank and its agreement with rank 0's. */
static int open_rank(const char *dir, int32_t r, dirset_t *d,
                     eplb_error_t *err) {
  char path[4096], why[512];
  int rc = eplb_shard_path(dir, r, path, sizeof(path), err);
  if (rc == 0)
    rc = eplb_shard_open(path, &d->sh[r], err);
  if (rc)
    return eplb_error_prefix(err, "rank %d", (int)r);
  const eplb_shard_info_t *in = eplb_shard_info(d->sh[r]);
  if (in->rank != r)
    return eplb_error_set(err, EPLB_ESTATE,
                          "rank %d: %s says rank %d; shard "
                          "files must not be renamed",
                          (int)r, path, in->rank);
  if (r > 0 &&
      eplb_shard_info_diff(eplb_shard_info(d->sh[0]), in, why, sizeof(why)))
    return eplb_error_set(err, EPLB_ESHAPE, "rank %d: %s %s", (int)r, path,
                          why);
  return 0;
}

/* Copies shard r's expert ids into the union map. */
static int gather_ids(dirset_t *d, int32_t r, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(d->sh[r]);
  int32_t P = in->slots_per_rank;
  for (int32_t l = 0; l < in->num_layers; l++) {
    int32_t *ids = d->map.phy2log + (size_t)l * (size_t)d->map.num_slots +
                   (size_t)r * (size_t)P;
    int rc = eplb_shard_read_ids(d->sh[r], l, ids, err);
    if (rc)
      return eplb_error_prefix(err, "rank %d", (int)r);
  }
  return 0;
}

/* Opens every shard of dir (world size from rank 0's) and builds the map;
 * experts = 0 infers it as the largest id + 1. */
static int dirset_open(const char *dir, int32_t experts, dirset_t *d,
                       eplb_error_t *err) {
  memset(d, 0, sizeof(*d));
  if ((d->sh = calloc(1, sizeof(*d->sh))) == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  d->n = 1;
  int rc = open_rank(dir, 0, d, err);
  if (rc)
    return rc;
  const eplb_shard_info_t *in = eplb_shard_info(d->sh[0]);
  eplb_shard_t **more = realloc(d->sh, sizeof(*d->sh) * (size_t)in->world_size);
  if (more == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  d->sh = more;
  for (int32_t r = 1; r < in->world_size; r++)
    d->sh[r] = NULL;
  d->n = in->world_size;
  for (int32_t r = 1; r < d->n && rc == 0; r++)
    rc = open_rank(dir, r, d, err);
  int64_t S = (int64_t)in->slots_per_rank * d->n;
  if (rc == 0)
    rc = eplb_placement_init(&d->map, in->num_layers, EPLB_MAX_EXPERTS,
                             (int32_t)S, d->n, err);
  for (int32_t r = 0; r < d->n && rc == 0; r++)
    rc = gather_ids(d, r, err);
  int32_t mx = -1;
  for (int64_t i = 0; rc == 0 && i < S * in->num_layers; i++)
    mx = d->map.phy2log[i] > mx ? d->map.phy2log[i] : mx;
  if (rc == 0)
    d->map.num_experts = experts > 0 ? experts : mx + 1;
  if (rc == 0)
    rc = eplb_placement_check(&d->map, 0, dir, err);
  return rc;
}

/* ---- inspect / verify ------------------------------------------------ */

static void print_info(const dirset_t *d, const char *dir) {
  const eplb_shard_info_t *in = eplb_shard_info(d->sh[0]);
  printf("directory         %s\n", dir);
  printf("format            eplb-shard version %d\n", in->version);
  printf("generation        %" PRIu64 "\n", in->generation);
  printf("ranks             %d\n", in->world_size);
  printf("layers            %d\n", in->num_layers);
  printf("slots per rank    %d\n", in->slots_per_rank);
  printf("experts           %d\n", d->map.num_experts);
  printf("bytes per slot    %lld\n", (long long)in->row_bytes);
  printf("layer ids        ");
  for (int32_t l = 0; l < in->num_layers; l++)
    printf(" %d", eplb_shard_layer_ids(d->sh[0])[l]);
  printf("\n");
  int32_t with = 0;
  for (int32_t r = 0; r < d->n; r++)
    with += eplb_shard_checksums(d->sh[r]) != NULL;
  if (with)
    printf("checksums         xxh3-64 per row and dataset (%d of %d shards)\n",
           with, d->n);
  else
    printf("checksums         none (eplb-shard checksum adds them)\n");
  for (int32_t k = 0; k < in->num_datasets; k++) {
    const eplb_shard_dataset_t *ds = &in->datasets[k];
    printf("dataset           %s %s [", ds->name, ds->type_name);
    for (int i = 0; i < ds->ndims; i++)
      printf("%s%lld", i ? ", " : "", (long long)ds->dims[i]);
    printf("] (%lld bytes per slot)\n", (long long)ds->row_bytes);
  }
  for (int32_t l = 0; l < in->num_layers; l++)
    for (int32_t r = 0; r < d->n; r++) {
      printf("layer %d rank %d   ", l, r);
      for (int32_t s = 0; s < in->slots_per_rank; s++)
        printf(
            "%s%d", s ? " " : "",
            d->map.phy2log[(size_t)l * (size_t)d->map.num_slots +
                           (size_t)r * (size_t)in->slots_per_rank + (size_t)s]);
      printf("\n");
    }
}

/* Checks row set s of layer l of shard r (at buf) against its at-rest
 * checksums, if the shard has them. */
static int verify_sums(const dirset_t *d, int32_t r, int32_t l, int32_t s,
                       const unsigned char *buf, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(d->sh[r]);
  const uint64_t *sums = eplb_shard_checksums(d->sh[r]);
  size_t off = 0, D = (size_t)in->num_datasets;
  for (size_t k = 0; sums && k < D; k++) {
    size_t rb = (size_t)in->datasets[k].row_bytes;
    uint64_t want = sums[((size_t)l * (size_t)in->slots_per_rank + (size_t)s) *
                             D + k];
    if (eplb_shard_row_checksum(buf + off, rb) != want)
      return eplb_error_set(
          err, EPLB_ECHECKSUM,
          "rank %d: %s: layer %d slot %d dataset '%s': the bytes do not match "
          "the shard's at-rest checksum (xxh3-64): the file is corrupted (a "
          "flipped bit, a torn write); restore the shard from a copy",
          (int)r, eplb_shard_file(d->sh[r]), (int)l, (int)s,
          in->datasets[k].name);
    off += rb;
  }
  return 0;
}

/* Checks every row of shard r against the content of its expert, then
 * against its at-rest checksums (want NULL: against the checksums
 * only). */
static int verify_rows(const dirset_t *d, int32_t r, unsigned char *buf,
                       unsigned char *want, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(d->sh[r]);
  size_t stride = (size_t)in->row_bytes;
  eplb_shard_set_check(d->sh[r], 0); /* the content first: more precise */
  for (int32_t l = 0; l < in->num_layers; l++) {
    int rc = eplb_shard_read_rows(d->sh[r], l, buf, stride, err);
    if (rc)
      return eplb_error_prefix(err, "rank %d", (int)r);
    for (int32_t s = 0; s < in->slots_per_rank && want == NULL; s++) {
      rc = verify_sums(d, r, l, s, buf + (size_t)s * stride, err);
      if (rc)
        return rc;
    }
    for (int32_t s = 0; s < in->slots_per_rank && want; s++) {
      int32_t e =
          d->map.phy2log[(size_t)l * (size_t)d->map.num_slots +
                         (size_t)r * (size_t)in->slots_per_rank + (size_t)s];
      eplb_shard_fill_row(in, l, e, want);
      if (memcmp(buf + (size_t)s * stride, want, stride) != 0)
        return eplb_error_set(
            err, EPLB_ECHECKSUM,
            "rank %d: %s: layer %d slot %d: the weights are not "
            "expert %d's (expert_ids says %d; shards made by import hold "
            "a checkpoint's weights: verify them with --checkpoint)",
            (int)r, eplb_shard_file(d->sh[r]), (int)l, (int)s, (int)e, (int)e);
      rc = verify_sums(d, r, l, s, buf + (size_t)s * stride, err);
      if (rc)
        return rc;
    }
  }
  return 0;
}

/* The shards' map must equal --expect-map. */
static int verify_expect(const dirset_t *d, const char *file,
                         eplb_error_t *err) {
  eplb_placement_t m;
  int rc = eplb_placement_read(&m, file, EPLB_MAP_AUTO, err);
  if (rc)
    return rc;
  if (m.num_layers != d->map.num_layers || m.num_slots != d->map.num_slots ||
      memcmp(m.phy2log, d->map.phy2log,
             sizeof(int32_t) * (size_t)m.num_layers * (size_t)m.num_slots) != 0)
    rc = eplb_error_set(err, EPLB_EMAP,
                        "the shards' map differs from --expect-map %s", file);
  eplb_placement_cleanup(&m);
  return rc;
}

static int cmd_verify(const args_t *a, const dirset_t *d, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(d->sh[0]);
  size_t stride = (size_t)in->row_bytes;
  unsigned char *buf = malloc(stride * (size_t)in->slots_per_rank + 1);
  unsigned char *want = malloc(stride + 1);
  int rc = buf && want ? 0 : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  int32_t with = 0;
  for (int32_t r = 0; rc == 0 && r < d->n; r++) {
    rc = verify_rows(d, r, buf, a->checksums ? NULL : want, err);
    with += eplb_shard_checksums(d->sh[r]) != NULL;
  }
  if (rc == 0 && a->expect_map)
    rc = verify_expect(d, a->expect_map, err);
  if (rc == 0 && a->checksums && with < d->n)
    rc = eplb_error_set(err, EPLB_ESTATE,
                        "%d of the %d shards in %s carry no at-rest "
                        "checksums: add them with `eplb-shard checksum --dir "
                        "%s`",
                        d->n - with, d->n, a->dir, a->dir);
  if (rc == 0 && !a->quiet && a->checksums)
    printf("verified %d shards in %s: generation %" PRIu64
           ", %d layers x %d slots, every row matches its at-rest checksum "
           "(xxh3-64)\n",
           d->n, a->dir, in->generation, in->num_layers, d->map.num_slots);
  else if (rc == 0 && !a->quiet)
    printf("verified %d shards in %s: generation %" PRIu64
           ", %d layers x %d slots, "
           "%d experts, every byte matches\n",
           d->n, a->dir, in->generation, in->num_layers, d->map.num_slots,
           d->map.num_experts);
  free(buf);
  free(want);
  return rc;
}

/* ---- checksum -------------------------------------------------------- */

/* "<path>.checksum.tmp" of rank r into buf. */
static int sums_tmp(const char *dir, int32_t r, char *path, char *tmp,
                    size_t cap, eplb_error_t *err) {
  int rc = eplb_shard_path(dir, r, path, cap, err);
  if (rc == 0 && snprintf(tmp, cap, "%s.checksum.tmp", path) >= (int)cap)
    rc = eplb_error_set(err, EPLB_EARG, "--dir %s is too long", dir);
  return rc;
}

/* Adds at-rest checksums to every shard of the directory that has none:
 * each gets a checked copy with them (fsynced); when all are written they
 * are renamed over the shards, so a failure leaves the directory as it
 * was, and a crash between renames leaves shards that read the same with
 * or without checksums. */
static int cmd_checksum(const args_t *a, eplb_error_t *err) {
  dirset_t d;
  char path[4096], tmp[4200], journal[4200];
  snprintf(journal, sizeof(journal), "%s/eplb_journal.json", a->dir);
  int rc = access(journal, F_OK) == 0
               ? eplb_error_set(err, EPLB_ESTATE,
                                "%s: a migration was interrupted; recover "
                                "first (eplb-sync --recover --shards %s)",
                                journal, a->dir)
               : dirset_open(a->dir, 0, &d, err);
  if (rc)
    return rc;
  int32_t n = d.n, added = 0, had = 0;
  dirset_cleanup(&d);
  char *wrote = calloc((size_t)n, 1);
  if (wrote == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t r = 0; rc == 0 && r < n; r++) {
    int h = 0;
    rc = sums_tmp(a->dir, r, path, tmp, sizeof(path), err);
    if (rc == 0)
      rc = eplb_shard_checksum_file(path, tmp, &h, err);
    if (rc)
      eplb_error_prefix(err, "rank %d", (int)r);
    wrote[r] = rc == 0 && !h;
    had += rc == 0 && h;
  }
  for (int32_t r = 0; r < n; r++) {
    if (!wrote[r] || sums_tmp(a->dir, r, path, tmp, sizeof(path), NULL))
      continue;
    if (rc == 0 && rename(tmp, path) != 0)
      rc = eplb_error_set(err, EPLB_EIO, "renaming %s over %s failed: %s",
                          tmp, path, strerror(errno));
    else if (rc == 0)
      added++;
    else
      unlink(tmp);
  }
  if (rc == 0 && added > 0)
    rc = eplb__fsync_dir_of(path, err);
  free(wrote);
  if (rc == 0 && !a->quiet)
    printf("checksummed %d shards in %s: at-rest checksums (xxh3-64) added to "
           "%d, %d had them already (every row checked)\n",
           n, a->dir, added, had);
  return rc;
}

/* ---- checkpoints ----------------------------------------------------- */

/* Bytes as "12.3 GB" (decimal, as disks count). */
static void human(double b, char *buf, size_t n) {
  const char *u[] = {"B", "kB", "MB", "GB", "TB"};
  int i = 0;
  while (b >= 1000 && i < 4)
    b /= 1000, i++;
  snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static void print_import(const args_t *a, const eplb_ckpt_import_result_t *r) {
  char rd[32], wr[32], pe[32];
  human((double)r->bytes_read, rd, sizeof(rd));
  human((double)r->bytes_written, wr, sizeof(wr));
  human((double)r->bytes_per_expert, pe, sizeof(pe));
  printf("imported %s checkpoint %s (%d files): %d MoE layers (ids %d..%d), "
         "%d experts x %d tensors (%s each) into %d shards of %d slots in "
         "%s: %s read, %s written in %.2f s (%.0f MB/s)\n",
         r->family, a->checkpoint, r->num_files, r->num_layers,
         r->first_layer_id, r->last_layer_id, r->num_experts, r->num_datasets,
         pe, a->ranks, r->slots_per_rank, a->dir, rd, wr, r->seconds,
         r->seconds > 0 ? (double)r->bytes_read / r->seconds / 1e6 : 0.0);
  printf("left out: dense layers %s; shared experts in %d layers (%lld "
         "tensors); %lld other tensors (attention, norms, embeddings, "
         "routers)",
         r->dense_layers[0] ? r->dense_layers : "none", r->shared_layers,
         (long long)r->shared_tensors, (long long)r->other_tensors);
  if (r->skipped_layers[0])
    printf("; MoE layers outside --layers: %s", r->skipped_layers);
  printf("\n");
}

static int cmd_import(const args_t *a, eplb_error_t *err) {
  eplb_ckpt_import_opts_t o;
  eplb_ckpt_import_result_t r;
  eplb_placement_t p = {0};
  eplb_ckpt_import_opts_default(&o);
  o.checkpoint = a->checkpoint;
  o.dir = a->dir;
  o.ranks = a->ranks;
  o.slots_per_rank = a->slots;
  o.pattern = a->pattern;
  o.layer_min = a->layer_min;
  o.layer_max = a->layer_max;
  int rc = 0;
  if (a->map) {
    char name[4200];
    snprintf(name, sizeof(name), "--map %s", a->map);
    rc = eplb_placement_read(&p, a->map, EPLB_MAP_AUTO, err);
    o.placement = &p;
    o.placement_name = name;
    if (rc == 0)
      rc = eplb_ckpt_import(&o, &r, err);
  } else {
    rc = eplb_ckpt_import(&o, &r, err);
  }
  if (rc == 0 && !a->quiet)
    print_import(a, &r);
  eplb_placement_cleanup(&p);
  return rc;
}

static int cmd_export(const args_t *a, eplb_error_t *err) {
  eplb_ckpt_export_opts_t o;
  eplb_ckpt_export_result_t r;
  eplb_ckpt_export_opts_default(&o);
  o.dir = a->dir;
  o.out = a->out;
  o.logical = a->logical;
  if (a->file_mb)
    o.max_file_mb = a->file_mb;
  int rc = eplb_ckpt_export(&o, &r, err);
  char b[32];
  human((double)r.bytes, b, sizeof(b));
  if (rc == 0 && !a->quiet)
    printf("exported %s: %d safetensors files (%lld tensors, %s) in %s in "
           "%.2f s\n",
           a->logical ? "the logical experts" : "every rank's slots", r.files,
           (long long)r.tensors, b, a->out, r.seconds);
  return rc;
}

static int cmd_verify_ckpt(const args_t *a, eplb_error_t *err) {
  eplb_ckpt_verify_result_t r;
  int rc = eplb_ckpt_verify(a->dir, a->checkpoint, &r, err);
  if (rc == 0 && a->expect_map) {
    dirset_t d;
    rc = dirset_open(a->dir, r.num_experts, &d, err);
    if (rc == 0)
      rc = verify_expect(&d, a->expect_map, err);
    dirset_cleanup(&d);
  }
  char b[32];
  human((double)r.bytes, b, sizeof(b));
  if (rc == 0 && !a->quiet)
    printf("verified %d shards in %s against %s: %d layers x %d slots, %d "
           "experts, %lld tensors (%s), every byte matches\n",
           r.ranks, a->dir, a->checkpoint, r.num_layers,
           r.ranks * r.slots_per_rank, r.num_experts, (long long)r.tensors, b);
  return rc;
}

/* create: --map is none of the shards it writes (by identity). */
static int check_create_outputs(const args_t *a) {
  if (a->map == NULL)
    return 0;
  eplb_cli_file_t in = {"--map", a->map};
  for (int32_t r = 0; r < a->ranks; r++) {
    char path[4096];
    if (eplb_shard_path(a->dir, r, path, sizeof(path), NULL) != 0)
      return 0; /* too long: cmd_create names it */
    eplb_cli_file_t out = {"--dir", path};
    int rc = eplb_cli_check_outputs(PROG, &out, 1, &in, 1);
    if (rc)
      return rc;
  }
  return 0;
}

int main(int argc, char *argv[]) {
  args_t a;
  memset(&a, 0, sizeof(a));
  int rc = parse_args(argc, argv, &a);
  if (rc)
    return rc < 0 ? 0 : rc;
  eplb_error_t err;
  eplb_error_clear(&err);
  if (strcmp(a.cmd, "create") == 0) {
    rc = check_create_outputs(&a);
    if (rc)
      return rc;
    rc = cmd_create(&a, &err);
  } else if (strcmp(a.cmd, "import") == 0) {
    rc = cmd_import(&a, &err);
  } else if (strcmp(a.cmd, "export") == 0) {
    rc = cmd_export(&a, &err);
  } else if (strcmp(a.cmd, "checksum") == 0) {
    rc = cmd_checksum(&a, &err);
  } else if (a.checkpoint) {
    rc = cmd_verify_ckpt(&a, &err);
  } else {
    dirset_t d;
    rc = dirset_open(a.dir, a.experts, &d, &err);
    if (rc == 0 && strcmp(a.cmd, "inspect") == 0)
      print_info(&d, a.dir);
    else if (rc == 0)
      rc = cmd_verify(&a, &d, &err);
    dirset_cleanup(&d);
  }
  return rc ? eplb_cli_report(PROG, &err) : 0;
}
