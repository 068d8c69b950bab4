/*
 * flowhawk.taxi._rows: the reader's row loop in C (an optional speed-up).
 *
 * The pure-Python loop in reader.py is the reference and handles every row; this module
 * handles the common rows only and hands anything else back, so the two cannot disagree
 * on a row this module accepts (tests compare them). A row is "common" when it has no
 * double quote, the right number of commas, its two timestamps are empty or exactly
 * ``YYYY-MM-DD HH:MM:SS`` and its fare and distance are empty or plain decimals
 * (``-12.50``, ``.79``) of at most 15 significant digits between 1e-4 and 1e15, whose
 * float8 text PostgreSQL prints is then the decimal itself with its zeros trimmed.
 *
 * convert() writes, for each such line, ``<md5 hex>,<line>\n`` and appends bytes 1..8 of
 * the digest to bucket ``digest[0]`` of the caller's 256 bytearrays (duplicate counting);
 * it stops at the first line it does not accept and says where.
 *
 * The MD5 here follows RFC 1321; it is needed per row on short messages, where a call
 * into a library costs more than the hashing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* -- MD5 ------------------------------------------------------------------------------ */
static uint32_t md5_k[64];
static const unsigned char md5_shift[64] = {
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
};

static void md5_init_constants(void) {
    for (int i = 0; i < 64; i++) {
        md5_k[i] = (uint32_t)(fabs(sin((double)(i + 1))) * 4294967296.0);
    }
}

static inline uint32_t rotl32(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

static void md5_block(uint32_t h[4], const unsigned char *block) {
    uint32_t m[16];
    for (int i = 0; i < 16; i++) {
        m[i] = (uint32_t)block[4 * i] | ((uint32_t)block[4 * i + 1] << 8) |
               ((uint32_t)block[4 * i + 2] << 16) | ((uint32_t)block[4 * i + 3] << 24);
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) & 15;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) & 15;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) & 15;
        }
        f = f + a + md5_k[i] + m[g];
        a = d;
        d = c;
        c = b;
        b = b + rotl32(f, md5_shift[i]);
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

/* md5 of a message of at most 119 bytes (two blocks with the padding) */
static void md5_short(const unsigned char *msg, size_t len, unsigned char out[16]) {
    unsigned char buf[128];
    uint32_t h[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
    size_t total = len + 9 <= 64 ? 64 : 128;
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    memset(buf + len + 1, 0, total - len - 1);
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) {
        buf[total - 8 + i] = (unsigned char)(bits >> (8 * i));
    }
    md5_block(h, buf);
    if (total == 128) {
        md5_block(h, buf + 64);
    }
    for (int i = 0; i < 4; i++) {
        out[4 * i] = (unsigned char)h[i];
        out[4 * i + 1] = (unsigned char)(h[i] >> 8);
        out[4 * i + 2] = (unsigned char)(h[i] >> 16);
        out[4 * i + 3] = (unsigned char)(h[i] >> 24);
    }
}

/* -- fields --------------------------------------------------------------------------- */
#define IS_DIGIT(ch) ((unsigned char)((ch) - '0') <= 9)

/* empty, or YYYY-MM-DD HH:MM:SS with the ranges of reader.py's _DATE and _TIME */
static int timestamp_ok(const char *s, Py_ssize_t n) {
    if (n == 0) {
        return 1;
    }
    if (n != 19) {
        return 0;
    }
    for (int i = 0; i < 19; i++) {
        if (i == 4 || i == 7) {
            if (s[i] != '-') return 0;
        } else if (i == 10) {
            if (s[i] != ' ') return 0;
        } else if (i == 13 || i == 16) {
            if (s[i] != ':') return 0;
        } else if (!IS_DIGIT(s[i])) {
            return 0;
        }
    }
    int month = (s[5] - '0') * 10 + (s[6] - '0');
    int day = (s[8] - '0') * 10 + (s[9] - '0');
    int hour = (s[11] - '0') * 10 + (s[12] - '0');
    return month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour <= 23 && s[14] <= '5' &&
           s[17] <= '5';
}

/*
 * A plain decimal's float8 text into out (room for 40 bytes); its length, or -1 when the
 * field is not a plain decimal this module may convert (reader.py's number_text decides).
 */
