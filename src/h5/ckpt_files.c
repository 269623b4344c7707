/* h5/ckpt_files.c - the files of a Hugging Face checkpoint directory and
 * their headers (the first half of the scan, h5/ckpt.h).
 *
 * With model.safetensors.index.json the index is the truth, as for the
 * engines' loaders: a tensor is taken from the file the index names, which
 * must hold it; files and tensors the index does not name are ignored; a
 * tensor named twice in the index is an error.  Without an index every
 * *.safetensors file of the directory is read and a name in two files is
 * an error.  Every header goes through formats/safetensors.c (offsets
 * checked against the file); files are opened without blocking (a FIFO is
 * refused, not waited on) and stay open for the reads that follow. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/formats.h"
#include "h5/ckpt.h"
#include "util/fileio.h"

/* Adds file `name` of directory dir to c->files (not yet opened). */
static int add_file(const char *dir, eplb__ckpt_t *c, const char *name,
                    eplb_error_t *err) {
  char path[4096];
  if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
    return eplb_error_set(err, EPLB_EARG, "%s/%.100s: path too long", dir,
                          name);
  eplb__ckpt_file_t *more =
      realloc(c->files, sizeof(*more) * (size_t)(c->num_files + 1));
  if (more == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  c->files = more;
  more[c->num_files].fd = -1;
  if ((more[c->num_files].path = strdup(path)) == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  c->num_files++;
  return 0;
}

/* A file name of the index: plain, in the directory. */
static int check_file_name(const char *path, const cJSON *v,
                           eplb_error_t *err) {
  if (cJSON_IsString(v) && v->valuestring[0] != '\0' &&
      strchr(v->valuestring, '/') == NULL && strcmp(v->valuestring, ".") &&
      strcmp(v->valuestring, ".."))
    return 0;
  return eplb_error_set(err, EPLB_EPARSE,
                        "%s: weight_map[\"%.200s\"] is not the name of a file "
                        "in the checkpoint directory",
                        path, v->string);
}

/* One weight_map entry: the file (added on first sight) and the tensor. */
static int index_entry(const char *dir, const char *path, const cJSON *v,
                       eplb__ckpt_t *c, eplb__ckpt_files_t *fs,
                       eplb__strmap_t *files, eplb_error_t *err) {
  int rc = check_file_name(path, v, err);
  int32_t f = rc ? -1 : eplb__strmap_get(files, v->valuestring);
  if (rc == 0 && f < 0) {
    f = c->num_files;
    rc = eplb__strmap_put(files, v->valuestring, f, err);
    if (rc == 0)
      rc = add_file(dir, c, v->valuestring, err);
  }
  if (rc == 0 && eplb__strmap_get(&fs->index, v->string) >= 0)
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: weight_map names tensor \"%.200s\" twice (which "
                        "file holds it?)",
                        path, v->string);
  if (rc == 0)
    rc = eplb__strmap_put(&fs->index, v->string, f, err);
  return rc;
}

/* Reads the index: weight_map tensor -> file. */
static int read_index(const char *dir, const char *path, eplb__ckpt_t *c,
                      eplb__ckpt_files_t *fs, eplb_error_t *err) {
  char *text = NULL;
  cJSON *root = NULL;
  size_t len = 0;
  eplb__strmap_t files = {0};
  int rc = eplb__read_file(path, &text, &len, err);
  if (rc == 0)
    rc = eplb__json_parse(path, text, len, &root, err);
  const cJSON *wm =
      rc ? NULL : cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (rc == 0 && !cJSON_IsObject(wm))
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: \"weight_map\" is %s; expected an object "
                        "{tensor: file}",
                        path, eplb__json_kind(wm));
  const cJSON *v;
  if (rc == 0)
    cJSON_ArrayForEach(v, wm) {
      if ((rc = index_entry(dir, path, v, c, fs, &files, err)) != 0)
        break;
    }
  if (rc == 0 && c->num_files == 0)
    rc = eplb_error_set(err, EPLB_EPARSE, "%s: \"weight_map\" is empty", path);
  eplb__strmap_free(&files);
  cJSON_Delete(root);
  free(text);
  return rc;
}

