/* Benchmark helpers over confluent-kafka Messages, read in place at the byte offsets the
 * project's compiled encoder found (kafka2sidekiq._encoder_c.message_fields): no accessor
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
 *       at the cost of the floor's, not of a JSON decoder's
 *   producer(library, bootstrap) -> handle
 *   pace(handle, topic, value, keys, rate, seconds) -> sent
 *       the latency benchmark's load: librdkafka (the one confluent-kafka loaded, by
 *       path) producing value under keys in turn, rate a second for seconds, paced each
 *       millisecond, without the GIL and without a Python call per message */
#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* --- the paced producer: librdkafka's C API, found in the library confluent-kafka uses */

typedef struct {
    void *(*conf_new)(void);
    int (*conf_set)(void *conf, const char *name, const char *value, char *errstr, size_t size);
    void *(*new_)(int type, void *conf, char *errstr, size_t size);
    void *(*topic_new)(void *rk, const char *topic, void *conf);
    void (*topic_destroy)(void *rkt);
    int (*produce)(void *rkt, int32_t partition, int flags, void *payload, size_t len, const void *key,
                   size_t keylen, void *opaque);
    int (*poll)(void *rk, int timeout_ms);
    int (*flush)(void *rk, int timeout_ms);
    int (*last_error)(void);
    const char *(*err2str)(int err);
    void (*destroy)(void *rk);
    void *rk;
} Producer;

enum { RD_KAFKA_PRODUCER = 0, RD_KAFKA_PARTITION_UA = -1, RD_KAFKA_MSG_F_COPY = 2,
       RD_KAFKA_RESP_ERR__QUEUE_FULL = -184 };

static void producer_free(PyObject *capsule) {
    Producer *p = PyCapsule_GetPointer(capsule, "k2s.bench.Producer");
    if (p != NULL) {
        Py_BEGIN_ALLOW_THREADS
        p->flush(p->rk, 10000);
        p->destroy(p->rk);
        Py_END_ALLOW_THREADS
        PyMem_Free(p);
    }
}

static PyObject *producer(PyObject *self, PyObject *args) {
    const char *library, *bootstrap;
    if (!PyArg_ParseTuple(args, "ss", &library, &bootstrap))
        return NULL;
    void *lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return PyErr_Format(PyExc_OSError, "cannot load librdkafka from %s: %s", library, dlerror());
    Producer *p = PyMem_Calloc(1, sizeof *p);
    if (p == NULL)
        return PyErr_NoMemory();
    struct { void **slot; const char *name; } wanted[] = {
        {(void **)&p->conf_new, "rd_kafka_conf_new"}, {(void **)&p->conf_set, "rd_kafka_conf_set"},
        {(void **)&p->new_, "rd_kafka_new"}, {(void **)&p->topic_new, "rd_kafka_topic_new"},
        {(void **)&p->topic_destroy, "rd_kafka_topic_destroy"}, {(void **)&p->produce, "rd_kafka_produce"},
        {(void **)&p->poll, "rd_kafka_poll"}, {(void **)&p->flush, "rd_kafka_flush"},
        {(void **)&p->last_error, "rd_kafka_last_error"}, {(void **)&p->err2str, "rd_kafka_err2str"},
        {(void **)&p->destroy, "rd_kafka_destroy"},
    };
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        if ((*wanted[i].slot = dlsym(lib, wanted[i].name)) == NULL) {
            PyMem_Free(p);
            return PyErr_Format(PyExc_OSError, "%s has no %s", library, wanted[i].name);
        }
    }
    const char *settings[][2] = {{"bootstrap.servers", bootstrap}, {"linger.ms", "1"},
                                 {"queue.buffering.max.messages", "1000000"},
                                 {"queue.buffering.max.kbytes", "1048576"}};
    char errstr[512];
    void *conf = p->conf_new();
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        if (p->conf_set(conf, settings[i][0], settings[i][1], errstr, sizeof errstr) != 0) {
            PyMem_Free(p);
            return PyErr_Format(PyExc_ValueError, "librdkafka refused %s=%s: %s", settings[i][0], settings[i][1],
                                errstr);
        }
    }
    if ((p->rk = p->new_(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr)) == NULL) {
        PyMem_Free(p);
        return PyErr_Format(PyExc_RuntimeError, "cannot make a librdkafka producer: %s", errstr);
    }
    return PyCapsule_New(p, "k2s.bench.Producer", producer_free);
}

