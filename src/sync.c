/* sync.c - the multi-rank engine behind `eplb-sync` and eplb_sync_run.
 *
 * collect -> agree on shape -> reduce -> plan (rank 0) -> broadcast ->
 * verify -> write.  Each phase is its own function so that the shard
 * migration and the --watch loop can run them in their own order
 * (sync_internal.h).  The rule that keeps the engine from hanging: every
 * phase starts with an agreement (eplb__agree) on whether every rank is
 * ready, and every failure after a collective is identical on every rank,
 * so no rank ever waits in a collective that another rank has left.
 *
 * Why verify what MPI_Bcast delivered: a rank that runs with another map
 * than its peers routes tokens to experts that are not where it thinks, and
 * nothing crashes - the model just gets worse.  A checksum per rank,
 * exchanged, turns that silent failure into a loud one that names the
 * ranks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "agree.h"
#include "eplb/metrics.h"
#include "fault.h"
#include "sync_internal.h"
#include "util/checksum.h"
#include "util/fileio.h"

static const char *const phase_names[EPLB_NUM_PHASES] = {
    "read", "agree", "reduce", "plan", "broadcast",
    "verify", "transfer", "commit", "write", "total"};

const char *eplb_sync_phase_name(eplb_sync_phase_t phase) {
  return (unsigned)phase < EPLB_NUM_PHASES ? phase_names[phase] : "unknown";
}

void eplb_sync_opts_default(eplb_sync_opts_t *opts) {
  memset(opts, 0, sizeof(*opts));
  eplb_plan_opts_default(&opts->plan);
  opts->output_format = EPLB_MAP_AUTO;
}

void eplb_sync_result_cleanup(eplb_sync_result_t *res) {
  if (res == NULL)
    return;
  eplb_placement_cleanup(&res->placement);
  eplb_migrate_result_cleanup(&res->migrate);
  free(res->dropped);
  memset(res, 0, sizeof(*res));
}

int eplb_sync_expand(const char *pattern, int rank, char *buf, size_t size,
                     eplb_error_t *err) {
  size_t used = 0;
  for (const char *p = pattern; *p; p++) {
    char tmp[16];
    const char *piece = tmp;
    if (p[0] == '%' && p[1] == 'r') {
      snprintf(tmp, sizeof(tmp), "%d", rank);
      p++;
    } else {
      tmp[0] = *p;
      tmp[1] = '\0';
    }
    size_t n = strlen(piece);
    if (used + n + 1 > size)
      return eplb_error_set(err, EPLB_EARG,
                            "statistics pattern '%s' is longer than %zu bytes "
                            "once %%r is replaced; use a shorter path",
                            pattern, size - 1);
    memcpy(buf + used, piece, n);
    used += n;
  }
  buf[used] = '\0';
  return 0;
}

/* ---- plan (rank 0) --------------------------------------------------- */

/* The metrics of res on rank 0: balance before (current or contiguous) and
 * after, floor, moves. */
static int root_metrics(const eplb_stats_t *sum, const eplb_placement_t *before,
                        const eplb_placement_t *plan, eplb_sync_result_t *res,
                        eplb_error_t *err) {
  eplb_balance_t b0, b1;
  int rc = eplb_balance(sum, before, &b0, err);
  if (rc == 0)
    rc = eplb_balance(sum, plan, &b1, err);
  if (rc)
    return rc;
  res->imbalance_before = b0.imbalance;
  res->imbalance_after = b1.imbalance;
  res->floor = b1.floor;
  res->moves = eplb_placement_moves(before, plan);
  return 0;
}

/* opts->current, checked against the statistics and the options. */
static int check_current(const eplb_stats_t *sum, const eplb_sync_opts_t *opts,
                         eplb_error_t *err) {
  const eplb_placement_t *c = opts->current;
  if (c->num_layers != sum->num_layers || c->num_slots != opts->plan.num_slots ||
      c->num_gpus != opts->plan.num_gpus || c->num_experts != sum->num_experts)
    return eplb_error_set(
        err, EPLB_ESHAPE,
        "the current placement holds %d layers x %d slots on %d GPUs for %d "
        "experts, but the summed statistics have %d layers x %d experts and "
        "the options say %d slots on %d GPUs; give the map of this model",
        (int)c->num_layers, (int)c->num_slots, (int)c->num_gpus,
        (int)c->num_experts, (int)sum->num_layers, (int)sum->num_experts,
        (int)opts->plan.num_slots, (int)opts->plan.num_gpus);
  return eplb_placement_check(c, 0, "the current placement", err);
}

