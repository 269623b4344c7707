/* sync/write.c - the last stage: rank 0 writes the agreed map and the
 * summary (atomically), prints the human summary, and the ranks agree on
 * how the writes went. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "eplb/formats.h"
#include "mpi/agree.h"
#include "sync/internal.h"
#include "util/fileio.h"

/* The phases' names, as the summary and the printed summary give them. */
static const char *const phase_names[EPLB_NUM_PHASES] = {
    "read",   "shape",    "reduce", "plan",  "distribute",
    "verify", "transfer", "commit", "write", "total"};

const char *eplb_sync_phase_name(eplb_sync_phase_t phase) {
  return (unsigned)phase < EPLB_NUM_PHASES ? phase_names[phase] : "unknown";
}

/* What migration moved, into the summary. */
static void add_migration(cJSON *j, const eplb_migrate_result_t *m) {
  cJSON *sent = cJSON_CreateArray(), *recv = cJSON_CreateArray();
  for (int32_t r = 0; r < m->num_ranks && sent && recv; r++) {
    cJSON_AddItemToArray(sent, cJSON_CreateNumber((double)m->bytes_sent[r]));
    cJSON_AddItemToArray(recv,
                         cJSON_CreateNumber((double)m->bytes_received[r]));
  }
  cJSON_AddNumberToObject(j, "experts_received", (double)m->experts_received);
  cJSON_AddNumberToObject(j, "bytes_moved", (double)m->bytes_moved);
  cJSON_AddNumberToObject(j, "local_copies", (double)m->local_copies);
  cJSON_AddNumberToObject(j, "slots_kept", (double)m->slots_kept);
  cJSON_AddItemToObject(j, "bytes_sent_per_rank", sent);
  cJSON_AddItemToObject(j, "bytes_received_per_rank", recv);
  cJSON_AddNumberToObject(j, "bandwidth_mbs", m->bandwidth_mbs);
  cJSON_AddNumberToObject(j, "disk_bytes_read", (double)m->disk_bytes_read);
  cJSON_AddNumberToObject(j, "disk_bytes_written",
                          (double)m->disk_bytes_written);
  cJSON_AddNumberToObject(j, "ranks_in_place", m->ranks_in_place);
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

/* A scenario run's scenarios, into the summary: each one's name, weight
 * and imbalance before and after, and their weighted means. */
static void add_scenarios(cJSON *j, const eplb_sync_result_t *res) {
  cJSON *list = cJSON_CreateArray(), *mean = cJSON_CreateObject();
  for (int32_t k = 0; k < res->num_scenarios && list; k++) {
    cJSON *x = cJSON_CreateObject();
    if (x == NULL)
      break;
    cJSON_AddStringToObject(x, "name", res->scenario_names[k]);
    cJSON_AddNumberToObject(x, "weight", res->scenario_weights[k]);
    cJSON_AddNumberToObject(x, "imbalance_before", res->scenario_before[k]);
    cJSON_AddNumberToObject(x, "imbalance_after", res->scenario_after[k]);
    cJSON_AddItemToArray(list, x);
  }
  if (mean) {
    cJSON_AddNumberToObject(mean, "imbalance_before",
                            res->scenario_mean_before);
    cJSON_AddNumberToObject(mean, "imbalance_after", res->scenario_mean_after);
  }
  cJSON_AddItemToObject(j, "scenarios", list);
  cJSON_AddItemToObject(j, "scenario_mean", mean);
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
    cJSON_AddNumberToObject(sec, eplb_sync_phase_name(ph), res->seconds[ph]);
  cJSON_AddItemToObject(j, "seconds", sec);
  if (res->migrated)
    add_migration(j, &res->migrate);
  if (res->num_scenarios > 0)
    add_scenarios(j, res);
  for (const cJSON *it = extra ? extra->child : NULL; it; it = it->next)
    cJSON_AddItemToObject(j, it->string, cJSON_Duplicate(it, 1));
  return j;
}

/* Rank 0's part of eplb__sync_write. */
static int write_root(const eplb_sync_opts_t *opts,
                      const eplb_sync_result_t *res, const cJSON *extra,
                      eplb_error_t *err) {
  int rc = 0;
  eplb_map_write_opts_t wo = {.allow_duplicates = opts->allow_duplicates};
  if (opts->output) /* EPLB_MAP_AUTO: the format of the extension */
    rc = eplb_placement_write_opts(&res->placement, opts->output,
                                   opts->output_format, &wo, err);
  if (rc == 0 && opts->summary) {
    cJSON *j = summary_json(opts, res, extra);
    char *text = j ? cJSON_Print(j) : NULL;
    rc = text ? eplb__write_atomic(opts->summary, eplb__write_text, text, err)
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

/* A scenario run's scenarios, as eplb-plan prints them. */
static void print_scenarios(const eplb_sync_result_t *res) {
  printf("  scenarios %d, balanced at once (imbalance before -> after; above: "
         "on their weighted mean):\n",
         (int)res->num_scenarios);
  for (int32_t k = 0; k < res->num_scenarios; k++) {
    const char *name = res->scenario_names[k];
    size_t len = strlen(name);
    printf("    %s%-40s w %-6g %.4f -> %.4f\n", len > 40 ? "..." : "",
           len > 40 ? name + len - 37 : name, res->scenario_weights[k],
           res->scenario_before[k], res->scenario_after[k]);
  }
  printf("    %-40s %-8s %.4f -> %.4f\n", "weighted mean", "",
         res->scenario_mean_before, res->scenario_mean_after);
}

/* Prints rank 0's human summary. */
void eplb__sync_print_summary(const eplb_sync_opts_t *opts,
                              const eplb_sync_result_t *res) {
  const eplb_placement_t *p = &res->placement;
  printf("eplb-sync: generation %llu agreed by %d ranks (checksum %016llx)\n",
         (unsigned long long)res->generation, (int)res->num_ranks,
         (unsigned long long)res->checksum);
  printf("  %d layers x %d experts -> %d slots on %d GPUs, policy %s\n",
         (int)(p->num_layers - opts->mtp_layers), (int)p->num_experts,
         (int)p->num_slots, (int)p->num_gpus,
         eplb_policy_name(opts->plan.policy));
  if (opts->mtp_layers > 0) /* the metrics below are the MoE layers' */
    printf("  %d MTP layer%s appended (%s)\n", (int)opts->mtp_layers,
           opts->mtp_layers > 1 ? "s" : "",
           opts->mtp_from == EPLB_MTP_TRIVIAL ? "trivial" : "last");
  if (res->num_dropped > 0)
    printf("  %d all-zero dense layers skipped\n", (int)res->num_dropped);
  printf("  imbalance %.4f -> %.4f (floor %.4f), %lld replicas moved\n",
         res->imbalance_before, res->imbalance_after, res->floor,
         (long long)res->moves);
  if (res->num_scenarios > 0)
    print_scenarios(res);
  printf("  seconds:");
  for (int ph = 0; ph < EPLB_NUM_PHASES; ph++)
    if (res->seconds[ph] > 0 || ph == EPLB_PHASE_TOTAL)
      printf(" %s %.4f", eplb_sync_phase_name(ph), res->seconds[ph]);
  printf("\n");
  if (opts->shards_dir && !res->migrated)
    printf("  shards unchanged at generation %llu: the plan is where the "
           "experts are\n",
           (unsigned long long)res->generation);
  if (res->migrated)
    printf("  shards moved to generation %llu: %lld experts received, %.2f MB "
           "at %.1f MB/s, %lld local copies, %lld slots kept; disk %.2f MB "
           "read, %.2f MB written (%d of %d ranks in place)\n",
           (unsigned long long)res->generation,
           (long long)res->migrate.experts_received,
           (double)res->migrate.bytes_moved / 1e6, res->migrate.bandwidth_mbs,
           (long long)res->migrate.local_copies,
           (long long)res->migrate.slots_kept,
           (double)res->migrate.disk_bytes_read / 1e6,
           (double)res->migrate.disk_bytes_written / 1e6,
           (int)res->migrate.ranks_in_place, (int)res->migrate.num_ranks);
  if (opts->output)
    printf("  map written to %s\n", opts->output);
  fflush(stdout);
}
