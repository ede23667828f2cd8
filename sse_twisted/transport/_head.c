/*
 * sse_twisted.transport._head: a whole HTTP/1.x request head parsed in one
 * call, as sse_twisted.transport.http1.parse_head parses it in Python.
 *
 * The rules are that function's (and so Twisted's line-by-line parser's):
 * the head must end in the bytes given, carry no body, fold no header, stay
 * within the channel's limits, and hold no CR, LF or NUL but the line
 * breaks. Anything else gives None, and Twisted's own parser takes the
 * bytes. Header names are put in Twisted's canonical case by looking them
 * up in the cache of Twisted's own name encoder, passed in: only names it
 * has checked are there, and a name it has not seen yet also gives None
 * (Twisted's parser then checks it, and caches it for the next request).
 *
 * Limited API (abi3, Python 3.11+).
 */
#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x030B0000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

static PyObject *content_length; /* b"Content-Length" */
static PyObject *transfer_encoding; /* b"Transfer-Encoding" */

/* RFC 9110 tchar, as twisted.web._abnf._istoken. */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Where the head ends (the first CRLF CRLF), or -1. */
static Py_ssize_t head_end(const char *data, Py_ssize_t size)
{
    if (size < 4)
        return -1;
    const char *at = data, *stop = data + size - 3;
    while (at < stop) {
        at = memchr(at, '\r', (size_t)(stop - at));
        if (at == NULL)
            return -1;
        if (memcmp(at, "\r\n\r\n", 4) == 0)
            return at - data;
        at++;
    }
    return -1;
}

/*
 * Check the head's bytes and limits: CR and LF only as CRLF pairs, no NUL,
 * no line over max_line, at most max_size bytes of lines, at most
 * max_headers header lines. Returns the number of lines, or -1.
 */
static Py_ssize_t check_lines(const char *head, Py_ssize_t size,
                              Py_ssize_t max_line, Py_ssize_t max_size,
                              Py_ssize_t max_headers)
{
    Py_ssize_t lines = 1, start = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        char c = head[i];
        if (c == '\0' || c == '\n')
            return -1;
        if (c != '\r')
            continue;
        if (i + 1 >= size || head[i + 1] != '\n')
            return -1;
        if (i - start > max_line)
            return -1;
        lines++;
        i++;
        start = i + 1;
    }
    if (size - start > max_line)
        return -1;
    if (size - 2 * (lines - 1) > max_size || lines - 1 > max_headers)
        return -1;
    return lines;
}

/* twisted.web.http._parseRequestLine: 1 if the line is a request line. */
static int request_line(const char *line, Py_ssize_t size, Py_ssize_t *first,
                        Py_ssize_t *second)
{
    const char *a = memchr(line, ' ', (size_t)size);
    if (a == NULL)
        return 0;
    const char *b = memchr(a + 1, ' ', (size_t)(size - (a + 1 - line)));
    if (b == NULL || memchr(b + 1, ' ', (size_t)(size - (b + 1 - line))) != NULL)
        return 0;
    if (a == line)
        return 0;
    for (const char *p = line; p < a; p++)
        if (!is_tchar((unsigned char)*p))
            return 0;
    if (b == a + 1)
        return 0;
    for (const char *p = a + 1; p < b; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 32 || c > 176)
            return 0;
    }
    Py_ssize_t version = size - (b + 1 - line);
    if (version != 8 || (memcmp(b + 1, "HTTP/1.1", 8) != 0 &&
                         memcmp(b + 1, "HTTP/1.0", 8) != 0))
        return 0;
    *first = a - line;
    *second = b - line;
    return 1;
}

/*
 * Add one header line to headers ({canonical name: [values]}). Returns 1 if
 * added, 0 if Twisted's parser must take the head, -1 on error.
 */