int eplb__sync_plan_root(const eplb_stats_t *sum, const eplb_sync_opts_t *opts,
                         eplb_placement_t *plan, eplb_sync_result_t *res,
                         eplb_error_t *err) {
  eplb_placement_t contiguous = {0}, from_file = {0};
  eplb_sync_opts_t o = *opts;
  int rc = 0;
  if (o.current == NULL && o.current_map) {
    rc = eplb_placement_read_for(&from_file, o.current_map, sum,
                                 o.plan.num_slots, o.plan.num_gpus,
                                 "--current-map", err);
    if (rc)
      return rc;
    o.current = &from_file;
  } else if (o.current) {
    rc = check_current(sum, &o, err); /* the caller's, unchecked so far */
    if (rc)
      return rc;
  }
  opts = &o;
  const eplb_placement_t *before = opts->current;
  if (before == NULL) {
    rc = eplb_placement_init(&contiguous, sum->num_layers, sum->num_experts,
                             opts->plan.num_slots, opts->plan.num_gpus, err);
    if (rc == 0)
      rc = eplb_placement_contiguous(&contiguous, err);
    before = &contiguous;
  }
  if (rc == 0)
    rc = opts->current ? eplb_plan_from(sum, opts->current, &opts->plan, plan, err)
                       : eplb_plan(sum, &opts->plan, plan, err);
  if (rc == 0)
    rc = root_metrics(sum, before, plan, res, err);
  if (rc)
    eplb_placement_cleanup(plan);
  eplb_placement_cleanup(&contiguous);
  eplb_placement_cleanup(&from_file);
  return rc;
}

/* ---- broadcast and verify ------------------------------------------- */

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
  memset(b, 0, sizeof(*b));
  if (max_layers < 1 || num_slots < 1)
    return eplb_error_set(err, EPLB_EARG, "empty plan (%d x %d)",
                          (int)max_layers, (int)num_slots);
  size_t ints = (size_t)max_layers * ((size_t)num_slots + 1);
  b->size = sizeof(plan_header_t) + sizeof(int32_t) * ints;
  if (b->size < EPLB_ERROR_MSG_MAX)
    b->size = EPLB_ERROR_MSG_MAX; /* room for rank 0's error message */
  b->bytes = malloc(b->size);
  if (b->bytes == NULL)
    return eplb_error_set(err, EPLB_ENOMEM,
                          "out of memory for a %d x %d plan buffer",
                          (int)max_layers, (int)num_slots);
  b->max_layers = max_layers;
  b->num_slots = num_slots;
  return 0;
}

void eplb__plan_buf_free(eplb__plan_buf_t *b) {
  if (b == NULL)
    return;
  free(b->bytes);
  memset(b, 0, sizeof(*b));
}

