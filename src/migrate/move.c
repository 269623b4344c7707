/* migrate/move.c - the "move" stage: expert rows moved between the
 * ranks to where a new placement puts them, along the schedule of
 * schedule.c, then committed by commit.c (eplb_migrate, see
 * eplb/migrate.h).
 *
 * DESIGN.  The transfer works one layer at a time, so that the memory a
 * rank needs is one layer of its own shard (the old rows, as HDF5 reads
 * them) plus the staging of one batch's receives: kept and locally copied
 * rows are written to the new shard straight from the old layer, received
 * rows from the staging, row by row.  The old layer is laid out slot by
 * slot (HDF5 reads each dataset straight into place through a strided
 * memory selection), so each row set travels as one contiguous message -
 * the slot's rows of every dataset and an 8-byte checksum per dataset
 * that the sender has from reading the row, and the receiver writes as
 * the row's new at-rest checksum, to be checked by the proof from disk
 * before the vote - which MPI can move with a single copy.  Within a layer the
 * messages are cut into batches of at most max_buffer_mb per rank, sending
 * and receiving (deterministically, the same cut on every rank); a rank
 * posts every receive of a batch, then its sends, then tests them all
 * until done or until the timeout.  Since a batch only depends on messages
 * of the same batch, which every rank posts before moving on, this cannot
 * deadlock at any rank count.  Before each layer the ranks agree, so a rank
 * that fails to read its shard stops everyone cleanly; an MPI failure or a
 * timeout in the middle of a batch aborts the job, because the peers'
 * buffers are then in an unknown state (the shards are untouched either
 * way: nothing is renamed before the commit, commit.c). */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eplb/migrate.h"
#include "h5/shard_writer.h"
#include "migrate/internal.h"
#include "migrate/mig.h"
#include "mpi/agree.h"
#include "mpi/fault.h"
#include "mpi/watchdog.h"
#include "util/checksum.h"

void eplb_migrate_opts_default(eplb_migrate_opts_t *opts) {
  memset(opts, 0, sizeof(*opts));
  opts->max_buffer_mb = EPLB_MIGRATE_DEFAULT_BUFFER_MB;
  opts->timeout_s = EPLB_MIGRATE_DEFAULT_TIMEOUT_S;
  opts->num_nodes = 1;
}

void eplb_migrate_result_cleanup(eplb_migrate_result_t *res) {
  if (res == NULL)
    return;
  free(res->bytes_sent);
  free(res->bytes_received);
  memset(res, 0, sizeof(*res));
}

/* Cuts each layer's transfers into batches so that no rank sends or
 * receives more than `cap` bytes in one batch (at least one row set).  The
 * same cut on every rank: it only reads the schedule.  Also sizes this
 * rank's staging: its most receives in one batch. */
static int cut_batches(mig_t *m, size_t cap, eplb_error_t *err) {
  const eplb_schedule_t *s = m->sched;
  int32_t R = s->num_ranks;
  int64_t *rb = calloc((size_t)R * 5, sizeof(int64_t));
  m->batch =
      malloc(sizeof(int32_t) * (size_t)(s->num_xfers ? s->num_xfers : 1));
  m->num_batches = calloc((size_t)s->num_layers, sizeof(int32_t));
  if (!rb || !m->batch || !m->num_batches) {
    free(rb);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory for the batches");
  }
  int64_t *rbatch = rb, *rbytes = rb + R, *sbatch = rb + 2 * R,
          *sbytes = rb + 3 * R;
  int64_t *rcount = rb + 4 * R;
  m->staging_rows = 1;
  for (int32_t l = 0; l < s->num_layers; l++) {
    memset(rb, 0, sizeof(int64_t) * (size_t)R * 5);
    for (int64_t i = s->layer_start[l]; i < s->layer_start[l + 1]; i++) {
      int32_t d = s->xfers[i].dst_rank, c = s->xfers[i].src_rank;
      if (rbytes[d] > 0 && (size_t)rbytes[d] + m->msg > cap)
        rbatch[d]++, rbytes[d] = 0, rcount[d] = 0;
      if (sbytes[c] > 0 && (size_t)sbytes[c] + m->msg > cap)
        sbatch[c]++, sbytes[c] = 0;
      int64_t b = rbatch[d] > sbatch[c] ? rbatch[d] : sbatch[c];
      if (b > rbatch[d])
        rbatch[d] = b, rbytes[d] = 0, rcount[d] = 0;
      if (b > sbatch[c])
        sbatch[c] = b, sbytes[c] = 0;
      rbytes[d] += (int64_t)m->msg;
      sbytes[c] += (int64_t)m->msg;
      if (d == m->set->rank && (size_t)++rcount[d] > m->staging_rows)
        m->staging_rows = (size_t)rcount[d];
      m->batch[i] = (int32_t)b;
      if (b + 1 > m->num_batches[l])
        m->num_batches[l] = (int32_t)(b + 1);
    }
  }
  free(rb);
  return 0;
}

/* Slot s's row of every dataset in the old layer, into pieces[D]. */
static void old_pieces(const mig_t *m, int32_t s,
                       const unsigned char **pieces) {
  for (int32_t d = 0; d < m->D; d++)
    pieces[d] = m->old + (size_t)s * m->stride + m->off[d];
}