static int number_text(const char *s, Py_ssize_t n, char *out) {
    if (n == 0) {
        return 0;
    }
    Py_ssize_t i = 0;
    int neg = 0;
    if (s[0] == '-') {
        neg = 1;
        i = 1;
    }
    Py_ssize_t int_start = i;
    while (i < n && IS_DIGIT(s[i])) i++;
    Py_ssize_t int_end = i;
    Py_ssize_t frac_start = i, frac_end = i;
    if (i < n && s[i] == '.') {
        i++;
        frac_start = i;
        while (i < n && IS_DIGIT(s[i])) i++;
        frac_end = i;
    }
    if (i != n || (int_end == int_start && frac_end == frac_start)) {
        return -1;
    }
    while (int_start < int_end && s[int_start] == '0') int_start++;
    while (frac_end > frac_start && s[frac_end - 1] == '0') frac_end--;
    Py_ssize_t int_len = int_end - int_start, frac_len = frac_end - frac_start;
    Py_ssize_t significant, first;
    if (int_len > 0) {
        significant = int_len + frac_len;
        first = int_len - 1;
    } else {
        Py_ssize_t zeros = 0;
        while (zeros < frac_len && s[frac_start + zeros] == '0') zeros++;
        significant = frac_len - zeros;
        first = -(zeros + 1);
    }
    int len = 0;
    if (neg) out[len++] = '-';
    if (significant == 0) {
        out[len++] = '0';
        return len;
    }
    if (significant > 15 || first < -4 || first >= 15) {
        return -1;
    }
    if (int_len == 0) {
        out[len++] = '0';
    } else {
        memcpy(out + len, s + int_start, (size_t)int_len);
        len += (int)int_len;
    }
    if (frac_len > 0) {
        out[len++] = '.';
        memcpy(out + len, s + frac_start, (size_t)frac_len);
        len += (int)frac_len;
    }
    return len;
}

#define MAX_COLUMNS 64
#define MAX_KEY 119

static const char hex_digits[] = "0123456789abcdef";

/*
 * convert(data, start, end, ncols, (vendor, pickup, dropoff, pu, do, fare, distance), crlf,
 *         buckets) -> (out, pos, rows)
 *
 * Lines of data[start:end] (each ended by "\n", or "\r\n" when crlf) until the first one
 * this module does not accept, which starts at pos (pos == end: all done).
 */
