/* h5/h5types.h - the HDF5 types of the weights eplb carries, and their
 * safetensors dtypes (internal: not installed).
 *
 * HDF5 has integer and IEEE float types, but no bfloat16 and no float8.
 * eplb stores those as HDF5 *opaque* types whose tag names the format
 * ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu", and
 * "bool" for safetensors' BOOL): HDF5 never converts an opaque value, so a
 * read, a write or a migration moves the bytes as they are, the tag
 * survives H5Tencode/H5Tdecode (how a migration recreates a type), and an
 * h5py user tells them apart with `ds.id.get_type().get_tag()`
 * (docs/shards.md).  A float type described field by field is read as
 * well (an 8-bit exponent, 7-bit mantissa 2-byte float is bfloat16), so
 * shards written by other tools that chose that way export too. */
#ifndef EPLB_H5_H5TYPES_H
#define EPLB_H5_H5TYPES_H

#include <hdf5.h>

/* A new HDF5 type that holds safetensors dtype `st` (eplb__st_dtype_t)
 * byte for byte; the caller closes it.  < 0 for an unknown dtype. */
hid_t eplb__h5_type_for_st(int st);

/* The safetensors dtype whose bytes HDF5 type t holds (little-endian
 * integers of 1-8 bytes, IEEE half/single/double, bfloat16 and float8 as
 * float fields or eplb's opaque tags), or -1. */
int eplb__h5_st_of_type(hid_t t);

/* The tag of opaque type t if it is one eplb recognises ("bfloat16",
 * ...), else NULL (not opaque, or a tag eplb does not know). */
const char *eplb__h5_opaque_kind(hid_t t);

#endif /* EPLB_H5_H5TYPES_H */