/* The same for the k-th received row set of a batch. */
static void staged_pieces(const mig_t *m, size_t k,
                          const unsigned char **pieces) {
  for (int32_t d = 0; d < m->D; d++)
    pieces[d] = m->staging + k * m->stride + m->off[d];
}

/* The checksums (XXH3-64, one per dataset) of a row set given as pieces,
 * into h[D]. */
static void piece_sums(const mig_t *m, const unsigned char *const *pieces,
                       uint64_t *h) {
  for (int32_t d = 0; d < m->D; d++)
    h[d] = eplb__checksum(pieces[d], m->rb[d], 0);
}

/* The trailer of old slot s: its rows' checksums. */
static uint64_t *old_sums(const mig_t *m, int32_t s) {
  return (uint64_t *)(m->old + (size_t)s * m->stride + m->toff);
}

/* Rewriting: reads this rank's whole old layer l (every read checks the
 * at-rest checksums the shard has) and puts every row's checksums in its
 * trailer: the shard's own, else computed. */
static int read_old(mig_t *m, int32_t l, eplb_error_t *err) {
  if (m->inplace)
    return eplb__inplace_read(m, l, err);
  int rc =
      eplb_shard_read_layer(m->set->shard, l, m->old, m->stride, m->off, err);
  const unsigned char *pieces[EPLB_SHARD_MAX_DATASETS];
  size_t D = (size_t)m->D;
  for (int32_t s = 0; rc == 0 && s < m->P; s++) {
    old_pieces(m, s, pieces);
    if (m->oldsums)
      memcpy(old_sums(m, s),
             m->oldsums + ((size_t)l * (size_t)m->P + (size_t)s) * D,
             8 * D);
    else
      piece_sums(m, pieces, old_sums(m, s));
  }
  return rc;
}

/* Writes slot `slot` of the new shard from pieces (whose checksums are
 * h[D]: the new at-rest checksums, and what the read-back before the
 * commit compares the file with), unless this layer already failed here
 * (the failure is carried, the transfer goes on). */
static void write_row(mig_t *m, int32_t slot,
                      const unsigned char *const *pieces, const uint64_t *h,
                      eplb_error_t *err) {
  if (m->carry)
    return;
  double t = MPI_Wtime();
  memcpy(m->newsums +
             ((size_t)m->layer * (size_t)m->P + (size_t)slot) * (size_t)m->D,
         h, 8 * (size_t)m->D);
  m->carry = m->inplace ? eplb__inplace_row(m, slot, pieces, h, err)
                        : eplb__shard_writer_put_row_hashed(m->w, slot, pieces,
                                                            h, err);
  m->t_write += MPI_Wtime() - t;
}

/* Kept and locally copied slots of layer l, written from the old rows;
 * lists the DUP slots by their source. */
static void local_rows(mig_t *m, int32_t l, eplb_error_t *err) {
  const eplb_schedule_t *s = m->sched;
  size_t base = (size_t)l * (size_t)s->num_ranks * (size_t)m->P +
                (size_t)m->set->rank * (size_t)m->P;
  const unsigned char *pieces[EPLB_SHARD_MAX_DATASETS];
  for (int32_t j = 0; j < m->P; j++)
    m->dup_head[j] = -1;
  for (int32_t j = m->P - 1; j >= 0; j--) {
    int8_t a = s->action[base + (size_t)j];
    int32_t src = s->source[base + (size_t)j];
    if (a == EPLB_SLOT_DUP) {
      m->dup_next[j] = m->dup_head[src];
      m->dup_head[src] = j;
    } else if (a == EPLB_SLOT_LOCAL || (a == EPLB_SLOT_KEEP && !m->inplace)) {
      /* in place, a kept row is neither read nor written */
      int32_t from = a == EPLB_SLOT_KEEP ? j : src;
      old_pieces(m, from, pieces);
      write_row(m, j, pieces, old_sums(m, from), err);
    }
  }
}

/* Posts this rank's receives (into staging), then its sends (straight
 * from the old layer: one contiguous message per row set), of batch b of
 * layer l.  *n: requests, *nr: receives. */
static int post_batch(mig_t *m, int32_t l, int32_t b, int *n, size_t *nr,
                      eplb_error_t *err) {
  const eplb_schedule_t *s = m->sched;
  int me = m->set->rank, rc = 0;
  *n = 0;
  *nr = 0;
  for (int pass = 0; pass < 2 && rc == 0; pass++)
    for (int64_t i = s->layer_start[l]; i < s->layer_start[l + 1] && rc == 0;
         i++) {
      const eplb_xfer_t *x = &s->xfers[i];
      int tag = (l % m->tag_layers) * m->P + x->dst_slot;
      if (m->batch[i] != b)
        continue;
      if (pass == 0 && x->dst_rank == me) {
        m->recv_xfer[*nr] = i;
        m->req_peer[*n] = x->src_rank;
        rc = eplb__mpi_check(MPI_Irecv(m->staging + (*nr)++ * m->stride,
                                       (int)m->msg, MPI_BYTE, x->src_rank, tag,
                                       m->set->comm, &m->req[(*n)++]),
                             "MPI_Irecv of a row set", err);
      }
      if (pass == 1 && x->src_rank == me) {
        m->req_peer[*n] = x->dst_rank;
        rc = eplb__mpi_check(MPI_Isend(m->old + (size_t)x->src_slot * m->stride,
                                       (int)m->msg, MPI_BYTE, x->dst_rank, tag,
                                       m->set->comm, &m->req[(*n)++]),
                             "MPI_Isend of a row set", err);
      }
    }
  return rc;
}

