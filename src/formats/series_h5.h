/* formats/series_h5.h - the one HDF5 read the offline planner can need: a
 * [steps][layers][experts] dataset of counts, as doubles.
 *
 * Why a header of its own: loading the HDF5 library (Debian's pulls in
 * MPI, curl, TLS and Kerberos, 44 shared objects) takes longer than
 * `eplb-plan` takes to read, plan and write a DeepSeek-V3 map (figures in
 * docs/eplb-plan.md).  So the reader has a plain C interface that depends
 * on nothing of eplb's: the port between the core and the HDF5 edge.
 * libeplb links its implementation (h5/series_h5.c), while eplb-plan and
 * eplb-report are built without HDF5 and load it, only when they meet an
 * HDF5 file, from the module eplb_h5series.so (formats/series_h5_load.c). */
#ifndef EPLB_SERIES_H5_H
#define EPLB_SERIES_H5_H

#include <stddef.h>
#include <stdint.h>

/* Reads the dataset named logical_count, else the only 3-D dataset at the
 * root, of the HDF5 file at path, converted to double.  max[3] bounds the
 * dimensions.  Returns 0 with *data (malloc'd, dims[0]*dims[1]*dims[2]
 * values, the caller frees) and dims[3]; or an EPLB_E* code with a
 * message in msg (naming the file and what to do). */
int eplb__h5_read3(const char *path, const int64_t max[3], double **data,
                   int64_t dims[3], char *msg, size_t msglen);

/* The module's exported name for the same function (dlsym). */
#define EPLB_H5_MODULE_ENTRY "eplb_h5series_read3"
#define EPLB_H5_MODULE_FILE "eplb_h5series.so"

#endif /* EPLB_SERIES_H5_H */
