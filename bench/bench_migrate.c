/* bench_migrate.c - what a migration of expert weights achieves against
 * what the machine can do, measured in the same run and under the same
 * conditions (bench/run_migrate.sh).
 *
 * Under mpiexec (8 ranks in the issue): every rank writes a shard of
 * DeepSeek-like row sets (ROW_MIB per expert: gate/up/down matrices as
 * three datasets), then, each measurement REPS times (median, min, max):
 *   1. eplb_migrate from the contiguous placement to a re-plan where each
 *      layer's experts are rotated by a few ranks and the hottest are
 *      replicated (every rank receives and sends at once), and back, with
 *      --max-buffer-mb; its network phase and its shard writing (rows,
 *      close, fsync; all ranks at once), and the peak extra memory of a
 *      rank (VmHWM, reset before, minus VmRSS before);
 *   2. an osu_bw-style point-to-point test (a window of non-blocking
 *      sends of one row set each, distinct buffers): ranks 0 -> 1 alone
 *      (the others asleep); every rank paired (r -> r + n/2) at once; and
 *      every pair streaming both ways at once (every rank sends and
 *      receives, as in the migration), aggregated over all ranks;
 *   3. shard writing: the migration's own write path (a layer's datasets
 *      created, one row per slot, close, fsync) against POSIX write() of
 *      the same bytes in 1 MiB blocks + fsync (what `dd bs=1M
 *      conv=fsync` does), both by rank 0 alone and by all ranks at once,
 *      in the shard directory;
 *   4. memcpy of row sets through 256 MiB (rank 0 alone);
 *   5. the disk bytes of each migration (eplb's count and the ranks'
 *      /proc/self/io write_bytes, printed per run) against the bytes of
 *      the rows it must write, for that full shuffle and for a 5% change
 *      (pairs of slots swapped: committed in place), and the full
 *      shuffle's end-to-end rate for the bytes it must write.
 * Before each write and migration sample the page cache is flushed
 * (sync), so no sample pays for the previous one's writeback.
 * Prints a table on rank 0; asserts nothing, hard-codes nothing.  Idle
 * ranks sleep (MPI_Ibarrier + nanosleep) so they do not steal the cores. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eplb/migrate.h"

#define WINDOW 16
#define MAX_REPS 16

typedef struct {
  const char *dir;
  int row_mib, layers, slots, buffer_mb, reps;
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

/* Flushes every dirty page to disk, then waits for every rank: a write
 * figure must not pay for the writeback of the previous measurement (the
 * disk is shared, and an fsync waits behind it). */
static void quiesce(void) {
  if (rank == 0)
    sync();
  sleepy_barrier();
}

static void die(const char *what, const eplb_error_t *err) {
  fprintf(stderr, "bench_migrate: rank %d: %s: %s\n", rank, what,
          err ? eplb_error_message(err) : "failed");
  MPI_Abort(MPI_COMM_WORLD, 1);
}

/* ---- figures: REPS samples, median / min / max --------------------- */

typedef struct {
  double v[MAX_REPS];
  int n;
} samples_t;

static void add(samples_t *s, double v) {
  if (s->n < MAX_REPS)
    s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(const samples_t *s) {
  double t[MAX_REPS];
  if (s->n == 0)
    return 0;
  memcpy(t, s->v, sizeof(double) * (size_t)s->n);
  qsort(t, (size_t)s->n, sizeof(double), cmp_double);
  return s->n % 2 ? t[s->n / 2] : (t[s->n / 2 - 1] + t[s->n / 2]) / 2;
}

static double lo(const samples_t *s) {
  double m = s->n ? s->v[0] : 0;
  for (int i = 1; i < s->n; i++)
    m = s->v[i] < m ? s->v[i] : m;
  return m;
}

static double hi(const samples_t *s) {
  double m = s->n ? s->v[0] : 0;
  for (int i = 1; i < s->n; i++)
    m = s->v[i] > m ? s->v[i] : m;
  return m;
}

static void row_fig(const char *what, const samples_t *s, const char *unit) {
  int prec = strcmp(unit, "s") == 0 ? 3 : 0;
  printf("| %-60s | %9.*f | %9.*f | %9.*f | %-4s | %2d |\n", what, prec, median(s), prec,
         lo(s), prec, hi(s), unit, s->n);
}

/* ---- memory --------------------------------------------------------- */

/* A field of /proc/self/status in KiB (VmRSS, VmHWM), -1 if unknown. */
static long status_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof(line), f))
    if (strncmp(line, field, n) == 0 && line[n] == ':')
      v = atol(line + n + 1);
  if (f)
    fclose(f);
  return v;
}