/* Writes the k-th row set received in this batch of layer l, and the
 * slots that copy it (DUP), as soon as its receive completes, while the
 * other messages of the batch are still in flight (the row is then still
 * in the cache for the write).  Not hashed here: it is written with the
 * checksums its sender computed as the new at-rest checksums, and the
 * proof from the disk before the vote (prove_shard, or the redo journal's
 * check in place), which hashes every byte written, is what finds a row
 * corrupted in transit - once, where a check here would hash it twice. */
static void store_one(mig_t *m, size_t k, eplb_error_t *err) {
  const unsigned char *pieces[EPLB_SHARD_MAX_DATASETS];
  if (m->carry)
    return;
  const eplb_xfer_t *x = &m->sched->xfers[m->recv_xfer[k]];
  uint64_t sent[EPLB_SHARD_MAX_DATASETS];
  memcpy(sent, m->staging + k * m->stride + m->toff, 8 * (size_t)m->D);
  if (!m->corrupted && eplb__fault_corrupt_row(m->set->rank)) {
    m->corrupted = 1; /* tests: a byte flipped in transit, once */
    m->staging[k * m->stride + m->off[0] + m->rb[0] / 2] ^= 0x5a;
  }
  staged_pieces(m, k, pieces);
  write_row(m, x->dst_slot, pieces, sent, err);
  for (int32_t j = m->dup_head[x->dst_slot]; j >= 0; j = m->dup_next[j])
    write_row(m, j, pieces, sent, err);
}

/* "rank 2" or "ranks 2, 5" (up to 8) from the peers of the unfinished
 * requests req[0..n), into buf. */
static void unfinished_peers(const mig_t *m, int n, char *buf, size_t cap) {
  int shown = 0, more = 0;
  size_t u = 0;
  buf[0] = '\0';
  for (int i = 0; i < n; i++) {
    if (m->req[i] == MPI_REQUEST_NULL)
      continue;
    int seen = 0;
    for (int j = 0; j < i && !seen; j++)
      seen = m->req[j] != MPI_REQUEST_NULL && m->req_peer[j] == m->req_peer[i];
    if (seen)
      continue;
    if (shown == 8 || u + 16 >= cap) {
      more++;
      continue;
    }
    u += (size_t)snprintf(buf + u, cap - u, "%s%d", shown ? ", " : "",
                          m->req_peer[i]);
    shown++;
  }
  if (more && u + 16 < cap)
    snprintf(buf + u, cap - u, " and %d more", more);
}

/* Tests the n requests in m->req until all are done (0) or timeout_s
 * passes without all of them finishing (0 with *left > 0); an MPI failure
 * is EPLB_EMPI.  Requests 0..nr-1 are the receives of a batch:
 * each is written as soon as it completes (store_one).  With more
 * ranks than cores (8 ranks on 2 cores here) a rank spinning in MPI_Testsome
 * takes the core from the peer whose data it waits for, so after a few idle
 * polls it yields, then sleeps briefly; any progress resets that.  Completed
 * requests become MPI_REQUEST_NULL, so the ones left name the peers still
 * missing. */
static int poll_requests(mig_t *m, int n, size_t nr, int *left,
                         eplb_error_t *err) {
  double start = MPI_Wtime();
  int idle = 0;
  int *done_idx = m->req_peer + n; /* scratch after the peers */
  *left = n;
  while (*left > 0) {
    int out = 0;
    eplb__watch_poll(m->set->comm, "a transfer batch");
    int rc = eplb__mpi_check(
        MPI_Testsome(n, m->req, &out, done_idx, MPI_STATUSES_IGNORE),
        "MPI_Testsome of a transfer batch", err);
    if (rc)
      return rc;
    if (out == MPI_UNDEFINED) {
      *left = 0;
      break;
    }
    if (out > 0) {
      *left -= out;
      idle = 0;
      for (int i = 0; i < out; i++)
        if ((size_t)done_idx[i] < nr)
          store_one(m, (size_t)done_idx[i], err);
      continue;
    }
    if (MPI_Wtime() - start > m->opts->timeout_s)
      break;
    if (++idle > 32)
      nanosleep(&(struct timespec){0, idle > 1024 ? 200000 : 20000}, NULL);
    else if (idle > 4)
      sched_yield();
  }
  return 0;
}

