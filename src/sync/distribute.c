/* sync/distribute.c - the stage after plan: rank 0's plan, or its
 * failure, goes to every rank in one MPI_Bcast, and every rank proves it
 * holds the same plan.
 *
 * Why verify what MPI_Bcast delivered: a rank that runs with another map
 * than its peers routes tokens to experts that are not where it thinks, and
 * nothing crashes - the model just gets worse.  A checksum per rank,
 * exchanged, turns that silent failure into a loud one that names the
 * ranks.  A scenario run's per-scenario metrics ride after the slots in
 * the same broadcast, checksummed with them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/agree.h"
#include "mpi/fault.h"
#include "mpi/watchdog.h"
#include "sync/internal.h"
#include "util/checksum.h"

/* What rank 0 broadcasts ahead of the slots.  Checksummed with them,
 * except for its own checksum field. */
typedef struct {
  int32_t status; /* 0, or rank 0's failure: a message follows */
  int32_t num_layers, num_experts, num_slots, num_gpus, pad;
  uint64_t generation;
  double imbalance_before, imbalance_after, floor;
  int64_t moves;
  int64_t aux[2]; /* caller's words (the online loop's round flags) */
  uint64_t checksum;
} plan_header_t;

int eplb__plan_buf_alloc(eplb__plan_buf_t *b, int32_t max_layers,
                         int32_t num_slots, eplb_error_t *err) {
  return eplb__plan_buf_alloc_scenarios(b, max_layers, num_slots, 0, err);
}

int eplb__plan_buf_alloc_scenarios(eplb__plan_buf_t *b, int32_t max_layers,
                                   int32_t num_slots, int32_t num_scenarios,
                                   eplb_error_t *err) {
  memset(b, 0, sizeof(*b));
  if (max_layers < 1 || num_slots < 1)
    return eplb_error_set(err, EPLB_EARG, "empty plan (%d x %d)",
                          (int)max_layers, (int)num_slots);
  size_t ints = (size_t)max_layers * ((size_t)num_slots + 1);
  b->size = sizeof(plan_header_t) + sizeof(int32_t) * ints +
            sizeof(double) * 2 * (size_t)num_scenarios;
  if (b->size < EPLB_ERROR_MSG_MAX)
    b->size = EPLB_ERROR_MSG_MAX; /* room for rank 0's error message */
  b->bytes = malloc(b->size);
  if (b->bytes == NULL)
    return eplb_error_set(err, EPLB_ENOMEM,
                          "out of memory for a %d x %d plan buffer",
                          (int)max_layers, (int)num_slots);
  b->max_layers = max_layers;
  b->num_slots = num_slots;
  b->num_scenarios = num_scenarios;
  return 0;
}

void eplb__plan_buf_free(eplb__plan_buf_t *b) {
  if (b == NULL)
    return;
  free(b->bytes);
  memset(b, 0, sizeof(*b));
}

/* Checksum of the header (without its checksum), the plan's arrays and
 * the scenario metrics of res (when the buffer carries them). */
static uint64_t plan_checksum(const plan_header_t *h, const eplb_placement_t *p,
                              const eplb__plan_buf_t *b,
                              const eplb_sync_result_t *res) {
  plan_header_t copy = *h;
  copy.checksum = 0;
  uint64_t c = eplb__checksum(&copy, sizeof(copy), 0x65706c62ULL);
  c = eplb__checksum(p->layer_ids, sizeof(int32_t) * (size_t)p->num_layers, c);
  c = eplb__checksum(
      p->phy2log,
      sizeof(int32_t) * (size_t)p->num_layers * (size_t)p->num_slots, c);
  if (b->num_scenarios == 0)
    return c;
  c = eplb__checksum(res->scenario_before,
                     sizeof(double) * (size_t)b->num_scenarios, c);
  return eplb__checksum(res->scenario_after,
                        sizeof(double) * (size_t)b->num_scenarios, c);
}

/* "3, 5": the ranks whose checksum differs from `ref` (rank 0's, as it
 * computed it before sending). */
