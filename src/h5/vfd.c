/* vfd.c - eplb's HDF5 file driver (see vfd.h): POSIX pread/pwrite on one
 * descriptor, as HDF5's sec2 driver does, plus a "discard" state for files
 * that are lost (so that closing them cannot fail), byte counters and a
 * one-shot write failure for tests.
 *
 * The class is filled with designated initializers: the callbacks it
 * leaves out are the library's defaults (space allocation, type map), and
 * the fields later HDF5 versions add stay zero. */
#include "h5/vfd.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VFD_MAGIC 0x65706c6276666400ULL /* "eplbvfd" */

typedef struct {
  H5FD_t pub; /* first: HDF5 casts to and from it */
  int fd;
  uint64_t magic;
  haddr_t eoa, eof;
  dev_t dev;
  ino_t ino;
  int discard;    /* lost: writes and truncates do nothing */
  int fault;      /* fault injection for the next write (vfd.h) */
  eplb__recs_t *capture; /* writes kept here instead (vfd.h) */
} vfd_file_t;

static hid_t driver_id = -1;
static eplb__recs_t *capturing;
static int64_t total_read, total_written;

static H5FD_t *vfd_open(const char *name, unsigned flags, hid_t fapl,
                        haddr_t maxaddr) {
  (void)fapl;
  if (name == NULL || *name == '\0' || maxaddr == 0 || maxaddr == HADDR_UNDEF)
    return NULL;
  int o = (flags & H5F_ACC_RDWR) ? O_RDWR : O_RDONLY;
  if (flags & H5F_ACC_TRUNC)
    o |= O_TRUNC;
  if (flags & H5F_ACC_CREAT)
    o |= O_CREAT;
  if (flags & H5F_ACC_EXCL)
    o |= O_EXCL;
  int fd = open(name, o | O_CLOEXEC, 0666);
  struct stat st;
  if (fd < 0)
    return NULL;
  vfd_file_t *f = calloc(1, sizeof(*f));
  if (f == NULL || fstat(fd, &st) != 0) {
    free(f);
    close(fd);
    return NULL;
  }
  f->fd = fd;
  f->magic = VFD_MAGIC;
  f->capture = capturing;
  f->eof = (haddr_t)st.st_size;
  f->dev = st.st_dev;
  f->ino = st.st_ino;
  return &f->pub;
}

static herr_t vfd_close(H5FD_t *file) {
  vfd_file_t *f = (vfd_file_t *)file;
  int rc = close(f->fd);
  f->magic = 0;
  free(f);
  return rc == 0 ? 0 : -1;
}

static int vfd_cmp(const H5FD_t *a, const H5FD_t *b) {
  const vfd_file_t *x = (const vfd_file_t *)a, *y = (const vfd_file_t *)b;
  if (x->dev != y->dev)
    return x->dev < y->dev ? -1 : 1;
  if (x->ino != y->ino)
    return x->ino < y->ino ? -1 : 1;
  return 0;
}

static herr_t vfd_query(const H5FD_t *file, unsigned long *flags) {
  (void)file;
  *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA |
           H5FD_FEAT_DATA_SIEVE | H5FD_FEAT_AGGREGATE_SMALLDATA |
           H5FD_FEAT_POSIX_COMPAT_HANDLE | H5FD_FEAT_DEFAULT_VFD_COMPATIBLE;
  return 0;
}

static haddr_t vfd_get_eoa(const H5FD_t *file, H5FD_mem_t type) {
  (void)type;
  return ((const vfd_file_t *)file)->eoa;
}

static herr_t vfd_set_eoa(H5FD_t *file, H5FD_mem_t type, haddr_t addr) {
  (void)type;
  ((vfd_file_t *)file)->eoa = addr;
  return 0;
}

static haddr_t vfd_get_eof(const H5FD_t *file, H5FD_mem_t type) {
  (void)type;
  return ((const vfd_file_t *)file)->eof;
}

/* The handle is the descriptor, as sec2's is (H5Fget_vfd_handle); eplb
 * finds its own state from it (file_of). */
static herr_t vfd_get_handle(H5FD_t *file, hid_t fapl, void **handle) {
  (void)fapl;
  *handle = &((vfd_file_t *)file)->fd;
  return 0;
}

static herr_t vfd_read(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr,
                       size_t size, void *buf) {
  (void)type;
  (void)dxpl;
  vfd_file_t *f = (vfd_file_t *)file;
  unsigned char *p = buf;
  while (size > 0) {
    ssize_t n = pread(f->fd, p, size, (off_t)addr);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    if (n == 0) { /* past the end of the file: zeros, as HDF5 expects */
      memset(p, 0, size);
      break;
    }
    total_read += n;
    p += n;
    addr += (haddr_t)n;
    size -= (size_t)n;
  }
  return 0;
}

/* A read of [addr, addr + size) with the captured writes laid over it, in
 * the order they were made. */
static herr_t vfd_read_captured(vfd_file_t *f, H5FD_mem_t type, hid_t dxpl,
                                haddr_t addr, size_t size, void *buf);

/* Keeps a write in the capture instead of making it. */
static herr_t capture_write(vfd_file_t *f, haddr_t addr, size_t size,
                            const void *buf) {
  eplb__recs_t *c = f->capture;
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 16;
    eplb__rec_t *v = realloc(c->v, cap * sizeof(*v));
    if (v == NULL)
      return c->failed = 1, -1;
    c->v = v;
    c->cap = cap;
  }
  unsigned char *d = malloc(size ? size : 1);
  if (d == NULL)
    return c->failed = 1, -1;
  memcpy(d, buf, size);
  c->v[c->n++] = (eplb__rec_t){(int64_t)addr, (int64_t)size, d};
  if (addr + size > f->eof)
    f->eof = addr + size;
  return 0;
}