/* Waits for batch b of layer l (n requests); a timeout names the peers. */
static int wait_batch(mig_t *m, int n, size_t nr, int32_t l, int32_t b,
                      eplb_error_t *err) {
  int left = 0;
  int rc = poll_requests(m, n, nr, &left, err);
  if (rc == 0 && left > 0) {
    char who[160];
    unfinished_peers(m, n, who, sizeof(who));
    rc = eplb_error_set(err, EPLB_EMPI,
                        "layer %d batch %d: transfer timed out after %d s "
                        "waiting for rank %s (%d of %d messages unfinished: "
                        "a peer crashed, hangs or is far slower)",
                        (int)l, (int)b, (int)m->opts->timeout_s, who, left, n);
  }
  return rc;
}

/* 1 when this rank sends a row set in batch b of layer l. */
static int sends_in(const mig_t *m, int32_t l, int32_t b) {
  const eplb_schedule_t *s = m->sched;
  for (int64_t i = s->layer_start[l]; i < s->layer_start[l + 1]; i++)
    if (m->batch[i] == b && s->xfers[i].src_rank == m->set->rank)
      return 1;
  return 0;
}

/* Moves layer l: kept and local rows written from the old layer, the rest
 * received batch by batch, verified and written.  MPI failures and
 * timeouts abort the job; a local failure (checksum, write) is returned
 * and agreed before the next layer. */
static int transfer_layer(mig_t *m, int32_t l, const int32_t *ids,
                          eplb_error_t *err) {
  double t = MPI_Wtime(); /* creating the layer (and starting the previous
                            one's writeback) is writing */
  m->layer = l;
  m->carry = m->inplace ? 0 : eplb_shard_writer_begin_layer(m->w, l, ids, err);
  m->t_write += MPI_Wtime() - t;
  int32_t crash_layer = m->sched->num_layers / 2;
  if (m->num_batches[l] == 0) {
    local_rows(m, l, err);
    if (l == crash_layer)
      eplb__fault_crash_point("transfer", m->set->rank);
  }
  for (int32_t b = 0; b < m->num_batches[l]; b++) {
    int n = 0;
    size_t nr = 0;
    /* A hang where it hurts: before posting a batch this rank sends in, so
     * that its peers' receives cannot complete (a receive-only batch
     * would let eager sends finish). */
    if (l >= crash_layer && eplb__fault_hang_here("transfer", m->set->rank) &&
        sends_in(m, l, b)) {
      char where[64];
      snprintf(where, sizeof(where), "layer %d, before posting batch %d",
               (int)l, (int)b);
      eplb__fault_hang_point("transfer", m->set->rank, where);
    }
    int rc = post_batch(m, l, b, &n, &nr, err);
    if (b == 0) /* the local rows are written while the first batch flows */
      local_rows(m, l, err);
    if (l == crash_layer && b == 0)
      eplb__fault_crash_point("transfer", m->set->rank);
    if (rc == 0)
      rc = wait_batch(m, n, nr, l, b, err);
    else
      eplb_error_prefix(err, "layer %d batch %d", (int)l, (int)b);
    if (rc)
      eplb__migrate_abort(m->set, m->tmp, err);
  }
  return m->carry;
}

/* ---- eplb_migrate ------------------------------------------------------ */

/* Checks the options against the job (the same on every rank). */
static int check_opts(const eplb_migrate_opts_t *o, int size,
                      eplb_error_t *err) {
  if (o->max_buffer_mb < EPLB_MIGRATE_MIN_BUFFER_MB ||
      o->max_buffer_mb > EPLB_MIGRATE_MAX_BUFFER_MB)
    return eplb_error_set(err, EPLB_EARG, "max_buffer_mb %d is outside %d..%d",
                          (int)o->max_buffer_mb, EPLB_MIGRATE_MIN_BUFFER_MB,
                          EPLB_MIGRATE_MAX_BUFFER_MB);
  if (o->timeout_s < EPLB_MIGRATE_MIN_TIMEOUT_S ||
      o->timeout_s > EPLB_MIGRATE_MAX_TIMEOUT_S)
    return eplb_error_set(err, EPLB_EARG, "timeout_s %d is outside %d..%d",
                          (int)o->timeout_s, EPLB_MIGRATE_MIN_TIMEOUT_S,
                          EPLB_MIGRATE_MAX_TIMEOUT_S);
  if (o->commit < EPLB_COMMIT_AUTO || o->commit > EPLB_COMMIT_REWRITE)
    return eplb_error_set(err, EPLB_EARG,
                          "commit %d is not EPLB_COMMIT_AUTO (0), _IN_PLACE "
                          "(1) or _REWRITE (2)",
                          (int)o->commit);
  if (o->num_nodes < 1 || o->num_nodes > size || size % o->num_nodes != 0)
    return eplb_error_set(err, EPLB_EARG,
                          "num_nodes %d must divide the %d ranks",
                          (int)o->num_nodes, size);
  return 0;
}

/* Checks `next` against the shards' shape (local). */
static int check_next(const eplb_shard_set_t *set, const eplb_placement_t *next,
                      eplb_error_t *err) {
  const eplb_placement_t *cur = &set->current;
  if (next == NULL || next->num_layers != cur->num_layers ||
      next->num_slots != cur->num_slots || next->num_gpus != cur->num_gpus)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "the new placement must have the shards' shape: %d "
                          "layers x %d slots on %d ranks",
                          (int)cur->num_layers, (int)cur->num_slots,
                          (int)cur->num_gpus);
  return eplb_placement_check(next, 0, "the new placement", err);
}

