/* fuzz/fuzz_util.h - what the libFuzzer targets share: a private directory
 * for the files a target must write (eplb's readers take paths), the input
 * as NUL-terminated text, and the input split into named files (a dump
 * directory from one input).  See docs/fuzzing.md. */
#ifndef EPLB_FUZZ_UTIL_H
#define EPLB_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* A directory of this process's own, made on first use (on /dev/shm when
 * there is one: writes and fsyncs cost nothing there), removed at exit. */
const char *fuzz_dir(void);

/* fuzz_dir()/name into a static buffer (two alternate, so two paths can be
 * held at once). */
const char *fuzz_path(const char *name);

/* Writes `size` bytes to path (aborts if it cannot: the target is broken,
 * not the input). */
void fuzz_write(const char *path, const void *data, size_t size);

/* A malloc'd copy of the input with a NUL after it. */
char *fuzz_text(const uint8_t *data, size_t size);

/* Splits the input into files: it is a run of sections "@@ <name>\n<bytes>"
 * separated by "\n@@ ", e.g. "@@ model_gen_config.json\n{...}\n@@
 * decode_0.csv\n1,2\n3,4".  Every file of `names` (NULL-terminated; names
 * may be one directory deep, "prefill/prefill_0.csv") is first removed from
 * dir, then each section whose name is in `names` is written there (a later
 * section of the same name wins); other sections are ignored.  Returns the
 * number of files written. */
int fuzz_write_sections(const char *dir, const uint8_t *data, size_t size,
                        const char *const *names);

/* Aborts with a message (a finding: libFuzzer saves the input). */
void fuzz_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

#endif /* EPLB_FUZZ_UTIL_H */
