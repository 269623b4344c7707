/* test_migrate_driver.c - a small multi-rank driver of the shard library
 * for mpi_tests/migrate_cli.sh: open the shards, migrate them to a new map,
 * recover after a crash, and (without MPI) tamper with a shard so the
 * tests can feed the library bad files.
 *
 *   test_migrate_driver migrate DIR MAP [options]   (under mpiexec)
 *       MAP: an expert map file, random:SEED (the same on every rank) or
 *       one-row (the current map with one slot changed)
 *       --buffer-mb N  --nodes N  --timeout S  --save-map FILE  --status-dir D
 *       --diverge-rank R (that rank passes another placement)
 *       --commit auto|in-place|rewrite (eplb_migrate_opts_t.commit)
 *       --fsize-limit KB (RLIMIT_FSIZE after MPI_Init, SIGXFSZ ignored: a
 *       disk that fills up; Open MPI's own files are made before)
 *     checks after the migration that experts_received and bytes_moved
 *     equal the minimum the plan needs (computed here independently).
 *   test_migrate_driver recover DIR [--status-dir D]  (under mpiexec)
 *   test_migrate_driver tamper FILE KIND               (no MPI)
 *       KIND: version | dtype | shape | ids | byte (one weight byte of
 *       layer 0, slot 1 flipped)
 *
 * Exit 0 on success, 1 on an error (rank 0 prints it), 2 on bad usage.
 * With --status-dir every rank writes its exit code to D/rank<r>.rc, so
 * the test can check that every rank failed, not just one, and to
 * D/rank<r>.fin after MPI_Finalize (it did not crash there). */
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "eplb/formats.h"
#include "eplb/migrate.h"

#define PROG "test_migrate_driver"

typedef struct {
  const char *cmd, *dir, *map, *save_map, *status_dir;
  int buffer_mb, nodes, timeout_s, diverge_rank;
  long fsize_kb; /* --fsize-limit: RLIMIT_FSIZE after MPI_Init (0: none) */
  int commit;    /* --commit auto|in-place|rewrite */
} args_t;

static uint64_t rng;
static uint32_t rnd(uint32_t n) {
  rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (uint32_t)((rng >> 33) % n);
}

/* A random valid placement shaped like cur (same on every rank). */
static int random_map(const eplb_placement_t *cur, uint64_t seed, eplb_placement_t *p) {
  int rc = eplb_placement_copy(p, cur, NULL);
  int32_t S = cur->num_slots, E = cur->num_experts;
  rng = seed;
  for (int32_t l = 0; rc == 0 && l < cur->num_layers; l++) {
    int32_t *row = p->phy2log + (size_t)l * (size_t)S;
    for (int32_t s = 0; s < S; s++)
      row[s] = s < E ? s : (int32_t)rnd((uint32_t)E);
    for (int32_t s = S - 1; s > 0; s--) {
      int32_t j = (int32_t)rnd((uint32_t)s + 1), x = row[s];
      row[s] = row[j];
      row[j] = x;
    }
  }
  return rc;
}

/* The minimum row sets to receive: per layer and rank, distinct new
 * experts the rank did not hold. */
static int64_t min_receives(const eplb_placement_t *o, const eplb_placement_t *n) {
  int32_t S = o->num_slots, P = S / o->num_gpus;
  int64_t sum = 0;
  for (int32_t l = 0; l < o->num_layers; l++)
    for (int32_t r = 0; r < o->num_gpus; r++)
      for (int32_t j = 0; j < P; j++) {
        const int32_t *orow = o->phy2log + (size_t)l * (size_t)S + (size_t)r * (size_t)P;
        const int32_t *nrow = n->phy2log + (size_t)l * (size_t)S + (size_t)r * (size_t)P;
        int need = 1;
        for (int32_t k = 0; k < P; k++)
          need &= orow[k] != nrow[j] && (k >= j || nrow[k] != nrow[j]);
        sum += need;
      }
  return sum;
}

/* The current placement with ONE slot changed: the last slot (of the last
 * rank, last layer) whose expert has another copy in its layer gets
 * another expert of that layer; every expert stays placed. */