/* The ranks compare checksums of `next` with rank 0's: a divergent copy
 * is named on every rank. */
static int agree_next(eplb_shard_set_t *set, const eplb_placement_t *next,
                      eplb_error_t *err) {
  uint64_t c = eplb__checksum(
      next->phy2log,
      sizeof(int32_t) * (size_t)next->num_layers * (size_t)next->num_slots, 0);
  uint64_t *all = malloc(sizeof(uint64_t) * (size_t)set->size);
  if (all == NULL) /* cannot take part: the peers would wait */
    eplb__migrate_abort(set, NULL,
                        &(eplb_error_t){EPLB_ENOMEM, "out of memory "
                                                     "for the plan checksums"});
  int rc = eplb__allgather(&c, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T,
                           set->comm, "MPI_Allgather of plan checksums", err);
  char list[256] = "";
  size_t u = 0;
  int bad = 0;
  for (int r = 1; rc == 0 && r < set->size; r++)
    if (all[r] != all[0] && u + 16 < sizeof(list)) {
      u += (size_t)snprintf(list + u, sizeof(list) - u, "%s%d", bad ? ", " : "",
                            r);
      bad++;
    }
  free(all);
  if (rc == 0 && bad)
    rc = eplb_error_set(err, EPLB_EDIVERGED,
                        "the new placement diverged on rank%s %s (differs from "
                        "rank 0's); every rank must pass the same placement",
                        bad > 1 ? "s" : "", list);
  return rc;
}

/* Most requests this rank posts in one batch (bounded by one layer's). */
static size_t max_requests(const mig_t *m) {
  const eplb_schedule_t *s = m->sched;
  size_t best = 1;
  for (int32_t l = 0; l < s->num_layers; l++) {
    size_t n = 0;
    for (int64_t i = s->layer_start[l]; i < s->layer_start[l + 1]; i++)
      n += (s->xfers[i].dst_rank == m->set->rank) +
           (s->xfers[i].src_rank == m->set->rank);
    best = n > best ? n : best;
  }
  return best;
}

/* Row geometry and tags of a migration. */
static int mig_geometry(mig_t *m, eplb_error_t *err) {
  const eplb_shard_info_t *in = eplb_shard_info(m->set->shard);
  m->P = in->slots_per_rank;
  m->D = in->num_datasets;
  m->row = (size_t)in->row_bytes;
  size_t end = 0;
  for (int32_t d = 0; d < m->D; d++) { /* 16: any element size divides it */
    m->rb[d] = (size_t)in->datasets[d].row_bytes;
    m->off[d] = (end + 15) / 16 * 16;
    end = m->off[d] + m->rb[d];
  }
  m->toff = (end + 15) / 16 * 16;
  m->stride = (m->toff + 8 * (size_t)(m->D ? m->D : 1) + 15) / 16 * 16;
  m->msg = m->stride;
  if (m->stride > (size_t)2147483647)
    return eplb_error_set(err, EPLB_EARG,
                          "a slot's rows take %zu bytes; rows over "
                          "2 GiB are not supported",
                          m->row);
  int rc = 0;
  /* the watchdog's census uses the two largest tags */
  int ub = eplb__watch_tag_limit(m->set->comm) - 1;
  if (m->P - 1 > ub)
    return eplb_error_set(err, EPLB_EARG,
                          "%d slots per rank exceed MPI_TAG_UB %d", (int)m->P,
                          ub);
  int64_t tl = ((int64_t)ub + 1) / m->P;
  m->tag_layers = (int32_t)(tl > 1024 ? 1024 : tl < 1 ? 1 : tl);
  return rc;
}

/* Sizes, tags, buffers and batches of a migration: one layer of old rows
 * plus the staging of one batch's receives (at most max_buffer_mb, or one
 * row set). */
static int mig_setup(mig_t *m, eplb_error_t *err) {
  int rc = mig_geometry(m, err);
  if (rc == 0)
    rc = cut_batches(m, (size_t)m->opts->max_buffer_mb << 20, err);
  if (rc)
    return rc;
  size_t P = (size_t)m->P;
  m->old = calloc(P, m->stride); /* padding between rows stays zero */
  m->staging = malloc(m->staging_rows * m->stride);
  m->req = malloc(sizeof(MPI_Request) * max_requests(m));
  m->req_peer =
      malloc(sizeof(int) * 2 * max_requests(m)); /* + Testsome's indices */
  m->recv_xfer = malloc(sizeof(int64_t) * m->staging_rows);
  m->dup_head = malloc(sizeof(int32_t) * P);
  m->dup_next = malloc(sizeof(int32_t) * P);
  size_t nsums = (size_t)m->sched->num_layers * P * (size_t)(m->D ? m->D : 1);
  m->newsums = calloc(nsums, sizeof(uint64_t));
  m->oldsums = eplb_shard_checksums(m->set->shard);
  if (m->newsums && m->oldsums) /* what stays keeps its checksums */
    memcpy(m->newsums, m->oldsums, nsums * sizeof(uint64_t));
  if (!m->old || !m->staging || !m->req || !m->req_peer || !m->recv_xfer ||
      !m->dup_head || !m->dup_next || !m->newsums)
    return eplb_error_set(err, EPLB_ENOMEM,
                          "out of memory for one layer (%zu "
                          "bytes) and the staging (%zu bytes)",
                          P * m->stride, m->staging_rows * m->stride);
  /* touched now: no page faults in the middle of a transfer */
  memset(m->old, 0, P * m->stride);
  memset(m->staging, 0, m->staging_rows * m->stride);
  return 0;
}

