/* The native per-entry engine (docs/format.md §2; issue 14).
 *
 * A fast path, never a second implementation of the rules: it consumes only entries that the
 * pure-Python reader (merkle_backup/archive/reader.py) would take through its own fast path with
 * no error, and it stops, consuming nothing of it, at the first entry it is not sure of. The
 * Python reader then takes that entry (and raises, with the reference message, if it is bad),
 * and calls the engine again. So every rule, limit and message stays in headers.py / reader.py,
 * and the engine needs to be right only about what it accepts:
 *
 *   - the header has exactly the shape of headers.FAST_HEADER (the shape Go writes), all 512
 *     bytes inside the buffer, and a correct checksum;
 *   - its typeflag is '0' or NUL (regular file), no meta header is pending (the caller only
 *     calls with none pending);
 *   - the entry count stays within max_entries, the final name (USTAR prefix applied) within
 *     max_path_length and is a safe path (SAFE_PATH) that decodes as UTF-8, its size within
 *     max_entry_size, and its data and padding are wholly inside the buffer.
 *
 * Walker.entries() turns those entries into (path, data, None) tuples, exactly what
 * ArchiveReader.tuples() yields for them. Walker.seal() goes further, for the sealer's hot loop
 * (builder.hash_tarball): for entries whose path is in Velero's usual layout
 * (core/table.VELERO_PATH) it hashes the data with the `blake3` package (or reuses the previous
 * digest when the bytes equal the previous entry's, as hash_tarball does), runs the manifest
 * decoder of consistency.check_manifest and accepts the entry only if the manifest agrees with
 * its path, and appends the compact sortable leaf of core/table.tar_leaf_and_key. Any other
 * path, and any manifest that does not plainly agree, stops the run there: Python redoes that
 * entry with the reference code.
 *
 * Header walking runs without the GIL; calls into blake3 and msgspec hold it.
 * Every read of the buffer is bounds-checked against its length before it happens.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 512
#define MAX_NAME 100
#define MAX_PREFIX 155
#define MAX_PATH (MAX_PREFIX + 1 + MAX_NAME) /* the longest USTAR path: prefix "/" name */
#define BATCH 1024                           /* entries walked per release of the GIL */
#define DIGEST 32
#define FAST_PATH_LIMIT 256 /* core/table.FAST_PATH_LIMIT: fast paths are shorter */

static const char PREFERRED_SUFFIX[] = "-preferredversion"; /* velero.PREFERRED_SUFFIX */

/* One entry found by the walk: where its data is, and its final name. */
typedef struct {
    Py_ssize_t data;  /* offset of its data in the buffer */
    Py_ssize_t size;  /* bytes of data */
    Py_ssize_t next;  /* offset of the next header */
    Py_ssize_t path_len;
    char path[MAX_PATH];
} Slot;

typedef struct {
    const char *p;
    Py_ssize_t n;
} Str;

/* The key of a path in Velero's usual layout, as tar_leaf_and_key's fast branch computes it:
 * (namespace, resource, scope, name, version). 0 when the path is not in that layout (then
 * the reference functions decide). */
typedef struct {
    Str ns, gr, scope, name, ver;
    int cluster;
} Key;

/* -- the header walk (no Python objects, no GIL) ----------------------------------------- */

static int is_octal(unsigned char c) { return c >= '0' && c <= '7'; }

/* n octal digits at p, then a NUL: headers.FAST_HEADER's "[0-7]{n}\x00". */
static int octal_nul(const unsigned char *p, int n) {
    for (int i = 0; i < n; i++)
        if (!is_octal(p[i])) return 0;
    return p[n] == 0;
}

static uint64_t octal_value(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 3) | (uint64_t)(p[i] - '0');
    return v;
}

/* Bytes before the first NUL in p[0:n] (Go's parseString). */
static Py_ssize_t field_len(const unsigned char *p, Py_ssize_t n) {
    const unsigned char *nul = memchr(p, 0, (size_t)n);
    return nul ? (Py_ssize_t)(nul - p) : n;
}

/* headers.SAFE_PATH: "/"-separated segments, each non-empty and not "." or "..". The path
 * holds no NUL (both of its parts were cut at the first one). */
static int safe_path(const char *p, Py_ssize_t n) {
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '/') {
            Py_ssize_t len = i - start;
            if (len == 0) return 0;
            if (p[start] == '.' && (len == 1 || (len == 2 && p[start + 1] == '.'))) return 0;
            start = i + 1;
        }
    }
    return 1;
}

/* Is the header at h (512 bytes, in bounds) a clean regular-file header; if so, fill the slot's
 * size and path. Mirrors FAST_HEADER field by field (offsets in the comments), then the checks
 * of reader._tar steps 2, 4 and 5 (the count limit is the caller's). */
static int clean_header(const unsigned char *h, Py_ssize_t max_path, uint64_t max_size,
                        Slot *slot) {
    if (h[0] == 0) return 0;                           /* name: at least one byte */
    if (!octal_nul(h + 100, 7)) return 0;              /* mode */
    if (!octal_nul(h + 108, 7)) return 0;              /* uid */
    if (!octal_nul(h + 116, 7)) return 0;              /* gid */
    if (!octal_nul(h + 124, 11)) return 0;             /* size */
    if (!octal_nul(h + 136, 11)) return 0;             /* mtime */
    if (!octal_nul(h + 148, 6) || h[155] != ' ') return 0; /* checksum: 6 digits, NUL, space */
    if (memcmp(h + 257, "ustar\0" "00", 8) != 0) return 0; /* magic, version */
    if (!(octal_nul(h + 329, 7) && octal_nul(h + 337, 7))) { /* devmajor, devminor */
        for (int i = 329; i < 345; i++)
            if (h[i] != 0) return 0; /* ... or all 16 bytes NUL */
    }
    for (int i = 500; i < 512; i++)
        if (h[i] != 0) return 0; /* padding */

    /* Step 2: the unsigned checksum, its own field counted as 8 spaces. */
    unsigned long sum = 8 * ' ';
    for (int i = 0; i < 148; i++) sum += h[i];
    for (int i = 156; i < BLOCK; i++) sum += h[i];
    if (sum != octal_value(h + 148, 6)) return 0; /* Python raises with the details */

    /* Step 3/5: only regular files ('0', or the legacy NUL). */
    if (h[156] != '0' && h[156] != 0) return 0;

    /* Step 4: the final name, USTAR prefix applied (no meta header is pending). */
    Py_ssize_t name_len = field_len(h, MAX_NAME);
    Py_ssize_t prefix_len = field_len(h + 345, MAX_PREFIX);
    Py_ssize_t path_len = prefix_len ? prefix_len + 1 + name_len : name_len;
    if (path_len > max_path) return 0;
    if (prefix_len) {
        memcpy(slot->path, h + 345, (size_t)prefix_len);
        slot->path[prefix_len] = '/';
        memcpy(slot->path + prefix_len + 1, h, (size_t)name_len);
    } else {
        memcpy(slot->path, h, (size_t)name_len);
    }
    slot->path_len = path_len;

    /* Step 5: a safe path (UTF-8 is checked when the path is decoded) and the size limit. */
    if (!safe_path(slot->path, path_len)) return 0;
    uint64_t size = octal_value(h + 124, 11); /* < 8**11 */
    if (size > max_size || size > (uint64_t)PY_SSIZE_T_MAX / 2) return 0;
    slot->size = (Py_ssize_t)size;
    return 1;
}