static int one_row_map(const eplb_placement_t *cur, eplb_placement_t *p) {
  int rc = eplb_placement_copy(p, cur, NULL);
  int32_t S = cur->num_slots;
  for (int32_t l = cur->num_layers - 1; rc == 0 && l >= 0; l--) {
    int32_t *row = p->phy2log + (size_t)l * (size_t)S;
    for (int32_t s = S - 1; s >= 0; s--)
      for (int32_t t = 0; t < S; t++)
        if (t != s && row[t] == row[s]) {
          row[s] = row[(s + 1) % S] != row[s] ? row[(s + 1) % S] : row[(s + 2) % S];
          return 0;
        }
  }
  return rc ? rc : -1;
}

/* This process's bytes written to storage so far (/proc/self/io
 * write_bytes), or -1. */
static long long proc_write_bytes(void) {
  FILE *f = fopen("/proc/self/io", "r");
  char line[128];
  long long v = -1;
  while (f && fgets(line, sizeof(line), f))
    if (sscanf(line, "write_bytes: %lld", &v) == 1)
      break;
  if (f)
    fclose(f);
  return v;
}

/* The target placement: a map file, random:SEED or one-row. */
static int target_map(const args_t *a, const eplb_shard_set_t *set,
                      eplb_placement_t *next, eplb_error_t *err) {
  int rc;
  if (strncmp(a->map, "random:", 7) == 0) {
    rc = random_map(&set->current, strtoull(a->map + 7, NULL, 10), next);
  } else if (strcmp(a->map, "one-row") == 0) {
    rc = one_row_map(&set->current, next) ? eplb_error_set(err, EPLB_EARG,
                                                           "one-row: no expert has two copies")
                                          : 0;
  } else {
    rc = eplb_placement_read(next, a->map, EPLB_MAP_AUTO, err);
    if (rc == 0)
      next->num_experts = set->current.num_experts;
  }
  /* a divergent but valid copy: two slots of layer 0 swapped */
  for (int32_t s = 1; rc == 0 && set->rank == a->diverge_rank && s < next->num_slots; s++)
    if (next->phy2log[s] != next->phy2log[0]) {
      int32_t x = next->phy2log[s];
      next->phy2log[s] = next->phy2log[0];
      next->phy2log[0] = x;
      break;
    }
  return rc;
}

/* Prints what a migration did (rank 0). */
static void print_result(const eplb_migrate_result_t *r) {
  printf("generation %llu experts_received %lld bytes_moved %lld local_copies %lld "
         "kept %lld transfer %.3f s commit %.3f s bandwidth %.1f MB/s "
         "in_place %d disk_read %lld disk_written %lld\n",
         (unsigned long long)r->generation, (long long)r->experts_received,
         (long long)r->bytes_moved, (long long)r->local_copies,
         (long long)r->slots_kept, r->seconds_transfer, r->seconds_commit,
         r->bandwidth_mbs, (int)r->ranks_in_place, (long long)r->disk_bytes_read,
         (long long)r->disk_bytes_written);
}