static void mig_free(mig_t *m) {
  free(m->old);
  free(m->staging);
  free(m->req);
  free(m->req_peer);
  free(m->recv_xfer);
  free(m->dup_head);
  free(m->dup_next);
  free(m->newsums);
  free(m->batch);
  eplb__inplace_free(m);
  free(m->num_batches);
}

/* Rank 0's progress line / callback, at most ~4 times a second. */
static void progress(mig_t *m, int32_t done, int32_t L) {
  double now = MPI_Wtime(), t = now - m->t0;
  if (m->set->rank != 0 || (done < L && now - m->last_progress < 0.25))
    return;
  m->last_progress = now;
  if (m->opts->progress)
    m->opts->progress(m->opts->progress_ctx, done, L, m->bytes_done, t);
  int64_t r = 0, w = 0; /* this rank's disk bytes so far (rank 0's) */
  eplb__shard_io_totals(&r, &w);
  r += m->disk_read - m->io_read0;
  w += m->disk_written + m->redo.disk + (int64_t)m->redo.used - m->io_written0;
  if (!m->opts->quiet)
    fprintf(stderr,
            "eplb: migrate layer %d/%d, %.1f MiB moved, %.1f MB/s; rank 0's "
            "disk: %.1f MiB read, %.1f MiB written\n",
            (int)done, (int)L, (double)m->bytes_done / 1048576.0,
            t > 0 ? (double)m->bytes_done / t / 1e6 : 0.0,
            (double)r / 1048576.0, (double)w / 1048576.0);
}

/* Network bytes of layer l (all ranks). */
static int64_t layer_bytes(const mig_t *m, int32_t l) {
  return (m->sched->layer_start[l + 1] - m->sched->layer_start[l]) *
         (int64_t)m->row;
}

/* Layer by layer: read, agree, transfer (rows written to m->w as they
 * arrive).  Returns this rank's result (a local failure after an agreement
 * is carried to the next one); an agreed failure is returned with
 * *agreed = 1. */
static int run_layers(mig_t *m, const eplb_placement_t *next, int *agreed,
                      eplb_error_t *err) {
  int carry = 0;
  int32_t L = m->sched->num_layers;
  eplb__watch_phase("transfer");
  for (int32_t l = 0; l < L; l++) {
    double t = MPI_Wtime();
    if (carry == 0)
      carry = read_old(m, l, err);
    m->t_read += MPI_Wtime() - t;
    int rc = eplb__agree(m->set->comm, carry, err); /* time-bounded */
    if (rc)
      return *agreed = 1, rc;
    const int32_t *ids = next->phy2log + (size_t)l * (size_t)next->num_slots +
                         (size_t)m->set->rank * (size_t)m->P;
    double w0 = m->t_write;
    t = MPI_Wtime();
    carry = transfer_layer(m, l, ids, err);
    m->t_xfer += MPI_Wtime() - t - (m->t_write - w0);
    m->bytes_done += layer_bytes(m, l);
    progress(m, l + 1, L);
  }
  return carry;
}

/* Fills *res from the schedule and the (slowest rank's) timers. */
static int fill_result(mig_t *m, uint64_t gen, eplb_migrate_result_t *res,
                       eplb_error_t *err) {
  const eplb_schedule_t *s = m->sched;
  res->generation = gen;
  res->num_ranks = s->num_ranks;
  res->experts_received = s->num_xfers;
  res->bytes_moved = s->num_xfers * (int64_t)m->row;
  res->local_copies = s->local_copies;
  res->slots_kept = s->kept;
  res->bytes_sent = calloc((size_t)s->num_ranks, sizeof(int64_t));
  res->bytes_received = calloc((size_t)s->num_ranks, sizeof(int64_t));
  if (!res->bytes_sent || !res->bytes_received)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int64_t i = 0; i < s->num_xfers; i++) {
    res->bytes_sent[s->xfers[i].src_rank] += (int64_t)m->row;
    res->bytes_received[s->xfers[i].dst_rank] += (int64_t)m->row;
  }
  double mine[6] = {m->t_read,   m->t_xfer,           m->t_write,
                    m->t_commit, MPI_Wtime() - m->t0, m->t_verify};
  double mx[6];
  int rc = eplb__allreduce(mine, mx, 6, MPI_DOUBLE, MPI_MAX, m->set->comm,
                           "MPI_Allreduce of the timings", err);
  res->seconds_read = mx[0];
  res->seconds_transfer = mx[1];
  res->seconds_write = mx[2];
  res->seconds_commit = mx[3];
  res->seconds_total = mx[4];
  res->seconds_verify = mx[5];
  res->bandwidth_mbs = mx[1] > 0 ? (double)res->bytes_moved / mx[1] / 1e6 : 0;
  int64_t r = 0, w = 0;
  eplb__shard_io_totals(&r, &w);
  int64_t io[3] = {m->disk_read + r - m->io_read0,
                   m->disk_written + w - m->io_written0, m->inplace};
  int64_t sum[3] = {0, 0, 0};
  if (rc == 0)
    rc = eplb__allreduce(io, sum, 3, MPI_INT64_T, MPI_SUM, m->set->comm,
                         "MPI_Allreduce of the disk bytes", err);
  res->disk_bytes_read = sum[0];
  res->disk_bytes_written = sum[1];
  res->ranks_in_place = (int32_t)sum[2];
  return rc;
}

