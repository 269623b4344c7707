/* migrate/redo.c - a rank's redo journal: the bytes an in-place commit
 * will write into its shard, as (offset, bytes) records, fsynced before
 * the ranks vote, applied with plain pwrite after the commit journal
 * (eplb_journal.json) exists, and replayed by the recovery.
 *
 * File shard_<rank>.h5.gen<G>.redo:
 *   header  "EPLBREDO" u32 version=1 u32 rank u64 generation
 *   records u64 offset, u64 length, u64 XXH3-64 of the bytes, the bytes
 *   footer  "EPLBDONE" u64 records u64 bytes u64 XXH3 chain of the
 *           record headers
 * (little-endian).  A journal is valid only whole: every record's bytes
 * hash to its header, the footer closes the chain.  A row record holds
 * exactly one dataset's row, so its hash is that row's new at-rest
 * checksum.  Applying is idempotent: the same bytes at the same offsets,
 * so a crash during an apply is healed by applying again. */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/internal.h"
#include "mpi/fault.h"
#include "util/checksum.h"
#include "util/fileio.h"

#define BUF_CAP (1 << 20) /* records are gathered into 1 MiB writes */

typedef struct {
  char magic[8];
  uint32_t version, rank;
  uint64_t gen;
} head_t;

typedef struct {
  uint64_t off, len, hash;
} rec_t;

typedef struct {
  char magic[8];
  uint64_t records, bytes, chain;
} foot_t;