/* Checksum of the header (without its checksum) and the plan's arrays. */
static uint64_t plan_checksum(const plan_header_t *h, const eplb_placement_t *p) {
  plan_header_t copy = *h;
  copy.checksum = 0;
  uint64_t c = eplb__checksum(&copy, sizeof(copy), 0x65706c62ULL);
  c = eplb__checksum(p->layer_ids, sizeof(int32_t) * (size_t)p->num_layers, c);
  return eplb__checksum(p->phy2log,
                        sizeof(int32_t) * (size_t)p->num_layers *
                            (size_t)p->num_slots, c);
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

/* Rank 0: header + layer ids + slots into the buffer (or, on failure, the
 * status and the message). */
static void pack_plan(eplb__plan_buf_t *b, plan_header_t *h, int root_rc,
                      const eplb_placement_t *plan, const eplb_error_t *err) {
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
  h->checksum = plan_checksum(h, plan);
  unsigned char *p = b->bytes;
  memcpy(p, h, sizeof(*h));
  p += sizeof(*h);
  memcpy(p, plan->layer_ids, sizeof(int32_t) * (size_t)plan->num_layers);
  p += sizeof(int32_t) * (size_t)plan->num_layers;
  memcpy(p, plan->phy2log,
         sizeof(int32_t) * (size_t)plan->num_layers * (size_t)plan->num_slots);
}

/* Ranks > 0: the plan out of the buffer.  A header that does not fit the
 * buffer (a corrupted broadcast) is an error of this rank. */
static int unpack_plan(const eplb__plan_buf_t *b, plan_header_t *h,
                       eplb_placement_t *plan, eplb_error_t *err) {
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
  return 0;
}

/* Every rank's checksum of its copy, compared with the one rank 0
 * computed before sending; one allgather of (checksum of my copy, the
 * checksum I received, my status).  A rank that could not unpack is named
 * through the agreement. */
static int verify_plan(MPI_Comm comm, int size, int local_rc,
                       const plan_header_t *h, const eplb_placement_t *plan,
                       eplb_error_t *err) {
  uint64_t mine[3] = {local_rc ? 0 : plan_checksum(h, plan), h->checksum,
                      (uint64_t)(local_rc != 0)};
  uint64_t *all = malloc(sizeof(uint64_t) * 3 * (size_t)size);
  if (all == NULL) {
    fprintf(stderr, "eplb: out of memory verifying the plan; aborting\n");
    MPI_Abort(comm, 1);
    return EPLB_ENOMEM;
  }
  int rc = eplb__mpi_check(MPI_Allgather(mine, 3, MPI_UINT64_T, all, 3,
                                         MPI_UINT64_T, comm),
                           "MPI_Allgather of the plan checksums", err);
  int failed = 0;
  for (int r = 0; rc == 0 && r < size; r++)
    failed |= all[3 * r + 2] != 0;
  char ranks[512];
  if (rc == 0 && failed)
    rc = eplb__agree(comm, local_rc, err);
  else if (rc == 0 && divergent_ranks(all, size, all[1], ranks, sizeof(ranks)) > 0)
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
    pack_plan(buf, &h, root_rc, plan, err);
  }
  /* One broadcast: status, header and plan (or rank 0's error message). */
  int rc = eplb__mpi_check(MPI_Bcast(buf->bytes, (int)buf->size, MPI_BYTE, 0,
                                     comm),
                           "MPI_Bcast of the plan", err);
  double t1 = MPI_Wtime();
  res->seconds[EPLB_PHASE_BCAST] += t1 - t0;
  if (rc)
    goto fail;
  int local = rank == 0 ? 0 : unpack_plan(buf, &h, plan, err);
  if (h.status != 0) {
    char msg[EPLB_ERROR_MSG_MAX];
    snprintf(msg, sizeof(msg), "%s", (const char *)buf->bytes + sizeof(h));
    rc = eplb_error_set(err, h.status, "rank 0: %s", msg);
    goto fail;
  }
  if (local == 0)
    maybe_corrupt(plan, rank);
  rc = verify_plan(comm, size, local, &h, plan, err);
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

/* ---- write (rank 0) -------------------------------------------------- */

/* What migration moved, into the summary. */
static void add_migration(cJSON *j, const eplb_migrate_result_t *m) {
  cJSON *sent = cJSON_CreateArray(), *recv = cJSON_CreateArray();
  for (int32_t r = 0; r < m->num_ranks && sent && recv; r++) {
    cJSON_AddItemToArray(sent, cJSON_CreateNumber((double)m->bytes_sent[r]));
    cJSON_AddItemToArray(recv, cJSON_CreateNumber((double)m->bytes_received[r]));
  }
  cJSON_AddNumberToObject(j, "experts_received", (double)m->experts_received);
  cJSON_AddNumberToObject(j, "bytes_moved", (double)m->bytes_moved);
  cJSON_AddNumberToObject(j, "local_copies", (double)m->local_copies);
  cJSON_AddNumberToObject(j, "slots_kept", (double)m->slots_kept);
  cJSON_AddItemToObject(j, "bytes_sent_per_rank", sent);
  cJSON_AddItemToObject(j, "bytes_received_per_rank", recv);
  cJSON_AddNumberToObject(j, "bandwidth_mbs", m->bandwidth_mbs);
  cJSON *ms = cJSON_CreateObject();
  if (ms) {
    cJSON_AddNumberToObject(ms, "read", m->seconds_read);
    cJSON_AddNumberToObject(ms, "transfer", m->seconds_transfer);
    cJSON_AddNumberToObject(ms, "write", m->seconds_write);
    cJSON_AddNumberToObject(ms, "commit", m->seconds_commit);
    cJSON_AddNumberToObject(ms, "total", m->seconds_total);
    cJSON_AddItemToObject(j, "migration_seconds", ms);
  }
}

/* The summary as JSON (see docs/sync.md for the fields). */
static cJSON *summary_json(const eplb_sync_opts_t *opts,
                           const eplb_sync_result_t *res, const cJSON *extra) {
  const eplb_placement_t *p = &res->placement;
  cJSON *j = cJSON_CreateObject();
  cJSON *sec = cJSON_CreateObject();
  cJSON *drop = cJSON_CreateArray();
  char sum[32];
  snprintf(sum, sizeof(sum), "%016llx", (unsigned long long)res->checksum);
  if (!j || !sec || !drop) {
    cJSON_Delete(j);
    cJSON_Delete(sec);
    cJSON_Delete(drop);
    return NULL;
  }
  cJSON_AddStringToObject(j, "program", "eplb-sync");
  cJSON_AddNumberToObject(j, "generation", (double)res->generation);
  cJSON_AddNumberToObject(j, "ranks", res->num_ranks);
  cJSON_AddNumberToObject(j, "layers", p->num_layers);
  cJSON_AddNumberToObject(j, "experts", p->num_experts);
  cJSON_AddNumberToObject(j, "slots", p->num_slots);
  cJSON_AddNumberToObject(j, "gpus", p->num_gpus);
  cJSON_AddNumberToObject(j, "nodes", opts->plan.num_nodes);
  cJSON_AddStringToObject(j, "policy", eplb_policy_name(opts->plan.policy));
  cJSON_AddStringToObject(j, "checksum", sum);
  cJSON_AddNumberToObject(j, "imbalance_before", res->imbalance_before);
  cJSON_AddNumberToObject(j, "imbalance_after", res->imbalance_after);
  cJSON_AddNumberToObject(j, "floor", res->floor);
  cJSON_AddNumberToObject(j, "replicas_moved", (double)res->moves);
  for (int32_t i = 0; i < res->num_dropped; i++)
    cJSON_AddItemToArray(drop, cJSON_CreateNumber(res->dropped[i]));
  cJSON_AddItemToObject(j, "dense_layers_skipped", drop);
  for (int ph = 0; ph < EPLB_NUM_PHASES; ph++)
    cJSON_AddNumberToObject(sec, phase_names[ph], res->seconds[ph]);
  cJSON_AddItemToObject(j, "seconds", sec);
  if (res->migrated)
    add_migration(j, &res->migrate);
  for (const cJSON *it = extra ? extra->child : NULL; it; it = it->next)
    cJSON_AddItemToObject(j, it->string, cJSON_Duplicate(it, 1));
  return j;
}

/* eplb_write_fn: the printed JSON text. */
static int write_text(FILE *f, const void *ctx, eplb_error_t *err) {
  const char *text = ctx;
  if (fputs(text, f) == EOF || fputc('\n', f) == EOF)
    return eplb_error_set(err, EPLB_EIO, "write failed");
  return 0;
}

/* Rank 0's part of eplb__sync_write. */
static int write_root(const eplb_sync_opts_t *opts, const eplb_sync_result_t *res,
                      const cJSON *extra, eplb_error_t *err) {
  int rc = 0;
  if (opts->output) /* EPLB_MAP_AUTO: the format of the extension */
    rc = eplb_placement_write(&res->placement, opts->output,
                              opts->output_format, err);
  if (rc == 0 && opts->summary) {
    cJSON *j = summary_json(opts, res, extra);
    char *text = j ? cJSON_Print(j) : NULL;
    rc = text ? eplb_write_atomic(opts->summary, write_text, text, err)
              : eplb_error_set(err, EPLB_ENOMEM, "out of memory writing %s",
                               opts->summary);
    cJSON_free(text);
    cJSON_Delete(j);
  }
  return rc;
}

int eplb__sync_write(MPI_Comm comm, const eplb_sync_opts_t *opts,
                     const eplb_sync_result_t *res, const void *extra,
                     eplb_error_t *err) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  /* Nothing to write, nothing that can fail: no agreement needed. */
  if (opts->output == NULL && opts->summary == NULL)
    return 0;
  int rc = rank == 0 ? write_root(opts, res, extra, err) : 0;
  return eplb__agree(comm, rc, err);
}