/* Resets VmHWM to the current RSS (Linux: "5" > clear_refs); 0 if it worked. */
static int reset_peak(void) {
  int fd = open("/proc/self/clear_refs", O_WRONLY);
  int ok = fd >= 0 && write(fd, "5", 1) == 1;
  if (fd >= 0)
    close(fd);
  return ok ? 0 : -1;
}

/* ---- the baselines -------------------------------------------------- */

/* memcpy of row sets of n bytes through a 256 MiB working set (beyond the
 * caches, as a migration's rows are); MB/s (rank 0 only). */
static double bench_memcpy(size_t n) {
  size_t k = (256u << 20) / n, total = k * n;
  unsigned char *a = malloc(total), *b = malloc(total);
  if (!a || !b)
    die("memcpy buffers", NULL);
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

/* osu_bw between this rank and `peer`: `iters` windows of WINDOW messages
 * of n bytes from sbuf / into rbuf (distinct slots), then a 1-byte ack.
 * one_way: the lower rank sends, the higher receives; else both send and
 * receive (osu_bibw).  Returns the seconds. */
static double osu_bw(int peer, size_t n, int iters, int one_way, unsigned char *sbuf,
                     unsigned char *rbuf) {
  MPI_Request req[2 * WINDOW];
  char ack = 0;
  int sender = rank < peer;
  double t = MPI_Wtime();
  for (int i = 0; i < iters; i++) {
    int k = 0;
    for (int w = 0; w < WINDOW; w++)
      if (!one_way || !sender)
        MPI_Irecv(rbuf + (size_t)w * n, (int)n, MPI_BYTE, peer, 1, MPI_COMM_WORLD, &req[k++]);
    for (int w = 0; w < WINDOW; w++)
      if (!one_way || sender)
        MPI_Isend(sbuf + (size_t)w * n, (int)n, MPI_BYTE, peer, 1, MPI_COMM_WORLD, &req[k++]);
    MPI_Waitall(k, req, MPI_STATUSES_IGNORE);
    if (sender)
      MPI_Recv(&ack, 1, MPI_CHAR, peer, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    else
      MPI_Send(&ack, 1, MPI_CHAR, peer, 2, MPI_COMM_WORLD);
  }
  return MPI_Wtime() - t;
}

/* Point-to-point figures in MB/s: pair 0-1 alone; every rank paired one
 * way; every pair both ways (aggregates: all bytes / slowest rank). */
static void bench_p2p(const args_t *a, size_t n, samples_t *alone, samples_t *paired,
                      samples_t *both) {
  unsigned char *sbuf = malloc(n * WINDOW), *rbuf = malloc(n * WINDOW);
  if (!sbuf || !rbuf)
    die("p2p buffers", NULL);
  memset(sbuf, 3, n * WINDOW);
  memset(rbuf, 4, n * WINDOW);
  int half = size / 2, peer = rank < half ? rank + half : rank - half;
  /* >= 1 GiB per stream per sample, so a sample is not a blip */
  int iters = (int)((1024.0 * 1048576 + (double)n * WINDOW - 1) / ((double)n * WINDOW));
  if (rank < 2 * half) /* warm-up (connections, pages), untimed */
    osu_bw(peer, n, 1, 0, sbuf, rbuf);
  for (int rep = 0; rep < a->reps; rep++) {
    sleepy_barrier();
    double t = rank < 2 ? osu_bw(1 - rank, n, iters, 1, sbuf, rbuf) : 0;
    if (rank == 0)
      add(alone, (double)n * WINDOW * iters / t / 1e6);
    for (int way = 1; way >= 0; way--) {
      double mx = 0;
      sleepy_barrier();
      t = rank < 2 * half ? osu_bw(peer, n, iters, way, sbuf, rbuf) : 0;
      MPI_Reduce(&t, &mx, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
      double streams = way ? half : 2.0 * half;
      if (rank == 0)
        add(way ? paired : both, (double)n * WINDOW * iters * streams / mx / 1e6);
    }
  }
  free(sbuf);
  free(rbuf);
}

/* ---- shard writing -------------------------------------------------- */

/* Fills a layer's row sets (stride = row_bytes, datasets packed) of
 * placement p with cheap content: a byte per expert. */
static void fill_layer(const args_t *a, const eplb_placement_t *p, int32_t l, size_t row,
                       unsigned char *buf) {
  const int32_t *ids = p->phy2log + (size_t)l * (size_t)p->num_slots + (size_t)rank * (size_t)a->slots;
  for (int32_t s = 0; s < a->slots; s++)
    memset(buf + (size_t)s * row, ids[s] & 0xff, row);
}

/* Writes this rank's shard of p in one call per layer (the shard's
 * creation, untimed). */
static void create_shard(const args_t *a, const eplb_shard_info_t *proto,
                         const eplb_placement_t *p, const char *path, unsigned char *buf) {
  eplb_shard_info_t info = *proto;
  eplb_error_t err;
  eplb_shard_writer_t *w = NULL;
  size_t row = (size_t)info.row_bytes;
  info.rank = rank;
  if (eplb_shard_writer_create(path, &info, &w, &err))
    die("create", &err);
  for (int32_t l = 0; l < a->layers; l++) {
    fill_layer(a, p, l, row, buf);
    const int32_t *ids = p->phy2log + (size_t)l * (size_t)p->num_slots + (size_t)rank * (size_t)a->slots;
    if (eplb_shard_writer_put_layer(w, l, ids, buf, row, &err))
      die("write", &err);
  }
  if (eplb_shard_writer_finish(w, 1, &err))
    die("finish", &err);
}

/* The migration's write path: per layer, begin_layer and one put_row per
 * slot (datasets as pieces of the row set), then close + fsync.  The
 * content is filled before the clock starts.  Returns the seconds. */
static double write_like_migrate(const args_t *a, const eplb_shard_info_t *proto,
                                 const eplb_placement_t *p, const char *path,
                                 unsigned char *layers) {
  eplb_shard_info_t info = *proto;
  eplb_error_t err;
  eplb_shard_writer_t *w = NULL;
  size_t row = (size_t)info.row_bytes, layer = row * (size_t)a->slots;
  info.rank = rank;
  double t = MPI_Wtime();
  if (eplb_shard_writer_create(path, &info, &w, &err))
    die("create", &err);
  for (int32_t l = 0; l < a->layers; l++) {
    const int32_t *ids = p->phy2log + (size_t)l * (size_t)p->num_slots + (size_t)rank * (size_t)a->slots;
    if (eplb_shard_writer_begin_layer(w, l, ids, &err))
      die("begin layer", &err);
    for (int32_t s = 0; s < a->slots; s++) {
      const unsigned char *pieces[EPLB_SHARD_MAX_DATASETS];
      size_t off = 0;
      for (int32_t d = 0; d < info.num_datasets; d++) {
        pieces[d] = layers + (size_t)l * layer + (size_t)s * row + off;
        off += (size_t)info.datasets[d].row_bytes;
      }
      if (eplb_shard_writer_put_row(w, s, pieces, &err))
        die("put row", &err);
    }
  }
  if (eplb_shard_writer_finish(w, 1, &err))
    die("finish", &err);
  return MPI_Wtime() - t;
}

/* What `dd bs=1M conv=fsync` does: write() of `bytes` in 1 MiB blocks
 * from buf, then fsync.  Returns the seconds. */
static double write_posix(const char *path, const unsigned char *buf, size_t bytes) {
  double t = MPI_Wtime();
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    die("open for the POSIX write", NULL);
  for (size_t off = 0; off < bytes;) {
    size_t n = bytes - off < (1u << 20) ? bytes - off : (1u << 20);
    ssize_t w = write(fd, buf + off, n);
    if (w <= 0)
      die("POSIX write", NULL);
    off += (size_t)w;
  }
  if (fsync(fd) != 0 || close(fd) != 0)
    die("POSIX fsync", NULL);
  return MPI_Wtime() - t;
}

/* HDF5 (migration path) and POSIX writes of one shard's bytes, rank 0
 * alone and all ranks at once; MB/s (aggregate for all ranks). */
static void bench_write(const args_t *a, const eplb_shard_info_t *info,
                        const eplb_placement_t *p, samples_t *h5_alone, samples_t *h5_all,
                        samples_t *px_alone, samples_t *px_all) {
  size_t row = (size_t)info->row_bytes, layer = row * (size_t)a->slots;
  size_t bytes = layer * (size_t)a->layers;
  unsigned char *buf = malloc(bytes);
  if (buf == NULL)
    die("write buffer", NULL);
  for (int32_t l = 0; l < a->layers; l++)
    fill_layer(a, p, l, row, buf + (size_t)l * layer);
  char h5[4200], px[4200];
  snprintf(h5, sizeof(h5), "%s/bench_h5_%05d.h5", a->dir, rank);
  snprintf(px, sizeof(px), "%s/bench_posix_%05d.bin", a->dir, rank);
  for (int rep = 0; rep < a->reps; rep++) {
    for (int kind = 0; kind < 2; kind++) {
      unlink(kind ? px : h5); /* a new file each time, as a migration's is */
      quiesce();
      if (rank == 0) {
        double t = kind ? write_posix(px, buf, bytes) : write_like_migrate(a, info, p, h5, buf);
        add(kind ? px_alone : h5_alone, (double)bytes / t / 1e6);
      }
      unlink(kind ? px : h5);
      quiesce();
      double t = kind ? write_posix(px, buf, bytes) : write_like_migrate(a, info, p, h5, buf);
      double mx = 0;
      MPI_Reduce(&t, &mx, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
      if (rank == 0)
        add(kind ? px_all : h5_all, (double)bytes * size / mx / 1e6);
    }
  }
  unlink(h5);
  unlink(px);
  free(buf);
}

/* ---- the migration -------------------------------------------------- */

/* The re-plan: experts rotated by 3 ranks' worth of slots, the redundant
 * slots filled with the layer's "hot" experts 0, 1, ... */
static void replan(const eplb_placement_t *cur, eplb_placement_t *next, int32_t P) {
  eplb_error_t err;
  if (eplb_placement_copy(next, cur, &err))
    die("placement", &err);
  int32_t S = cur->num_slots, E = cur->num_experts;
  for (int32_t l = 0; l < cur->num_layers; l++) {
    int32_t *row = next->phy2log + (size_t)l * (size_t)S;
    for (int32_t s = 0; s < S; s++) {
      int32_t from = (s + 3 * P + l) % S;
      row[s] = from < E ? from : (from - E) % E;
    }
  }
}

typedef struct {
  samples_t xfer, write, read, xfer_s, verify, total, extra_mib;
  samples_t disk_w, proc_w, must_w, e2e; /* bytes written; end to end */
  int64_t received, moved, local, in_place;
  int peak_known;
} mig_figs_t;

/* This process's bytes written to storage (/proc/self/io write_bytes), or
 * -1 where the kernel does not count them. */
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

/* The row bytes a migration from a to b must write: the slots whose
 * expert changes (all ranks). */
static double must_write(const eplb_placement_t *a, const eplb_placement_t *b,
                         size_t row) {
  size_t n = 0, all = (size_t)a->num_layers * (size_t)a->num_slots;
  for (size_t i = 0; i < all; i++)
    n += a->phy2log[i] != b->phy2log[i];
  return (double)n * (double)row;
}

/* A re-plan that changes about 5% of every layer's slots: pairs of slots
 * half the job apart swap their experts (both stay placed). */
static void replan_5pct(const eplb_placement_t *cur, eplb_placement_t *next) {
  eplb_error_t err;
  if (eplb_placement_copy(next, cur, &err))
    die("placement", &err);
  int32_t S = cur->num_slots, pairs = S / 40 > 0 ? S / 40 : 1;
  for (int32_t l = 0; l < cur->num_layers; l++) {
    int32_t *row = next->phy2log + (size_t)l * (size_t)S;
    for (int32_t k = 0; k < pairs; k++) {
      int32_t s = (l * 7 + k * 13) % (S / 2), t = s + S / 2;
      int32_t x = row[s];
      row[s] = row[t];
      row[t] = x;
    }
  }
}

/* REPS migrations, there (cur -> next) and back; the figures of each. */
static void bench_migrations(const args_t *a, const eplb_placement_t *cur,
                             const eplb_placement_t *next, int32_t E, mig_figs_t *f) {
  eplb_shard_set_t set;
  eplb_error_t err;
  if (eplb_shards_open(MPI_COMM_WORLD, a->dir, E, &set, &err))
    die("open", &err);
  size_t shard = (size_t)eplb_shards_info(&set)->row_bytes * (size_t)a->slots * (size_t)a->layers;
  eplb_migrate_opts_t o;
  eplb_migrate_opts_default(&o);
  o.max_buffer_mb = a->buffer_mb;
  o.quiet = 1;
  /* the baseline: this rank's memory before the first migration; each
   * run's peak (VmHWM, reset before it) is compared with it, so memory a
   * run keeps (allocator caches) counts in the next run too */
  sleepy_barrier();
  long base = status_kib("VmRSS");
  f->peak_known = base >= 0;
  for (int rep = 0; rep < a->reps; rep++) {
    eplb_migrate_result_t res;
    quiesce();
    f->peak_known &= reset_peak() == 0;
    long long wb0 = proc_write_bytes();
    if (eplb_migrate(&set, rep % 2 ? cur : next, &o, &res, &err))
      die("migrate", &err);
    long long wb = proc_write_bytes() - wb0, wball = 0;
    MPI_Reduce(&wb, &wball, 1, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    long extra = status_kib("VmHWM") - base, mx = 0;
    MPI_Reduce(&extra, &mx, 1, MPI_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
    double must = must_write(rep % 2 ? next : cur, rep % 2 ? cur : next,
                             (size_t)eplb_shards_info(&set)->row_bytes);
    add(&f->disk_w, (double)res.disk_bytes_written / 1e6);
    add(&f->proc_w, wb0 < 0 ? -1 : (double)wball / 1e6);
    add(&f->must_w, must / 1e6);
    add(&f->e2e, must / res.seconds_total / 1e6);
    f->in_place = res.ranks_in_place;
    if (rank == 0)
      printf("# run %d: %.1f MB of rows to write, disk %.1f MB written (eplb's "
             "count), /proc/self/io write_bytes %.1f MB (all ranks), %.1f MB "
             "read, %d of %d ranks in place, %.3f s end to end\n",
             rep + 1, must / 1e6, (double)res.disk_bytes_written / 1e6,
             wb0 < 0 ? -1.0 : (double)wball / 1e6,
             (double)res.disk_bytes_read / 1e6, (int)res.ranks_in_place, size,
             res.seconds_total);
    add(&f->xfer, res.bandwidth_mbs);
    add(&f->write, (double)shard * size / res.seconds_write / 1e6);
    add(&f->read, res.seconds_read);
    add(&f->xfer_s, res.seconds_transfer);
    add(&f->verify, res.seconds_verify);
    add(&f->total, res.seconds_total);
    add(&f->extra_mib, (double)mx / 1024.0);
    f->received = res.experts_received;
    f->moved = res.bytes_moved;
    f->local = res.local_copies;
    eplb_migrate_result_cleanup(&res);
  }
  eplb_shards_close(&set);
}

/* One untimed migration to `p` (so that the next measurement starts from
 * it). */
static void back_to(const args_t *a, const eplb_placement_t *p, int32_t E) {
  eplb_shard_set_t set;
  eplb_error_t err;
  eplb_migrate_opts_t o;
  eplb_migrate_result_t res;
  eplb_migrate_opts_default(&o);
  o.max_buffer_mb = a->buffer_mb;
  o.quiet = 1;
  if (eplb_shards_open(MPI_COMM_WORLD, a->dir, E, &set, &err) ||
      eplb_migrate(&set, p, &o, &res, &err))
    die("migrate back", &err);
  eplb_migrate_result_cleanup(&res);
  eplb_shards_close(&set);
}

static void parse(int argc, char **argv, args_t *a) {
  a->dir = argc > 1 ? argv[1] : "/tmp/bench_migrate";
  a->row_mib = argc > 2 ? atoi(argv[2]) : 4;
  a->layers = argc > 3 ? atoi(argv[3]) : 8;
  a->slots = argc > 4 ? atoi(argv[4]) : 4;
  a->buffer_mb = argc > 5 ? atoi(argv[5]) : 256;
  a->reps = argc > 6 ? atoi(argv[6]) : 5;
  if (a->row_mib < 1 || a->row_mib > 16 || a->layers < 1 || a->layers > 64 ||
      a->slots < 1 || a->slots > 64 || a->buffer_mb < 1 || a->buffer_mb > 65536 ||
      a->reps < 1 || a->reps > MAX_REPS || size < 2) {
    if (rank == 0)
      fprintf(stderr, "usage: mpiexec -n N>=2 bench_migrate DIR [ROW_MIB 1..16] "
              "[LAYERS 1..64] [SLOTS 1..64] [BUFFER_MB 1..65536] [REPS 1..%d]\n",
              MAX_REPS);
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

static double pct(double a, double b) { return b > 0 ? 100 * a / b : 0; }

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
  replan(&cur, &next, a.slots);
  char path[4096];
  if (eplb_shard_path(a.dir, rank, path, sizeof(path), &err))
    die("path", &err);
  unsigned char *buf = malloc(row * (size_t)a.slots);
  if (buf == NULL)
    die("layer buffer", NULL);
  create_shard(&a, &info, &cur, path, buf);
  free(buf);

  /* 1. the migrations first: nothing else has raised the memory yet */
  mig_figs_t mf, m5;
  memset(&mf, 0, sizeof(mf));
  memset(&m5, 0, sizeof(m5));
  if (rank == 0)
    printf("# full shuffle (every layer rotated by 3 ranks, hot experts "
           "replicated):\n");
  bench_migrations(&a, &cur, &next, E, &mf);
  eplb_placement_t next5;
  replan_5pct(&cur, &next5);
  if (a.reps % 2) /* an odd count left the shards at `next`: back to cur */
    back_to(&a, &cur, E);
  if (rank == 0)
    printf("# 5%% change (pairs of slots half the job apart swap experts):\n");
  bench_migrations(&a, &cur, &next5, E, &m5);
  eplb_placement_cleanup(&next5);
  /* 3, 4, 2 */
  samples_t h5_alone = {0}, h5_all = {0}, px_alone = {0}, px_all = {0};
  bench_write(&a, &info, &cur, &h5_alone, &h5_all, &px_alone, &px_all);
  samples_t mc = {0}, alone = {0}, paired = {0}, both = {0};
  sleepy_barrier();
  for (int rep = 0; rank == 0 && rep < a.reps; rep++)
    add(&mc, bench_memcpy(row));
  bench_p2p(&a, row, &alone, &paired, &both);

  if (rank == 0) {
    double shard_mb = (double)row * a.slots * a.layers / 1e6;
    double layer_mib = (double)row * a.slots / 1048576.0;
    printf("# eplb bench_migrate: %d ranks on %ld online cores, %d layers x %d slots per "
           "rank, %d MiB per expert row set (%.0f MB per shard), max_buffer_mb %d, %d "
           "runs each\n", size, sysconf(_SC_NPROCESSORS_ONLN), a.layers, a.slots,
           a.row_mib, shard_mb, a.buffer_mb, a.reps);
    printf("# migration: %lld row sets received (%.0f MB over MPI per run, all ranks), %lld "
           "local copies\n", (long long)mf.received, (double)mf.moved / 1e6,
           (long long)mf.local);
    printf("| %-60s | %9s | %9s | %9s | %-4s | %2s |\n", "measurement", "median", "min",
           "max", "unit", "n");
    printf("|%s|%s|%s|%s|%s|%s|\n", "--------------------------------------------------------------",
           "-----------", "-----------", "-----------", "------", "----");
    row_fig("memcpy of row sets through 256 MiB (rank 0 alone)", &mc, "MB/s");
    row_fig("p2p osu_bw-style, 1 pair (0->1), other ranks asleep", &alone, "MB/s");
    row_fig("p2p osu_bw-style, all pairs one way at once (aggr.)", &paired, "MB/s");
    row_fig("p2p osu_bibw-style, all pairs both ways at once (aggr.)", &both, "MB/s");
    row_fig("migration network phase, all ranks at once (aggr.)", &mf.xfer, "MB/s");
    row_fig("POSIX write 1 MiB blocks + fsync, rank 0 alone", &px_alone, "MB/s");
    row_fig("HDF5 write as migrate + fsync, rank 0 alone", &h5_alone, "MB/s");
    row_fig("POSIX write 1 MiB blocks + fsync, all ranks (aggr.)", &px_all, "MB/s");
    row_fig("HDF5 write as migrate + fsync, all ranks (aggr.)", &h5_all, "MB/s");
    row_fig("migration write phase (rows+close+fsync), all (aggr.)", &mf.write, "MB/s");
    row_fig("migration read phase (slowest rank)", &mf.read, "s");
    row_fig("migration network phase (slowest rank)", &mf.xfer_s, "s");
    row_fig("migration total (slowest rank)", &mf.total, "s");
    row_fig("  of which proof from disk before the vote (slowest)", &mf.verify, "s");
    row_fig("full shuffle: row bytes it must write (all ranks)", &mf.must_w, "MB");
    row_fig("full shuffle: disk bytes written (eplb's count)", &mf.disk_w, "MB");
    row_fig("full shuffle: /proc/self/io write_bytes (all ranks)", &mf.proc_w, "MB");
    row_fig("full shuffle: end to end, bytes it must write / total s", &mf.e2e, "MB/s");
    row_fig("5% change: row bytes it must write (all ranks)", &m5.must_w, "MB");
    row_fig("5% change: disk bytes written (eplb's count)", &m5.disk_w, "MB");
    row_fig("5% change: /proc/self/io write_bytes (all ranks)", &m5.proc_w, "MB");
    row_fig("5% change: migration total (slowest rank)", &m5.total, "s");
    if (mf.peak_known)
      row_fig("peak extra memory of a rank in migrate (VmHWM - RSS before)", &mf.extra_mib, "MiB");
    else
      printf("| %-60s | %9s |\n", "peak extra memory of a rank in migrate", "unknown (no clear_refs)");
    double x = median(&mf.xfer);
    printf("# ratios of medians: network phase = %.0f%% of 1 pair, %.0f%% of all pairs one "
           "way, %.0f%% of all pairs both ways (the migration's pattern); HDF5 write = "
           "%.0f%% of POSIX alone, %.0f%% of POSIX all ranks; migration write phase = "
           "%.0f%% of POSIX all ranks\n",
           pct(x, median(&alone)), pct(x, median(&paired)), pct(x, median(&both)),
           pct(median(&h5_alone), median(&px_alone)), pct(median(&h5_all), median(&px_all)),
           pct(median(&mf.write), median(&px_all)));
    printf("# targets: network phase / all pairs both ways = %.0f%% (>= 80%%); "
           "5%% change writes %.2fx (eplb's count) / %.2fx (/proc/self/io) the "
           "bytes of its rows (<= 3x), %d of %d ranks in place; full shuffle "
           "end to end = %.0f%% of POSIX write + fsync, all ranks (>= 70%% of "
           "dd: see the dd lines below), %d of %d ranks in place\n",
           pct(x, median(&both)), median(&m5.disk_w) / median(&m5.must_w),
           median(&m5.proc_w) / median(&m5.must_w), (int)m5.in_place, size,
           pct(median(&mf.e2e), median(&px_all)), (int)mf.in_place, size);
    printf("# memory bound: max_buffer_mb %d MiB (or one %d MiB row set if larger) + one "
           "layer %.0f MiB = %.0f MiB; measured peak extra %.0f MiB (max of runs)\n",
           a.buffer_mb, a.row_mib, layer_mib,
           (a.buffer_mb > a.row_mib ? a.buffer_mb : a.row_mib) + layer_mib, hi(&mf.extra_mib));
  }
  eplb_placement_cleanup(&cur);
  eplb_placement_cleanup(&next);
  MPI_Finalize();
  return 0;
}