static int velero_key(const char *path, Py_ssize_t len, Key *k);

/* Walk clean entries of buf[off:len] into slots (at most cap of them, and at most
 * `room` entries: max_entries less those already read). With `keys`, only entries whose path
 * is in Velero's usual layout, their keys in keys[]. Returns how many. */
static Py_ssize_t walk(const unsigned char *buf, Py_ssize_t len, Py_ssize_t off,
                       Py_ssize_t max_path, uint64_t max_size, long long room, Slot *slots,
                       Key *keys, Py_ssize_t cap) {
    Py_ssize_t n = 0;
    while (n < cap && n < room) {
        if (off < 0 || len - off < BLOCK) break; /* the header is not wholly here */
        Slot *s = &slots[n];
        if (!clean_header(buf + off, max_path, max_size, s)) break;
        if (keys != NULL && !velero_key(s->path, s->path_len, &keys[n])) break;
        Py_ssize_t data = off + BLOCK;
        Py_ssize_t padded = s->size + ((BLOCK - (s->size % BLOCK)) % BLOCK);
        if (len - data < padded) break; /* data or padding not wholly here */
        s->data = data;
        s->next = data + padded;
        off = s->next;
        n++;
    }
    return n;
}

/* -- Velero's path layout (core/table.VELERO_PATH) ---------------------------------------- */

/* A segment as _SEGMENT spells it: [A-Za-z0-9_:-][A-Za-z0-9._:-]* */
static int seg_char(char c, int first) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return 1;
    if (c == '_' || c == ':' || c == '-') return 1;
    return !first && c == '.';
}

static int segment_ok(const char *p, Py_ssize_t n) {
    if (n < 1) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!seg_char(p[i], i == 0)) return 0;
    return 1;
}

static int str_is(Str s, const char *lit) {
    size_t n = strlen(lit);
    return (size_t)s.n == n && memcmp(s.p, lit, n) == 0;
}

static int velero_key(const char *path, Py_ssize_t len, Key *k) {
    if (len >= FAST_PATH_LIMIT) return 0;
    Str part[7];
    int parts = 0;
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= len; i++) {
        if (i == len || path[i] == '/') {
            if (parts == 6) return 0; /* more than six segments */
            part[parts].p = path + start;
            part[parts].n = i - start;
            parts++;
            start = i + 1;
        }
    }
    if (parts < 4 || !str_is(part[0], "resources")) return 0;
    /* The last segment is <name>.json, the name a segment. */
    Str last = part[parts - 1];
    if (last.n < 5 || memcmp(last.p + last.n - 5, ".json", 5) != 0) return 0;
    last.n -= 5;
    for (int i = 1; i < parts - 1; i++)
        if (!segment_ok(part[i].p, part[i].n)) return 0;
    if (!segment_ok(last.p, last.n)) return 0;
    k->gr = part[1];
    k->ver.p = "";
    k->ver.n = 0;
    int i = 2;
    /* An optional version directory, never "cluster" or "namespaces" ((?!cluster/|namespaces/)):
     * taken when what follows it still fits one of the two scopes. */
    if (!str_is(part[2], "cluster") && !str_is(part[2], "namespaces")) {
        k->ver = part[2];
        i = 3;
    }
    int left = parts - i; /* segments from the scope on */
    static const char cluster[] = "cluster", namespaces[] = "namespaces";
    if (left == 2 && str_is(part[i], cluster)) {
        k->cluster = 1;
        k->scope.p = cluster;
        k->scope.n = 7;
        k->name = last;
        if (str_is(k->gr, "namespaces")) { /* a Namespace object: its own namespace's run */
            k->ns = last;
        } else {
            k->ns.p = "";
            k->ns.n = 0;
        }
        return 1;
    }
    if (left == 3 && str_is(part[i], namespaces)) {
        k->cluster = 0;
        k->scope.p = namespaces;
        k->scope.n = 10;
        k->ns = part[i + 1];
        k->name = last;
        return 1;
    }
    return 0;
}

/* -- the Walker type ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Py_ssize_t max_path;
    uint64_t max_size;
    long long max_entries;
    PyObject *leaves; /* list, or NULL: where seal() appends sortable leaves */
    PyObject *hash;   /* a blake3.blake3 object (reused: digest_of), or NULL */
    PyObject *decode; /* the manifest decoder, or None/NULL for no manifest check */
    /* The previous hashed entry's data (a strong reference to its buffer) and digest. */
    PyObject *prev_buf;
    Py_ssize_t prev_off, prev_len;
    unsigned char prev_digest[DIGEST];
    Slot *slots;
    Key *keys; /* the keys of the slots, for seal() */
} Walker;

static PyObject *s_digest, *s_update, *s_reset, *s_metadata, *s_name, *s_namespace;

