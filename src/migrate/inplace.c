/* migrate/inplace.c - a migration that writes only the rows that change
 * (see mig.h, docs/shards.md "Commit").
 *
 * Rewriting a whole shard for a few moved experts costs the whole shard in
 * disk writes; in place, a rank reads only the rows it sends or copies
 * locally, and writes a redo journal of exactly the bytes that change:
 * the new rows (a record per row and dataset, whose hash is the row's new
 * at-rest checksum), the expert ids of the layers that change, the
 * checksums of the slots that change, and the generation attribute (the
 * bytes HDF5 would write, captured: h5/shard_writer.h).  The journal is
 * fsynced and read back whole from the disk before the rank votes; only
 * after the commit journal exists is it applied (commit.c), and the
 * recovery applies it again after a crash: the same bytes at the same
 * offsets.  Rows that stay are neither read nor written.
 *
 * A rank whose shard is not laid out for it (chunked or compressed
 * datasets, no at-rest checksums yet: an h5py shard) rewrites its shard
 * whole (move.c), which also gives it checksums; both kinds of rank take
 * part in one commit. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/mig.h"
#include "mpi/fault.h"
#include "util/checksum.h"
#include "util/fileio.h"

/* 1 on a little-endian machine: ids and checksums go to the file as they
 * are in memory, little-endian as the shard stores them. */
static int little_endian(void) {
  const uint16_t one = 1;
  return *(const unsigned char *)&one == 1;
}

/* 1 when more than half of this rank's slots change: a journal then
 * writes each changed row twice (journal, apply), more than rewriting the
 * shard once. */
static int mostly_changes(const mig_t *m) {
  const eplb_schedule_t *s = m->sched;
  size_t P = (size_t)m->P, R = (size_t)s->num_ranks, me = (size_t)m->set->rank;
  int64_t changed = 0, all = (int64_t)s->num_layers * (int64_t)P;
  for (int32_t l = 0; l < s->num_layers; l++)
    for (size_t j = 0; j < P; j++)
      changed += s->action[((size_t)l * R + me) * P + j] != EPLB_SLOT_KEEP;
  return 2 * changed > all;
}

static int capture_generation(mig_t *m, uint64_t gen, int *ok,
                              eplb_error_t *err);

int eplb__inplace_setup(mig_t *m, const char *path, uint64_t gen,
                        eplb_error_t *err) {
  char why[512];
  m->inplace = 0;
  if (!little_endian() || m->opts->commit == EPLB_COMMIT_REWRITE ||
      (m->opts->commit == EPLB_COMMIT_AUTO && mostly_changes(m)))
    return 0;
  int rc = eplb__shard_layout(m->set->shard, &m->lay, why, sizeof(why), err);
  if (rc) {
    eplb__layout_free(&m->lay);
    return rc < 0 ? rc : 0; /* 1: not in place (why), the rewrite instead */
  }
  int ok = 0;
  rc = capture_generation(m, gen, &ok, err);
  if (rc || !ok) {
    eplb__layout_free(&m->lay);
    eplb__recs_free(&m->gen_recs);
    return rc;
  }
  const char *shard = eplb_shard_file(m->set->shard);
  m->need = calloc((size_t)m->P, 1);
  m->fd = open(shard, O_RDONLY | O_CLOEXEC);
  if (m->need == NULL || m->fd < 0)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot open it: %s", shard,
                          m->need ? strerror(errno) : "out of memory");
  rc = eplb__redo_open(&m->redo, path, m->set->rank, gen, err);
  if (rc == 0)
    m->inplace = 1;
  return rc;
}

/* need[s] = 1 for the old slots of layer l this rank reads: the rows it
 * sends and the sources of its local copies. */
static void mark_need(const mig_t *m, int32_t l, unsigned char *need) {
  const eplb_schedule_t *s = m->sched;
  int me = m->set->rank;
  size_t base = ((size_t)l * (size_t)s->num_ranks + (size_t)me) * (size_t)m->P;
  memset(need, 0, (size_t)m->P);
  for (int64_t i = s->layer_start[l]; i < s->layer_start[l + 1]; i++)
    if (s->xfers[i].src_rank == me)
      need[s->xfers[i].src_slot] = 1;
  for (int32_t j = 0; j < m->P; j++)
    if (s->action[base + (size_t)j] == EPLB_SLOT_LOCAL)
      need[s->source[base + (size_t)j]] = 1;
}

