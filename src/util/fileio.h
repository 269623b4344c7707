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
 * frees); *len (may be NULL) receives the size without the NUL.  The file
 * is opened with eplb__open_regular: a FIFO or a device is refused, never
 * waited on. */
int eplb__read_file(const char *path, char **data, size_t *len,
                    eplb_error_t *err);

/* Opens `path` for reading, refusing anything but a regular file without
 * ever blocking: open(2) of a FIFO waits for a writer and read(2) of one
 * waits for data, forever if none comes (and under MPI one rank waiting
 * holds every rank).  So the file is opened O_NONBLOCK, checked with
 * fstat, refused by name when it is not a regular file ("<path>: is a FIFO
 * (named pipe), not a regular file; ..."), and only then switched back to
 * blocking reads.  Returns the descriptor (>= 0, O_CLOEXEC; the caller
 * closes it) or a negative EPLB_E* code (EPLB_EIO) with err filled. */
int eplb__open_regular(const char *path, eplb_error_t *err);

/* eplb__open_regular and close: for readers that open the path themselves
 * (HDF5's H5Fopen).  0 or EPLB_EIO. */
int eplb__check_regular(const char *path, eplb_error_t *err);

/* "a directory", "a FIFO (named pipe)", "a character device", "a block
 * device", "a socket", "a symbolic link", "a regular file": for messages. */
const char *eplb__file_kind(unsigned mode);

/* Refuses to let an output replace one of the inputs.  `what` names the
 * output option ("--output"), `output` its value; `inputs` are what the
 * program reads: a file, a glob pattern (every match: `*`, `?` or `[`), or
 * a directory (a dump: every file in it and in its subdirectories one level
 * down).  Files are compared by identity - device and inode, symbolic links
 * followed - so "/abs/a.json" and "./a.json", a symbolic link, a hard link
 * or a glob match are all the same file.  An output that does not exist
 * yet cannot be an input.  Returns 0, or EPLB_EARG: "--output a.json is
 * the statistics file a.json (same file); refusing to overwrite an input:
 * write the output elsewhere", with `input_what` ("--stats") naming the
 * input option. */
int eplb__check_output(const char *what, const char *output,
                       const char *input_what, const char *const *inputs,
                       int num_inputs, eplb_error_t *err);

/* 1 when paths a and b name the same file: the same identity when both
 * exist, else the same name in the same directory (by the directory's
 * identity), so two outputs that do not exist yet are compared too. */
int eplb__same_path(const char *a, const char *b);

/* Writer callback for eplb__write_atomic: writes the content to f, returns 0
 * or an EPLB_E* code (filling err). */
typedef int (*eplb__write_fn)(FILE *f, const void *ctx, eplb_error_t *err);

/* Writes `path` atomically: `<path>.tmp.<pid>`, fflush + fsync, rename,
 * fsync of the directory.  On failure the temporary file is removed and the
 * old `path` (if any) is untouched.  A `path` that exists and is not a
 * regular file (a device, a FIFO, a directory; symbolic links followed) is
 * refused with EPLB_EIO before anything is written: the rename would
 * replace the device node or pipe itself. */
int eplb__write_atomic(const char *path, eplb__write_fn write, const void *ctx,
                       eplb_error_t *err);

/* An eplb__write_fn: ctx is a NUL-terminated text, written with a
 * newline after it (a JSON document printed by cJSON, say). */
int eplb__write_text(FILE *f, const void *ctx, eplb_error_t *err);

/* fsyncs the directory that holds `path` (so a rename is durable). */
int eplb__fsync_dir_of(const char *path, eplb_error_t *err);

#endif /* EPLB_UTIL_FILEIO_H */