/* The new shard as the file holds it, not as memory does: reopened after
 * the fsync, its generation, every layer's expert ids and every row's
 * checksum must be what this rank wrote.  A write HDF5 lost (a disk full
 * for a moment at a close) would otherwise be committed as weights; and
 * since a received row is written with its sender's checksums, unhashed,
 * this is also where a row corrupted in transit is found. */
static int prove_shard(mig_t *m, const char *tmp, uint64_t gen,
                       const eplb_placement_t *next, eplb_error_t *err) {
  eplb_shard_t *sh = NULL;
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)m->P);
  int rc = ids ? eplb_shard_open(tmp, &sh, err)
               : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc == 0) /* compared with what was written, just below */
    eplb_shard_set_check(sh, 0);
  if (rc == 0 && eplb_shard_info(sh)->generation != gen)
    rc = eplb_error_set(err, EPLB_EIO,
                        "%s: reads back generation %llu, not %llu", tmp,
                        (unsigned long long)eplb_shard_info(sh)->generation,
                        (unsigned long long)gen);
  const unsigned char *pieces[EPLB_SHARD_MAX_DATASETS];
  for (int32_t l = 0; rc == 0 && l < m->sched->num_layers; l++) {
    const int32_t *want = next->phy2log + (size_t)l * (size_t)next->num_slots +
                          (size_t)m->set->rank * (size_t)m->P;
    uint64_t h[EPLB_SHARD_MAX_DATASETS];
    rc = eplb_shard_read_ids(sh, l, ids, err);
    if (rc == 0 && memcmp(ids, want, sizeof(int32_t) * (size_t)m->P) != 0)
      rc = eplb_error_set(err, EPLB_EIO,
                          "%s: layer %d: the expert ids read back differ from "
                          "the ones written (a lost write: disk full?)",
                          tmp, (int)l);
    if (rc == 0)
      rc = eplb_shard_read_layer(sh, l, m->old, m->stride, m->off, err);
    for (int32_t s = 0; rc == 0 && s < m->P; s++) {
      old_pieces(m, s, pieces);
      piece_sums(m, pieces, h);
      const uint64_t *want_h =
          m->newsums + ((size_t)l * (size_t)m->P + (size_t)s) * (size_t)m->D;
      for (int32_t d = 0; rc == 0 && d < m->D; d++)
        if (h[d] != want_h[d])
          rc = eplb__row_mismatch(m, tmp, l, s, d, want[s], err);
    }
  }
  eplb_shard_close(sh);
  free(ids);
  return rc;
}

/* After the commit: this rank's shard is the new file, set->current next. */
static int adopt(eplb_shard_set_t *set, const eplb_placement_t *next,
                 eplb_error_t *err) {
  char path[4096];
  eplb_placement_t copy;
  int rc = eplb_shard_path(set->dir, set->rank, path, sizeof(path), err);
  eplb_shard_close(set->shard);
  set->shard = NULL;
  if (rc == 0)
    rc = eplb_shard_open(path, &set->shard, err);
  if (rc == 0)
    rc = eplb_placement_copy(&copy, next, err);
  if (rc == 0) {
    copy.num_experts = set->current.num_experts;
    eplb_placement_cleanup(&set->current);
    set->current = copy;
  }
  return rc;
}

/* This rank's output: its redo journal when it commits in place
 * (inplace.c), else its new shard, written whole to a temporary file;
 * `path` gets the file's name. */
static int open_output(mig_t *m, uint64_t gen, char *path, size_t cap,
                       eplb_error_t *err) {
  eplb_shard_set_t *set = m->set;
  int rc = eplb__shard_redo_path(set->dir, set->rank, gen, path, cap, err);
  if (rc == 0)
    rc = eplb__inplace_setup(m, path, gen, err);
  if (rc || m->inplace)
    return rc;
  eplb_shard_info_t *info = malloc(sizeof(*info));
  rc = info ? eplb__shard_tmp_path(set->dir, set->rank, gen, path, cap, err)
            : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  if (rc == 0) {
    *info = *eplb_shard_info(set->shard);
    info->generation = gen;
    rc = eplb_shard_writer_create(path, info, &m->w, err);
    if (rc == 0) /* layer ids, checkpoint names: they follow the weights */
      rc = eplb_shard_writer_copy_extras(m->w, set->shard, err);
  }
  free(info);
  return rc;
}

