/*
 * sse_twisted._fanout: the compiled send loop of the fan-out.
 *
 * One event goes to every stream of a topic as the same chunk of bytes. The
 * Python path calls socket.send() once per stream; this module keeps, per
 * topic, an array of the streams' socket descriptors and sends the chunk to
 * each with one send() in a C loop.
 *
 * The danger of raw descriptor numbers is a number that is closed while
 * still in an array: the next broadcast would write into whatever new
 * connection reuses it. So the arrays hold no numbers of their own. They
 * hold Leases: one per connection, made by the transport, holding its
 * socket object (which therefore cannot be finalized while leased) and its
 * descriptor. The transport revokes the lease before it closes the socket;
 * a revoked lease is never sent to again, in whatever array it still is.
 *
 * A lease is also held back (not revoked) while its connection has bytes
 * queued, or while its stream's producer is paused: those streams are
 * handed back to Python for the broadcast, so bytes are never reordered.
 * A send that the kernel takes only in part holds the lease back at once,
 * and the rest is handed back to Python to be queued.
 *
 * Limited API (abi3, Python 3.11+). The GIL stays held throughout: no other
 * thread can change an array, or close a socket of this reactor, mid-loop.
 */
#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x030B0000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

#define HOLD_QUEUED 1
#define HOLD_PAUSED 2
#define HOLD_REVOKED 4

static PyTypeObject *LeaseType;
static PyObject *fileno_name; /* "fileno" */

/* Lease */

typedef struct {
    PyObject_HEAD
    int fd;           /* -1 once revoked */
    int holds;        /* HOLD_* bits; direct sends only when 0 */
    PyObject *socket; /* kept alive until revoked */
} Lease;

static PyObject *Lease_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"socket", NULL};
    PyObject *sock;
    /* Lease(sock), made for every stream, skips the keyword parser. */
    if (kwds == NULL && PyTuple_Size(args) == 1)
        sock = PyTuple_GetItem(args, 0);
    else if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Lease", names, &sock))
        return NULL;
    /* By an interned name, which the type's method cache knows. */
    PyObject *number = PyObject_CallMethodObjArgs(sock, fileno_name, NULL);
    if (number == NULL)
        return NULL;
    long fd = PyLong_AsLong(number);
    Py_DECREF(number);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > 0x7fffffff) {
        PyErr_SetString(PyExc_ValueError, "the socket is closed");
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    Lease *self = (Lease *)alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->fd = (int)fd;
    self->holds = HOLD_QUEUED;
    Py_INCREF(sock);
    self->socket = sock;
    return (PyObject *)self;
}

static void Lease_dealloc(Lease *self)
{
    PyTypeObject *type = Py_TYPE((PyObject *)self);
    Py_CLEAR(self->socket);
    freefunc release = (freefunc)PyType_GetSlot(type, Py_tp_free);
    release(self);
    Py_DECREF(type);
}

static PyObject *Lease_revoke(Lease *self, PyObject *unused)
{
    self->holds |= HOLD_REVOKED;
    self->fd = -1;
    Py_CLEAR(self->socket);
    Py_RETURN_NONE;
}

static PyObject *get_hold(Lease *self, void *bit)
{
    return PyBool_FromLong(self->holds & (int)(Py_intptr_t)bit);
}

static int set_hold(Lease *self, PyObject *value, void *bit)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a hold");
        return -1;
    }
    int on = PyObject_IsTrue(value);
    if (on < 0)
        return -1;
    if (on)
        self->holds |= (int)(Py_intptr_t)bit;
    else
        self->holds &= ~(int)(Py_intptr_t)bit;
    return 0;
}

static PyObject *Lease_direct(Lease *self, void *unused)
{
    return PyBool_FromLong(self->holds == 0);
}

static PyObject *Lease_fd(Lease *self, void *unused)
{
    return PyLong_FromLong(self->fd);
}

static PyGetSetDef Lease_getset[] = {
    {"queued", (getter)get_hold, (setter)set_hold,
     "Whether the connection has bytes queued (or held back).",
     (void *)HOLD_QUEUED},
    {"paused", (getter)get_hold, (setter)set_hold,
     "Whether the stream's producer is paused.", (void *)HOLD_PAUSED},
    {"revoked", (getter)get_hold, NULL,
     "Whether the socket is closing: never sent to again.",
     (void *)HOLD_REVOKED},
    {"direct", (getter)Lease_direct, NULL,
     "Whether a broadcast sends to the descriptor directly now.", NULL},
    {"fd", (getter)Lease_fd, NULL, "The descriptor; -1 once revoked.", NULL},
    {NULL},
};

static PyMethodDef Lease_methods[] = {
    {"revoke", (PyCFunction)Lease_revoke, METH_NOARGS,
     "Never send to this descriptor again. Call it before the socket closes."},
    {NULL},
};