static void Walker_dealloc(Walker *self) {
    Py_XDECREF(self->leaves);
    Py_XDECREF(self->hash);
    Py_XDECREF(self->decode);
    Py_XDECREF(self->prev_buf);
    PyMem_Free(self->slots);
    PyMem_Free(self->keys);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Walker_init(Walker *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_entries", "max_path_length", "max_entry_size",
                             "leaves",      "hash",            "decode",         NULL};
    long long max_entries, max_path, max_size;
    PyObject *leaves = NULL, *hash = NULL, *decode = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "LLL|$OOO", kwlist, &max_entries, &max_path,
                                     &max_size, &leaves, &hash, &decode))
        return -1;
    if (max_entries < 0 || max_path < 0 || max_size < 0) {
        PyErr_SetString(PyExc_ValueError, "limits must not be negative");
        return -1;
    }
    if (leaves == Py_None) leaves = NULL;
    if (hash == Py_None) hash = NULL;
    if (decode == Py_None) decode = NULL;
    if (leaves && !PyList_Check(leaves)) {
        PyErr_SetString(PyExc_TypeError, "leaves must be a list");
        return -1;
    }
    if ((leaves == NULL) != (hash == NULL)) {
        PyErr_SetString(PyExc_TypeError, "seal() needs both leaves and hash");
        return -1;
    }
    self->max_entries = max_entries;
    self->max_path = (Py_ssize_t)(max_path < MAX_PATH ? max_path : MAX_PATH);
    self->max_size = (uint64_t)max_size;
    Py_XINCREF(leaves);
    Py_XSETREF(self->leaves, leaves);
    PyObject *hasher = NULL; /* one blake3 object for the whole run (digest_of) */
    if (hash != NULL && (hasher = PyObject_CallNoArgs(hash)) == NULL) return -1;
    Py_XSETREF(self->hash, hasher);
    Py_XINCREF(decode);
    Py_XSETREF(self->decode, decode);
    Py_CLEAR(self->prev_buf);
    if (self->slots == NULL) self->slots = PyMem_Malloc(sizeof(Slot) * BATCH);
    if (self->keys == NULL) self->keys = PyMem_Malloc(sizeof(Key) * BATCH);
    if (self->slots == NULL || self->keys == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Walk the next batch from off without the GIL. Batches grow from 8 to BATCH entries within
 * one call, so a run that stops early (a meta header, a manifest Python must look at) never
 * walked more than about twice what it used. */
static Py_ssize_t walk_batch(Walker *self, PyObject *buf, Py_ssize_t off, long long count,
                             Py_ssize_t cap, int velero) {
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t len = PyBytes_GET_SIZE(buf);
    long long room = self->max_entries - count;
    Py_ssize_t n;
    Key *keys = velero ? self->keys : NULL;
    Py_BEGIN_ALLOW_THREADS
    n = walk(p, len, off, self->max_path, self->max_size, room, self->slots, keys, cap);
    Py_END_ALLOW_THREADS
    return n;
}

static int parse_run(Walker *self, PyObject *args, PyObject **buf, Py_ssize_t *off,
                     long long *count) {
    if (!PyArg_ParseTuple(args, "O!nL", &PyBytes_Type, buf, off, count)) return -1;
    if (self->slots == NULL || self->keys == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Walker not initialised");
        return -1;
    }
    if (*off < 0 || *off > PyBytes_GET_SIZE(*buf) || *count < 0) {
        PyErr_SetString(PyExc_ValueError, "offset or count out of range");
        return -1;
    }
    return 0;
}

/* entries(buf, off, count) -> (list of (path, data, None), off, count): the clean entries from
 * buf[off], as ArchiveReader.tuples() yields them; off and count past the last one. */
static PyObject *Walker_entries(Walker *self, PyObject *args) {
    PyObject *buf;
    Py_ssize_t off;
    long long count;
    if (parse_run(self, args, &buf, &off, &count) < 0) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    const char *p = PyBytes_AS_STRING(buf);
    for (Py_ssize_t cap = 8;; cap = cap < BATCH ? cap * 2 : BATCH) {
        Py_ssize_t n = walk_batch(self, buf, off, count, cap, 0);
        for (Py_ssize_t i = 0; i < n; i++) {
            Slot *s = &self->slots[i];
            PyObject *path = PyUnicode_DecodeUTF8(s->path, s->path_len, NULL); /* strict */
            if (path == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) goto error;
                PyErr_Clear(); /* not UTF-8: the reader reports it */
                goto done;
            }
            PyObject *data = PyBytes_FromStringAndSize(p + s->data, s->size);
            if (data == NULL) {
                Py_DECREF(path);
                goto error;
            }
            PyObject *item = PyTuple_Pack(3, path, data, Py_None);
            Py_DECREF(path);
            Py_DECREF(data);
            if (item == NULL) goto error;
            int r = PyList_Append(out, item);
            Py_DECREF(item);
            if (r < 0) goto error;
            off = s->next;
            count++;
        }
        if (n < cap) break;
    }
done:
    return Py_BuildValue("(NnL)", out, off, count);
error:
    Py_DECREF(out);
    return NULL;
}

/* A read-only view of buf's bytes [start, start+len) for one call; NULL with an exception. */
static PyObject *view_of(const char *p, Py_ssize_t len) {
    return PyMemoryView_FromMemory((char *)p, len, PyBUF_READ);
}

/* Drop a view made by view_of. It points into a buffer only the caller keeps alive: if the
 * callee kept a reference to it, fail rather than leave it dangling. */
static int drop_view(PyObject *view) {
    if (view == NULL) return 0;
    if (Py_REFCNT(view) != 1) {
        PyObject *r = PyObject_CallMethod(view, "release", NULL);
        Py_XDECREF(r);
        Py_DECREF(view);
        if (r == NULL) return -1;
        PyErr_SetString(PyExc_RuntimeError, "a callee kept a view of the tar buffer");
        return -1;
    }
    Py_DECREF(view);
    return 0;
}

/* BLAKE3-256 of `view` through `hasher`, one blake3 object (the blake3 package) made once
   per run and reused: hasher.update(view), hasher.digest() (checked to be 32 bytes, copied to
   `out`), hasher.reset(). A new object per input, hash(view).digest(), cost about 0.35 us more
   (measured on 768-byte inputs: 1.36 against 0.98 us), most of hashing a small manifest, a
   record or a tree node (issue 23). 0, or -1 with an exception. The one call into blake3. */
static int digest_of(PyObject *hasher, PyObject *view, unsigned char *out) {
    PyObject *r = PyObject_CallMethodOneArg(hasher, s_update, view);
    PyObject *d = r != NULL ? PyObject_CallMethodNoArgs(hasher, s_digest) : NULL;
    Py_XDECREF(r);
    /* reset whatever happened: the next input starts from an empty state */
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *z = PyObject_CallMethodNoArgs(hasher, s_reset);
    if (exc_type != NULL) {
        Py_XDECREF(z);
        PyErr_Restore(exc_type, exc_value, exc_tb);
        Py_XDECREF(d);
        return -1;
    }
    if (z == NULL) {
        Py_XDECREF(d);
        return -1;
    }
    Py_DECREF(z);
    if (!PyBytes_Check(d) || PyBytes_GET_SIZE(d) != DIGEST) {
        Py_DECREF(d);
        PyErr_SetString(PyExc_TypeError, "hash().digest() must be 32 bytes");
        return -1;
    }
    memcpy(out, PyBytes_AS_STRING(d), DIGEST);
    Py_DECREF(d);
    return 0;
}

/* BLAKE3-256 of the view through the walker's hash; 0, or -1 with an exception. */
static int hash_view(Walker *self, PyObject *view, unsigned char *digest) {
    return digest_of(self->hash, view, digest);
}

static int ascii_equal(PyObject *s, Str want) {
    if (!PyUnicode_CheckExact(s)) return 0;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) {
        PyErr_Clear();
        return 0;
    }
#endif
    return PyUnicode_IS_ASCII(s) && PyUnicode_GET_LENGTH(s) == want.n &&
           memcmp(PyUnicode_DATA(s), want.p, (size_t)want.n) == 0;
}

/* Does the manifest plainly agree with its path (consistency.check_manifest returning None)?
 * 1 yes; 0 "ask Python" (any error, odd type or disagreement: the reference then decides);
 * -1 with a BaseException that is not an Exception. */
static int manifest_agrees(Walker *self, PyObject *view, const Key *k) {
    int ok = 0;
    PyObject *meta = NULL, *name = NULL, *ns = NULL;
    PyObject *m = PyObject_CallOneArg(self->decode, view);
    if (m == NULL) goto out;
    meta = PyObject_GetAttr(m, s_metadata);
    if (meta == NULL || meta == Py_None) goto out;
    name = PyObject_GetAttr(meta, s_name);
    if (name == NULL || !ascii_equal(name, k->name)) goto out;
    ns = PyObject_GetAttr(meta, s_namespace);
    if (ns == NULL) goto out;
    Str expected = k->cluster ? (Str){"", 0} : k->ns;
    ok = ns == Py_None ? expected.n == 0 : ascii_equal(ns, expected);
out:
    Py_XDECREF(m);
    Py_XDECREF(meta);
    Py_XDECREF(name);
    Py_XDECREF(ns);
    if (PyErr_Occurred()) {
        /* An ordinary exception means "ask Python" (check_manifest then says what it is);
         * anything else (KeyboardInterrupt, SystemExit) goes on up. */
        if (!PyErr_ExceptionMatches(PyExc_Exception)) return -1;
        PyErr_Clear();
    }
    return ok;
}

