/* Benchmark helpers over confluent-kafka Messages, read in place at the byte offsets the
 * project's compiled encoder found (kafka2sidekiq._encoder.message_fields): no accessor
 * call, no tuple, no int per message. Built on first use by bench/compiled.py.
 *
 *   values(messages, kind, value_at, error_at) -> [value, ...]
 *       the values of the messages of type kind that carry no error, the same objects
 *       (no copy): what the strict raw-copy ceiling LPUSHes
 *   ages(messages, kind, timestamp_at, error_at, now_ms) -> bytes
 *       (timestamp_ms, now_ms - timestamp_ms) of each such message, native doubles
 *       back to back: what Kafka's latency floor records */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* 0 when every item of messages is of type kind, else -1 with TypeError set. */
static int all_of(PyObject *messages, PyObject *kind) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(messages); i++) {
        PyObject *item = PyList_GET_ITEM(messages, i);
        if ((PyObject *)Py_TYPE(item) != kind) {
            PyErr_Format(PyExc_TypeError, "expected %R, got %R", kind, (PyObject *)Py_TYPE(item));
            return -1;
        }
    }
    return 0;
}

static int failed(PyObject *item, Py_ssize_t error_at) {
    PyObject *error = *(PyObject **)((char *)item + error_at);
    return error != NULL && error != Py_None;
}

static PyObject *values(PyObject *self, PyObject *args) {
    PyObject *messages, *kind;
    Py_ssize_t value_at, error_at;
    if (!PyArg_ParseTuple(args, "O!O!nn", &PyList_Type, &messages, &PyType_Type, &kind, &value_at, &error_at))
        return NULL;
    if (all_of(messages, kind) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(messages), k = 0;
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(messages, i);
        PyObject *value = *(PyObject **)((char *)item + value_at);
        if (failed(item, error_at) || value == NULL || !PyBytes_CheckExact(value))
            continue;
        Py_INCREF(value);
        PyList_SET_ITEM(out, k++, value);
    }
    if (k < n && PyList_SetSlice(out, k, n, NULL) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *ages(PyObject *self, PyObject *args) {
    PyObject *messages, *kind;
    Py_ssize_t timestamp_at, error_at;
    double now_ms;
    if (!PyArg_ParseTuple(args, "O!O!nnd", &PyList_Type, &messages, &PyType_Type, &kind, &timestamp_at,
                          &error_at, &now_ms))
        return NULL;
    if (all_of(messages, kind) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(messages), k = 0;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * 2 * (Py_ssize_t)sizeof(double));
    if (out == NULL)
        return NULL;
    double *w = (double *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(messages, i);
        if (failed(item, error_at))
            continue;
        double ts = (double)*(int64_t *)((char *)item + timestamp_at);
        w[2 * k] = ts;
        w[2 * k + 1] = now_ms - ts;
        k++;
    }
    if (k < n && _PyBytes_Resize(&out, k * 2 * (Py_ssize_t)sizeof(double)) < 0)
        return NULL;
    return out;
}

static PyMethodDef methods[] = {
    {"values", values, METH_VARARGS, "the values of the messages without an error"},
    {"ages", ages, METH_VARARGS, "(timestamp_ms, now_ms - timestamp_ms) per message, as doubles"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_messages", NULL, -1, methods};

PyMODINIT_FUNC PyInit__messages(void) { return PyModule_Create(&module); }
