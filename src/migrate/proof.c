/* migrate/proof.c - what the proof from disk before the vote says about
 * a row that does not match the checksum it was written with (see mig.h,
 * docs/shards.md "What is verified where").  A received row is written
 * with the checksums its sender computed, unhashed on receipt, so this
 * proof is also the check of the transfer: its message names the sender
 * of such a row, since a row corrupted in transit and a write the disk
 * lost look alike there.  Shared by the rewrite (move.c) and the in-place
 * commit (inplace.c). */
#include "migrate/mig.h"

int32_t eplb__row_sender(const mig_t *m, int32_t l, int32_t slot) {
  const eplb_schedule_t *s = m->sched;
  size_t at = ((size_t)l * (size_t)s->num_ranks + (size_t)m->set->rank) *
                  (size_t)m->P +
              (size_t)slot;
  if (s->action[at] == EPLB_SLOT_DUP) /* a copy of the slot that received */
    slot = s->source[at];
  else if (s->action[at] != EPLB_SLOT_RECV)
    return -1;
  for (int64_t i = s->layer_start[l]; i < s->layer_start[l + 1]; i++)
    if (s->xfers[i].dst_rank == m->set->rank && s->xfers[i].dst_slot == slot)
      return s->xfers[i].src_rank;
  return -1;
}

int eplb__row_mismatch(const mig_t *m, const char *file, int32_t l,
                       int32_t slot, int32_t d, int32_t expert,
                       eplb_error_t *err) {
  const char *ds = eplb_shard_info(m->set->shard)->datasets[d].name;
  int32_t from = eplb__row_sender(m, l, slot);
  if (from >= 0)
    return eplb_error_set(
        err, EPLB_ECHECKSUM,
        "%s: layer %d slot %d (expert %d) dataset '%s', received from rank "
        "%d: the bytes read back after the fsync do not match the checksum "
        "rank %d computed as it sent them (corrupted in transit, or a lost "
        "write); nothing was committed, retry",
        file, (int)l, (int)slot, (int)expert, ds, (int)from, (int)from);
  return eplb_error_set(err, EPLB_ECHECKSUM,
                        "%s: layer %d slot %d (expert %d) dataset '%s': the "
                        "row read back after the fsync is not the row written "
                        "(a lost write: disk full for a moment?); nothing was "
                        "committed, retry",
                        file, (int)l, (int)slot, (int)expert, ds);
}