/* ---- the engine ------------------------------------------------------ */

/* Checks the options that do not depend on the data; identical on every
 * rank. */
static int check_opts(const eplb_sync_opts_t *opts, eplb_error_t *err) {
  if (opts->generation >= EPLB_MAX_GENERATION)
    return eplb_error_set(err, EPLB_EARG,
                          "generation %llu is out of range 0..%llu",
                          (unsigned long long)opts->generation,
                          (unsigned long long)(EPLB_MAX_GENERATION - 1));
  return 0;
}

/* The local side of the collect phase: what this rank brings. */
static int check_local(const eplb_stats_t *local, const char *name,
                       eplb_error_t *err) {
  if (local == NULL || local->load == NULL || local->num_layers <= 0)
    return eplb_error_set(err, EPLB_EARG, "%s: no statistics given", name);
  return eplb_stats_check(local, name, err);
}

/* Dup the communicator with MPI_ERRORS_RETURN so every MPI failure comes
 * back as a code the engine can agree on or report. */
int eplb__dup_comm(MPI_Comm comm, MPI_Comm *out, eplb_error_t *err) {
  int rc = eplb__mpi_check(MPI_Comm_dup(comm, out), "MPI_Comm_dup", err);
  if (rc == 0)
    rc = eplb__mpi_check(MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN),
                         "MPI_Comm_set_errhandler", err);
  return rc;
}