/* The file offset of row `slot` of dataset d in layer l. */
static int64_t row_at(const mig_t *m, int32_t l, int32_t d, int32_t slot) {
  return m->lay.data[(size_t)l * (size_t)m->D + (size_t)d] +
         (int64_t)slot * (int64_t)m->rb[d];
}

/* Reads one row (layer l, slot s, dataset d) into p and checks it. */
static int read_row(mig_t *m, int32_t l, int32_t s, int32_t d,
                    unsigned char *p, uint64_t *hash, eplb_error_t *err) {
  size_t n = m->rb[d], done = 0;
  while (done < n) {
    ssize_t k = pread(m->fd, p + done, n - done,
                      (off_t)(row_at(m, l, d, s) + (int64_t)done));
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return eplb_error_set(err, EPLB_EIO,
                            "%s: cannot read layer %d slot %d dataset '%s': "
                            "%s",
                            eplb_shard_file(m->set->shard), (int)l, (int)s,
                            eplb_shard_info(m->set->shard)->datasets[d].name,
                            k < 0 ? strerror(errno) : "the file is cut short");
    done += (size_t)k;
  }
  m->disk_read += (int64_t)n;
  *hash = eplb__checksum(p, n, 0);
  size_t i = ((size_t)l * (size_t)m->P + (size_t)s) * (size_t)m->D + (size_t)d;
  if (*hash != m->oldsums[i])
    return eplb_error_set(
        err, EPLB_ECHECKSUM,
        "%s (rank %d): layer %d slot %d dataset '%s': the bytes do not match "
        "the shard's at-rest checksum (xxh3-64): the file is corrupted (a "
        "flipped bit, a torn write); restore the shard from a copy",
        eplb_shard_file(m->set->shard), m->set->rank, (int)l, (int)s,
        eplb_shard_info(m->set->shard)->datasets[d].name);
  return 0;
}

/* Asks the kernel to read layer l's needed rows ahead (while layer l-1
 * moves over the network). */
static void read_ahead(mig_t *m, int32_t l) {
  if (l >= m->sched->num_layers)
    return;
  mark_need(m, l, m->need);
  for (int32_t s = 0; s < m->P; s++)
    for (int32_t d = 0; m->need[s] && d < m->D; d++)
      posix_fadvise(m->fd, (off_t)row_at(m, l, d, s), (off_t)m->rb[d],
                    POSIX_FADV_WILLNEED);
}

int eplb__inplace_read(mig_t *m, int32_t l, eplb_error_t *err) {
  mark_need(m, l, m->need);
  int rc = 0;
  for (int32_t s = 0; rc == 0 && s < m->P; s++) {
    unsigned char *row = m->old + (size_t)s * m->stride;
    uint64_t *h = (uint64_t *)(row + m->toff);
    for (int32_t d = 0; rc == 0 && m->need[s] && d < m->D; d++)
      rc = read_row(m, l, s, d, row + m->off[d], &h[d], err);
  }
  if (rc == 0)
    read_ahead(m, l + 1);
  return rc;
}

int eplb__inplace_row(mig_t *m, int32_t slot,
                      const unsigned char *const *pieces,
                      const uint64_t *hashes, eplb_error_t *err) {
  for (int32_t d = 0; d < m->D; d++) {
    int rc = eplb__redo_add(&m->redo, row_at(m, m->layer, d, slot), pieces[d],
                            m->rb[d], hashes[d], err);
    if (rc)
      return rc;
  }
  return 0;
}

/* The expert ids of the layers that change, and the at-rest checksums of
 * the slots that change. */
static int journal_maps(mig_t *m, const eplb_placement_t *next,
                        eplb_error_t *err) {
  const eplb_schedule_t *s = m->sched;
  size_t P = (size_t)m->P, D = (size_t)m->D, R = (size_t)s->num_ranks;
  size_t me = (size_t)m->set->rank;
  int rc = 0;
  for (int32_t l = 0; rc == 0 && l < s->num_layers; l++) {
    size_t at = (size_t)l * (size_t)next->num_slots + me * P;
    const int32_t *ids = next->phy2log + at;
    if (memcmp(ids, m->set->current.phy2log + at, 4 * P) != 0)
      rc = eplb__redo_add(&m->redo, m->lay.ids[l], ids, 4 * P,
                          eplb__checksum(ids, 4 * P, 0), err);
    for (size_t j = 0; rc == 0 && j < P; j++) {
      if (s->action[((size_t)l * R + me) * P + j] == EPLB_SLOT_KEEP)
        continue;
      const uint64_t *h = m->newsums + ((size_t)l * P + j) * D;
      rc = eplb__redo_add(&m->redo,
                          m->lay.sums + (int64_t)(((size_t)l * P + j) * D * 8),
                          h, 8 * D, eplb__checksum(h, 8 * D, 0), err);
    }
  }
  return rc;
}