static int ends_with(Str s, const char *lit) {
    size_t n = strlen(lit);
    return (size_t)s.n >= n && memcmp(s.p + s.n - n, lit, n) == 0;
}

/* The compact sortable leaf of core/table.tar_leaf_and_key:
 * ns \0 gr \0 scope \0 name \0 ver \0 ‖ u64be(size) ‖ digest ‖ u16be(len(sort key)). */
static PyObject *compact_leaf(const Key *k, uint64_t size, const unsigned char *digest) {
    const Str *f[5] = {&k->ns, &k->gr, &k->scope, &k->name, &k->ver};
    Py_ssize_t klen = 0;
    for (int i = 0; i < 5; i++) klen += f[i]->n + 1;
    /* klen < FAST_PATH_LIMIT + 5 (every field but the scope is part of the path) */
    PyObject *leaf = PyBytes_FromStringAndSize(NULL, klen + 8 + DIGEST + 2);
    if (leaf == NULL) return NULL;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(leaf);
    for (int i = 0; i < 5; i++) {
        memcpy(w, f[i]->p, (size_t)f[i]->n);
        w += f[i]->n;
        *w++ = 0;
    }
    for (int i = 7; i >= 0; i--) *w++ = (unsigned char)(size >> (8 * i));
    memcpy(w, digest, DIGEST);
    w += DIGEST;
    *w++ = (unsigned char)(klen >> 8);
    *w++ = (unsigned char)klen;
    return leaf;
}

/* seal(buf, off, count) -> (off, count): builder.hash_tarball's loop body for the clean entries
 * from buf[off] whose path is in Velero's usual layout and whose manifest agrees with it; their
 * sortable leaves appended to `leaves`. Stops before the first entry it does not take. */
static PyObject *Walker_seal(Walker *self, PyObject *args) {
    PyObject *buf;
    Py_ssize_t off;
    long long count;
    if (parse_run(self, args, &buf, &off, &count) < 0) return NULL;
    if (self->leaves == NULL) {
        PyErr_SetString(PyExc_TypeError, "this Walker has no leaves list: use entries()");
        return NULL;
    }
    const char *p = PyBytes_AS_STRING(buf);
    for (Py_ssize_t cap = 8;; cap = cap < BATCH ? cap * 2 : BATCH) {
        Py_ssize_t n = walk_batch(self, buf, off, count, cap, 1);
        for (Py_ssize_t i = 0; i < n; i++) {
            Slot *s = &self->slots[i];
            const Key *k = &self->keys[i];
            const char *data = p + s->data;
            PyObject *view = NULL;
            unsigned char digest[DIGEST];
            /* Velero writes each -preferredversion copy right after its classic copy, with
             * the same bytes: compare before hashing again (as hash_tarball does). */
            if (self->prev_buf != NULL && self->prev_len == s->size &&
                memcmp(PyBytes_AS_STRING(self->prev_buf) + self->prev_off, data,
                       (size_t)s->size) == 0) {
                memcpy(digest, self->prev_digest, DIGEST);
            } else {
                view = view_of(data, s->size);
                if (view == NULL) return NULL;
                if (hash_view(self, view, digest) < 0) {
                    drop_view(view);
                    return NULL;
                }
                Py_INCREF(buf);
                Py_XSETREF(self->prev_buf, buf);
                self->prev_off = s->data;
                self->prev_len = s->size;
                memcpy(self->prev_digest, digest, DIGEST);
            }
            if (self->decode != NULL && !ends_with(k->ver, PREFERRED_SUFFIX)) {
                if (view == NULL && (view = view_of(data, s->size)) == NULL) return NULL;
                int agrees = manifest_agrees(self, view, k);
                if (drop_view(view) < 0 || agrees < 0) return NULL;
                view = NULL;
                if (!agrees) goto done; /* Python redoes this entry and reports it */
            }
            if (drop_view(view) < 0) return NULL;
            PyObject *leaf = compact_leaf(k, (uint64_t)s->size, digest);
            if (leaf == NULL) return NULL;
            int r = PyList_Append(self->leaves, leaf);
            Py_DECREF(leaf);
            if (r < 0) return NULL;
            off = s->next;
            count++;
        }
        if (n < cap) break;
    }
done:
    return Py_BuildValue("(nL)", off, count);
}

/* -- the sorted leaf table: records, copies, leaf hashes and root --------------------------- */

/* BLAKE3-256 of p[0:n] through `hash` (the blake3 package); 0, or -1 with an exception. */
static int hash_bytes(PyObject *hash, const unsigned char *p, Py_ssize_t n, unsigned char *out) {
    PyObject *view = view_of((const char *)p, n);
    if (view == NULL) return -1;
    int rc = digest_of(hash, view, out);
    if (drop_view(view) < 0) return -1;
    return rc;
}

/* core/tree.RootBuilder: the roots of the perfect subtrees so far, largest first. */
typedef struct {
    int depth;
    uint64_t count[64];
    unsigned char node[64][DIGEST];
    uint64_t size;
} Root;

static int node_hash(PyObject *hash, const unsigned char *left, const unsigned char *right,
                     unsigned char *out) {
    unsigned char in[1 + 2 * DIGEST];
    in[0] = 0x01; /* tree.NODE_PREFIX */
    memcpy(in + 1, left, DIGEST);
    memcpy(in + 1 + DIGEST, right, DIGEST);
    return hash_bytes(hash, in, sizeof in, out);
}

static int root_add(Root *r, PyObject *hash, const unsigned char *leaf_hash) {
    uint64_t count = 1;
    unsigned char node[DIGEST];
    memcpy(node, leaf_hash, DIGEST);
    while (r->depth > 0 && r->count[r->depth - 1] == count) {
        r->depth--;
        if (node_hash(hash, r->node[r->depth], node, node) < 0) return -1;
        count += count;
    }
    if (r->depth >= 64) { /* 2**64 leaves: unreachable (a list holds fewer) */
        PyErr_SetString(PyExc_OverflowError, "tree too large");
        return -1;
    }
    r->count[r->depth] = count;
    memcpy(r->node[r->depth], node, DIGEST);
    r->depth++;
    r->size++;
    return 0;
}

static PyObject *root_value(Root *r, PyObject *hash) {
    unsigned char node[DIGEST];
    if (r->depth == 0) {
        if (hash_bytes(hash, (const unsigned char *)"", 0, node) < 0) return NULL;
    } else {
        memcpy(node, r->node[r->depth - 1], DIGEST);
        for (int i = r->depth - 2; i >= 0; i--)
            if (node_hash(hash, r->node[i], node, node) < 0) return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)node, DIGEST);
}