static int cmd_migrate(const args_t *a, eplb_error_t *err) {
  eplb_shard_set_t set;
  eplb_placement_t next = {0}, old = {0};
  eplb_migrate_result_t res = {0};
  int rc = eplb_shards_open(MPI_COMM_WORLD, a->dir, 0, &set, err);
  if (rc)
    return rc;
  rc = target_map(a, &set, &next, err);
  if (rc == 0)
    rc = eplb_placement_copy(&old, &set.current, err);
  /* The target may put an expert twice on a rank (shards can hold that):
   * saved as it is, for eplb-shard verify --expect-map. */
  eplb_map_write_opts_t wo = {.allow_duplicates = 1};
  if (rc == 0 && a->save_map && set.rank == 0)
    rc = eplb_placement_write_opts(&next, a->save_map, EPLB_MAP_EXPERT_MAP,
                                   &wo, err);
  eplb_migrate_opts_t o;
  eplb_migrate_opts_default(&o);
  o.max_buffer_mb = a->buffer_mb;
  o.num_nodes = a->nodes;
  o.timeout_s = a->timeout_s;
  o.commit = a->commit;
  o.quiet = 1;
  long long wb0 = proc_write_bytes();
  if (rc == 0)
    rc = eplb_migrate(&set, &next, &o, &res, err);
  long long wb = proc_write_bytes() - wb0, wball = 0;
  MPI_Reduce(&wb, &wball, 1, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  int64_t want = rc ? 0 : min_receives(&old, &next);
  if (rc == 0 && (res.experts_received != want ||
                  res.bytes_moved != want * eplb_shards_info(&set)->row_bytes))
    rc = eplb_error_set(err, EPLB_EINTERNAL, "experts_received %lld but the minimum "
                        "is %lld", (long long)res.experts_received, (long long)want);
  if (rc == 0 && set.rank == 0) {
    print_result(&res);
    printf("proc_write_bytes %lld\n", wb0 < 0 ? -1LL : wball);
  }
  eplb_migrate_result_cleanup(&res);
  eplb_placement_cleanup(&next);
  eplb_placement_cleanup(&old);
  eplb_shards_close(&set);
  return rc;
}

static int cmd_recover(const args_t *a, eplb_error_t *err) {
  eplb_recover_result_t res;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int rc = eplb_shards_recover(MPI_COMM_WORLD, a->dir, &res, err);
  if (rc == 0 && rank == 0)
    printf("recovered generation %llu forward %d back %d renamed %lld removed %lld "
           "replayed %lld\n",
           (unsigned long long)res.generation, res.rolled_forward, res.rolled_back,
           (long long)res.renamed, (long long)res.removed, (long long)res.replayed);
  return rc;
}

/* ---- tamper (no MPI) --------------------------------------------------- */

/* Rewrites root attribute eplb_version as 2. */
static int tamper_version(hid_t f) {
  int32_t v = 2;
  hid_t a = H5Aopen(f, "eplb_version", H5P_DEFAULT);
  int rc = a < 0 || H5Awrite(a, H5T_NATIVE_INT32, &v) < 0;
  H5Aclose(a);
  return rc;
}

/* Replaces every layer's first weight dataset by one of another type
 * (dtype) or another shape (shape). */
static int tamper_dataset(hid_t f, const char *path, int shape) {
  eplb_shard_t *sh = NULL;
  H5Fclose(f);
  if (eplb_shard_open(path, &sh, NULL) != 0)
    return 1;
  eplb_shard_info_t info = *eplb_shard_info(sh);
  eplb_shard_close(sh);
  f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  const eplb_shard_dataset_t *d = &info.datasets[0];
  hsize_t dims[EPLB_SHARD_MAX_DIMS];
  for (int i = 0; i < d->ndims; i++)
    dims[i] = (hsize_t)d->dims[i];
  int rc = 0;
  for (int32_t l = 0; l < info.num_layers && rc == 0; l++) {
    char name[128];
    snprintf(name, sizeof(name), "/layers/%d/%s", (int)l, d->name);
    H5Ldelete(f, name, H5P_DEFAULT);
    hsize_t dims2[EPLB_SHARD_MAX_DIMS];
    memcpy(dims2, dims, sizeof(dims));
    if (shape)
      dims2[d->ndims - 1] += 1;
    hid_t s = H5Screate_simple(d->ndims, dims2, NULL);
    hid_t t = shape ? H5Tdecode(d->type_enc)
                    : H5Tcopy(d->type_size == 8 ? H5T_STD_I32LE : H5T_IEEE_F64LE);
    hid_t ds = H5Dcreate2(f, name, t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc = ds < 0;
    H5Dclose(ds);
    H5Tclose(t);
    H5Sclose(s);
  }
  H5Fclose(f);
  return rc;
}

/* Sets /layers/0/expert_ids[0] to 99999. */
static int tamper_ids(hid_t f) {
  hid_t d = H5Dopen2(f, "/layers/0/expert_ids", H5P_DEFAULT);
  hid_t s = H5Dget_space(d);
  hsize_t n = (hsize_t)H5Sget_simple_extent_npoints(s);
  int32_t *ids = calloc(n, sizeof(int32_t));
  int rc = H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids) < 0;
  ids[0] = 99999;
  rc |= H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids) < 0;
  free(ids);
  H5Sclose(s);
  H5Dclose(d);
  return rc;
}

