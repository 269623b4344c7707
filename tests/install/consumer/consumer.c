/* consumer.c - a program that uses an installed libeplb, as a user would.
 *
 * Built by tests/install/run.sh against the installed tree only (CMake's
 * find_package(eplb) and pkg-config eplb), it proves that the headers, the
 * library and the dependencies they pull in (MPI, HDF5) are all found: it
 * prints the version and plans one small layer, checking the plan.
 */
#include <stdio.h>
#include <string.h>

#include <eplb/eplb.h>
#include <eplb/shard.h> /* includes hdf5.h: the HDF5 flags come with eplb */
#include <eplb/sync.h>  /* includes mpi.h: so do the MPI flags */

/* Returns 0 when every expert of 0..e-1 appears in phy2log[0..s-1] and every
 * entry is an expert id; 1 otherwise. */
static int check_plan(const int32_t *phy2log, int32_t s, int32_t e) {
  int seen[8] = {0};
  for (int32_t i = 0; i < s; i++) {
    if (phy2log[i] < 0 || phy2log[i] >= e) return 1;
    seen[phy2log[i]] = 1;
  }
  for (int32_t i = 0; i < e; i++)
    if (!seen[i]) return 1;
  return 0;
}

int main(void) {
  const double load[8] = {90, 10, 10, 10, 40, 10, 10, 20};
  int32_t phy2log[12];
  eplb_plan_opts_t opts;
  eplb_error_t err;

  printf("eplb %s\n", eplb_version());
  if (strcmp(eplb_version(), "") == 0) return 1;
  eplb_plan_opts_default(&opts);
  opts.num_slots = 12;
  opts.num_gpus = 4;
  if (eplb_plan_layer(load, 8, &opts, phy2log, &err) != 0) {
    fprintf(stderr, "consumer: error: %s\n", eplb_error_message(&err));
    return 1;
  }
  if (check_plan(phy2log, 12, 8) != 0) {
    fprintf(stderr, "consumer: error: the plan misses an expert\n");
    return 1;
  }
  printf("plan:");
  for (int i = 0; i < 12; i++) printf(" %d", (int)phy2log[i]);
  printf("\n");
  return 0;
}