#define TAIL (8 + DIGEST) /* u64be(size) ‖ H(content): the end of every record */
#define OUT_CHUNK (1 << 20)

/* The record of a compact sortable leaf (core/table._rebuild_record), written at w (room for
 * 1 + 6 * 257 + TAIL bytes), behind a 0x00 leaf prefix: returns the record's length, or -1 when
 * the key is not one the fast path makes (a bug: the caller raises). */
static Py_ssize_t rebuild_record(const unsigned char *key, Py_ssize_t klen,
                                 const unsigned char *tail, unsigned char *w) {
    Str f[5];
    int nf = 0;
    Py_ssize_t start = 0;
    if (klen < 1 || key[klen - 1] != 0) return -1;
    for (Py_ssize_t i = 0; i < klen - 1 && nf < 5; i++) {
        if (key[i] == 0) {
            f[nf].p = (const char *)key + start;
            f[nf].n = i - start;
            nf++;
            start = i + 1;
        }
    }
    if (nf != 4) return -1;
    f[4].p = (const char *)key + start;
    f[4].n = klen - 1 - start;
    for (int i = 0; i < 5; i++)
        if (f[i].n > 255 || memchr(f[i].p, 0, (size_t)f[i].n) != NULL) return -1;
    /* the path: resources/<gr>/[<ver>/](cluster/<name>|namespaces/<ns>/<name>).json */
    char path[6 * 256 + 32];
    Py_ssize_t pn = 0;
#define PUT(src, len)                                  \
    do {                                               \
        memcpy(path + pn, (src), (size_t)(len));       \
        pn += (len);                                   \
    } while (0)
    PUT("resources/", 10);
    PUT(f[1].p, f[1].n);
    PUT("/", 1);
    if (f[4].n) {
        PUT(f[4].p, f[4].n);
        PUT("/", 1);
    }
    if (str_is(f[2], "cluster")) {
        PUT("cluster/", 8);
    } else {
        PUT("namespaces/", 11);
        PUT(f[0].p, f[0].n);
        PUT("/", 1);
    }
    PUT(f[3].p, f[3].n);
    PUT(".json", 5);
#undef PUT
    if (pn > 255) return -1;
    unsigned char *start_w = w;
    for (int i = 0; i < 5; i++) {
        *w++ = 0;
        *w++ = (unsigned char)f[i].n;
        memcpy(w, f[i].p, (size_t)f[i].n);
        w += f[i].n;
    }
    *w++ = 0;
    *w++ = (unsigned char)pn;
    memcpy(w, path, (size_t)pn);
    w += pn;
    memcpy(w, tail, TAIL);
    w += TAIL;
    return w - start_w;
}

static int flush_out(PyObject *write, unsigned char *out, Py_ssize_t *used) {
    if (*used == 0) return 0;
    PyObject *chunk = PyBytes_FromStringAndSize((const char *)out, *used);
    if (chunk == NULL) return -1;
    PyObject *r = PyObject_CallOneArg(write, chunk);
    Py_DECREF(chunk);
    if (r == NULL) return -1;
    Py_DECREF(r);
    *used = 0;
    return 0;
}

static int ends_with_bytes(const unsigned char *p, Py_ssize_t n, const char *lit) {
    size_t m = strlen(lit);
    return (size_t)n >= m && memcmp(p + n - m, lit, m) == 0;
}

/* write_records(items, found, write, hash) -> (root, count) | (None, record)
 *
 * builder._write_records over a list of sortable leaves already sorted: each leaf's record
 * (rebuilt where compact), framed as a msgpack bin, written through write() in chunks, hashed
 * as 0x00 ‖ record into the root (core/tree.RootBuilder); each item set to None once used.
 * Two leaves with one key: stops and returns (None, the second one's record). With `found` a
 * list, table.CopyChecker's findings are appended as (record, classic record or None). */