/* Prints rank 0's human summary. */
static void print_summary(const eplb_sync_opts_t *opts,
                          const eplb_sync_result_t *res) {
  const eplb_placement_t *p = &res->placement;
  printf("eplb-sync: generation %llu agreed by %d ranks (checksum %016llx)\n",
         (unsigned long long)res->generation, (int)res->num_ranks,
         (unsigned long long)res->checksum);
  printf("  %d layers x %d experts -> %d slots on %d GPUs, policy %s\n",
         (int)p->num_layers, (int)p->num_experts, (int)p->num_slots,
         (int)p->num_gpus, eplb_policy_name(opts->plan.policy));
  if (res->num_dropped > 0)
    printf("  %d all-zero dense layers skipped\n", (int)res->num_dropped);
  printf("  imbalance %.4f -> %.4f (floor %.4f), %lld replicas moved\n",
         res->imbalance_before, res->imbalance_after, res->floor,
         (long long)res->moves);
  printf("  seconds:");
  for (int ph = 0; ph < EPLB_NUM_PHASES; ph++)
    if (res->seconds[ph] > 0 || ph == EPLB_PHASE_TOTAL)
      printf(" %s %.4f", phase_names[ph], res->seconds[ph]);
  printf("\n");
  if (opts->shards_dir && !res->migrated)
    printf("  shards unchanged at generation %llu: the plan is where the "
           "experts are\n", (unsigned long long)res->generation);
  if (res->migrated)
    printf("  shards moved to generation %llu: %lld experts received, %.2f MB "
           "at %.1f MB/s, %lld local copies, %lld slots kept\n",
           (unsigned long long)res->generation,
           (long long)res->migrate.experts_received,
           (double)res->migrate.bytes_moved / 1e6, res->migrate.bandwidth_mbs,
           (long long)res->migrate.local_copies,
           (long long)res->migrate.slots_kept);
  if (opts->output)
    printf("  map written to %s\n", opts->output);
  fflush(stdout);
}

uint64_t eplb__plan_opts_key(const eplb_plan_opts_t *o, uint64_t seed) {
  /* Field by field: the struct's padding is not guaranteed to be zero. */
  const double f[] = {o->num_slots,  o->num_gpus,       o->num_nodes,
                      o->num_groups, (double)o->policy, o->max_moves,
                      o->move_cost,  o->keep_threshold, o->spill,
                      o->spill_cost};
  return eplb__checksum(f, sizeof(f), seed);
}

uint64_t eplb__string_key(const char *s, uint64_t seed) {
  return s ? eplb__checksum(s, strlen(s) + 1, seed)
           : eplb__checksum("", 0, seed ^ 0x6e756c6cULL);
}

