/* glibc's mallopt(3) for pronghorn.workers.allocator.
 *
 * Calling it through ctypes costs every worker about 0.35 MiB of RSS (the ctypes package, _ctypes
 * and libffi); this module is a few pages. Built with the compiled modules (setup.py); where it is
 * not, allocator.py falls back to ctypes. On another C library mallopt() returns 0 (not set).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

static PyObject *
call_mallopt(PyObject *module, PyObject *args)
{
    int param, value;

    (void)module;
    if (!PyArg_ParseTuple(args, "ii:mallopt", &param, &value)) {
        return NULL;
    }
#if defined(__GLIBC__)
    return PyLong_FromLong(mallopt(param, value));
#else
    return PyLong_FromLong(0);
#endif
}

static PyMethodDef methods[] = {
    {"mallopt", call_mallopt, METH_VARARGS, "mallopt(param, value): glibc's mallopt(3); 1 if it was set, 0 if not."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pronghorn.workers._mallopt",
    .m_doc = "glibc's mallopt(3) without ctypes.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__mallopt(void)
{
    return PyModuleDef_Init(&module);
}
