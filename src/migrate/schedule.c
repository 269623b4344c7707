/* migrate/schedule.c - which expert rows go where when a placement
 * changes (eplb_schedule_build, see eplb/migrate.h).
 *
 * The schedule is pure and computed identically on every rank from the old
 * and the new placement, so the ranks never negotiate who sends what: a
 * slot that keeps its expert is untouched, an expert already on the rank
 * is copied locally, and a rank receives each missing expert exactly once
 * per layer (further slots copy it), from the least-loaded rank that holds
 * it, on its own node when it can.  The network traffic is therefore the
 * minimum the plan needs. */
#include <stdlib.h>
#include <string.h>

#include "eplb/migrate.h"

void eplb_schedule_cleanup(eplb_schedule_t *s) {
  if (s == NULL)
    return;
  free(s->xfers);
  free(s->layer_start);
  free(s->action);
  free(s->source);
  memset(s, 0, sizeof(*s));
}

/* Scratch for one schedule build: per-expert stamps and the holders. */
typedef struct {
  int32_t E, R, P, nodes;
  int64_t *have_stamp, *got_stamp;
  int32_t *have_slot, *got_slot;
  int32_t *hstart;        /* [E + 1] holders of expert e in this layer */
  int32_t *hrank, *hslot; /* [S] */
  int32_t *load;          /* [R] sends so far in this layer */
} sched_tmp_t;

static void tmp_free(sched_tmp_t *t) {
  free(t->have_stamp);
  free(t->got_stamp);
  free(t->have_slot);
  free(t->got_slot);
  free(t->hstart);
  free(t->hrank);
  free(t->hslot);
  free(t->load);
}

/* Checks that old and next have one shape and valid ids. */
static int sched_check(const eplb_placement_t *old,
                       const eplb_placement_t *next, int32_t num_nodes,
                       eplb_error_t *err) {
  if (old->num_layers != next->num_layers ||
      old->num_slots != next->num_slots || old->num_gpus != next->num_gpus ||
      old->num_gpus < 1 || old->num_slots % old->num_gpus != 0)
    return eplb_error_set(
        err, EPLB_ESHAPE,
        "the new placement has %d layers x %d slots on %d GPUs "
        "but the shards hold %d x %d on %d; plan for the "
        "shards' shape",
        (int)next->num_layers, (int)next->num_slots, (int)next->num_gpus,
        (int)old->num_layers, (int)old->num_slots, (int)old->num_gpus);
  if (num_nodes < 1 || num_nodes > old->num_gpus ||
      old->num_gpus % num_nodes != 0)
    return eplb_error_set(err, EPLB_EARG,
                          "num_nodes %d must divide the %d ranks (1..ranks)",
                          (int)num_nodes, (int)old->num_gpus);
  int32_t E = old->num_experts > next->num_experts ? old->num_experts
                                                   : next->num_experts;
  size_t n = (size_t)old->num_layers * (size_t)old->num_slots;
  for (size_t i = 0; i < n; i++)
    if (old->phy2log[i] < 0 || old->phy2log[i] >= E || next->phy2log[i] < 0 ||
        next->phy2log[i] >= E)
      return eplb_error_set(err, EPLB_EMAP,
                            "layer %d slot %d: expert id out of range 0..%d",
                            (int)(i / (size_t)old->num_slots),
                            (int)(i % (size_t)old->num_slots), (int)E - 1);
  return 0;
}

/* Allocates the scratch and the output arrays. */
static int sched_alloc(const eplb_placement_t *old, int32_t E, sched_tmp_t *t,
                       eplb_schedule_t *out, eplb_error_t *err) {
  size_t L = (size_t)old->num_layers, S = (size_t)old->num_slots;
  t->E = E;
  t->R = old->num_gpus;
  t->P = old->num_slots / old->num_gpus;
  t->have_stamp = malloc(sizeof(int64_t) * (size_t)E);
  t->got_stamp = malloc(sizeof(int64_t) * (size_t)E);
  t->have_slot = malloc(sizeof(int32_t) * (size_t)E);
  t->got_slot = malloc(sizeof(int32_t) * (size_t)E);
  t->hstart = malloc(sizeof(int32_t) * ((size_t)E + 1));
  t->hrank = malloc(sizeof(int32_t) * S);
  t->hslot = malloc(sizeof(int32_t) * S);
  t->load = malloc(sizeof(int32_t) * (size_t)t->R);
  out->layer_start = calloc(L + 1, sizeof(int64_t));
  out->action = malloc(L * S);
  out->source = malloc(sizeof(int32_t) * L * S);
  out->xfers = malloc(sizeof(eplb_xfer_t) * (L * S > 0 ? L * S : 1));
  if (!t->have_stamp || !t->got_stamp || !t->have_slot || !t->got_slot ||
      !t->hstart || !t->hrank || !t->hslot || !t->load || !out->layer_start ||
      !out->action || !out->source || !out->xfers)
    return eplb_error_set(err, EPLB_ENOMEM,
                          "out of memory for the transfer "
                          "schedule of %zu x %zu slots",
                          L, S);
  for (int32_t e = 0; e < E; e++)
    t->have_stamp[e] = t->got_stamp[e] = -1;
  return 0;
}

/* The holders of each expert in layer row `old` (one entry per rank, its
 * first slot): expert e's are hrank/hslot[hstart[e] .. hend[e]). */
