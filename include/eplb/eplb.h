/* eplb/eplb.h - umbrella header of libeplb.
 *
 * eplb rebalances the experts of Mixture-of-Experts models across the ranks
 * of an expert-parallel job: collect -> reduce -> plan -> distribute ->
 * move -> commit.  Each concern has its own small header; this one includes
 * them.
 */
#ifndef EPLB_EPLB_H
#define EPLB_EPLB_H

#include "eplb/error.h"
#include "eplb/formats.h"
#include "eplb/metrics.h"
#include "eplb/online.h"
#include "eplb/placement.h"
#include "eplb/plan.h"
#include "eplb/report.h"
#include "eplb/series.h"
#include "eplb/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EPLB_VERSION_MAJOR 0
#define EPLB_VERSION_MINOR 1
#define EPLB_VERSION_PATCH 0

/* "MAJOR.MINOR.PATCH" of the library actually linked. */
const char *eplb_version(void);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_EPLB_H */