static double since(const struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static PyObject *pace(PyObject *self, PyObject *args) {
    PyObject *capsule, *keys;
    const char *topic, *value;
    Py_ssize_t value_len;
    double rate, seconds;
    if (!PyArg_ParseTuple(args, "Osy#O!dd", &capsule, &topic, &value, &value_len, &PyList_Type, &keys, &rate,
                          &seconds))
        return NULL;
    Producer *p = PyCapsule_GetPointer(capsule, "k2s.bench.Producer");
    if (p == NULL)
        return NULL;
    Py_ssize_t nkeys = PyList_GET_SIZE(keys);
    if (nkeys == 0)
        return PyErr_Format(PyExc_ValueError, "no keys");
    const char **key = PyMem_Malloc(nkeys * sizeof *key);
    size_t *key_len = PyMem_Malloc(nkeys * sizeof *key_len);
    if (key == NULL || key_len == NULL) {
        PyMem_Free(key);
        PyMem_Free(key_len);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < nkeys; i++) {
        PyObject *item = PyList_GET_ITEM(keys, i);
        if (!PyBytes_Check(item)) {
            PyMem_Free(key);
            PyMem_Free(key_len);
            return PyErr_Format(PyExc_TypeError, "keys must be bytes, not %R", (PyObject *)Py_TYPE(item));
        }
        key[i] = PyBytes_AS_STRING(item);
        key_len[i] = (size_t)PyBytes_GET_SIZE(item);
    }
    void *rkt = p->topic_new(p->rk, topic, NULL);
    if (rkt == NULL) {
        PyMem_Free(key);
        PyMem_Free(key_len);
        return PyErr_Format(PyExc_RuntimeError, "cannot use topic %s: %s", topic, p->err2str(p->last_error()));
    }
    long long sent = 0;
    int error = 0;
    struct timespec start, tick = {0, 1000000};
    Py_BEGIN_ALLOW_THREADS  /* the keys' bytes stay alive: the caller holds the list */
    clock_gettime(CLOCK_MONOTONIC, &start);
    double elapsed;
    while (!error && (elapsed = since(&start)) < seconds) {
        long long due = (long long)(rate * elapsed);
        while (sent < due) {
            Py_ssize_t k = (Py_ssize_t)(sent % nkeys);
            if (p->produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)value, (size_t)value_len,
                           key[k], key_len[k], NULL) == 0) {
                sent++;
            } else if ((error = p->last_error()) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                error = 0;
                p->poll(p->rk, 1);  /* the local queue is full: let librdkafka drain it */
            } else {
                break;
            }
        }
        p->poll(p->rk, 0);
        nanosleep(&tick, NULL);
    }
    if (!error)
        error = p->flush(p->rk, 60000);
    p->topic_destroy(rkt);
    Py_END_ALLOW_THREADS
    PyMem_Free(key);
    PyMem_Free(key_len);
    if (error)
        return PyErr_Format(PyExc_RuntimeError, "producing to %s failed: %s", topic, p->err2str(error));
    return PyLong_FromLongLong(sent);
}

static PyMethodDef methods[] = {
    {"values", values, METH_VARARGS, "the values of the messages without an error"},
    {"ages", ages, METH_VARARGS, "(timestamp_ms, now_ms - timestamp_ms) per message, as doubles"},
    {"stamps", stamps, METH_VARARGS, "(created, age) and (created, until encoded) of payloads, as doubles"},
    {"producer", producer, METH_VARARGS, "a librdkafka producer (library path, bootstrap servers)"},
    {"pace", pace, METH_VARARGS, "produce value under keys, rate a second for seconds; how many were sent"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_messages", NULL, -1, methods};

PyMODINIT_FUNC PyInit__messages(void) { return PyModule_Create(&module); }