/* The options of a run that steer its collectives, as one key. */
static uint64_t sync_opts_key(const eplb_sync_opts_t *o) {
  const double f[] = {(double)o->generation, o->output != NULL,
                      o->summary != NULL, o->max_buffer_mb, o->timeout_s};
  uint64_t k = eplb__plan_opts_key(&o->plan, 0);
  k = eplb__checksum(f, sizeof(f), k);
  return eplb__string_key(o->shards_dir, k);
}

/* This rank's side of the first agreement: options, fault table, counts,
 * the copy that will be summed, and the plan buffer. */
static int prepare(const eplb_stats_t *local, const eplb_sync_opts_t *opts,
                   const char *name, eplb_stats_t *sum, eplb__plan_buf_t *buf,
                   eplb_error_t *err) {
  int rc = check_opts(opts, err);
  if (rc == 0)
    rc = eplb__fault_load(err);
  if (rc == 0)
    rc = check_local(local, name, err);
  if (rc == 0)
    rc = eplb_stats_copy(sum, local, err);
  /* With shards the slots are known once the shards are open. */
  if (rc == 0 && opts->shards_dir == NULL)
    rc = eplb__plan_buf_alloc(buf, local->num_layers, opts->plan.num_slots, err);
  return rc;
}

/* Fits the open shards to the summed statistics and the options: the
 * shards' map becomes the current placement (row l = the statistics'
 * layer l), their generation the current one, and their shape the slots
 * and GPUs unless the options name them.  Identical on every rank. */
static int fit_shards(eplb_shard_set_t *set, const eplb_stats_t *sum,
                      eplb_sync_opts_t *o, eplb_error_t *err) {
  eplb_placement_t *c = &set->current;
  if (c->num_layers != sum->num_layers)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "the shards in %s hold %d layers but the summed "
                          "statistics have %d MoE layers; give the statistics "
                          "of the model these shards belong to",
                          o->shards_dir, (int)c->num_layers, (int)sum->num_layers);
  if (o->plan.num_slots == 0)
    o->plan.num_slots = c->num_slots;
  if (o->plan.num_gpus == 0)
    o->plan.num_gpus = c->num_gpus;
  if (o->plan.num_slots != c->num_slots || o->plan.num_gpus != c->num_gpus)
    return eplb_error_set(err, EPLB_EARG,
                          "--num-slots %d --num-gpus %d, but the shards in %s "
                          "hold %d slots on %d ranks; leave them out with "
                          "--shards or run one rank per shard",
                          (int)o->plan.num_slots, (int)o->plan.num_gpus,
                          o->shards_dir, (int)c->num_slots, (int)c->num_gpus);
  memcpy(c->layer_ids, sum->layer_ids, sizeof(int32_t) * (size_t)sum->num_layers);
  o->current = c;
  o->current_map = NULL;
  o->generation = eplb_shards_info(set)->generation;
  if (o->generation >= EPLB_MAX_GENERATION)
    return eplb_error_set(err, EPLB_ESTATE, "the shards' generation %llu is "
                          "too large to move on",
                          (unsigned long long)o->generation);
  return 0;
}

/* Opens the shards (collective, agreed inside), fits them, and allocates
 * the plan buffer now that the slots are known (agreed). */
static int open_shards(MPI_Comm comm, const eplb_stats_t *sum,
                       eplb_sync_opts_t *o, eplb_shard_set_t *set,
                       eplb__plan_buf_t *buf, eplb_error_t *err) {
  int rc = eplb_shards_open(comm, o->shards_dir, sum->num_experts, set, err);
  if (rc)
    return rc;
  rc = fit_shards(set, sum, o, err); /* the same on every rank */
  if (rc == 0)
    rc = eplb__agree(comm, eplb__plan_buf_alloc(buf, sum->num_layers,
                                                o->plan.num_slots, err),
                     err);
  return rc;
}

/* 1 when two placements of the same shape put the same experts in the
 * same slots. */
static int same_slots(const eplb_placement_t *a, const eplb_placement_t *b) {
  return a->num_layers == b->num_layers && a->num_slots == b->num_slots &&
         memcmp(a->phy2log, b->phy2log, sizeof(int32_t) * (size_t)a->num_layers *
                                            (size_t)a->num_slots) == 0;
}

