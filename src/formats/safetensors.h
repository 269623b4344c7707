/* formats/safetensors.h - the one safetensors header parser and writer
 * (internal: not installed), shared by the TensorRT-LLM statistics reader
 * (formats/trtllm_stats.c) and the checkpoint import/export (h5/ckpt_*.c).
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes
 * of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {string: string}}, then the data section; offsets are
 * relative to the data section.  These files come from other programs and
 * may be truncated or hostile, so every length and offset is checked
 * against the file's size before a byte of data is trusted: the header
 * length is capped, each tensor's bytes must lie inside the file and hold
 * exactly shape x dtype, no two tensors may overlap and no name may appear
 * twice.  Only the header is parsed here; callers read the data where the
 * parsed offsets say (pread, or their own buffer). */
#ifndef EPLB_FORMATS_SAFETENSORS_H
#define EPLB_FORMATS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "eplb/error.h"

/* The largest header accepted (the reference implementation's cap). */
#define EPLB_ST_MAX_HEADER (100LL * 1000 * 1000)
/* Dimensions of a tensor. */
#define EPLB_ST_MAX_DIMS 8
/* Offsets and element counts stay below 2^53: JSON numbers are doubles. */
#define EPLB_ST_MAX_OFFSET (1LL << 53)

/* The dtypes eplb carries (element sizes in bytes in the comment); the
 * sub-byte ones (F4, F6_*) are refused by name. */
typedef enum {
  EPLB_ST_BOOL = 0, /* 1 */
  EPLB_ST_U8,       /* 1 */
  EPLB_ST_I8,       /* 1 */
  EPLB_ST_F8_E4M3,  /* 1: float8_e4m3fn */
  EPLB_ST_F8_E5M2,  /* 1 */
  EPLB_ST_F8_E8M0,  /* 1: float8_e8m0fnu (scales) */
  EPLB_ST_U16,      /* 2 */
  EPLB_ST_I16,      /* 2 */
  EPLB_ST_F16,      /* 2 */
  EPLB_ST_BF16,     /* 2 */
  EPLB_ST_U32,      /* 4 */
  EPLB_ST_I32,      /* 4 */
  EPLB_ST_F32,      /* 4 */
  EPLB_ST_U64,      /* 8 */
  EPLB_ST_I64,      /* 8 */
  EPLB_ST_F64,      /* 8 */
  EPLB_ST_NUM_DTYPES
} eplb__st_dtype_t;

/* "BF16", ...; "?" outside the enum. */
const char *eplb__st_dtype_name(int dtype);
/* Bytes per element; 0 outside the enum. */
int eplb__st_dtype_size(int dtype);
/* The dtype named `name`, or -1. */
int eplb__st_dtype_from_name(const char *name);

/* One tensor of a header. */
typedef struct {
  char *name;
  int32_t dtype; /* eplb__st_dtype_t */
  int32_t ndims; /* 0..EPLB_ST_MAX_DIMS (0: a scalar) */
  int64_t shape[EPLB_ST_MAX_DIMS];
  uint64_t offset; /* of the first byte, from the start of the file */
  uint64_t nbytes; /* = product(shape) x element size */
} eplb__st_tensor_t;

/* A parsed header. */
typedef struct {
  uint64_t file_size;
  uint64_t data_start; /* 8 + N: where the data section begins */
  int32_t num_tensors;
  eplb__st_tensor_t *tensors; /* in header order */
} eplb__st_header_t;

/* Parses the header of the safetensors file `path` (for messages) whose
 * first `len` bytes are `head` and whose size is `file_size`; `len` may be
 * the whole file or just 8 + N bytes.  Returns 0 and *out (free with
 * eplb__st_header_free), or EPLB_EPARSE (EPLB_ENOMEM) with a one-line
 * message naming the file and, for a bad entry, the tensor.  *out is
 * empty on failure. */
int eplb__st_parse(const char *path, const unsigned char *head, size_t len,
                   uint64_t file_size, eplb__st_header_t *out,
                   eplb_error_t *err);

/* Reads and parses the header of the file open as `fd` (named `path`):
 * 8 bytes, then the N header bytes (N checked against the cap and the
 * file's size before anything is allocated), with pread. */
int eplb__st_read_header(const char *path, int fd, eplb__st_header_t *out,
                         eplb_error_t *err);

/* NULL-safe, idempotent. */
void eplb__st_header_free(eplb__st_header_t *h);

/* Lays out a new file: the tensors t[0..n) in that order, back to back
 * (each dtype's alignment is the caller's business: order them by
 * decreasing element size to keep it), after a header holding them and
 * `num_meta` "__metadata__" pairs meta[2k] -> meta[2k+1].  Sets every
 * t[i].offset (from the start of the file; nbytes must be set) and returns
 * the 8 + N header bytes in *out (malloc'd, N padded with spaces to a
 * multiple of 8 so the data section starts 8-byte aligned). */
int eplb__st_layout(const char *path, eplb__st_tensor_t *t, int32_t n,
                    const char *const *meta, int32_t num_meta,
                    unsigned char **out, size_t *out_len, eplb_error_t *err);

#endif /* EPLB_FORMATS_SAFETENSORS_H */