static PyObject *write_records(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *items, *found, *write, *hash;
    if (!PyArg_ParseTuple(args, "O!OOO", &PyList_Type, &items, &found, &write, &hash))
        return NULL;
    if (found == Py_None) found = NULL;
    if (found != NULL && !PyList_Check(found)) {
        PyErr_SetString(PyExc_TypeError, "found must be a list or None");
        return NULL;
    }
    hash = PyObject_CallNoArgs(hash); /* one blake3 object for the pass (digest_of) */
    if (hash == NULL) return NULL;
    Root *root = PyMem_Calloc(1, sizeof(Root));
    unsigned char *out = PyMem_Malloc(OUT_CHUNK);
    /* one record behind its 0x00 prefix: at most a 65535-byte payload (the sort key's length
     * prefix bounds the item, and a record is the rest of it), or a rebuilt record */
    Py_ssize_t rec_cap = 1 + 0xFFFF + 6 * 257 + TAIL;
    unsigned char *rec = PyMem_Malloc((size_t)rec_cap);
    PyObject *prev_key = NULL, *twin_key = NULL, *twin = NULL, *result = NULL, *cur = NULL;
    unsigned char twin_tail[TAIL];
    Py_ssize_t used = 0;
    if (root == NULL || out == NULL || rec == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        Py_INCREF(item);
        Py_XSETREF(cur, item); /* held for the iteration: p points into it */
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "items must be bytes");
            goto done;
        }
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(item);
        Py_ssize_t n = PyBytes_GET_SIZE(item);
        Py_ssize_t k = n >= 2 ? ((Py_ssize_t)p[n - 2] << 8) | p[n - 1] : -1;
        if (k < 1 || k > n - 2 || p[k - 1] != 0) {
            PyErr_SetString(PyExc_ValueError, "not a sortable leaf");
            goto done;
        }
        Py_ssize_t payload = n - 2 - k;
        Py_ssize_t rn;
        rec[0] = 0x00; /* tree.LEAF_PREFIX */
        if (payload == TAIL) { /* compact: only u64be(size) ‖ H(content) was kept */
            rn = rebuild_record(p, k, p + k, rec + 1);
            if (rn < 0) {
                PyErr_SetString(PyExc_ValueError, "compact leaf with a key the fast path never makes");
                goto done;
            }
        } else {
            if (payload < TAIL) {
                PyErr_SetString(PyExc_ValueError, "leaf record of an impossible length");
                goto done;
            }
            if (payload > rec_cap - 1) { /* a long path: grow the record buffer */
                unsigned char *bigger = PyMem_Realloc(rec, (size_t)payload + 1);
                if (bigger == NULL) {
                    PyErr_NoMemory();
                    goto done;
                }
                rec = bigger;
                rec_cap = payload + 1;
                rec[0] = 0x00;
            }
            memcpy(rec + 1, p + k, (size_t)payload);
            rn = payload;
        }
        const unsigned char *record = rec + 1;
        const unsigned char *tail = record + rn - TAIL;
        /* §3.2: two leaves with one key (table.DuplicateKey, raised by the caller) */
        if (prev_key != NULL && PyBytes_GET_SIZE(prev_key) == k &&
            memcmp(PyBytes_AS_STRING(prev_key), p, (size_t)k) == 0) {
            result = Py_BuildValue("(Oy#)", Py_None, (const char *)record, rn);
            goto done;
        }
        PyObject *key = PyBytes_FromStringAndSize((const char *)p, k);
        if (key == NULL) goto done;
        Py_XSETREF(prev_key, key);
        /* table.CopyChecker.check(key[:-1], tail, record); kn: the key without its NUL */
        Py_ssize_t kn = k - 1;
        if (found != NULL && !(kn >= 2 && p[0] == 0 && p[1] == 0)) {
            if (kn >= 1 && p[kn - 1] == 0) { /* version "": a classic copy */
                PyObject *t = PyBytes_FromStringAndSize((const char *)record, rn);
                if (t == NULL) goto done;
                Py_XSETREF(twin, t);
                Py_INCREF(key);
                Py_XSETREF(twin_key, key);
                memcpy(twin_tail, tail, TAIL);
            } else if (ends_with_bytes(p, kn, PREFERRED_SUFFIX)) {
                Py_ssize_t last = kn - 1; /* key.rindex(b"\0"): there are four NULs */
                while (last >= 0 && p[last] != 0) last--;
                /* the classic copy's id is its key without the terminator: twin_key[:-1] */
                int same_item = twin_key != NULL && last >= 0 &&
                                PyBytes_GET_SIZE(twin_key) - 1 == last + 1 &&
                                memcmp(PyBytes_AS_STRING(twin_key), p, (size_t)(last + 1)) == 0;
                PyObject *finding = NULL;
                if (!same_item) {
                    finding = Py_BuildValue("(y#O)", (const char *)record, rn, Py_None);
                } else if (memcmp(twin_tail, tail, TAIL) != 0) {
                    finding = Py_BuildValue("(y#O)", (const char *)record, rn, twin);
                }
                if (finding == NULL && PyErr_Occurred()) goto done;
                if (finding != NULL) {
                    int r = PyList_Append(found, finding);
                    Py_DECREF(finding);
                    if (r < 0) goto done;
                }
            }
        }
        /* H(0x00 ‖ record) into the root (docs/format.md §4.2) */
        unsigned char leaf_hash[DIGEST];
        if (hash_bytes(hash, rec, rn + 1, leaf_hash) < 0) goto done;
        if (root_add(root, hash, leaf_hash) < 0) goto done;
        /* the frame (formats/seal.leaf_frame: a msgpack bin header) and the record */
        if (used + 5 + rn > OUT_CHUNK && flush_out(write, out, &used) < 0) goto done;
        unsigned char frame[5];
        Py_ssize_t fn = 0;
        if (rn < 0x100) {
            frame[fn++] = 0xC4;
            frame[fn++] = (unsigned char)rn;
        } else if (rn < 0x10000) {
            frame[fn++] = 0xC5;
            frame[fn++] = (unsigned char)(rn >> 8);
            frame[fn++] = (unsigned char)rn;
        } else {
            frame[fn++] = 0xC6;
            for (int b = 3; b >= 0; b--) frame[fn++] = (unsigned char)(rn >> (8 * b));
        }
        if (fn + rn > OUT_CHUNK) { /* larger than a chunk: written on its own (used is 0) */
            PyObject *big = PyBytes_FromStringAndSize(NULL, fn + rn);
            if (big == NULL) goto done;
            memcpy(PyBytes_AS_STRING(big), frame, (size_t)fn);
            memcpy(PyBytes_AS_STRING(big) + fn, record, (size_t)rn);
            PyObject *r = PyObject_CallOneArg(write, big);
            Py_DECREF(big);
            if (r == NULL) goto done;
            Py_DECREF(r);
        } else {
            memcpy(out + used, frame, (size_t)fn);
            used += fn;
            memcpy(out + used, record, (size_t)rn);
            used += rn;
        }
        /* drop the item, as table.drain_sorted does: the table is never held twice */
        Py_INCREF(Py_None);
        if (PyList_SetItem(items, i, Py_None) < 0) goto done; /* the list's reference */
    }
    if (flush_out(write, out, &used) < 0) goto done;
    PyObject *value = root_value(root, hash);
    if (value == NULL) goto done;
    result = Py_BuildValue("(NK)", value, (unsigned long long)root->size);
done:
    Py_DECREF(hash);
    Py_XDECREF(cur);
    Py_XDECREF(prev_key);
    Py_XDECREF(twin_key);
    Py_XDECREF(twin);
    PyMem_Free(root);
    PyMem_Free(out);
    PyMem_Free(rec);
    return result;
}

/* -- the verifier's leaf-table pass (trust._TablePass._records, docs/format.md §9.1 steps 4-5) -- */

/* The fast path of table.check_record: the compact sortable leaf of a record whose path is in
 * Velero's usual layout and whose every byte equals the record the sealer makes for that path
 * (the record rebuilt from the path's key, as write_records rebuilds it); NULL with no
 * exception when the record is anything else (Python decodes it with the reference), NULL
 * with an exception on a memory error. */
static PyObject *fast_item(const unsigned char *r, Py_ssize_t n) {
    Py_ssize_t end = n - TAIL;
    if (end < 2) return NULL;
    /* table.fast_path_of: the last NUL before the tail is the path's high length byte */
    Py_ssize_t j = end - 1;
    while (j >= 0 && r[j] != 0) j--;
    if (j < 0 || j + 2 > end || r[j + 1] != end - j - 2) return NULL;
    const char *path = (const char *)r + j + 2;
    Py_ssize_t path_len = end - j - 2;
    Key k;
    if (!velero_key(path, path_len, &k)) return NULL; /* ASCII, < FAST_PATH_LIMIT, the layout */
    const unsigned char *tail = r + end;
    uint64_t size = 0;
    for (int i = 0; i < 8; i++) size = (size << 8) | tail[i];
    PyObject *item = compact_leaf(&k, size, tail + 8);
    if (item == NULL) return NULL;
    /* the record the sealer writes for this key (rebuild_record), byte for byte */
    const unsigned char *ip = (const unsigned char *)PyBytes_AS_STRING(item);
    Py_ssize_t in = PyBytes_GET_SIZE(item);
    Py_ssize_t klen = ((Py_ssize_t)ip[in - 2] << 8) | ip[in - 1];
    unsigned char rebuilt[1 + 6 * 257 + TAIL];
    Py_ssize_t rn = rebuild_record(ip, klen, tail, rebuilt);
    if (rn != n || memcmp(rebuilt, r, (size_t)n) != 0) {
        Py_DECREF(item);
        return NULL;
    }
    return item;
}

typedef struct {
    PyObject_HEAD
    PyObject *hash;
    Root *root;
} LeafPass;