static PyType_Slot Lease_slots[] = {
    {Py_tp_doc,
     "Lease(socket)\n\nA connection's descriptor, lent to DirectSets for direct "
     "sends. It starts queued (held back) until the transport says otherwise."},
    {Py_tp_new, Lease_new},
    {Py_tp_dealloc, Lease_dealloc},
    {Py_tp_getset, Lease_getset},
    {Py_tp_methods, Lease_methods},
    {0, NULL},
};

static PyType_Spec Lease_spec = {
    "sse_twisted._fanout.Lease", sizeof(Lease), 0, Py_TPFLAGS_DEFAULT,
    Lease_slots,
};

/* DirectSet */

typedef struct {
    Lease *lease;
    PyObject *owner;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *entries;
    Py_ssize_t len;
    Py_ssize_t cap;
    PyObject *index; /* owner -> position in entries */
} DirectSet;

/* What a broadcast hands back to Python for one entry: sent < 0 if its
 * lease was held back, else how many bytes the kernel took. */
typedef struct {
    PyObject *owner;
    Py_ssize_t sent;
} Leftover;

static PyObject *DirectSet_new(PyTypeObject *type, PyObject *args,
                               PyObject *kwds)
{
    if (PyTuple_Size(args) != 0 || (kwds != NULL && PyDict_Size(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "DirectSet() takes no arguments");
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    DirectSet *self = (DirectSet *)alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->index = PyDict_New();
    if (self->index == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int DirectSet_traverse(DirectSet *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE((PyObject *)self));
    Py_VISIT(self->index);
    for (Py_ssize_t i = 0; i < self->len; i++) {
        Py_VISIT(self->entries[i].lease);
        Py_VISIT(self->entries[i].owner);
    }
    return 0;
}

static int DirectSet_clear(DirectSet *self)
{
    Entry *entries = self->entries;
    Py_ssize_t len = self->len;
    self->entries = NULL;
    self->len = self->cap = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_DECREF(entries[i].lease);
        Py_DECREF(entries[i].owner);
    }
    PyMem_Free(entries);
    Py_CLEAR(self->index);
    return 0;
}

static void DirectSet_dealloc(DirectSet *self)
{
    PyTypeObject *type = Py_TYPE((PyObject *)self);
    PyObject_GC_UnTrack(self);
    DirectSet_clear(self);
    freefunc release = (freefunc)PyType_GetSlot(type, Py_tp_free);
    release(self);
    Py_DECREF(type);
}

static Py_ssize_t DirectSet_length(DirectSet *self)
{
    return self->len;
}

static PyObject *DirectSet_add(DirectSet *self, PyObject *args)
{
    PyObject *lease, *owner;
    if (!PyArg_ParseTuple(args, "O!O:add", LeaseType, &lease, &owner))
        return NULL;
    if (self->index == NULL) {
        PyErr_SetString(PyExc_ValueError, "the set was cleared");
        return NULL;
    }
    int known = PyDict_Contains(self->index, owner);
    if (known < 0)
        return NULL;
    if (known)
        Py_RETURN_FALSE;
    if (self->len == self->cap) {
        Py_ssize_t cap = self->cap ? self->cap * 2 : 16;
        Entry *grown = PyMem_Realloc(self->entries, (size_t)cap * sizeof(Entry));
        if (grown == NULL)
            return PyErr_NoMemory();
        self->entries = grown;
        self->cap = cap;
    }
    PyObject *position = PyLong_FromSsize_t(self->len);
    if (position == NULL)
        return NULL;
    int failed = PyDict_SetItem(self->index, owner, position);
    Py_DECREF(position);
    if (failed)
        return NULL;
    Py_INCREF(lease);
    Py_INCREF(owner);
    self->entries[self->len].lease = (Lease *)lease;
    self->entries[self->len].owner = owner;
    self->len++;
    Py_RETURN_TRUE;
}

static PyObject *DirectSet_discard(DirectSet *self, PyObject *owner)
{
    if (self->index == NULL)
        Py_RETURN_FALSE;
    PyObject *found = PyDict_GetItemWithError(self->index, owner);
    if (found == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_FALSE;
    }
    Py_ssize_t i = PyLong_AsSsize_t(found);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t last = self->len - 1;
    if (i != last) {
        PyObject *position = PyLong_FromSsize_t(i);
        if (position == NULL)
            return NULL;
        int failed =
            PyDict_SetItem(self->index, self->entries[last].owner, position);
        Py_DECREF(position);
        if (failed)
            return NULL;
    }
    if (PyDict_DelItem(self->index, owner) < 0)
        return NULL;
    Entry gone = self->entries[i];
    self->entries[i] = self->entries[last];
    self->len = last;
    Py_DECREF(gone.lease);
    Py_DECREF(gone.owner);
    Py_RETURN_TRUE;
}

static int DirectSet_contains(DirectSet *self, PyObject *owner)
{
    return self->index == NULL ? 0 : PyDict_Contains(self->index, owner);
}

static PyObject *DirectSet_send(DirectSet *self, PyObject *data)
{
    char *buffer;
    Py_ssize_t size;
    if (PyBytes_AsStringAndSize(data, &buffer, &size) < 0)
        return NULL;
    Leftover *left = NULL;
    Py_ssize_t nleft = 0;
    Py_ssize_t count = self->len;
    int out_of_memory = 0;
    /* No Python code runs in this loop, so nothing can change the array. */
    for (Py_ssize_t i = 0; i < count; i++) {
        Lease *lease = self->entries[i].lease;
        Py_ssize_t sent = -1;
        if (lease->holds == 0) {
            do {
                sent = send(lease->fd, buffer, (size_t)size,
                            MSG_DONTWAIT | MSG_NOSIGNAL);
            } while (sent < 0 && errno == EINTR);
            if (sent == size)
                continue;
            if (sent < 0)
                sent = 0; /* would block, or the peer is gone */
            /* Whatever comes next for this connection goes behind the
             * rest of this chunk, through its queue. */
            lease->holds |= HOLD_QUEUED;
        }
        if (left == NULL && !out_of_memory) {
            left = PyMem_Malloc((size_t)(count - i) * sizeof(Leftover));
            out_of_memory = left == NULL;
        }
        if (left != NULL) {
            Py_INCREF(self->entries[i].owner);
            left[nleft].owner = self->entries[i].owner;
            left[nleft].sent = sent;
            nleft++;
        }
    }
    PyObject *partial = PyList_New(0), *held = PyList_New(0), *result = NULL;
    if (out_of_memory)
        PyErr_NoMemory();
    else if (partial != NULL && held != NULL) {
        Py_ssize_t k;
        for (k = 0; k < nleft; k++) {
            int failed;
            if (left[k].sent < 0) {
                failed = PyList_Append(held, left[k].owner);
            } else {
                PyObject *item = Py_BuildValue("(On)", left[k].owner, left[k].sent);
                failed = item == NULL || PyList_Append(partial, item) < 0;
                Py_XDECREF(item);
            }
            if (failed)
                break;
        }
        if (k == nleft)
            result = PyTuple_Pack(2, partial, held);
    }
    for (Py_ssize_t k = 0; k < nleft; k++)
        Py_DECREF(left[k].owner);
    PyMem_Free(left);
    Py_XDECREF(partial);
    Py_XDECREF(held);
    return result;
}

static PyMethodDef DirectSet_methods[] = {
    {"add", (PyCFunction)DirectSet_add, METH_VARARGS,
     "add(lease, owner) -> bool\n\nAdd owner, sending through lease; False if "
     "owner is in already."},
    {"discard", (PyCFunction)DirectSet_discard, METH_O,
     "discard(owner) -> bool\n\nRemove owner; False if it was not in."},
    {"send", (PyCFunction)DirectSet_send, METH_O,
     "send(data) -> (partial, held)\n\nSend data to the descriptor of every "
     "lease that is direct. Returns [(owner, bytes sent)] for the sends the "
     "kernel took in part or not at all (their leases are now queued), and "
     "[owner] for the leases that were held back."},
    {NULL},
};

static PyType_Slot DirectSet_slots[] = {
    {Py_tp_doc,
     "DirectSet()\n\nOwners and their leases, sent to by one loop in C."},
    {Py_tp_new, DirectSet_new},
    {Py_tp_dealloc, DirectSet_dealloc},
    {Py_tp_traverse, DirectSet_traverse},
    {Py_tp_clear, DirectSet_clear},
    {Py_tp_methods, DirectSet_methods},
    {Py_sq_length, DirectSet_length},
    {Py_sq_contains, DirectSet_contains},
    {0, NULL},
};

static PyType_Spec DirectSet_spec = {
    "sse_twisted._fanout.DirectSet", sizeof(DirectSet), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, DirectSet_slots,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sse_twisted._fanout",
    "The compiled send loop of ssedemo's fan-out.", -1, NULL,
};

PyMODINIT_FUNC PyInit__fanout(void)
{
    fileno_name = PyUnicode_InternFromString("fileno");
    if (fileno_name == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    LeaseType = (PyTypeObject *)PyType_FromSpec(&Lease_spec);
    PyObject *sets = PyType_FromSpec(&DirectSet_spec);
    if (LeaseType == NULL || sets == NULL ||
        PyModule_AddObjectRef(m, "Lease", (PyObject *)LeaseType) < 0 ||
        PyModule_AddObjectRef(m, "DirectSet", sets) < 0) {
        Py_XDECREF(sets);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(sets);
    return m;
}