/* Moves the weights to the agreed plan and commits (collective). */
static int migrate_shards(eplb_shard_set_t *set, const eplb_sync_opts_t *o,
                          eplb_sync_result_t *res, eplb_error_t *err) {
  eplb_migrate_opts_t mo;
  eplb_migrate_opts_default(&mo);
  if (o->max_buffer_mb)
    mo.max_buffer_mb = o->max_buffer_mb;
  if (o->timeout_s)
    mo.timeout_s = o->timeout_s;
  mo.num_nodes = o->plan.num_nodes;
  mo.quiet = o->quiet;
  int rc = eplb_migrate(set, &res->placement, &mo, &res->migrate, err);
  if (rc)
    return rc;
  res->migrated = 1;
  res->seconds[EPLB_PHASE_TRANSFER] = res->migrate.seconds_read +
                                      res->migrate.seconds_transfer +
                                      res->migrate.seconds_write;
  res->seconds[EPLB_PHASE_COMMIT] = res->migrate.seconds_commit;
  return 0;
}

/* The engine after the local counts are in hand (local_rc says whether
 * this rank got them).  On the success path: one allgather (status and
 * shape), one allreduce, one broadcast, one allgather (checksums), one
 * agreement after writing. */
static int run_engine(MPI_Comm comm, int local_rc, const eplb_stats_t *local,
                      const eplb_sync_opts_t *opts, eplb_sync_result_t *res,
                      double t_start, eplb_error_t *err) {
  eplb_sync_opts_t o = *opts; /* the shards may fill in slots and map */
  const char *name = o.stats_name ? o.stats_name : "counts in memory";
  int rank = 0, dense = 0;
  MPI_Comm_rank(comm, &rank);
  eplb_stats_t sum = {0};
  eplb_placement_t plan = {0};
  eplb__plan_buf_t buf = {0};
  eplb_shard_set_t set;
  memset(&set, 0, sizeof(set));
  set.comm = MPI_COMM_NULL;
  double t0 = MPI_Wtime();

  if (local_rc == 0)
    local_rc = prepare(local, &o, name, &sum, &buf, err);
  int rc = eplb__reduce_agree_shape(comm, local_rc, local, name,
                                    sync_opts_key(&o), &dense, err);
  double t1 = MPI_Wtime();
  res->seconds[EPLB_PHASE_AGREE] = t1 - t0;
  if (rc)
    goto done;

  eplb__fault_crash_point("reduce", rank);
  rc = eplb__reduce_sum(comm, &sum, dense, &res->dropped, &res->num_dropped,
                        err);
  double t2 = MPI_Wtime();
  res->seconds[EPLB_PHASE_REDUCE] = t2 - t1;
  if (rc == 0 && o.shards_dir)
    rc = open_shards(comm, &sum, &o, &set, &buf, err);
  /* The options against the summed shape: identical on every rank. */
  if (rc == 0)
    rc = eplb_plan_check_opts(&o.plan, sum.num_experts, err);
  if (rc)
    goto done;
  t2 = MPI_Wtime();

  eplb__fault_crash_point("plan", rank);
  res->generation = o.generation + 1;
  int root_rc = rank == 0 ? eplb__sync_plan_root(&sum, &o, &plan, res, err) : 0;
  double t3 = MPI_Wtime();
  res->seconds[EPLB_PHASE_PLAN] = t3 - t2;

  eplb__fault_crash_point("broadcast", rank);
  rc = eplb__sync_distribute(comm, root_rc, &buf, &plan, res, NULL, err);
  /* A plan equal to where the experts are moves nothing: the shards keep
   * their generation instead of being rewritten as a new one. */
  if (rc == 0 && o.shards_dir && same_slots(&set.current, &res->placement))
    res->generation = o.generation;
  else if (rc == 0 && o.shards_dir)
    rc = migrate_shards(&set, &o, res, err);
  if (rc == 0) {
    double t4 = MPI_Wtime();
    /* The summary's total is up to the write; the printed one includes it. */
    res->seconds[EPLB_PHASE_TOTAL] = t4 - t_start;
    rc = eplb__sync_write(comm, &o, res, NULL, err);
    res->seconds[EPLB_PHASE_WRITE] = MPI_Wtime() - t4;
  }
done:
  eplb_shards_close(&set);
  eplb_stats_cleanup(&sum);
  eplb_placement_cleanup(&plan);
  eplb__plan_buf_free(&buf);
  return rc;
}