static void LeafPass_dealloc(LeafPass *self) {
    Py_XDECREF(self->hash);
    PyMem_Free(self->root);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int LeafPass_init(LeafPass *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"hash", NULL};
    PyObject *hash;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O", kwlist, &hash)) return -1;
    PyObject *hasher = PyObject_CallNoArgs(hash); /* one blake3 object (digest_of) */
    if (hasher == NULL) return -1;
    Py_XSETREF(self->hash, hasher);
    PyMem_Free(self->root);
    self->root = PyMem_Calloc(1, sizeof(Root));
    if (self->root == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* records(records, check) -> (items, slow): every record hashed as 0x00 ‖ record into the
 * root, in order (docs/format.md §4.2); with check true, items[i] is the record's sortable
 * leaf where the fast path is sure of it and None where Python must decode it (its index in
 * slow). With check false only the hashing (after an invalid record: the root comes first). */
static PyObject *LeafPass_records(LeafPass *self, PyObject *args) {
    PyObject *records;
    int check;
    if (!PyArg_ParseTuple(args, "O!p", &PyList_Type, &records, &check)) return NULL;
    if (self->root == NULL || self->hash == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "LeafPass not initialised");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(records);
    PyObject *items = PyList_New(check ? count : 0);
    PyObject *slow = PyList_New(0);
    unsigned char *buf = NULL;
    Py_ssize_t cap = 0;
    if (items == NULL || slow == NULL) goto error;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records) && i < count; i++) {
        PyObject *rec = PyList_GET_ITEM(records, i);
        if (!PyBytes_Check(rec)) {
            PyErr_SetString(PyExc_TypeError, "records must be bytes");
            goto error;
        }
        Py_INCREF(rec); /* held while its bytes are read (the hash call runs Python) */
        const unsigned char *r = (const unsigned char *)PyBytes_AS_STRING(rec);
        Py_ssize_t n = PyBytes_GET_SIZE(rec);
        if (n + 1 > cap) {
            unsigned char *bigger = PyMem_Realloc(buf, (size_t)(n + 1));
            if (bigger == NULL) {
                Py_DECREF(rec);
                PyErr_NoMemory();
                goto error;
            }
            buf = bigger;
            cap = n + 1;
        }
        buf[0] = 0x00; /* tree.LEAF_PREFIX */
        memcpy(buf + 1, r, (size_t)n);
        unsigned char leaf_hash[DIGEST];
        if (hash_bytes(self->hash, buf, n + 1, leaf_hash) < 0 ||
            root_add(self->root, self->hash, leaf_hash) < 0) {
            Py_DECREF(rec);
            goto error;
        }
        if (check) {
            PyObject *item = fast_item(r, n);
            if (item == NULL) {
                if (PyErr_Occurred()) {
                    Py_DECREF(rec);
                    goto error;
                }
                PyObject *index = PyLong_FromSsize_t(i);
                if (index == NULL || PyList_Append(slow, index) < 0) {
                    Py_XDECREF(index);
                    Py_DECREF(rec);
                    goto error;
                }
                Py_DECREF(index);
                Py_INCREF(Py_None);
                item = Py_None;
            }
            PyList_SET_ITEM(items, i, item);
        }
        Py_DECREF(rec);
    }
    PyMem_Free(buf);
    return Py_BuildValue("(NN)", items, slow);
error:
    PyMem_Free(buf);
    Py_XDECREF(items);
    Py_XDECREF(slow);
    return NULL;
}

/* root() -> (root, count): the RFC 9162 root of every record hashed so far (tree.RootBuilder) */
static PyObject *LeafPass_root(LeafPass *self, PyObject *unused) {
    (void)unused;
    if (self->root == NULL || self->hash == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "LeafPass not initialised");
        return NULL;
    }
    PyObject *value = root_value(self->root, self->hash);
    if (value == NULL) return NULL;
    return Py_BuildValue("(NK)", value, (unsigned long long)self->root->size);
}

static PyMethodDef LeafPass_methods[] = {
    {"records", (PyCFunction)LeafPass_records, METH_VARARGS,
     "records(records, check) -> (items, slow indices)"},
    {"root", (PyCFunction)LeafPass_root, METH_NOARGS, "root() -> (root, count)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LeafPassType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "merkle_backup.archive._engine.LeafPass",
    .tp_basicsize = sizeof(LeafPass),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "LeafPass(hash): the verifier's streaming pass over a seal's records",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)LeafPass_init,
    .tp_dealloc = (destructor)LeafPass_dealloc,
    .tp_methods = LeafPass_methods,
};

/* Compare two byte strings as Python compares bytes: -1, 0 or 1. */
static int bytes_cmp(const char *a, Py_ssize_t an, const char *b, Py_ssize_t bn) {
    int c = memcmp(a, b, (size_t)(an < bn ? an : bn));
    if (c != 0) return c < 0 ? -1 : 1;
    return an < bn ? -1 : (an > bn ? 1 : 0);
}

/* take_equal(items, taken, start, seen) -> index
 *
 * table.LeafTable.take_equal: from taken[start] on, in order, while a sortable leaf is equal,
 * byte for byte, to an item of `items` (the sorted, checked table) whose seen[] is 0, set it
 * to 1; return the index of the first leaf that is not (len(taken) when none). The verifier
 * takes that one in Python (modified, unsealed or repeated: the order of the stream decides
 * which copy is a duplicate, so nothing past it is taken here). */
static PyObject *take_equal(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *items, *taken, *seen;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "O!O!nO!", &PyList_Type, &items, &PyList_Type, &taken, &start,
                          &PyByteArray_Type, &seen))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (PyByteArray_GET_SIZE(seen) != n) {
        PyErr_SetString(PyExc_ValueError, "seen must have one byte per item");
        return NULL;
    }
    if (start < 0) start = 0;
    char *marks = PyByteArray_AS_STRING(seen);
    Py_ssize_t j = start;
    for (; j < PyList_GET_SIZE(taken); j++) {
        PyObject *leaf = PyList_GET_ITEM(taken, j);
        if (!PyBytes_Check(leaf)) {
            PyErr_SetString(PyExc_TypeError, "taken must hold bytes");
            return NULL;
        }
        const char *lp = PyBytes_AS_STRING(leaf);
        Py_ssize_t ln = PyBytes_GET_SIZE(leaf);
        Py_ssize_t lo = 0, hi = n; /* bisect_left(items, leaf) */
        while (lo < hi) {
            Py_ssize_t mid = lo + (hi - lo) / 2;
            PyObject *it = PyList_GET_ITEM(items, mid);
            if (!PyBytes_Check(it)) {
                PyErr_SetString(PyExc_TypeError, "items must be bytes");
                return NULL;
            }
            if (bytes_cmp(PyBytes_AS_STRING(it), PyBytes_GET_SIZE(it), lp, ln) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo >= n) break;
        PyObject *it = PyList_GET_ITEM(items, lo);
        if (!PyBytes_Check(it) || PyBytes_GET_SIZE(it) != ln ||
            memcmp(PyBytes_AS_STRING(it), lp, (size_t)ln) != 0 || marks[lo] != 0)
            break;
        marks[lo] = 1;
    }
    return PyLong_FromSsize_t(j);
}

