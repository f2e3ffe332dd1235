/* The parser's quick path for the usual request head, in C (pronghorn.http.parser uses it).
 *
 * scan_head(buf, start, line_type, caps) looks at buf[start:] (bytes or bytearray) and returns:
 *   None   when no whole head has arrived yet (no CRLF CRLF);
 *   False  when the head is not the usual kind: the general parser then decides, as for any head;
 *   (head_end, request_line, fields) for a head made only of: a common method, an origin-form
 *          target (path, optional "?query", optional "#fragment"), "HTTP/1.0" or "HTTP/1.1", and
 *          field lines "name:value" whose name is a token without "_" and whose value holds only
 *          HTAB, SP, VCHAR and obs-text; within ``caps`` (max_request_line, max_field_section,
 *          max_header_field_size, max_header_count: Limits.usual_head_caps) and with no repeated
 *          Host, Content-Type or Content-Length. ``request_line`` is a ``line_type`` (the
 *          RequestLine named tuple) of method, target, path, query, fragment and version; fields
 *          are (NAME, value) pairs, names upper-cased, values without surrounding SP/HTAB.
 *
 * It only recognises; what the fields mean is decided in Python. The byte classes are those of the
 * general path, and unit tests hold every verdict to be the same as the general path's fed byte by
 * byte.
 *
 * new_tuple(type, *items) makes a named tuple as tuple.__new__(type, items) does, without first
 * building the tuple of items (the parser makes one RequestHead per request).
 *
 * Bounds: every scanning loop stops at the CR of the CRLF CRLF found first (no class admits CR),
 * so no loop reads past it; fixed-length checks compare the bytes left before the head's end.
 */

#define _GNU_SOURCE 1 /* memmem; the value pyconfig.h gives it where it defines it too */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* request_line._COMMON_METHODS: a method missing here only takes the general path, which accepts it. */
static const char *const METHOD_NAMES[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
#define METHOD_COUNT (sizeof(METHOD_NAMES) / sizeof(METHOD_NAMES[0]))

typedef struct {
    PyObject *methods[METHOD_COUNT];
    PyObject *versions[2]; /* (1, 0) and (1, 1) */
} state_t;

/* Byte classes (RFC 9112 section 3.2, RFC 9110 sections 5.5 and 5.6.2). */
static unsigned char IN_PATH[256];     /* VCHAR but "?" and "#" */
static unsigned char IN_QUERY[256];    /* VCHAR but "#" */
static unsigned char IN_FRAGMENT[256]; /* VCHAR */
static unsigned char IN_NAME[256];     /* tchar but "_" (such names depend on header_map) */
static unsigned char IN_VALUE[256];    /* HTAB, SP, VCHAR, obs-text */

static void
fill_classes(void)
{
    const char *tchar_symbols = "!#$%&'*+-.^`|~";
    for (int c = 0; c < 256; c++) {
        int vchar = c >= 0x21 && c <= 0x7e;
        IN_PATH[c] = vchar && c != '?' && c != '#';
        IN_QUERY[c] = vchar && c != '#';
        IN_FRAGMENT[c] = vchar;
        IN_NAME[c] = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                     || (c != 0 && strchr(tchar_symbols, c) != NULL);
        IN_VALUE[c] = c == '\t' || (c >= 0x20 && c <= 0x7e) || c >= 0x80;
    }
}

static PyObject *
bytes_of(const unsigned char *start, const unsigned char *end)
{
    return PyBytes_FromStringAndSize((const char *)start, end - start);
}

/* One field line's (NAME, value) pair, or NULL with an exception set. */
static PyObject *
field_pair(const unsigned char *name, const unsigned char *name_end, const unsigned char *value,
           const unsigned char *value_end)
{
    while (value < value_end && (*value == ' ' || *value == '\t')) {
        value++;
    }
    while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t')) {
        value_end--;
    }
    PyObject *upper = PyBytes_FromStringAndSize(NULL, name_end - name);
    if (upper == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(upper);
    for (const unsigned char *p = name; p < name_end; p++) {
        *out++ = (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
    }
    PyObject *text = bytes_of(value, value_end);
    if (text == NULL) {
        Py_DECREF(upper);
        return NULL;
    }
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(upper);
        Py_DECREF(text);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, upper);
    PyTuple_SET_ITEM(pair, 1, text);
    return pair;
}

/* Which of the fields that may appear once a name is (0, 1, 2), or -1. */
static int
singleton_of(const unsigned char *name, Py_ssize_t length)
{
    static const char *const SINGLETONS[] = {"HOST", "CONTENT-TYPE", "CONTENT-LENGTH"};
    for (int i = 0; i < 3; i++) {
        if ((size_t)length == strlen(SINGLETONS[i])) {
            Py_ssize_t j = 0;
            while (j < length && (name[j] & ~0x20) == (SINGLETONS[i][j] & ~0x20)) {
                j++;  /* letters compared without case; "-" (0x2d) and 0x0d never meet here */
            }
            if (j == length) {
                return i;
            }
        }
    }
    return -1;
}

/* Whether ``type`` is a tuple subclass without fields of its own (a named tuple). */
static int
is_plain_tuple_type(PyObject *type)
{
    return PyType_Check(type) && PyType_IsSubtype((PyTypeObject *)type, &PyTuple_Type)
           && ((PyTypeObject *)type)->tp_basicsize == PyTuple_Type.tp_basicsize;
}

/* A ``type`` instance holding ``items`` (references stolen, also on failure). */
static PyObject *
tuple_of(PyTypeObject *type, PyObject **items, Py_ssize_t count)
{
    PyObject *made = type->tp_alloc(type, count);
    if (made == NULL) {
        for (Py_ssize_t i = 0; i < count; i++) {
            Py_XDECREF(items[i]);
        }
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyTuple_SET_ITEM(made, i, items[i]);
    }
    return made;
}

/* new_tuple(type, *items): ``tuple.__new__(type, items)`` without building ``items`` first. */
static PyObject *
new_tuple(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 1 || !is_plain_tuple_type(args[0])) {
        PyErr_SetString(PyExc_TypeError, "new_tuple() needs a tuple subclass without fields first");
        return NULL;
    }
    PyObject *items[32];
    Py_ssize_t count = nargs - 1;
    if (count > 32) {
        PyErr_SetString(PyExc_TypeError, "new_tuple() takes at most 32 items");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        items[i] = Py_NewRef(args[i + 1]);
    }
    return tuple_of((PyTypeObject *)args[0], items, count);
}