static int divergent_ranks(const uint64_t *all, int size, uint64_t ref,
                           char *buf, size_t cap) {
  int n = 0;
  size_t used = 0;
  buf[0] = '\0';
  for (int r = 0; r < size; r++) {
    if (all[3 * r] == ref)
      continue;
    int w = snprintf(buf + used, cap - used, "%s%d", n ? ", " : "", r);
    if (w > 0 && used + (size_t)w < cap - 8)
      used += (size_t)w;
    else if (used + 4 < cap)
      used += (size_t)snprintf(buf + used, cap - used, "...");
    n++;
  }
  return n;
}

/* Flips one slot of the received plan when EPLB_FAULT says so (tests). */
static void maybe_corrupt(eplb_placement_t *p, int rank) {
  if (!eplb__fault_corrupt_plan(rank) || p->num_layers == 0)
    return;
  int32_t *s = &p->phy2log[(size_t)(p->num_layers - 1) * (size_t)p->num_slots];
  *s = (*s + 1) % (p->num_experts > 0 ? p->num_experts : 1);
}

/* Rank 0: header + layer ids + slots (+ the scenario metrics of res) into
 * the buffer (or, on failure, the status and the message). */
static void pack_plan(eplb__plan_buf_t *b, plan_header_t *h, int root_rc,
                      const eplb_placement_t *plan,
                      const eplb_sync_result_t *res, const eplb_error_t *err) {
  h->status = root_rc;
  if (root_rc != 0) {
    memcpy(b->bytes, h, sizeof(*h));
    snprintf((char *)b->bytes + sizeof(*h), b->size - sizeof(*h), "%s",
             eplb_error_message(err));
    return;
  }
  h->num_layers = plan->num_layers;
  h->num_experts = plan->num_experts;
  h->num_slots = plan->num_slots;
  h->num_gpus = plan->num_gpus;
  h->checksum = plan_checksum(h, plan, b, res);
  unsigned char *p = b->bytes;
  memcpy(p, h, sizeof(*h));
  p += sizeof(*h);
  memcpy(p, plan->layer_ids, sizeof(int32_t) * (size_t)plan->num_layers);
  p += sizeof(int32_t) * (size_t)plan->num_layers;
  memcpy(p, plan->phy2log,
         sizeof(int32_t) * (size_t)plan->num_layers * (size_t)plan->num_slots);
  p += sizeof(int32_t) * (size_t)plan->num_layers * (size_t)plan->num_slots;
  size_t k = sizeof(double) * (size_t)b->num_scenarios;
  if (k > 0) {
    memcpy(p, res->scenario_before, k);
    memcpy(p + k, res->scenario_after, k);
  }
}

/* Ranks > 0: the plan (and the scenario metrics, into res) out of the
 * buffer.  A header that does not fit the buffer (a corrupted broadcast)
 * is an error of this rank. */
static int unpack_plan(const eplb__plan_buf_t *b, plan_header_t *h,
                       eplb_placement_t *plan, eplb_sync_result_t *res,
                       eplb_error_t *err) {
  memcpy(h, b->bytes, sizeof(*h));
  if (h->status != 0)
    return 0;
  if (h->num_layers < 1 || h->num_layers > b->max_layers ||
      h->num_slots != b->num_slots)
    return eplb_error_set(err, EPLB_EDIVERGED,
                          "the plan header received holds %d layers x %d "
                          "slots, not what was agreed (at most %d x %d)",
                          (int)h->num_layers, (int)h->num_slots,
                          (int)b->max_layers, (int)b->num_slots);
  int rc = eplb_placement_init(plan, h->num_layers, h->num_experts,
                               h->num_slots, h->num_gpus, err);
  if (rc)
    return rc;
  const unsigned char *p = b->bytes + sizeof(*h);
  memcpy(plan->layer_ids, p, sizeof(int32_t) * (size_t)plan->num_layers);
  p += sizeof(int32_t) * (size_t)plan->num_layers;
  memcpy(plan->phy2log, p,
         sizeof(int32_t) * (size_t)plan->num_layers * (size_t)plan->num_slots);
  p += sizeof(int32_t) * (size_t)plan->num_layers * (size_t)plan->num_slots;
  size_t k = sizeof(double) * (size_t)b->num_scenarios;
  if (k > 0) {
    memcpy(res->scenario_before, p, k);
    memcpy(res->scenario_after, p + k, k);
  }
  return 0;
}

