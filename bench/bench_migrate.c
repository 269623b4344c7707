/* bench_migrate.c - what a migration of expert weights achieves against
 * what the machine can do, measured in the same run (bench/run_migrate.sh).
 *
 * Under mpiexec (8 ranks in the issue): every rank writes a shard of
 * DeepSeek-like row sets (ROW_MIB per expert: gate/up/down matrices as
 * three datasets), then
 *   1. memcpy of row sets through 256 MiB (rank 0 alone): memory bandwidth;
 *   2. an osu_bw-style point-to-point test (a window of 64 non-blocking
 *      sends of one row set, rank 0 -> rank 1, the others asleep), and the
 *      same with every rank paired (r <-> r + n/2) at once, aggregated;
 *   3. eplb_migrate from the contiguous placement to a re-plan where each
 *      layer's experts are rotated by a few ranks and the hottest are
 *      replicated (every rank receives and sends), with --max-buffer-mb;
 *   4. HDF5 shard write throughput: rank 0 alone writing and fsyncing one
 *      shard (compare with `dd ... conv=fsync` to the same disk, which
 *      run_migrate.sh runs), and all ranks at once.
 * Prints an OSU-style table on rank 0; asserts nothing.  Idle ranks sleep
 * (MPI_Ibarrier + nanosleep) so they do not steal the cores. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "eplb/migrate.h"

#define WINDOW 64

typedef struct {
  const char *dir;
  int row_mib, layers, slots, buffer_mb, iters;
} args_t;

static int rank, size;

/* Waits for every rank without spinning (idle ranks must not steal the
 * two cores from the ones measuring). */
static void sleepy_barrier(void) {
  MPI_Request r;
  int done = 0;
  MPI_Ibarrier(MPI_COMM_WORLD, &r);
  while (!done) {
    MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    if (!done)
      nanosleep(&(struct timespec){0, 200000}, NULL);
  }
}

static void die(const char *what, const eplb_error_t *err) {
  fprintf(stderr, "bench_migrate: rank %d: %s: %s\n", rank, what, eplb_error_message(err));
  MPI_Abort(MPI_COMM_WORLD, 1);
}

/* memcpy of row sets of n bytes through a 256 MiB working set (beyond the
 * caches, as a migration's rows are); MB/s (rank 0 only). */
static double bench_memcpy(size_t n) {
  size_t k = (256u << 20) / n, total = k * n;
  unsigned char *a = malloc(total), *b = malloc(total);
  memset(a, 1, total);
  memset(b, 2, total);
  double t = MPI_Wtime();
  for (int rep = 0; rep < 2; rep++)
    for (size_t i = 0; i < k; i++)
      memcpy(b + i * n, a + i * n, n);
  t = MPI_Wtime() - t;
  volatile unsigned char sink = b[total - 1];
  (void)sink;
  free(a);
  free(b);
  return (double)total * 2 / t / 1e6;
}