/* Shared tail of both entry points: dup, run, free, print.  t_read is the
 * time the file wrapper spent reading (0 for counts in memory). */
static int run_with(MPI_Comm comm, int local_rc, const eplb_stats_t *local,
                    const eplb_sync_opts_t *opts, eplb_sync_result_t *res,
                    double t_start, double t_read, eplb_error_t *err) {
  MPI_Comm c = MPI_COMM_NULL;
  res->seconds[EPLB_PHASE_READ] = t_read;
  int rc = eplb__dup_comm(comm, &c, err);
  if (rc == 0)
    rc = run_engine(c, local_rc, local, opts, res, t_start, err);
  if (c != MPI_COMM_NULL)
    MPI_Comm_free(&c);
  if (rc) {
    eplb_sync_result_cleanup(res);
    return rc;
  }
  res->seconds[EPLB_PHASE_TOTAL] = MPI_Wtime() - t_start;
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0 && !opts->quiet)
    print_summary(opts, res);
  return 0;
}

int eplb_sync_run(MPI_Comm comm, const eplb_stats_t *local,
                  const eplb_sync_opts_t *opts, eplb_sync_result_t *res,
                  eplb_error_t *err) {
  double t = MPI_Wtime();
  memset(res, 0, sizeof(*res));
  eplb_sync_opts_t o;
  if (opts)
    o = *opts;
  else
    eplb_sync_opts_default(&o);
  /* A NULL opts on one rank is that rank's error, agreed like any other. */
  int local_rc = opts ? 0 : eplb_error_set(err, EPLB_EARG,
                                           "eplb_sync_run: opts is NULL");
  return run_with(comm, local_rc, local, &o, res, t, 0, err);
}

int eplb__sync_read_local(const char *const *patterns, int n, int rank,
                          eplb_stats_format_t format, eplb_stats_t *st,
                          char *name, size_t name_size, eplb_error_t *err) {
  if (n < 1 || n > EPLB_SYNC_MAX_STATS)
    return eplb_error_set(err, EPLB_EARG,
                          "%d statistics patterns given; use 1..%d", n,
                          EPLB_SYNC_MAX_STATS);
  /* This rank's paths: %r expanded; then read and summed as eplb-plan
   * sums its --stats (globs included). */
  char(*paths)[4096] = malloc(sizeof(*paths) * (size_t)n);
  const char **p = malloc(sizeof(*p) * (size_t)n);
  int rc = paths && p ? 0 : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int i = 0; i < n && rc == 0; i++) {
    rc = eplb_sync_expand(patterns[i], rank, paths[i], sizeof(paths[i]), err);
    p[i] = paths[i];
  }
  if (rc == 0) {
    snprintf(name, name_size, "%s", paths[0]);
    rc = eplb_stats_read_many(st, p, n, format, NULL, err);
  }
  free(paths);
  free(p);
  return rc;
}

int eplb_sync_run_files(MPI_Comm comm, const char *const *patterns,
                        int num_patterns, eplb_stats_format_t format,
                        const eplb_sync_opts_t *opts, eplb_sync_result_t *res,
                        eplb_error_t *err) {
  double t = MPI_Wtime();
  memset(res, 0, sizeof(*res));
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  eplb__fault_crash_point("read", rank);
  char name[4096] = "";
  eplb_stats_t local = {0};
  int local_rc = eplb__sync_read_local(patterns, num_patterns, rank, format, &local, name,
                            sizeof(name), err);
  eplb_sync_opts_t o;
  if (opts)
    o = *opts;
  else
    eplb_sync_opts_default(&o);
  if (num_patterns > 1)
    strncat(name, " (+ more files)", sizeof(name) - strlen(name) - 1);
  o.stats_name = name;
  double t_read = MPI_Wtime() - t;
  int rc = run_with(comm, local_rc, local_rc ? NULL : &local, &o, res, t,
                    t_read, err);
  eplb_stats_cleanup(&local);
  return rc;
}