static PyObject *rows_convert(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end;
    int ncols, crlf;
    int iv, ip, idr, ipu, ido, ifa, idi;
    PyObject *buckets;
    if (!PyArg_ParseTuple(args, "y*nni(iiiiiii)pO!", &view, &start, &end, &ncols, &iv, &ip, &idr,
                          &ipu, &ido, &ifa, &idi, &crlf, &PyList_Type, &buckets)) {
        return NULL;
    }
    PyObject *result = NULL;
    PyObject *out = NULL;
    if (start < 0 || end > view.len || start > end || ncols < 1 || ncols > MAX_COLUMNS ||
        PyList_GET_SIZE(buckets) != 256) {
        PyErr_SetString(PyExc_ValueError, "convert: bad arguments");
        goto done;
    }
    int indices[7] = {iv, ip, idr, ipu, ido, ifa, idi};
    for (int k = 0; k < 7; k++) {
        if (indices[k] < 0 || indices[k] >= ncols) {
            PyErr_SetString(PyExc_ValueError, "convert: column index out of range");
            goto done;
        }
    }
    for (int k = 0; k < 256; k++) {
        if (!PyByteArray_Check(PyList_GET_ITEM(buckets, k))) {
            PyErr_SetString(PyExc_TypeError, "convert: buckets must be bytearrays");
            goto done;
        }
    }
    const char *data = (const char *)view.buf;
    /* every line grows by 33 bytes (id and comma) and keeps at most its line end */
    Py_ssize_t lines = 0;
    for (const char *q = data + start; q < data + end;) {
        const char *nl = memchr(q, '\n', (size_t)(data + end - q));
        if (nl == NULL) break;
        lines++;
        q = nl + 1;
    }
    out = PyBytes_FromStringAndSize(NULL, (end - start) + 33 * lines);
    if (out == NULL) goto done;
    char *w = PyBytes_AS_STRING(out);
    char *w0 = w;
    Py_ssize_t pos = start, rows = 0;
    const char *fs[MAX_COLUMNS];
    Py_ssize_t fl[MAX_COLUMNS];
    unsigned char key[MAX_KEY + 1];
    char fare[40], dist[40];
    while (pos < end) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', (size_t)(end - pos));
        if (nl == NULL) break;
        const char *stop = nl;
        if (crlf) {
            if (nl == line || nl[-1] != '\r') break;
            stop = nl - 1;
        }
        Py_ssize_t len = stop - line;
        if (memchr(line, '"', (size_t)len) != NULL || memchr(line, '\r', (size_t)len) != NULL) break;
        int col = 0;
        const char *f = line;
        int ok = 1;
        for (;;) {
            const char *comma = memchr(f, ',', (size_t)(stop - f));
            if (col >= ncols) {
                ok = 0;
                break;
            }
            fs[col] = f;
            if (comma == NULL) {
                fl[col] = stop - f;
                col++;
                break;
            }
            fl[col] = comma - f;
            col++;
            f = comma + 1;
        }
        if (!ok || col != ncols) break;
        if (!timestamp_ok(fs[ip], fl[ip]) || !timestamp_ok(fs[idr], fl[idr])) break;
        int fare_len = fl[ifa] > 32 ? -1 : number_text(fs[ifa], fl[ifa], fare);
        int dist_len = fl[idi] > 32 ? -1 : number_text(fs[idi], fl[idi], dist);
        if (fare_len < 0 || dist_len < 0) break;
        Py_ssize_t key_len = fl[iv] + fl[ip] + fl[idr] + fl[ipu] + fl[ido] + fare_len + dist_len;
        if (key_len > MAX_KEY) break;
        unsigned char *k = key;
        memcpy(k, fs[iv], (size_t)fl[iv]);
        k += fl[iv];
        memcpy(k, fs[ip], (size_t)fl[ip]);
        k += fl[ip];
        memcpy(k, fs[idr], (size_t)fl[idr]);
        k += fl[idr];
        memcpy(k, fs[ipu], (size_t)fl[ipu]);
        k += fl[ipu];
        memcpy(k, fs[ido], (size_t)fl[ido]);
        k += fl[ido];
        memcpy(k, fare, (size_t)fare_len);
        k += fare_len;
        memcpy(k, dist, (size_t)dist_len);
        unsigned char digest[16];
        md5_short(key, (size_t)key_len, digest);
        PyObject *bucket = PyList_GET_ITEM(buckets, digest[0]);
        Py_ssize_t size = PyByteArray_GET_SIZE(bucket);
        if (PyByteArray_Resize(bucket, size + 8) < 0) goto done;
        memcpy(PyByteArray_AS_STRING(bucket) + size, digest + 1, 8);
        for (int b = 0; b < 16; b++) {
            *w++ = hex_digits[digest[b] >> 4];
            *w++ = hex_digits[digest[b] & 15];
        }
        *w++ = ',';
        memcpy(w, line, (size_t)len);
        w += len;
        *w++ = '\n';
        rows++;
        pos = (nl - data) + 1;
    }
    if (_PyBytes_Resize(&out, w - w0) < 0) goto done;
    result = Py_BuildValue("(Nnn)", out, pos, rows);
    out = NULL;
done:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return result;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x, y;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    return (x > y) - (x < y);
}

/* count_duplicates(bytearray) -> int: sorts the 8-byte keys in place, counts repeats */
static PyObject *rows_count_duplicates(PyObject *self, PyObject *arg) {
    if (!PyByteArray_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "count_duplicates: a bytearray is needed");
        return NULL;
    }
    Py_ssize_t n = PyByteArray_GET_SIZE(arg) / 8;
    char *keys = PyByteArray_AS_STRING(arg);
    qsort(keys, (size_t)n, 8, compare_u64);
    Py_ssize_t repeats = 0;
    for (Py_ssize_t i = 1; i < n; i++) {
        if (memcmp(keys + 8 * (i - 1), keys + 8 * i, 8) == 0) repeats++;
    }
    return PyLong_FromSsize_t(repeats);
}

static PyMethodDef rows_methods[] = {
    {"convert", rows_convert, METH_VARARGS, "Convert the common lines of a block to COPY rows."},
    {"count_duplicates", rows_count_duplicates, METH_O, "Sort 8-byte keys, count repeats."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef rows_module = {
    PyModuleDef_HEAD_INIT, "flowhawk.taxi._rows", "The taxi reader's row loop in C.", -1,
    rows_methods,
};

PyMODINIT_FUNC PyInit__rows(void) {
    md5_init_constants();
    return PyModule_Create(&rows_module);
}