/* The bytes HDF5 writes to set the generation, captured before the
 * transfer (so that a shard HDF5 would have to grow for it is rewritten
 * instead: *ok 0) with the shard closed (HDF5 will not open one file
 * twice), which is then reopened. */
static int capture_generation(mig_t *m, uint64_t gen, int *ok,
                              eplb_error_t *err) {
  eplb_shard_set_t *set = m->set;
  char path[4096];
  eplb_error_t why;
  snprintf(path, sizeof(path), "%s", eplb_shard_file(set->shard));
  eplb_shard_close(set->shard);
  set->shard = NULL;
  int rc = eplb__shard_generation_recs(path, gen, &m->gen_recs, &why);
  *ok = rc == 0;
  if (rc != 0 && rc != EPLB_ESTATE)
    *err = why;
  int rc2 = eplb_shard_open(path, &set->shard, err);
  m->oldsums = eplb_shard_checksums(set->shard); /* the reopened shard's */
  return rc2 ? rc2 : rc == EPLB_ESTATE ? 0 : rc;
}

/* The generation's bytes, last: applied after everything else. */
static int journal_generation(mig_t *m, eplb_error_t *err) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < m->gen_recs.n; i++) {
    const eplb__rec_t *r = &m->gen_recs.v[i];
    rc = eplb__redo_add(&m->redo, r->off, r->data, (size_t)r->len,
                        eplb__checksum(r->data, (size_t)r->len, 0), err);
  }
  return rc;
}

/* The journal's record at shard offset `off` failed its check: when it
 * is a row, the error names it (layer, slot, expert, dataset and, for a
 * received row, the sender whose checksum it carries); else err stays. */
static int explain_record(const mig_t *m, const eplb_placement_t *next,
                          int64_t off, int rc, eplb_error_t *err) {
  for (int32_t l = 0; off >= 0 && l < m->sched->num_layers; l++)
    for (int32_t d = 0; d < m->D; d++) {
      int64_t at = off - row_at(m, l, d, 0);
      if (at < 0 || at >= (int64_t)m->P * (int64_t)m->rb[d] ||
          at % (int64_t)m->rb[d] != 0)
        continue;
      int32_t slot = (int32_t)(at / (int64_t)m->rb[d]);
      int32_t expert = next->phy2log[(size_t)l * (size_t)next->num_slots +
                                     (size_t)m->set->rank * (size_t)m->P +
                                     (size_t)slot];
      return eplb__row_mismatch(m, m->redo.path, l, slot, d, expert, err);
    }
  return rc;
}

int eplb__inplace_finish(mig_t *m, const eplb_placement_t *next,
                         uint64_t gen, eplb_error_t *err) {
  int fault = eplb__fault_write(m->set->rank);
  int rc = journal_maps(m, next, err);
  if (rc == 0)
    rc = journal_generation(m, err);
  if (rc == 0 && fault == 1) /* tests: the disk is full at the last write */
    rc = eplb_error_set(err, EPLB_EIO,
                        "%s: writing the redo journal failed: %s (disk full?)",
                        m->redo.path, strerror(ENOSPC));
  if (rc == 0)
    rc = eplb__redo_finish(&m->redo, err);
  m->disk_written += m->redo.disk;
  if (rc == 0 && fault == 2) /* tests: a write the disk lost */
    eplb__redo_lose(m->redo.path);
  /* Before this rank votes: the journal as the disk has it, every byte
   * hashed against its record's header - for a received row, the checksum
   * its sender computed, so this also finds a row corrupted in transit. */
  double t = MPI_Wtime();
  int64_t bad = -1;
  if (rc == 0)
    rc = eplb__redo_check(m->redo.path, m->set->rank, gen, NULL, NULL,
                          &m->disk_read, &bad, err);
  if (rc == EPLB_ECHECKSUM)
    rc = explain_record(m, next, bad, rc, err);
  m->t_verify += MPI_Wtime() - t;
  return rc;
}

void eplb__inplace_free(mig_t *m) {
  if (m->fd >= 0)
    close(m->fd);
  m->fd = -1;
  free(m->need);
  m->need = NULL;
  eplb__layout_free(&m->lay);
  eplb__recs_free(&m->gen_recs);
  eplb__redo_free(&m->redo);
}