static int by_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Without an index: every *.safetensors file of the directory, sorted. */
static int list_dir(const char *dir, eplb__ckpt_t *c, eplb_error_t *err) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return eplb_error_set(err, EPLB_EIO,
                          "--checkpoint %s: cannot open the directory: %s", dir,
                          strerror(errno));
  char **names = NULL;
  size_t n = 0;
  int rc = 0;
  struct dirent *de;
  while (rc == 0 && (de = readdir(d)) != NULL) {
    size_t k = strlen(de->d_name);
    if (k <= 12 || strcmp(de->d_name + k - 12, ".safetensors") != 0)
      continue;
    char **more = realloc(names, sizeof(*names) * (n + 1));
    if (more)
      names = more;
    if (more == NULL || (names[n] = strdup(de->d_name)) == NULL)
      rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    else
      n++;
  }
  closedir(d);
  if (n > 0)
    qsort(names, n, sizeof(*names), by_str);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = add_file(dir, c, names[i], err);
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  if (rc == 0 && n == 0)
    rc = eplb_error_set(err, EPLB_EIO,
                        "--checkpoint %s: neither model.safetensors.index.json "
                        "nor a *.safetensors file in it; is this a Hugging "
                        "Face checkpoint directory?",
                        dir);
  return rc;
}

/* Opens file i and parses its header into fs->heads[i]. */
static int open_file(eplb__ckpt_t *c, eplb__ckpt_files_t *fs, int32_t i,
                     eplb_error_t *err) {
  eplb__ckpt_file_t *f = &c->files[i];
  f->fd = open(f->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (f->fd < 0)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot open: %s", f->path,
                          strerror(errno));
  if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode))
    return eplb_error_set(err, EPLB_EIO, "%s: not a regular file", f->path);
  fcntl(f->fd, F_SETFL, 0);
  posix_fadvise(f->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return eplb__st_read_header(f->path, f->fd, &fs->heads[i], err);
}

int eplb__ckpt_files_taken(const eplb__ckpt_files_t *fs, int32_t i, int32_t k) {
  return !fs->has_index ||
         eplb__strmap_get(&fs->index, fs->heads[i].tensors[k].name) == i;
}

/* With an index: every tensor it names is in the file it names. */
static int check_index(const char *dir, const eplb__ckpt_t *c,
                       const eplb__ckpt_files_t *fs, eplb_error_t *err) {
  eplb__strmap_t held = {0};
  int rc = 0;
  for (int32_t i = 0; rc == 0 && i < c->num_files; i++)
    for (int32_t k = 0; rc == 0 && k < fs->heads[i].num_tensors; k++)
      if (eplb__ckpt_files_taken(fs, i, k))
        rc = eplb__strmap_put(&held, fs->heads[i].tensors[k].name, i, err);
  for (size_t j = 0; rc == 0 && j < fs->index.cap; j++) {
    const char *t = fs->index.keys[j];
    int32_t f = t ? fs->index.vals[j] : -1;
    if (t && eplb__strmap_get(&held, t) != f)
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "%s/model.safetensors.index.json names tensor "
                          "\"%.200s\" in %s, but that file's header lacks it "
                          "(a missing tensor, or a stale index)",
                          dir, t, c->files[f].path);
  }
  eplb__strmap_free(&held);
  return rc;
}

/* Without an index: no name in two files. */
static int check_unique(const eplb__ckpt_t *c, const eplb__ckpt_files_t *fs,
                        eplb_error_t *err) {
  eplb__strmap_t seen = {0};
  int rc = 0;
  for (int32_t i = 0; rc == 0 && i < c->num_files; i++)
    for (int32_t k = 0; rc == 0 && k < fs->heads[i].num_tensors; k++) {
      const char *nm = fs->heads[i].tensors[k].name;
      int32_t f = eplb__strmap_get(&seen, nm);
      if (f >= 0)
        rc = eplb_error_set(err, EPLB_EPARSE,
                            "tensor \"%.200s\" is in both %s and %s (which "
                            "copy is meant?)",
                            nm, c->files[f].path, c->files[i].path);
      else
        rc = eplb__strmap_put(&seen, nm, i, err);
    }
  eplb__strmap_free(&seen);
  return rc;
}

int eplb__ckpt_files_read(const char *dir, eplb__ckpt_t *c,
                          eplb__ckpt_files_t *fs, eplb_error_t *err) {
  memset(fs, 0, sizeof(*fs));
  char path[4096];
  struct stat st;
  snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
  fs->has_index = stat(path, &st) == 0;
  int rc =
      fs->has_index ? read_index(dir, path, c, fs, err) : list_dir(dir, c, err);
  if (rc == 0 &&
      (fs->heads = calloc((size_t)c->num_files, sizeof(*fs->heads))) == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t i = 0; rc == 0 && i < c->num_files; i++)
    rc = open_file(c, fs, i, err);
  if (rc == 0)
    rc =
        fs->has_index ? check_index(dir, c, fs, err) : check_unique(c, fs, err);
  return rc;
}

void eplb__ckpt_files_free(eplb__ckpt_files_t *fs, int32_t num_files) {
  for (int32_t i = 0; fs->heads && i < num_files; i++)
    eplb__st_header_free(&fs->heads[i]);
  free(fs->heads);
  eplb__strmap_free(&fs->index);
  memset(fs, 0, sizeof(*fs));
}