/* Every rank's checksum of its copy, compared with the one rank 0
 * computed before sending; one allgather of (checksum of my copy, the
 * checksum I received, my status).  A rank that could not unpack is named
 * through the agreement. */
static int verify_plan(MPI_Comm comm, int size, int local_rc,
                       const plan_header_t *h, const eplb_placement_t *plan,
                       const eplb__plan_buf_t *b, const eplb_sync_result_t *res,
                       eplb_error_t *err) {
  uint64_t mine[3] = {local_rc ? 0 : plan_checksum(h, plan, b, res),
                      h->checksum, (uint64_t)(local_rc != 0)};
  uint64_t *all = malloc(sizeof(uint64_t) * 3 * (size_t)size);
  if (all == NULL) {
    fprintf(stderr, "eplb: out of memory verifying the plan; aborting\n");
    MPI_Abort(comm, 1);
    return EPLB_ENOMEM;
  }
  int rc = eplb__allgather(mine, 3, MPI_UINT64_T, all, 3, MPI_UINT64_T, comm,
                           "MPI_Allgather of the plan checksums", err);
  int failed = 0;
  for (int r = 0; rc == 0 && r < size; r++)
    failed |= all[3 * r + 2] != 0;
  char ranks[512];
  if (rc == 0 && failed)
    rc = eplb__agree(comm, local_rc, err);
  else if (rc == 0 &&
           divergent_ranks(all, size, all[1], ranks, sizeof(ranks)) > 0)
    rc = eplb_error_set(err, EPLB_EDIVERGED,
                        "plan generation %llu diverged on ranks %s (their "
                        "copy's checksum differs from the %016llx rank 0 "
                        "sent); nothing was written; check those ranks' "
                        "memory and MPI transport",
                        (unsigned long long)h->generation, ranks,
                        (unsigned long long)all[1]);
  free(all);
  return rc;
}

int eplb__sync_distribute(MPI_Comm comm, int root_rc, eplb__plan_buf_t *buf,
                          eplb_placement_t *plan, eplb_sync_result_t *res,
                          int64_t aux[2], eplb_error_t *err) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  double t0 = MPI_Wtime();
  plan_header_t h = {0};
  if (rank == 0) {
    h.generation = res->generation;
    h.imbalance_before = res->imbalance_before;
    h.imbalance_after = res->imbalance_after;
    h.floor = res->floor;
    h.moves = res->moves;
    if (aux) {
      h.aux[0] = aux[0];
      h.aux[1] = aux[1];
    }
    pack_plan(buf, &h, root_rc, plan, res, err);
  }
  /* One broadcast: status, header and plan (or rank 0's error message). */
  int rc = eplb__bcast(buf->bytes, (int)buf->size, MPI_BYTE, 0, comm,
                       "MPI_Bcast of the plan", err);
  double t1 = MPI_Wtime();
  res->seconds[EPLB_PHASE_DISTRIBUTE] += t1 - t0;
  if (rc)
    goto fail;
  int local = rank == 0 ? 0 : unpack_plan(buf, &h, plan, res, err);
  if (h.status != 0) {
    char msg[EPLB_ERROR_MSG_MAX];
    snprintf(msg, sizeof(msg), "%s", (const char *)buf->bytes + sizeof(h));
    rc = eplb_error_set(err, h.status, "rank 0: %s", msg);
    goto fail;
  }
  if (local == 0)
    maybe_corrupt(plan, rank);
  eplb__watch_phase("verify");
  eplb__fault_point("verify", rank, "before comparing plan checksums");
  rc = verify_plan(comm, size, local, &h, plan, buf, res, err);
  res->seconds[EPLB_PHASE_VERIFY] += MPI_Wtime() - t1;
  if (rc)
    goto fail;
  eplb_placement_cleanup(&res->placement);
  res->placement = *plan;
  memset(plan, 0, sizeof(*plan));
  res->generation = h.generation;
  res->checksum = h.checksum;
  res->imbalance_before = h.imbalance_before;
  res->imbalance_after = h.imbalance_after;
  res->floor = h.floor;
  res->moves = h.moves;
  res->num_ranks = size;
  if (aux) {
    aux[0] = h.aux[0];
    aux[1] = h.aux[1];
  }
  return 0;
fail:
  eplb_placement_cleanup(plan);
  return rc;
}
