/* Benchmark helpers over confluent-kafka Messages, read in place at the byte offsets the
 * project's compiled encoder found (kafka2sidekiq._encoder.message_fields): no accessor
 * call, no tuple, no int per message. Built on first use by bench/compiled.py.
 *
 *   values(messages, kind, value_at, error_at) -> [value, ...]
 *       the values of the messages of type kind that carry no error, the same objects
 *       (no copy): what the strict raw-copy ceiling LPUSHes
 *   ages(messages, kind, timestamp_at, error_at, now_ms) -> bytes
 *       (timestamp_ms, now_ms - timestamp_ms) of each such message, native doubles
 *       back to back: what Kafka's latency floor records
 *   stamps(payloads, now_ms) -> (bytes, bytes)
 *       of Sidekiq payloads (JSON with created_at and enqueued_at in float seconds):
 *       (created ms, now_ms - created ms) and (created ms, enqueued ms - created ms) of
 *       each, native doubles back to back: what the latency benchmark records of ours,
 *       at the cost of the floor's, not of a JSON decoder's */
#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* The number after "key": in payload, or -1 with ValueError set. */
static double number_after(PyObject *payload, const char *key) {
    const char *s = PyBytes_AS_STRING(payload), *end = s + PyBytes_GET_SIZE(payload);
    const char *at = memmem(s, (size_t)(end - s), key, strlen(key));
    if (at != NULL) {
        char *stop;
        double v = strtod(at + strlen(key), &stop);
        if (stop != at + strlen(key) && stop <= end)
            return v;
    }
    PyErr_Format(PyExc_ValueError, "no number after %s in %.200R", key, payload);
    return -1;
}

static PyObject *stamps(PyObject *self, PyObject *args) {
    PyObject *payloads;
    double now_ms;
    if (!PyArg_ParseTuple(args, "O!d", &PyList_Type, &payloads, &now_ms))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(payloads);
    PyObject *ages = PyBytes_FromStringAndSize(NULL, n * 2 * (Py_ssize_t)sizeof(double));
    PyObject *encoded = PyBytes_FromStringAndSize(NULL, n * 2 * (Py_ssize_t)sizeof(double));
    if (ages == NULL || encoded == NULL)
        goto fail;
    double *a = (double *)PyBytes_AS_STRING(ages), *e = (double *)PyBytes_AS_STRING(encoded);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *payload = PyList_GET_ITEM(payloads, i);
        if (!PyBytes_Check(payload)) {
            PyErr_Format(PyExc_TypeError, "payloads must be bytes, not %R", (PyObject *)Py_TYPE(payload));
            goto fail;
        }
        double created = number_after(payload, "\"created_at\":") * 1000;
        if (created < 0 && PyErr_Occurred())
            goto fail;
        double enqueued = number_after(payload, "\"enqueued_at\":") * 1000;
        if (enqueued < 0 && PyErr_Occurred())
            goto fail;
        a[2 * i] = e[2 * i] = created;
        a[2 * i + 1] = now_ms - created;
        e[2 * i + 1] = enqueued - created;
    }
    return Py_BuildValue("(NN)", ages, encoded);
fail:
    Py_XDECREF(ages);
    Py_XDECREF(encoded);
    return NULL;
}

static PyMethodDef methods[] = {
    {"values", values, METH_VARARGS, "the values of the messages without an error"},
    {"ages", ages, METH_VARARGS, "(timestamp_ms, now_ms - timestamp_ms) per message, as doubles"},
    {"stamps", stamps, METH_VARARGS, "(created, age) and (created, until encoded) of payloads, as doubles"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_messages", NULL, -1, methods};

PyMODINIT_FUNC PyInit__messages(void) { return PyModule_Create(&module); }