/* osu_bw between `me` and `peer` (me < peer sends).  Returns MB/s. */
static double osu_bw(int peer, size_t n, int iters, unsigned char *buf) {
  MPI_Request req[WINDOW];
  char ack = 0;
  double t = MPI_Wtime();
  for (int i = 0; i < iters; i++) {
    for (int w = 0; w < WINDOW; w++) {
      if (rank < peer)
        MPI_Isend(buf + (size_t)w * n, (int)n, MPI_BYTE, peer, 1, MPI_COMM_WORLD, &req[w]);
      else
        MPI_Irecv(buf + (size_t)w * n, (int)n, MPI_BYTE, peer, 1, MPI_COMM_WORLD, &req[w]);
    }
    MPI_Waitall(WINDOW, req, MPI_STATUSES_IGNORE);
    if (rank < peer)
      MPI_Recv(&ack, 1, MPI_CHAR, peer, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    else
      MPI_Send(&ack, 1, MPI_CHAR, peer, 2, MPI_COMM_WORLD);
  }
  t = MPI_Wtime() - t;
  return (double)n * WINDOW * iters / t / 1e6;
}

/* Writes this rank's shard of placement p; returns the seconds it took
 * (write + fsync). */
static double write_shard(const args_t *a, const eplb_shard_info_t *proto,
                          const eplb_placement_t *p, const char *path) {
  eplb_shard_info_t info = *proto;
  eplb_error_t err;
  eplb_shard_writer_t *w = NULL;
  size_t stride = (size_t)info.row_bytes;
  unsigned char *buf = malloc(stride * (size_t)a->slots);
  info.rank = rank;
  double t = MPI_Wtime();
  if (eplb_shard_writer_create(path, &info, &w, &err))
    die("create", &err);
  for (int32_t l = 0; l < a->layers; l++) {
    const int32_t *ids = p->phy2log + (size_t)l * (size_t)p->num_slots + (size_t)rank * (size_t)a->slots;
    for (int32_t s = 0; s < a->slots; s++) /* cheap content: a byte per expert */
      memset(buf + (size_t)s * stride, ids[s] & 0xff, stride);
    if (eplb_shard_writer_put_layer(w, l, ids, buf, stride, &err))
      die("write", &err);
  }
  if (eplb_shard_writer_finish(w, 1, &err))
    die("finish", &err);
  free(buf);
  return MPI_Wtime() - t;
}

/* The re-plan: experts rotated by 3 ranks' worth of slots, the redundant
 * slots filled with the layer's "hot" experts 0, 1, ... */
static void replan(const eplb_placement_t *cur, eplb_placement_t *next, int32_t P) {
  eplb_placement_copy(next, cur, NULL);
  int32_t S = cur->num_slots, E = cur->num_experts;
  for (int32_t l = 0; l < cur->num_layers; l++) {
    int32_t *row = next->phy2log + (size_t)l * (size_t)S;
    for (int32_t s = 0; s < S; s++) {
      int32_t from = (s + 3 * P + l) % S;
      row[s] = from < E ? from : (from - E) % E;
    }
  }
}

static void parse(int argc, char **argv, args_t *a) {
  a->dir = argc > 1 ? argv[1] : "/tmp/bench_migrate";
  a->row_mib = argc > 2 ? atoi(argv[2]) : 4;
  a->layers = argc > 3 ? atoi(argv[3]) : 2;
  a->slots = argc > 4 ? atoi(argv[4]) : 4;
  a->buffer_mb = argc > 5 ? atoi(argv[5]) : 256;
  a->iters = 4;
  if (a->row_mib < 1 || a->row_mib > 16 || a->layers < 1 || a->layers > 64 ||
      a->slots < 1 || a->slots > 64 || a->buffer_mb < 1 || a->buffer_mb > 65536) {
    if (rank == 0)
      fprintf(stderr, "usage: bench_migrate DIR [ROW_MIB 1..16] [LAYERS 1..64] "
              "[SLOTS 1..64] [BUFFER_MB 1..65536]\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
}

/* The shard layout: gate, up, down of one expert, ROW_MIB in all. */
static void make_info(const args_t *a, eplb_shard_info_t *info) {
  const char *names[] = {"w_down", "w_gate", "w_up"};
  eplb_dtype_t types[] = {EPLB_DTYPE_UINT8, EPLB_DTYPE_UINT8, EPLB_DTYPE_UINT8};
  int32_t nd[] = {1, 1, 1};
  int64_t third = (int64_t)a->row_mib * 1048576 / 3;
  int64_t dims[3][EPLB_SHARD_MAX_DIMS] = {{third}, {third}, {(int64_t)a->row_mib * 1048576 - 2 * third}};
  eplb_error_t err;
  if (eplb_shard_info_make(info, size, a->layers, a->slots, 0, 3, names, types, nd,
                           (const int64_t(*)[EPLB_SHARD_MAX_DIMS])dims, &err))
    die("info", &err);
}

/* Point-to-point figures: pair 0-1 alone, then every rank paired. */
static void bench_p2p(size_t n, double *alone, double *paired) {
  unsigned char *buf = malloc(n * WINDOW);
  memset(buf, 3, n * WINDOW);
  int half = size / 2;
  sleepy_barrier();
  if (rank < 2)
    *alone = osu_bw(1 - rank, n, 2, buf);
  sleepy_barrier();
  double t = MPI_Wtime(), slowest = 0;
  if (rank < 2 * half)
    osu_bw(rank < half ? rank + half : rank - half, n, 2, buf);
  t = MPI_Wtime() - t; /* all pairs started together: bytes / slowest */
  MPI_Reduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  *paired = (double)n * WINDOW * 2 * half / slowest / 1e6;
  free(buf);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  args_t a;
  parse(argc, argv, &a);
  size_t row = (size_t)a.row_mib * 1048576;
  eplb_shard_info_t info;
  make_info(&a, &info);
  eplb_placement_t cur, next;
  eplb_error_t err;
  int32_t E = size * a.slots - size; /* one redundant slot per rank */
  if (eplb_placement_init(&cur, a.layers, E, size * a.slots, size, &err) ||
      eplb_placement_contiguous(&cur, &err))
    die("placement", &err);
  char path[4096];
  eplb_shard_path(a.dir, rank, path, sizeof(path), &err);

  /* 4. rank 0 writes alone, then everyone */
  sleepy_barrier();
  double t_alone = rank == 0 ? write_shard(&a, &info, &cur, path) : 0;
  sleepy_barrier();
  double t_all = MPI_Wtime();
  write_shard(&a, &info, &cur, path);
  sleepy_barrier();
  t_all = MPI_Wtime() - t_all;

  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  eplb_shard_set_t set;
  if (eplb_shards_open(MPI_COMM_WORLD, a.dir, E, &set, &err))
    die("open", &err);
  replan(&cur, &next, a.slots);
  eplb_migrate_opts_t o;
  eplb_migrate_opts_default(&o);
  o.max_buffer_mb = a.buffer_mb;
  o.quiet = 1;
  eplb_migrate_result_t res;
  if (eplb_migrate(&set, &next, &o, &res, &err))
    die("migrate", &err);
  getrusage(RUSAGE_SELF, &ru1);
  long rss[2] = {ru0.ru_maxrss, ru1.ru_maxrss}, mx[2];
  MPI_Reduce(rss, mx, 2, MPI_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
  /* 1, 2: after the migration, so that their buffers do not count in its
   * peak memory */
  sleepy_barrier();
  double mc = rank == 0 ? bench_memcpy(row) : 0, alone = 0, paired = 0;
  bench_p2p(row, &alone, &paired);

  if (rank == 0) {
    double shard_mb = (double)row * a.slots * a.layers / 1e6;
    double layer_mib = (double)row * a.slots / 1048576.0;
    printf("# eplb bench_migrate: %d ranks, %d layers x %d slots per rank, %d MiB per "
           "expert row set, max_buffer_mb %d\n", size, a.layers, a.slots, a.row_mib,
           a.buffer_mb);
    printf("%-44s %12s\n", "# measurement", "value");
    printf("%-44s %9.0f MB/s\n", "memcpy, 256 MiB of row sets (rank 0 alone)", mc);
    printf("%-44s %9.0f MB/s\n", "osu_bw-style p2p, ranks 0->1 alone", alone);
    printf("%-44s %9.0f MB/s\n", "osu_bw-style p2p, all ranks paired (aggr.)", paired);
    printf("%-44s %9.0f MB/s  (%.0f%% of paired p2p)\n", "migration transfer phase (aggregate)",
           res.bandwidth_mbs, paired > 0 ? 100 * res.bandwidth_mbs / paired : 0);
    printf("%-44s %9lld (%.0f MB), %lld local copies\n", "experts received (all ranks)",
           (long long)res.experts_received, (double)res.bytes_moved / 1e6,
           (long long)res.local_copies);
    printf("%-44s %9.3f s read, %.3f s transfer, %.3f s write, %.3f s commit, %.3f s total\n",
           "migration phases (slowest rank)", res.seconds_read, res.seconds_transfer,
           res.seconds_write, res.seconds_commit, res.seconds_total);
    printf("%-44s %9.0f MB/s  (%.0f MB + fsync)\n", "HDF5 shard write, rank 0 alone",
           shard_mb / t_alone, shard_mb);
    printf("%-44s %9.0f MB/s\n", "HDF5 shard write, all ranks at once (sum)",
           shard_mb * size / t_all);
    printf("%-44s %9.0f MiB (before migrate %.0f MiB; one layer %.0f MiB, buffer %d MiB)\n",
           "peak RSS of a rank after migrate", mx[1] / 1024.0, mx[0] / 1024.0, layer_mib,
           a.buffer_mb);
  }
  eplb_migrate_result_cleanup(&res);
  eplb_shards_close(&set);
  eplb_placement_cleanup(&cur);
  eplb_placement_cleanup(&next);
  MPI_Finalize();
  return 0;
}