static herr_t vfd_write(H5FD_t *file, H5FD_mem_t type, hid_t dxpl,
                        haddr_t addr, size_t size, const void *buf) {
  (void)type;
  (void)dxpl;
  vfd_file_t *f = (vfd_file_t *)file;
  if (f->discard)
    return 0;
  if (f->capture)
    return capture_write(f, addr, size, buf);
  if (f->fault) {
    int lose = f->fault == EPLB__WRITE_LOSE;
    f->fault = 0;
    if (lose)
      return 0;
    errno = ENOSPC;
    return -1;
  }
  const unsigned char *p = buf;
  haddr_t end = addr + size;
  while (size > 0) {
    ssize_t n = pwrite(f->fd, p, size, (off_t)addr);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    total_written += n;
    p += n;
    addr += (haddr_t)n;
    size -= (size_t)n;
  }
  if (end > f->eof)
    f->eof = end;
  return 0;
}

static herr_t vfd_truncate(H5FD_t *file, hid_t dxpl, hbool_t closing) {
  (void)dxpl;
  (void)closing;
  vfd_file_t *f = (vfd_file_t *)file;
  if (f->discard || f->capture || f->eoa == f->eof)
    return 0; /* a capture that would grow the file is refused by its user */
  if (ftruncate(f->fd, (off_t)f->eoa) != 0)
    return -1;
  f->eof = f->eoa;
  return 0;
}

static herr_t vfd_read_any(H5FD_t *file, H5FD_mem_t type, hid_t dxpl,
                           haddr_t addr, size_t size, void *buf) {
  vfd_file_t *f = (vfd_file_t *)file;
  return f->capture ? vfd_read_captured(f, type, dxpl, addr, size, buf)
                    : vfd_read(file, type, dxpl, addr, size, buf);
}

static herr_t vfd_read_captured(vfd_file_t *f, H5FD_mem_t type, hid_t dxpl,
                                haddr_t addr, size_t size, void *buf) {
  if (vfd_read(&f->pub, type, dxpl, addr, size, buf) < 0)
    return -1;
  for (size_t i = 0; i < f->capture->n; i++) {
    const eplb__rec_t *r = &f->capture->v[i];
    haddr_t a = (haddr_t)r->off, e = a + (haddr_t)r->len;
    haddr_t lo = a > addr ? a : addr, hi = e < addr + size ? e : addr + size;
    if (lo < hi)
      memcpy((unsigned char *)buf + (lo - addr), r->data + (lo - a),
             (size_t)(hi - lo));
  }
  return 0;
}

static const H5FD_class_t vfd_class = {
#if H5_VERSION_GE(1, 13, 2)
    .version = H5FD_CLASS_VERSION,
    .value = (H5FD_class_value_t)(H5_VFD_RESERVED + 101),
#endif
    .name = "eplb_posix",
    .maxaddr = (haddr_t)INT64_MAX,
    .fc_degree = H5F_CLOSE_WEAK,
    .open = vfd_open,
    .close = vfd_close,
    .cmp = vfd_cmp,
    .query = vfd_query,
    .get_eoa = vfd_get_eoa,
    .set_eoa = vfd_set_eoa,
    .get_eof = vfd_get_eof,
    .get_handle = vfd_get_handle,
    .read = vfd_read_any,
    .write = vfd_write,
    .truncate = vfd_truncate,
    .fl_map = {H5FD_MEM_DEFAULT},
};

/* The driver's id, registered on first use (and again if HDF5 was closed
 * and reopened in between). */
static hid_t driver(void) {
  if (driver_id < 0 || H5Iis_valid(driver_id) <= 0)
    driver_id = H5FDregister(&vfd_class);
  return driver_id;
}

hid_t eplb__vfd_fapl(int align) {
  hid_t id = driver();
  hid_t fapl = id >= 0 ? H5Pcreate(H5P_FILE_ACCESS) : -1;
  if (fapl < 0)
    return -1;
  if (H5Pset_driver(fapl, id, NULL) < 0 ||
      (align && H5Pset_alignment(fapl, 65536, 4096) < 0)) {
    H5Pclose(fapl);
    return -1;
  }
  return fapl;
}

/* The driver's state of `file`, or NULL if another driver opened it. */
static vfd_file_t *file_of(hid_t file) {
  void *h = NULL;
  hid_t fapl = file >= 0 ? H5Fget_access_plist(file) : -1;
  hid_t drv = fapl >= 0 ? H5Pget_driver(fapl) : -1;
  if (fapl >= 0)
    H5Pclose(fapl);
  if (drv < 0 || drv != driver_id ||
      H5Fget_vfd_handle(file, H5P_DEFAULT, &h) < 0 || h == NULL)
    return NULL;
  vfd_file_t *f = (vfd_file_t *)((char *)h - offsetof(vfd_file_t, fd));
  return f->magic == VFD_MAGIC ? f : NULL;
}

void eplb__vfd_discard(hid_t file) {
  vfd_file_t *f = file_of(file);
  if (f)
    f->discard = 1;
}

void eplb__vfd_inject(hid_t file, int fault) {
  vfd_file_t *f = file_of(file);
  if (f)
    f->fault = fault;
}

void eplb__vfd_capture(eplb__recs_t *recs) { capturing = recs; }

void eplb__recs_free(eplb__recs_t *r) {
  for (size_t i = 0; r && i < r->n; i++)
    free(r->v[i].data);
  if (r) {
    free(r->v);
    memset(r, 0, sizeof(*r));
  }
}

void eplb__vfd_totals(int64_t *bytes_read, int64_t *bytes_written) {
  if (bytes_read)
    *bytes_read = total_read;
  if (bytes_written)
    *bytes_written = total_written;
}
