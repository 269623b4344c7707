/* util/fileio.h - whole-file reads and crash-safe whole-file writes.
 *
 * Nothing eplb writes is ever left half-written: eplb__write_atomic writes a
 * temporary file beside the target, fsyncs it, renames it over the target
 * and fsyncs the directory, so a reader sees the old file or the new one.
 */
#ifndef EPLB_UTIL_FILEIO_H
#define EPLB_UTIL_FILEIO_H

#include <stddef.h>
#include <stdio.h>

#include "eplb/error.h"

/* Largest file eplb__read_file reads (1 GiB): statistics and maps are far
 * smaller; anything bigger is not what the user meant to pass. */
#define EPLB_MAX_TEXT_FILE (1024L * 1024L * 1024L)

/* Reads all of `path` into a NUL-terminated malloc'd buffer (*data, caller
 * frees); *len (may be NULL) receives the size without the NUL. */
int eplb__read_file(const char *path, char **data, size_t *len,
                    eplb_error_t *err);

/* Writer callback for eplb__write_atomic: writes the content to f, returns 0
 * or an EPLB_E* code (filling err). */
typedef int (*eplb__write_fn)(FILE *f, const void *ctx, eplb_error_t *err);

/* Writes `path` atomically: `<path>.tmp.<pid>`, fflush + fsync, rename,
 * fsync of the directory.  On failure the temporary file is removed and the
 * old `path` (if any) is untouched. */
int eplb__write_atomic(const char *path, eplb__write_fn write, const void *ctx,
                       eplb_error_t *err);

/* An eplb__write_fn: ctx is a NUL-terminated text, written with a
 * newline after it (a JSON document printed by cJSON, say). */
int eplb__write_text(FILE *f, const void *ctx, eplb_error_t *err);

/* fsyncs the directory that holds `path` (so a rename is durable). */
int eplb__fsync_dir_of(const char *path, eplb_error_t *err);

#endif /* EPLB_UTIL_FILEIO_H */