static PyObject *
scan_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    state_t *state = PyModule_GetState(module);
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "scan_head(buf, start, line_type, caps) takes four arguments");
        return NULL;
    }
    const unsigned char *data;
    Py_ssize_t size;
    if (PyBytes_Check(args[0])) {
        data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
        size = PyBytes_GET_SIZE(args[0]);
    } else if (PyByteArray_Check(args[0])) {
        data = (const unsigned char *)PyByteArray_AS_STRING(args[0]);
        size = PyByteArray_GET_SIZE(args[0]);
    } else {
        PyErr_SetString(PyExc_TypeError, "scan_head() needs bytes or bytearray");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (start < 0 || start > size) {
        PyErr_SetString(PyExc_ValueError, "scan_head(): start out of range");
        return NULL;
    }
    PyTypeObject *line_type = (PyTypeObject *)args[2];
    if (!is_plain_tuple_type(args[2])) {
        PyErr_SetString(PyExc_TypeError, "scan_head(): line_type must be a tuple subclass without fields");
        return NULL;
    }
    Py_ssize_t caps[4];
    if (!PyTuple_Check(args[3]) || PyTuple_GET_SIZE(args[3]) != 4) {
        PyErr_SetString(PyExc_TypeError, "scan_head(): caps must be a tuple of four ints");
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        caps[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[3], i));
        if (caps[i] == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    Py_ssize_t max_request_line = caps[0], max_field_section = caps[1], max_field_size = caps[2],
               max_count = caps[3];

    const unsigned char *p = data + start;
    const unsigned char *blank = memmem(p, (size_t)(size - start), "\r\n\r\n", 4);
    if (blank == NULL) {
        Py_RETURN_NONE;
    }
    const unsigned char *head_end = blank + 4;

    /* method SP */
    Py_ssize_t method = -1;
    for (size_t i = 0; i < METHOD_COUNT; i++) {
        size_t length = strlen(METHOD_NAMES[i]);
        if ((size_t)(head_end - p) > length && memcmp(p, METHOD_NAMES[i], length) == 0 && p[length] == ' ') {
            method = (Py_ssize_t)i;
            p += length + 1;
            break;
        }
    }
    if (method < 0) {
        Py_RETURN_FALSE;
    }

    /* origin-form target: absolute-path [ "?" query ] [ "#" fragment ] */
    const unsigned char *target = p;
    if (*p != '/') {
        Py_RETURN_FALSE;
    }
    p++;
    while (IN_PATH[*p]) {
        p++;
    }
    const unsigned char *path_end = p;
    const unsigned char *query = NULL, *query_end = NULL, *fragment = NULL, *fragment_end = NULL;
    if (*p == '?') {
        query = ++p;
        while (IN_QUERY[*p]) {
            p++;
        }
        query_end = p;
    }
    if (*p == '#') {
        fragment = ++p;
        while (IN_FRAGMENT[*p]) {
            p++;
        }
        fragment_end = p;
    }
    const unsigned char *target_end = p;

    /* SP "HTTP/1." ("0" / "1") CRLF, the whole line (CRLF aside) within max_request_line */
    if (head_end - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 || (p[8] != '0' && p[8] != '1') || p[9] != '\r'
        || p[10] != '\n' || (p + 9) - (data + start) > max_request_line) {
        Py_RETURN_FALSE;
    }
    int minor = p[8] - '0';
    p += 11;

    /* field lines, then the empty line at head_end - 2 */
    const unsigned char *section_end = head_end - 2;
    if (section_end - p + 2 > max_field_section) {
        Py_RETURN_FALSE;
    }
    /* A section no longer than one field may be holds no field over that size. */
    if (section_end > p && section_end - p > max_field_size) {
        Py_RETURN_FALSE;
    }
    PyObject *fields = PyList_New(0);
    if (fields == NULL) {
        return NULL;
    }
    int seen[3] = {0, 0, 0};
    while (p < section_end) {
        const unsigned char *name = p;
        while (IN_NAME[*p]) {
            p++;
        }
        if (p == name || *p != ':' || PyList_GET_SIZE(fields) >= max_count) {
            Py_DECREF(fields);
            Py_RETURN_FALSE;
        }
        int singleton = singleton_of(name, p - name);
        if (singleton >= 0 && seen[singleton]++) {
            Py_DECREF(fields);
            Py_RETURN_FALSE;  /* the general path refuses it, with its own words */
        }
        const unsigned char *name_end = p++;
        const unsigned char *value = p;
        while (IN_VALUE[*p]) {
            p++;
        }
        if (p[0] != '\r' || p[1] != '\n') {
            Py_DECREF(fields);
            Py_RETURN_FALSE;
        }
        PyObject *pair = field_pair(name, name_end, value, p);
        if (pair == NULL || PyList_Append(fields, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(fields);
            return NULL;
        }
        Py_DECREF(pair);
        p += 2;
    }

    PyObject *items[6] = {Py_NewRef(state->methods[method]), bytes_of(target, target_end), NULL, NULL, NULL,
                          Py_NewRef(state->versions[minor])};
    if (items[1] != NULL) {
        items[2] = path_end == target_end ? Py_NewRef(items[1]) : bytes_of(target, path_end);
        items[3] = query != NULL ? bytes_of(query, query_end) : PyBytes_FromStringAndSize(NULL, 0);
        items[4] = fragment != NULL ? bytes_of(fragment, fragment_end) : PyBytes_FromStringAndSize(NULL, 0);
    }
    if (items[1] == NULL || items[2] == NULL || items[3] == NULL || items[4] == NULL) {
        for (int i = 0; i < 6; i++) {
            Py_XDECREF(items[i]);
        }
        Py_DECREF(fields);
        return NULL;
    }
    PyObject *line = tuple_of(line_type, items, 6);
    if (line == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    return Py_BuildValue("(nNN)", (Py_ssize_t)(head_end - data), line, fields);
}

static int
module_exec(PyObject *module)
{
    state_t *state = PyModule_GetState(module);
    for (size_t i = 0; i < METHOD_COUNT; i++) {
        state->methods[i] = PyBytes_FromString(METHOD_NAMES[i]);
        if (state->methods[i] == NULL) {
            return -1;
        }
    }
    state->versions[0] = Py_BuildValue("(ii)", 1, 0);
    state->versions[1] = Py_BuildValue("(ii)", 1, 1);
    if (state->versions[0] == NULL || state->versions[1] == NULL) {
        return -1;
    }
    fill_classes();
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    state_t *state = PyModule_GetState(module);
    for (size_t i = 0; i < METHOD_COUNT; i++) {
        Py_VISIT(state->methods[i]);
    }
    Py_VISIT(state->versions[0]);
    Py_VISIT(state->versions[1]);
    return 0;
}

static int
module_clear(PyObject *module)
{
    state_t *state = PyModule_GetState(module);
    for (size_t i = 0; i < METHOD_COUNT; i++) {
        Py_CLEAR(state->methods[i]);
    }
    Py_CLEAR(state->versions[0]);
    Py_CLEAR(state->versions[1]);
    return 0;
}

static PyMethodDef methods[] = {
    {"new_tuple", (PyCFunction)(void (*)(void))new_tuple, METH_FASTCALL,
     "new_tuple(type, *items): tuple.__new__(type, items) for a named tuple, without the items tuple."},
    {"scan_head", (PyCFunction)(void (*)(void))scan_head, METH_FASTCALL,
     "scan_head(buf, start, line_type, caps): the usual request head's parts, False for any other head, None if incomplete."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pronghorn.http._head",
    .m_doc = "The request parser's quick path for the usual head.",
    .m_size = sizeof(state_t),
    .m_methods = methods,
    .m_slots = slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
};

PyMODINIT_FUNC
PyInit__head(void)
{
    return PyModuleDef_Init(&module_def);
}