/* The sort key of a sortable leaf (NUL-ended), or -1 when it is not one. */
static Py_ssize_t item_key(PyObject *item, const unsigned char **p) {
    if (!PyBytes_Check(item)) return -1;
    *p = (const unsigned char *)PyBytes_AS_STRING(item);
    Py_ssize_t n = PyBytes_GET_SIZE(item);
    if (n < 2 + TAIL) return -1;
    Py_ssize_t k = ((Py_ssize_t)(*p)[n - 2] << 8) | (*p)[n - 1];
    if (k < 1 || k > n - 2 - TAIL || (*p)[k - 1] != 0) return -1;
    return k;
}

/* table_order(items, bucket_scope, preferred_suffix) -> (bucket, copies, out_of_order)
 *
 * The rest of trust._TablePass._records over the sortable leaves of the table, in order:
 * the indices whose key's scope is bucket_scope; table.CopyChecker's findings as (index,
 * index of the classic copy it differs from, or -1 for "no classic copy"); the first index
 * whose key is not strictly greater than the one before, or -1. Keys compare with their NUL
 * terminator, which orders them as the NUL-joined components do. */
static PyObject *table_order(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *items;
    const char *bucket_scope, *preferred;
    Py_ssize_t bucket_len, preferred_len;
    if (!PyArg_ParseTuple(args, "O!y#y#", &PyList_Type, &items, &bucket_scope, &bucket_len,
                          &preferred, &preferred_len))
        return NULL;
    PyObject *bucket = PyList_New(0), *copies = PyList_New(0);
    Py_ssize_t out_of_order = -1, twin = -1;
    const unsigned char *prev = NULL, *twin_p = NULL;
    Py_ssize_t prev_k = 0, twin_k = 0;
    if (bucket == NULL || copies == NULL) goto error;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        const unsigned char *p;
        PyObject *item = PyList_GET_ITEM(items, i);
        Py_ssize_t k = item_key(item, &p);
        if (k < 0) {
            PyErr_SetString(PyExc_ValueError, "not a sortable leaf");
            goto error;
        }
        Py_ssize_t n = PyBytes_GET_SIZE(item);
        const unsigned char *tail = p + n - 2 - TAIL;
        /* §3.2: keys strictly increase (the list holds every item: prev stays alive) */
        if (prev != NULL && out_of_order < 0) {
            Py_ssize_t m = prev_k < k ? prev_k : k;
            int c = memcmp(prev, p, (size_t)m);
            if (c > 0 || (c == 0 && prev_k >= k)) out_of_order = i;
        }
        prev = p;
        prev_k = k;
        /* the scope: the third NUL-ended component */
        Py_ssize_t a = 0, field = 0;
        while (field < 2 && a < k) {
            if (p[a] == 0) field++;
            a++;
        }
        Py_ssize_t b = a;
        while (b < k && p[b] != 0) b++;
        if (field == 2 && b - a == bucket_len && memcmp(p + a, bucket_scope, (size_t)bucket_len) == 0) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(bucket, index) < 0) {
                Py_XDECREF(index);
                goto error;
            }
            Py_DECREF(index);
        }
        /* table.CopyChecker.check on the key without its terminator (kn bytes) */
        Py_ssize_t kn = k - 1;
        if (kn >= 2 && p[0] == 0 && p[1] == 0) continue; /* bucket objects, metadata/version */
        if (kn >= 1 && p[kn - 1] == 0) {                 /* version "": a classic copy */
            twin = i;
            twin_p = p;
            twin_k = kn;
            continue;
        }
        if (kn < preferred_len || memcmp(p + kn - preferred_len, preferred, (size_t)preferred_len) != 0)
            continue;
        Py_ssize_t last = kn - 1; /* key.rindex(b"\0") */
        while (last >= 0 && p[last] != 0) last--;
        Py_ssize_t other = -2; /* -2: no finding */
        if (twin < 0 || last < 0 || twin_k != last + 1 || memcmp(twin_p, p, (size_t)(last + 1)) != 0) {
            other = -1;
        } else {
            PyObject *t = PyList_GET_ITEM(items, twin);
            const unsigned char *tp = (const unsigned char *)PyBytes_AS_STRING(t);
            if (memcmp(tp + PyBytes_GET_SIZE(t) - 2 - TAIL, tail, TAIL) != 0) other = twin;
        }
        if (other != -2) {
            PyObject *finding = Py_BuildValue("(nn)", i, other);
            if (finding == NULL || PyList_Append(copies, finding) < 0) {
                Py_XDECREF(finding);
                goto error;
            }
            Py_DECREF(finding);
        }
    }
    return Py_BuildValue("(NNn)", bucket, copies, out_of_order);
error:
    Py_XDECREF(bucket);
    Py_XDECREF(copies);
    return NULL;
}

static PyMethodDef Walker_methods[] = {
    {"entries", (PyCFunction)Walker_entries, METH_VARARGS,
     "entries(buf, off, count) -> (list of (path, data, None), off, count)"},
    {"seal", (PyCFunction)Walker_seal, METH_VARARGS, "seal(buf, off, count) -> (off, count)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "merkle_backup.archive._engine.Walker",
    .tp_basicsize = sizeof(Walker),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Walker(max_entries, max_path_length, max_entry_size, *, leaves=None, hash=None, "
              "decode=None): the clean-entry fast path of the strict tar reader",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Walker_init,
    .tp_dealloc = (destructor)Walker_dealloc,
    .tp_methods = Walker_methods,
};

static PyMethodDef module_methods[] = {
    {"write_records", write_records, METH_VARARGS,
     "write_records(items, found, write, hash) -> (root, count) | (None, duplicate record)"},
    {"take_equal", take_equal, METH_VARARGS,
     "take_equal(items, taken, start, seen) -> index of the first leaf not taken"},
    {"table_order", table_order, METH_VARARGS,
     "table_order(items, bucket_scope, preferred_suffix) -> (bucket, copies, out_of_order)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef engine_module = {
    PyModuleDef_HEAD_INIT,
    .m_methods = module_methods,
    .m_name = "_engine",
    .m_doc = "The native per-entry engine (see _engine.c).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__engine(void) {
    if (PyType_Ready(&WalkerType) < 0 || PyType_Ready(&LeafPassType) < 0) return NULL;
    s_digest = PyUnicode_InternFromString("digest");
    s_update = PyUnicode_InternFromString("update");
    s_reset = PyUnicode_InternFromString("reset");
    if (!s_update || !s_reset) return NULL;
    s_metadata = PyUnicode_InternFromString("metadata");
    s_name = PyUnicode_InternFromString("name");
    s_namespace = PyUnicode_InternFromString("namespace");
    if (!s_digest || !s_metadata || !s_name || !s_namespace) return NULL;
    PyObject *m = PyModule_Create(&engine_module);
    if (m == NULL) return NULL;
    Py_INCREF(&WalkerType);
    if (PyModule_AddObject(m, "Walker", (PyObject *)&WalkerType) < 0) {
        Py_DECREF(&WalkerType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&LeafPassType);
    if (PyModule_AddObject(m, "LeafPass", (PyObject *)&LeafPassType) < 0) {
        Py_DECREF(&LeafPassType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