/* Writes what r->buf holds to the file. */
static int flush_buf(eplb__redo_t *r, eplb_error_t *err) {
  size_t done = 0;
  while (done < r->used) {
    ssize_t w = write(r->fd, r->buf + done, r->used - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return eplb_error_set(err, EPLB_EIO,
                            "%s: writing the redo journal failed: %s (disk "
                            "full?)",
                            r->path, strerror(w < 0 ? errno : ENOSPC));
    done += (size_t)w;
  }
  r->disk += (int64_t)r->used;
  r->used = 0;
  return 0;
}

/* Appends p[0..n) to the journal (gathered in r->buf). */
static int put(eplb__redo_t *r, const void *p, size_t n, eplb_error_t *err) {
  const unsigned char *s = p;
  while (n > 0) {
    if (r->used == BUF_CAP) {
      int rc = flush_buf(r, err);
      if (rc)
        return rc;
    }
    size_t k = n < BUF_CAP - r->used ? n : BUF_CAP - r->used;
    memcpy(r->buf + r->used, s, k);
    r->used += k;
    s += k;
    n -= k;
  }
  return 0;
}

int eplb__redo_open(eplb__redo_t *r, const char *path, int rank, uint64_t gen,
                    eplb_error_t *err) {
  memset(r, 0, sizeof(*r));
  r->fd = -1;
  r->buf = malloc(BUF_CAP);
  r->path = strdup(path);
  if (r->buf == NULL || r->path == NULL) {
    eplb__redo_abort(r);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  r->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (r->fd < 0) {
    int e = errno;
    eplb__redo_abort(r);
    return eplb_error_set(err, EPLB_EIO, "%s: cannot create it: %s", path,
                          strerror(e));
  }
  head_t h = {"EPLBREDO", 1, (uint32_t)rank, gen};
  return put(r, &h, sizeof(h), err);
}

int eplb__redo_add(eplb__redo_t *r, int64_t off, const void *data, size_t len,
                   uint64_t hash, eplb_error_t *err) {
  rec_t h = {(uint64_t)off, (uint64_t)len, hash};
  r->chain = eplb__checksum(&h, sizeof(h), r->chain);
  r->records++;
  r->bytes += (int64_t)len;
  int rc = put(r, &h, sizeof(h), err);
  return rc ? rc : put(r, data, len, err);
}

int eplb__redo_finish(eplb__redo_t *r, eplb_error_t *err) {
  foot_t f = {"EPLBDONE", r->records, (uint64_t)r->bytes, r->chain};
  int rc = put(r, &f, sizeof(f), err);
  if (rc == 0)
    rc = flush_buf(r, err);
  if (rc == 0 && fsync(r->fd) != 0)
    rc = eplb_error_set(err, EPLB_EIO, "%s: fsync failed: %s", r->path,
                        strerror(errno));
  if (close(r->fd) != 0 && rc == 0)
    rc = eplb_error_set(err, EPLB_EIO, "%s: close failed: %s", r->path,
                        strerror(errno));
  r->fd = -1;
  if (rc == 0)
    rc = eplb__fsync_dir_of(r->path, err);
  return rc;
}

void eplb__redo_abort(eplb__redo_t *r) {
  if (r->fd >= 0)
    close(r->fd);
  if (r->path)
    unlink(r->path);
  free(r->buf);
  free(r->path);
  memset(r, 0, sizeof(*r));
  r->fd = -1;
}

void eplb__redo_free(eplb__redo_t *r) {
  if (r->fd >= 0)
    close(r->fd);
  free(r->buf);
  free(r->path);
  memset(r, 0, sizeof(*r));
  r->fd = -1;
}

void eplb__redo_lose(const char *path) {
  int fd = open(path, O_RDWR | O_CLOEXEC);
  unsigned char b = 0;
  off_t at = (off_t)(sizeof(head_t) + sizeof(rec_t));
  if (fd >= 0 && pread(fd, &b, 1, at) == 1) {
    b ^= 0x5a;
    if (pwrite(fd, &b, 1, at) == 1)
      fsync(fd);
  }
  if (fd >= 0)
    close(fd);
}

/* Reads exactly n bytes at *pos of fd. */
static int get(int fd, int64_t *pos, void *p, size_t n) {
  unsigned char *d = p;
  while (n > 0) {
    ssize_t k = pread(fd, d, n, (off_t)*pos);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    d += k;
    n -= (size_t)k;
    *pos += k;
  }
  return 0;
}

/* Where an apply writes: the shard through the page cache (fd) and, when
 * the file system takes it, through O_DIRECT too (dfd, abuf: a
 * page-aligned bounce buffer).  The page-aligned middle of each record
 * goes direct: the page cache holds large folios, and a buffered write
 * that starts inside one dirties (and the kernel counts, and may write
 * back) all of it; direct, exactly the record's pages are written, and
 * only its unaligned head and tail (under a page each) go buffered. */
typedef struct {
  int fd, dfd;
  unsigned char *abuf;
} sink_t;

#define PAGE 4096

/* pwrite of all n bytes at off. */
static int pwrite_all(int fd, const unsigned char *p, size_t n, int64_t off) {
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, (off_t)off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
    off += w;
  }
  return 0;
}

/* Writes p[0..k) at dst of the shard. */
static int sink_write(sink_t *s, int64_t dst, const unsigned char *p,
                      size_t k) {
  int64_t a0 = (dst + PAGE - 1) / PAGE * PAGE,
          a1 = (dst + (int64_t)k) / PAGE * PAGE;
  if (s->dfd < 0 || a1 - a0 < PAGE)
    return pwrite_all(s->fd, p, k, dst);
  memcpy(s->abuf, p + (a0 - dst), (size_t)(a1 - a0));
  if (pwrite_all(s->dfd, s->abuf, (size_t)(a1 - a0), a0) != 0) {
    /* some file systems refuse direct writes late: buffered, then */
    if (errno != EINVAL)
      return -1;
    close(s->dfd);
    s->dfd = -1;
    return pwrite_all(s->fd, p, k, dst);
  }
  if (a0 > dst && pwrite_all(s->fd, p, (size_t)(a0 - dst), dst) != 0)
    return -1;
  return a1 < dst + (int64_t)k
             ? pwrite_all(s->fd, p + (a1 - dst), (size_t)(dst + (int64_t)k - a1),
                          a1)
             : 0;
}

/* One pass over the journal at `path`: checks it (apply_fd < 0) or
 * applies it to apply_fd (after a check).  visit(ctx, off, hash) is called
 * for every record of a check (or NULL).  crash_half: the "apply" crash
 * point after half the records. */
static int pass(const char *path, int rank, uint64_t gen, sink_t *sink,
                int crash_half, eplb__redo_visit_fn visit, void *ctx,
                int64_t *io, int64_t *bad_off, eplb_error_t *err) {
  int apply_fd = sink ? sink->fd : -1;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot open the redo journal: %s",
                          path, strerror(errno));
  unsigned char *buf = malloc(BUF_CAP);
  eplb__hasher_t *hs = eplb__hasher_new();
  int64_t pos = 0;
  head_t h;
  int rc = buf && hs ? 0 : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc == 0 && (get(fd, &pos, &h, sizeof(h)) ||
                  memcmp(h.magic, "EPLBREDO", 8) || h.version != 1 ||
                  h.rank != (uint32_t)rank || h.gen != gen))
    rc = eplb_error_set(err, EPLB_ESTATE,
                        "%s is not rank %d's redo journal of generation %llu",
                        path, rank, (unsigned long long)gen);
  uint64_t chain = 0, n = 0, total = 0;
  for (;;) {
    if (rc)
      break;
    rec_t r;
    int64_t at = pos;
    if (get(fd, &pos, &r, sizeof(r))) {
      rc = eplb_error_set(err, EPLB_ESTATE,
                          "%s: cut short after %llu records (a crash while "
                          "it was written?)",
                          path, (unsigned long long)n);
      break;
    }
    if (memcmp(&r, "EPLBDONE", 8) == 0) { /* the footer */
      foot_t f;
      pos = at;
      if (get(fd, &pos, &f, sizeof(f)) || f.records != n ||
          f.bytes != total || f.chain != chain)
        rc = eplb_error_set(err, EPLB_ECHECKSUM,
                            "%s: the footer does not match its records", path);
      break;
    }
    chain = eplb__checksum(&r, sizeof(r), chain);
    int64_t dst = (int64_t)r.off;
    eplb__hasher_reset(hs);
    for (uint64_t left = r.len; rc == 0 && left > 0;) {
      size_t k = left < BUF_CAP ? (size_t)left : BUF_CAP;
      if (get(fd, &pos, buf, k)) {
        rc = eplb_error_set(err, EPLB_ESTATE, "%s: cut short in record %llu",
                            path, (unsigned long long)n);
        break;
      }
      if (io)
        io[0] += (int64_t)k;
      if (apply_fd < 0) {
        eplb__hasher_update(hs, buf, k);
      } else {
        if (sink_write(sink, dst, buf, k) != 0) {
          rc = eplb_error_set(err, EPLB_EIO,
                              "applying %s: write failed: %s (disk full?)",
                              path, strerror(errno));
          break;
        }
        if (io)
          io[1] += (int64_t)k;
      }
      dst += (int64_t)k;
      left -= k;
    }
    if (rc == 0 && apply_fd < 0 && eplb__hasher_digest(hs) != r.hash &&
        bad_off)
      *bad_off = (int64_t)r.off;
    if (rc == 0 && apply_fd < 0 && eplb__hasher_digest(hs) != r.hash)
      rc = eplb_error_set(err, EPLB_ECHECKSUM,
                          "%s: record %llu (%llu bytes for offset %llu of the "
                          "shard) read back after the fsync is not the record "
                          "written (a lost write: disk full for a moment?); "
                          "nothing was committed, retry",
                          path, (unsigned long long)n,
                          (unsigned long long)r.len, (unsigned long long)r.off);
    if (rc == 0 && apply_fd < 0 && visit)
      rc = visit(ctx, (int64_t)r.off, (int64_t)r.len, r.hash, err);
    n++;
    total += r.len;
    if (rc == 0 && apply_fd >= 0 && crash_half && n == (uint64_t)crash_half)
      eplb__fault_point("apply", rank, "halfway through applying its journal");
  }
  free(buf);
  if (hs)
    eplb__hasher_free(hs);
  close(fd);
  return rc;
}