/* Finishes this rank's output and proves it from the disk, before its
 * vote (rc: this rank's result so far). */
static int finish_output(mig_t *m, const char *path, uint64_t gen,
                         const eplb_placement_t *next, int rc,
                         eplb_error_t *err) {
  double tw = MPI_Wtime();
  int fault = eplb__fault_write(m->set->rank);
  if (m->inplace) {
    if (rc == 0)
      rc = eplb__inplace_finish(m, next, gen, err); /* fault: inside */
  } else {
    if (rc == 0 && fault)
      eplb__shard_writer_inject(m->w, fault);
    if (rc == 0) /* closing and the fsync are part of writing the shard */
      rc = eplb_shard_writer_finish(m->w, 1, err);
    else
      eplb_shard_writer_abort(m->w);
    m->w = NULL;
    double t = MPI_Wtime();
    if (rc == 0) /* proving it is part of writing it */
      rc = prove_shard(m, path, gen, next, err);
    m->t_verify += MPI_Wtime() - t;
  }
  m->t_write += MPI_Wtime() - tw;
  return rc;
}

/* The migration proper, after the agreed checks: schedule, layers, commit. */
static int migrate_agreed(eplb_shard_set_t *set, const eplb_placement_t *next,
                          const eplb_migrate_opts_t *o,
                          eplb_migrate_result_t *res, eplb_error_t *err) {
  eplb_schedule_t sched;
  mig_t m;
  memset(&m, 0, sizeof(m));
  m.set = set;
  m.sched = &sched;
  m.opts = o;
  m.fd = -1;
  m.redo.fd = -1;
  m.t0 = MPI_Wtime();
  eplb__shard_io_totals(&m.io_read0, &m.io_written0);
  char path[4096] = "";
  uint64_t gen = eplb_shard_info(set->shard)->generation + 1;
  int rc = eplb_schedule_build(&set->current, next, o->num_nodes, &sched, err);
  if (rc == 0)
    rc = mig_setup(&m, err);
  if (rc == 0 && gen >= (1ULL << 53))
    rc = eplb_error_set(err, EPLB_ESTATE,
                        "generation %llu cannot be bumped further",
                        (unsigned long long)gen - 1);
  if (rc == 0)
    rc = open_output(&m, gen, path, sizeof(path), err);
  int agreed = 0, handed = 0;
  rc = eplb__agree(set->comm, rc, err);
  if (rc)
    goto done; /* agreed: every rank removes its output */
  m.tmp = path;
  char hint[4400]; /* what a timeout says (mpi/watchdog.h) */
  snprintf(hint, sizeof(hint),
           "nothing was committed and the shards in %s are untouched: run "
           "`eplb-sync --recover --shards %s` to remove the temporary "
           "files, then retry",
           set->dir, set->dir);
  eplb__watch_on_abort(path, hint);
  rc = run_layers(&m, next, &agreed, err);
  if (agreed)
    goto done;
  rc = finish_output(&m, path, gen, next, rc, err);
  double t = MPI_Wtime();
  int64_t applied = 0;
  handed = 1; /* the commit removes the output or keeps it for recovery */
  rc = m.inplace ? eplb__commit_redo(set, path, gen, (int64_t)m.redo.records,
                                     rc, &applied, err)
                 : eplb__commit(set, path, gen, rc, err); /* agrees first */
  m.disk_written += applied;
  m.t_commit = MPI_Wtime() - t;
  if (rc == 0)
    rc = adopt(set, next, err);
  if (rc == 0)
    rc = fill_result(&m, gen, res, err);
done:
  eplb_shard_writer_abort(m.w); /* NULL once finished */
  if (m.inplace && !handed)
    eplb__redo_abort(&m.redo); /* closes and removes it */
  mig_free(&m);
  eplb_schedule_cleanup(&sched);
  return rc;
}

int eplb_migrate(eplb_shard_set_t *set, const eplb_placement_t *next,
                 const eplb_migrate_opts_t *opts, eplb_migrate_result_t *res,
                 eplb_error_t *err) {
  memset(res, 0, sizeof(*res));
  eplb_migrate_opts_t o;
  if (opts)
    o = *opts;
  else
    eplb_migrate_opts_default(&o);
  int rc = eplb__fault_load(err);
  if (rc == 0)
    rc = check_opts(&o, set->size, err);
  /* Every wait of the migration is bounded by timeout_s (watchdog.h). */
  int old_timeout = eplb__watch_timeout(rc == 0 ? o.timeout_s : 0);
  if (rc == 0)
    rc = check_next(set, next, err);
  rc = eplb__agree(set->comm, rc, err);
  if (rc == 0)
    rc = agree_next(set, next, err);
  if (rc == 0)
    rc = migrate_agreed(set, next, &o, res, err);
  eplb__watch_on_abort(NULL, NULL);
  eplb__watch_timeout(old_timeout);
  if (rc)
    eplb_migrate_result_cleanup(res);
  return rc;
}
