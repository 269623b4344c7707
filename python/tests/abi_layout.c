/* abi_layout.c - prints, as JSON, the size and field offsets of every
 * structure of libeplb's public headers that the Python package mirrors
 * with ctypes (python/eplb/_lib.py); test_abi.py compares them, so a field
 * added in C without its Python mirror fails a test instead of corrupting
 * memory. */
#include <stddef.h>
#include <stdio.h>

#include "eplb/eplb.h"
#include "eplb/rebalance.h"

static int first;

static void open_struct(const char *name, size_t size) {
  printf("%s\"%s\": {\"size\": %zu, \"fields\": {", first ? "" : ",\n", name,
         size);
  first = 0;
}

#define BEGIN(T) do { int f_ = 1; open_struct(#T, sizeof(T)); typedef T cur_t_;
#define F(field) printf("%s\"%s\": %zu", f_ ? "" : ", ", #field, offsetof(cur_t_, field)); f_ = 0;
#define END printf("}}"); } while (0)

int main(void) {
  first = 1;
  printf("{");
  BEGIN(eplb_error_t) F(code) F(msg) END;
  BEGIN(eplb_stats_t) F(num_layers) F(num_experts) F(layer_ids) F(load) F(dense_rows) END;
  BEGIN(eplb_series_t) F(num_steps) F(num_layers) F(num_experts) F(layer_ids) F(load)
    F(dense_rows) END;
  BEGIN(eplb_placement_t) F(num_layers) F(num_experts) F(num_slots) F(num_gpus)
    F(layer_ids) F(phy2log) END;
  BEGIN(eplb_plan_opts_t) F(num_slots) F(num_gpus) F(num_nodes) F(num_groups) F(policy)
    F(max_moves) F(move_cost) F(keep_threshold) F(spill) F(spill_cost) F(threads) END;
  BEGIN(eplb_stats_read_opts_t) F(iter_min) F(iter_max) END;
  BEGIN(eplb_balance_t) F(imbalance) F(balancedness) F(floor) F(max_imbalance)
    F(worst_layer) END;
  BEGIN(eplb_report_table_t) F(num_layers) F(num_gpus) F(gpu_load) F(mean) F(std) F(ratio)
    F(avg_mean) F(avg_std) F(avg_ratio) F(max_ratio) F(worst_layer) END;
  BEGIN(eplb_report_t) F(num_layers) F(num_experts) F(layer_ids) F(before) F(after)
    F(has_after) F(cv) F(hot_share) F(hot_expert) F(avg_cv) F(avg_hot_share)
    F(max_hot_share) F(max_hot_layer) F(num_steps) F(scenarios) END;
  BEGIN(eplb_online_opts_t) F(plan) F(ema_alpha) F(threshold) F(min_gain)
    F(layers_per_round) F(history) END;
  BEGIN(eplb_scenarios_t) F(num_scenarios) F(stats) F(weights) END;
  BEGIN(eplb_rebalancer_opts_t) F(online) F(generation) F(output) F(output_format)
    F(shards_dir) F(max_buffer_mb) F(timeout_s) F(layer_ids) F(pause) F(resume)
    F(hook_ctx) F(quiet) END;
  BEGIN(eplb_round_t) F(round) F(had_traffic) F(rebalanced) F(generation)
    F(imbalance_before) F(imbalance_after) F(layers_changed) F(moves) F(bytes_moved)
    F(seconds) END;
  printf(",\n\"EPLB_ERROR_MSG_MAX\": %d, \"EPLB_MAX_LAYERS\": %d, \"EPLB_MAX_EXPERTS\": %d, "
         "\"EPLB_MAX_SLOTS\": %d, \"EPLB_MAX_GPUS\": %d, \"EPLB_MAX_PLAN_THREADS\": %d, "
         "\"EPLB_MAX_ITER\": %d, \"EPLB_MAX_COUNT\": %.17g, "
         "\"EPLB_MAX_SCENARIOS\": %d, \"EPLB_MIN_SCENARIO_WEIGHT\": %.17g, "
         "\"EPLB_MAX_SCENARIO_WEIGHT\": %.17g}\n",
         EPLB_ERROR_MSG_MAX, EPLB_MAX_LAYERS, EPLB_MAX_EXPERTS, EPLB_MAX_SLOTS,
         EPLB_MAX_GPUS, EPLB_MAX_PLAN_THREADS, EPLB_MAX_ITER, EPLB_MAX_COUNT,
         EPLB_MAX_SCENARIOS, EPLB_MIN_SCENARIO_WEIGHT,
         EPLB_MAX_SCENARIO_WEIGHT);
  return 0;
}