static int add_header(PyObject *headers, PyObject *names, const char *line,
                      Py_ssize_t size)
{
    if (size > 0 && (line[0] == ' ' || line[0] == '\t'))
        return 0;
    const char *colon = memchr(line, ':', (size_t)size);
    if (colon == NULL)
        return 0;
    PyObject *raw = PyBytes_FromStringAndSize(line, colon - line);
    if (raw == NULL)
        return -1;
    PyObject *name = PyDict_GetItemWithError(names, raw); /* borrowed */
    Py_DECREF(raw);
    if (name == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyBytes_Check(name))
        return 0;
    int body = PyObject_RichCompareBool(name, content_length, Py_EQ);
    if (body == 0)
        body = PyObject_RichCompareBool(name, transfer_encoding, Py_EQ);
    if (body != 0)
        return body < 0 ? -1 : 0;
    const char *value = colon + 1, *end = line + size;
    while (value < end && (*value == ' ' || *value == '\t'))
        value++;
    while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    PyObject *text = PyBytes_FromStringAndSize(value, end - value);
    if (text == NULL)
        return -1;
    PyObject *values = PyDict_GetItemWithError(headers, name); /* borrowed */
    int result;
    if (values != NULL) {
        result = PyList_Append(values, text);
    } else if (PyErr_Occurred()) {
        result = -1;
    } else {
        values = PyList_New(1);
        if (values == NULL) {
            Py_DECREF(text);
            return -1;
        }
        Py_INCREF(text);
        PyList_SetItem(values, 0, text); /* steals */
        result = PyDict_SetItem(headers, name, values);
        Py_DECREF(values);
    }
    Py_DECREF(text);
    return result < 0 ? -1 : 1;
}

static PyObject *parse_head(PyObject *module, PyObject *args)
{
    PyObject *bytes, *names;
    Py_ssize_t max_line, max_size, max_headers;
    if (!PyArg_ParseTuple(args, "O!Snnn:parse_head", &PyDict_Type, &names, &bytes,
                          &max_line, &max_size, &max_headers))
        return NULL;
    char *data;
    Py_ssize_t size;
    if (PyBytes_AsStringAndSize(bytes, &data, &size) < 0)
        return NULL;
    Py_ssize_t end = head_end(data, size);
    if (end <= 0)
        Py_RETURN_NONE;
    Py_ssize_t lines = check_lines(data, end, max_line, max_size, max_headers);
    if (lines < 0)
        Py_RETURN_NONE;
    const char *eol = memchr(data, '\r', (size_t)end);
    Py_ssize_t first_size = eol == NULL ? end : eol - data;
    Py_ssize_t first, second;
    if (!request_line(data, first_size, &first, &second))
        Py_RETURN_NONE;
    PyObject *headers = PyDict_New();
    if (headers == NULL)
        return NULL;
    for (Py_ssize_t at = first_size + 2; first_size < end && at <= end;) {
        const char *line = data + at;
        const char *stop = memchr(line, '\r', (size_t)(end - at));
        Py_ssize_t length = stop == NULL ? end - at : stop - line;
        int added = add_header(headers, names, line, length);
        if (added <= 0) {
            Py_DECREF(headers);
            if (added < 0)
                return NULL;
            Py_RETURN_NONE;
        }
        at += length + 2;
    }
    PyObject *head = Py_BuildValue(
        "(y#y#y#Ny#)", data, first, data + first + 1, second - first - 1,
        data + second + 1, first_size - second - 1, headers, data + end + 4,
        size - end - 4);
    return head;
}

static PyMethodDef methods[] = {
    {"parse_head", parse_head, METH_VARARGS,
     "parse_head(names, data, max_line, max_size, max_headers)\n"
     "--\n\n"
     "The request head at the start of data as (method, target, version,\n"
     "headers, rest), headers a dict of canonical names to lists of values;\n"
     "None when Twisted's own parser must take the bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sse_twisted.transport._head",
    "A whole HTTP/1.x request head parsed in one call.", -1, methods,
};

PyMODINIT_FUNC PyInit__head(void)
{
    content_length = PyBytes_FromString("Content-Length");
    transfer_encoding = PyBytes_FromString("Transfer-Encoding");
    if (content_length == NULL || transfer_encoding == NULL)
        return NULL;
    return PyModule_Create(&module);
}