int eplb__redo_check(const char *path, int rank, uint64_t gen,
                     eplb__redo_visit_fn visit, void *ctx, int64_t *bytes_read,
                     int64_t *bad_off, eplb_error_t *err) {
  int64_t io[2] = {0, 0};
  if (bad_off)
    *bad_off = -1;
  int rc = pass(path, rank, gen, NULL, 0, visit, ctx, io, bad_off, err);
  if (bytes_read)
    *bytes_read += io[0];
  return rc;
}

int eplb__redo_apply(const char *path, const char *shard, int rank,
                     uint64_t gen, int64_t records, int64_t *bytes_written,
                     eplb_error_t *err) {
  sink_t s = {open(shard, O_WRONLY | O_CLOEXEC), -1, NULL};
  if (s.fd < 0)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot open it to apply %s: %s",
                          shard, path, strerror(errno));
  void *ab = NULL;
  if (posix_memalign(&ab, PAGE, BUF_CAP) == 0) {
    s.abuf = ab;
    s.dfd = open(shard, O_WRONLY | O_CLOEXEC | O_DIRECT); /* -1: buffered */
  }
  int64_t io[2] = {0, 0};
  /* the "apply" crash point, halfway; none in a recovery (records 0) */
  int half = records > 1 ? (int)(records / 2) : records > 0 ? 1 : 0;
  int rc = pass(path, rank, gen, &s, half, NULL, NULL, io, NULL, err);
  if (rc == 0 && (fsync(s.fd) != 0 || (s.dfd >= 0 && fsync(s.dfd) != 0)))
    rc = eplb_error_set(err, EPLB_EIO, "%s: fsync failed: %s", shard,
                        strerror(errno));
  if (s.dfd >= 0)
    close(s.dfd);
  if (close(s.fd) != 0 && rc == 0)
    rc = eplb_error_set(err, EPLB_EIO, "%s: close failed: %s", shard,
                        strerror(errno));
  free(ab);
  if (bytes_written)
    *bytes_written += io[1];
  return rc;
}