static void find_holders(sched_tmp_t *t, const int32_t *old, int32_t *hend) {
  int32_t S = t->R * t->P;
  memset(t->hstart, 0, sizeof(int32_t) * ((size_t)t->E + 1));
  for (int32_t s = 0; s < S; s++)
    t->hstart[old[s] + 1]++;
  for (int32_t e = 0; e < t->E; e++)
    t->hstart[e + 1] += t->hstart[e];
  memcpy(hend, t->hstart, sizeof(int32_t) * (size_t)t->E);
  /* ranks come in order: a rank's further copies are dropped */
  for (int32_t s = 0; s < S; s++) {
    int32_t e = old[s], r = s / t->P, at = hend[e];
    if (at > t->hstart[e] && t->hrank[at - 1] == r)
      continue;
    t->hrank[at] = r;
    t->hslot[at] = s % t->P;
    hend[e] = at + 1;
  }
}

/* Picks the sender of expert e for receiver r: least loaded, same node
 * first; ties rotate by (r + e).  Returns the index into hrank/hslot. */
static int32_t pick_sender(const sched_tmp_t *t, int32_t e, int32_t r,
                           const int32_t *hend) {
  int32_t b = t->hstart[e], n = hend[e] - b, per = t->R / t->nodes;
  int same = 0;
  for (int32_t k = 0; k < n && t->nodes > 1; k++)
    same |= t->hrank[b + k] / per == r / per;
  int32_t best = -1;
  for (int32_t k = 0; k < n; k++) {
    int32_t i = b + (int32_t)(((int64_t)r + e + k) % n);
    if (same && t->hrank[i] / per != r / per)
      continue;
    if (best < 0 || t->load[t->hrank[i]] < t->load[t->hrank[best]])
      best = i;
  }
  return best;
}

/* Schedules layer l (rows old/next of the placements). */
static void sched_layer(sched_tmp_t *t, int32_t l, const int32_t *old,
                        const int32_t *next, int32_t *hend,
                        eplb_schedule_t *out) {
  int32_t S = t->R * t->P;
  int8_t *act = out->action + (size_t)l * (size_t)S;
  int32_t *src = out->source + (size_t)l * (size_t)S;
  memset(t->load, 0, sizeof(int32_t) * (size_t)t->R);
  for (int32_t r = 0; r < t->R; r++) {
    int64_t stamp = (int64_t)l * t->R + r;
    const int32_t *o = old + (size_t)r * (size_t)t->P,
                  *n = next + (size_t)r * (size_t)t->P;
    for (int32_t j = t->P - 1; j >= 0; j--) {
      t->have_stamp[o[j]] = stamp;
      t->have_slot[o[j]] = j; /* ends at the first slot holding it */
    }
    for (int32_t j = 0; j < t->P; j++) {
      int32_t e = n[j], s = r * t->P + j;
      src[s] = -1;
      if (o[j] == e) {
        act[s] = EPLB_SLOT_KEEP;
        out->kept++;
      } else if (t->have_stamp[e] == stamp) {
        act[s] = EPLB_SLOT_LOCAL;
        src[s] = t->have_slot[e];
        out->local_copies++;
      } else if (t->got_stamp[e] == stamp) {
        act[s] = EPLB_SLOT_DUP;
        src[s] = t->got_slot[e];
        out->local_copies++;
      } else {
        int32_t i = pick_sender(t, e, r, hend);
        eplb_xfer_t *x = &out->xfers[out->num_xfers++];
        *x = (eplb_xfer_t){l, e, t->hrank[i], t->hslot[i], r, j};
        t->load[t->hrank[i]]++;
        act[s] = EPLB_SLOT_RECV;
        t->got_stamp[e] = stamp;
        t->got_slot[e] = j;
      }
    }
  }
}

int eplb_schedule_build(const eplb_placement_t *old,
                        const eplb_placement_t *next, int32_t num_nodes,
                        eplb_schedule_t *out, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  int rc = sched_check(old, next, num_nodes, err);
  if (rc)
    return rc;
  int32_t E = old->num_experts > next->num_experts ? old->num_experts
                                                   : next->num_experts;
  sched_tmp_t t = {0};
  t.nodes = num_nodes;
  rc = sched_alloc(old, E, &t, out, err);
  int32_t *hend = rc ? NULL : malloc(sizeof(int32_t) * (size_t)E);
  if (rc == 0 && hend == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory for the schedule");
  size_t S = (size_t)old->num_slots;
  for (int32_t l = 0; rc == 0 && l < old->num_layers; l++) {
    const int32_t *o = old->phy2log + (size_t)l * S,
                  *n = next->phy2log + (size_t)l * S;
    find_holders(&t, o, hend);
    /* every expert the new placement needs must be held somewhere */
    for (size_t s = 0; s < S && rc == 0; s++)
      if (t.hstart[n[s]] == hend[n[s]])
        rc = eplb_error_set(err, EPLB_EMAP,
                            "layer %d: expert %d is needed in slot %zu but no "
                            "rank holds it now; the shards cannot provide it",
                            (int)l, (int)n[s], s);
    if (rc == 0) {
      out->layer_start[l] = out->num_xfers;
      sched_layer(&t, l, o, n, hend, out);
    }
  }
  if (rc == 0) {
    out->layer_start[old->num_layers] = out->num_xfers;
    out->num_layers = old->num_layers;
    out->num_ranks = old->num_gpus;
    out->slots_per_rank = old->num_slots / old->num_gpus;
  }
  free(hend);
  tmp_free(&t);
  if (rc)
    eplb_schedule_cleanup(out);
  return rc;
}