/* Flips one byte of slot 1's row of layer 0's first weight dataset. */
static int tamper_byte(const char *path) {
  eplb_shard_t *sh = NULL;
  if (eplb_shard_open(path, &sh, NULL) != 0)
    return 1;
  eplb_shard_dataset_t ds0 = eplb_shard_info(sh)->datasets[0];
  const eplb_shard_dataset_t *d = &ds0;
  char name[512];
  snprintf(name, sizeof(name), "/layers/0/%s", d->name);
  size_t n = (size_t)d->row_bytes * (size_t)d->dims[0];
  unsigned char *buf = malloc(n);
  eplb_shard_close(sh);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT), t = H5Dget_type(ds);
  int rc = H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0;
  buf[d->row_bytes] ^= 0x5a;
  rc |= H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0;
  H5Tclose(t);
  H5Dclose(ds);
  H5Fclose(f);
  free(buf);
  return rc;
}

static int cmd_tamper(const char *path, const char *kind) {
  if (strcmp(kind, "byte") == 0)
    return tamper_byte(path);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) {
    fprintf(stderr, PROG ": cannot open %s\n", path);
    return 1;
  }
  if (strcmp(kind, "dtype") == 0 || strcmp(kind, "shape") == 0)
    return tamper_dataset(f, path, kind[0] == 's');
  int rc = strcmp(kind, "version") == 0 ? tamper_version(f)
           : strcmp(kind, "ids") == 0   ? tamper_ids(f)
                                        : 2;
  H5Fclose(f);
  return rc;
}

/* ---- main -------------------------------------------------------------- */

static int parse(int argc, char **argv, args_t *a) {
  memset(a, 0, sizeof(*a));
  a->buffer_mb = 256;
  a->nodes = 1;
  a->timeout_s = EPLB_MIGRATE_DEFAULT_TIMEOUT_S;
  a->diverge_rank = -1;
  if (argc < 3)
    return 2;
  a->cmd = argv[1];
  a->dir = argv[2];
  int i = 3;
  if (strcmp(a->cmd, "migrate") == 0) {
    if (argc < 4)
      return 2;
    a->map = argv[3];
    i = 4;
  }
  for (; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--buffer-mb") == 0) a->buffer_mb = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--nodes") == 0) a->nodes = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--timeout") == 0) a->timeout_s = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--save-map") == 0) a->save_map = argv[i + 1];
    else if (strcmp(argv[i], "--status-dir") == 0) a->status_dir = argv[i + 1];
    else if (strcmp(argv[i], "--diverge-rank") == 0) a->diverge_rank = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--fsize-limit") == 0) a->fsize_kb = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--commit") == 0)
      a->commit = strcmp(argv[i + 1], "in-place") == 0  ? EPLB_COMMIT_IN_PLACE
                  : strcmp(argv[i + 1], "rewrite") == 0 ? EPLB_COMMIT_REWRITE
                                                        : EPLB_COMMIT_AUTO;
    else return 2;
  }
  return i == argc ? 0 : 2;
}

/* Writes this rank's exit code to <dir>/rank<r>.<ext>. */
static void write_status(const char *dir, int rank, const char *ext, int code) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/rank%d.%s", dir, rank, ext);
  FILE *f = fopen(path, "w");
  if (f) {
    fprintf(f, "%d\n", code);
    fclose(f);
  }
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "tamper") == 0) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return cmd_tamper(argv[2], argv[3]);
  }
  args_t a;
  if (parse(argc, argv, &a) != 0) {
    fprintf(stderr, "usage: " PROG " migrate DIR MAP [options] | recover DIR | "
            "tamper FILE KIND\n");
    return 2;
  }
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (a.fsize_kb > 0) { /* a disk that fills up: writes past it fail */
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = (rlim_t)a.fsize_kb * 1024;
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &rl);
  }
  eplb_error_t err;
  eplb_error_clear(&err);
  int rc = strcmp(a.cmd, "migrate") == 0   ? cmd_migrate(&a, &err)
           : strcmp(a.cmd, "recover") == 0 ? cmd_recover(&a, &err)
                                           : eplb_error_set(&err, EPLB_EARG, "unknown command");
  if (rc && rank == 0)
    fprintf(stderr, PROG ": error: %s\n", eplb_error_message(&err));
  if (a.status_dir)
    write_status(a.status_dir, rank, "rc", rc ? 1 : 0);
  MPI_Finalize();
  if (a.status_dir) { /* the rank got through MPI_Finalize */
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_FSIZE, &rl);
    write_status(a.status_dir, rank, "fin", rc ? 1 : 0);
  }
  return rc ? 1 : 0;
}
