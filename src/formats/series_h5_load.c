/* series_h5_load.c - eplb__h5_read3 for programs built without HDF5
 * (eplb-plan): the reader is loaded from the module eplb_h5series.so the
 * first time an HDF5 file is read.  See series_h5.h for why.
 *
 * The module is looked for beside the program first - <bin>/../<libdir>/eplb,
 * which is where both the build tree and an installed tree keep it, so a
 * moved installation still finds its own - then in the directory it was
 * installed to. */
#include "formats/series_h5.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "eplb/error.h"

#ifndef EPLB_MODULE_RELDIR
#define EPLB_MODULE_RELDIR "../lib/eplb"
#endif
#ifndef EPLB_MODULE_DIR
#define EPLB_MODULE_DIR "/usr/local/lib/eplb"
#endif

typedef int (*read3_fn)(const char *, const int64_t *, double **, int64_t *,
                        char *, size_t);

/* Opens the module; on failure says where it looked in why[]. */
static read3_fn load(char *why, size_t whylen) {
  /* Kept once found (never closed: the process ends soon).  Not guarded:
   * the programs read their statistics on one thread. */
  static read3_fn fn;
  if (fn)
    return fn;
  char exe[PATH_MAX], cand[2][PATH_MAX + 64];
  int n = 0;
  ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len > 0) {
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      snprintf(cand[n++], sizeof(cand[0]), "%s/%s/%s", exe, EPLB_MODULE_RELDIR,
               EPLB_H5_MODULE_FILE);
    }
  }
  snprintf(cand[n++], sizeof(cand[0]), "%s/%s", EPLB_MODULE_DIR,
           EPLB_H5_MODULE_FILE);
  const char *last = "";
  for (int i = 0; i < n; i++) {
    void *h = dlopen(cand[i], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
      last = dlerror();
      continue;
    }
    fn = (read3_fn)(uintptr_t)dlsym(h, EPLB_H5_MODULE_ENTRY);
    if (fn)
      return fn;
    last = "the module has no " EPLB_H5_MODULE_ENTRY;
    dlclose(h);
  }
  if (n > 1)
    snprintf(why, whylen, "tried %s and %s (%s)", cand[0], cand[1],
             last ? last : "not found");
  else
    snprintf(why, whylen, "tried %s (%s)", cand[0], last ? last : "not found");
  return NULL;
}

int eplb__h5_read3(const char *path, const int64_t max[3], double **data,
                   int64_t dims[3], char *msg, size_t msglen) {
  char why[3 * PATH_MAX];
  read3_fn fn = load(why, sizeof(why));
  if (fn == NULL) {
    snprintf(msg, msglen,
             "%s is an HDF5 file, and reading it needs eplb's HDF5 module, "
             "which could not be loaded: %s; reinstall eplb, or give the "
             "steps as JSON",
             path, why);
    *data = NULL;
    return EPLB_EHDF5;
  }
  return fn(path, max, data, dims, msg, msglen);
}
