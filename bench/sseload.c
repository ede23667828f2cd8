/*
 * sseload: a single-threaded epoll load generator that parses what it reads
 * (HTTP/1.1 head, chunked framing, Server-Sent Events), for the scenarios
 * where the markers of loadgen.c are not enough: each stream's ids, its
 * `retry:` and `resync` events, and the publisher's sequence numbers in the
 * events' data.
 *
 *   sseload storm  --port P --clients N [--inflight M] [--path P]
 *                  [--connect-timeout S] [--dump FILE] [--max-seq Q]
 *   sseload ticker --port P --fast F --slow S --keys K --rate R --seconds D
 *                  [--topic T] [--inflight M] [--connect-timeout S]
 *                  [--drain-timeout S] [--slow-rcvbuf B] [--slow-factor X]
 *
 * Events carry their publisher's sequence number in their data: "<seq>"
 * (storm) or "<key> <seq>" (ticker). Every stream checks that the numbers it
 * sees only increase (nothing doubled, nothing out of order) and that every
 * id it sees for a number is the id the first stream saw for it; the table
 * of those ids is reported so that the runner can check it against the ids
 * the publisher got back.
 *
 * storm: N streams are opened (at most M connects in flight: the ramp), and
 * "READY <reached> <ramp seconds>" printed. Then the runner's commands, one
 * per line on stdin, each answered on stdout:
 *   WAIT <seq> <seconds>  until every open stream has seen <seq>: "HAVE <n>
 *                         <open>"
 *   STOP                  streams that end from now on are to come back:
 *                         "STOPPING"
 *   PROBE <seconds>       connect to the port every 5 ms until it accepts:
 *                         "UP <time>"; then every stream that ended
 *                         reconnects at once (at most M in flight) with its
 *                         Last-Event-ID: "BACK <greeted> <seconds since UP>"
 *                         once all have their greeting again
 *   END                   close everything, write one line per stream to the
 *                         --dump file, print the JSON report
 * Times are CLOCK_MONOTONIC seconds, the clock of Python's time.monotonic().
 * A line of the dump: stream, connects, resyncs, numbers out of order, ids
 * that differ, the last resync's id (or -), the time of its last greeting
 * after a reconnect (or -1), then "<number>:<time>" for each event it got
 * in order (number 0: a resync).
 *
 * ticker: F streams that read at once and S slow ones (a small receive
 * buffer, and reads paced at a tenth of the events' bytes: --slow-factor) on
 * --topic; "READY", then, after a line on stdin, it publishes for D seconds
 * at R events a second on a keep-alive connection to POST /publish, each
 * with key "k<seq % K>" and data "<seq % K> <seq>" (then, with --pad B, a
 * space and B filler bytes, so that slow streams fall behind the kernel's
 * socket buffers within the run). Then every stream reads
 * at full speed until it holds the newest value of every key; "DONE", and
 * after another line on stdin the JSON report.
 *
 * Every wait has a deadline. Diagnostics go to stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "sseload"
#include "benchlib.h"

#define LINE_MAX_LEN 256
#define MAX_PAD 8192 /* the most filler bytes --pad adds to an event's data */
#define ID_LEN 64
#define READ_SIZE 65536
#define MAX_EVENTS 1024
#define TAG_STDIN UINT64_MAX
#define TAG_PUB (UINT64_MAX - 1)
#define MAX_ATTEMPTS 20 /* connects per stream, the first included */

enum state { IDLE, CONNECTING, HEAD, BODY, ENDED, DEAD };
enum chunk { CH_SIZE, CH_DATA, CH_CRLF, CH_END };

struct rec {
    uint32_t seq;
    float t; /* seconds since the loadgen started */
};

struct conn {
    int fd;
    uint8_t state, chunked, chunk_state, chunk_digits, greeted, slow,
        truncated, has_id, is_resync, has_data;
    uint32_t chunk_left;
    uint16_t line_len;
    char line[LINE_MAX_LEN];
    char id[ID_LEN];      /* the id field of the event being read */
    char last_id[ID_LEN]; /* the stream's last event id, as a browser keeps it */
    char data[48];        /* the first data line of the event being read */
    int attempts, retry_ms, resyncs, greetings;
    char resync_id[ID_LEN];
    uint32_t last_seq;
    long order_errors, id_mismatches, events;
    double started, greeted_at;
    struct rec *recs; /* storm: every event's number and arrival */
    long nrecs, caprecs;
    uint32_t *key_seq; /* ticker: the newest number seen for each key */
    long budget;       /* ticker: bytes a slow stream may still read */
    long bytes;
};

struct errors {
    long connect, http, connect_timeout, disconnect, attempts, publish,
        unexpected, timeout;
};

static int port, mode_storm;
static long nclients = 10000, max_inflight = 1000, nfast = 1000, nslow = 100,
            nkeys = 1000, rate = 200, seconds = 10, max_seq = 100000;
static double connect_timeout = 120, drain_timeout = 60, t_start;
static int slow_rcvbuf = 4096, slow_factor = 10;
static long pad; /* ticker: filler bytes after "<key> <seq>" in each event's data */
static const char *path = "/sse", *topic = "ticker", *dump_path;

static int ep;
static struct conn *conns;
static long inflight, live, reconnecting;
static double last_greet;
static struct errors err;
static int stopping; /* storm: streams that end are to come back */
static char **seq_ids; /* the id first seen for each number */

/* stdin, read line by line */
static char in_buf[512];
static size_t in_len;
static int in_eof;

static struct sockaddr_in server_address(void)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static void copy_id(char *dst, const char *src)
{
    size_t n = strlen(src);
    if (n >= ID_LEN)
        n = ID_LEN - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Close stream i. In a storm after STOP, an end is expected: the stream
 * waits to reconnect; otherwise it counts as an error of the given kind. */
static void drop(long i, long *kind)
{
    struct conn *c = &conns[i];
    if (c->state == DEAD || c->state == IDLE || c->state == ENDED)
        return;
    close(c->fd);
    c->fd = -1;
    if (c->greeted)
        live--;
    else
        inflight--;
    c->greeted = 0;
    if (mode_storm && stopping && kind != NULL && kind != &err.connect_timeout) {
        c->state = ENDED;
        reconnecting++;
        return;
    }
    if (kind)
        (*kind)++;
    c->state = DEAD;
}

static void start_connect(long i)
{
    struct conn *c = &conns[i];
    struct sockaddr_in sa = server_address();
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("socket");
        err.connect++;
        c->state = DEAD;
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->slow)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &slow_rcvbuf,
                   sizeof slow_rcvbuf);
    c->state = CONNECTING;
    c->started = now();
    c->attempts++;
    c->chunked = c->chunk_state = c->chunk_digits = c->chunk_left = 0;
    c->line_len = c->truncated = c->has_id = c->is_resync = c->has_data = 0;
    inflight++;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 &&
        errno != EINPROGRESS) {
        drop(i, &err.connect);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

static void on_connected(long i)
{
    struct conn *c = &conns[i];
    int so_error = 0;
    socklen_t len = sizeof so_error;
    char request[LINE_MAX_LEN + ID_LEN + 256];
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0 ||
        so_error) {
        drop(i, &err.connect);
        return;
    }
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
                     "%s%s%s\r\n",
                     path, port, c->last_id[0] ? "Last-Event-ID: " : "",
                     c->last_id, c->last_id[0] ? "\r\n" : "");
    if (send(c->fd, request, (size_t)n, MSG_NOSIGNAL) != n) {
        drop(i, &err.connect);
        return;
    }
    c->state = HEAD;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

static void add_rec(struct conn *c, uint32_t seq, double t)
{
    if (c->nrecs == c->caprecs) {
        c->caprecs = c->caprecs ? 2 * c->caprecs : 64;
        c->recs = realloc(c->recs, (size_t)c->caprecs * sizeof *c->recs);
        if (!c->recs)
            die("realloc");
    }
    c->recs[c->nrecs].seq = seq;
    c->recs[c->nrecs].t = (float)(t - t_start);
    c->nrecs++;
}

/* Ticker: per event, the time it was published and the fast streams' last
 * copy; per key, the number of its newest value. */
static double *sent_at, *fast_last;
static long *fast_copies;
static char **pub_ids;
static uint32_t *final_seq;
static long published, acked;

static void on_event(long i, double t)
{
    struct conn *c = &conns[i];
    if (strstr(c->data, "Gotcha")) {
        if (!c->greeted) {
            c->greeted = 1;
            c->greetings++;
            c->greeted_at = t;
            last_greet = t;
            inflight--;
            live++;
        }
        return;
    }
    if (c->is_resync) {
        c->resyncs++;
        copy_id(c->resync_id, c->has_id ? c->id : "");
        if (mode_storm)
            add_rec(c, 0, t); /* number 0: the resync */
        return;
    }
    if (!c->has_data)
        return;
    char *end;
    unsigned long key = 0, seq = strtoul(c->data, &end, 10);
    if (!mode_storm) {
        key = seq;
        seq = strtoul(end, &end, 10);
        if (pad && *end == ' ')
            end += strlen(end); /* the filler (cut to the data buffer) */
    }
    if (*end != '\0' || seq == 0 || seq > (unsigned long)max_seq ||
        key >= (unsigned long)nkeys || !c->has_id) {
        err.unexpected++;
        return;
    }
    c->events++;
    if (seq <= c->last_seq)
        c->order_errors++;
    c->last_seq = (uint32_t)seq;
    if (!seq_ids[seq]) {
        seq_ids[seq] = strdup(c->id);
        if (!seq_ids[seq])
            die("strdup");
    } else if (strcmp(seq_ids[seq], c->id) != 0) {
        c->id_mismatches++;
    }
    if (mode_storm) {
        add_rec(c, (uint32_t)seq, t);
        return;
    }
    c->key_seq[key] = (uint32_t)seq;
    if (!c->slow) {
        fast_copies[seq]++;
        if (t > fast_last[seq])
            fast_last[seq] = t;
    }
}

/* One line of the response: the head's, then the event stream's. */
static void on_line(long i, double t)
{
    struct conn *c = &conns[i];
    char *line = c->line;
    size_t n = c->line_len;
    if (n && line[n - 1] == '\r')
        line[--n] = '\0';
    if (c->state == HEAD) {
        if (strncmp(line, "HTTP/1.", 7) == 0) {
            if (n < 12 || memcmp(line + 9, "200", 3) != 0)
                drop(i, &err.http);
        } else if (strncasecmp(line, "transfer-encoding:", 18) == 0) {
            c->chunked = strcasestr(line, "chunked") != NULL;
        } else if (n == 0) {
            c->state = BODY;
        }
        return;
    }
    if (n == 0) {
        on_event(i, t);
        c->has_id = c->is_resync = c->has_data = 0;
        c->data[0] = '\0';
        return;
    }
    char *value = memchr(line, ':', n);
    if (value == line)
        return; /* a comment */
    if (value) {
        *value++ = '\0';
        if (*value == ' ')
            value++;
    } else {
        value = line + n;
    }
    if (!strcmp(line, "id")) {
        copy_id(c->id, value);
        copy_id(c->last_id, value);
        c->has_id = 1;
    } else if (!strcmp(line, "event")) {
        c->is_resync = !strcmp(value, "resync");
    } else if (!strcmp(line, "data")) {
        if (!c->has_data) {
            snprintf(c->data, sizeof c->data, "%s", value);
            c->has_data = 1;
        }
    } else if (!strcmp(line, "retry")) {
        c->retry_ms = atoi(value);
    }
}

/* Bytes of the response, chunked framing and all. */
static void on_bytes(long i, const char *p, size_t n, double t)
{
    struct conn *c = &conns[i];
    c->bytes += (long)n;
    while (n > 0 && (c->state == HEAD || c->state == BODY)) {
        if (c->state == BODY && c->chunked) {
            if (c->chunk_state == CH_SIZE) {
                char ch = *p++;
                n--;
                if (ch == '\n') {
                    if (c->chunk_left == 0)
                        c->chunk_state = CH_END;
                    else
                        c->chunk_state = CH_DATA;
                } else if (ch >= '0' && ch <= '9') {
                    c->chunk_left = c->chunk_left * 16 + (uint32_t)(ch - '0');
                } else if ((ch | 32) >= 'a' && (ch | 32) <= 'f') {
                    c->chunk_left =
                        c->chunk_left * 16 + (uint32_t)((ch | 32) - 'a' + 10);
                }
                continue;
            }
            if (c->chunk_state == CH_CRLF || c->chunk_state == CH_END) {
                char ch = *p++;
                n--;
                if (ch == '\n') {
                    c->chunk_state = CH_SIZE;
                    c->chunk_left = 0;
                }
                continue;
            }
        }
        size_t k = n;
        if (c->state == BODY && c->chunked && k > c->chunk_left)
            k = c->chunk_left;
        for (size_t j = 0; j < k; j++) {
            char ch = p[j];
            if (ch == '\n') {
                c->line[c->line_len < LINE_MAX_LEN ? c->line_len
                                                   : LINE_MAX_LEN - 1] = '\0';
                uint8_t was_head = c->state == HEAD;
                on_line(i, t);
                c->line_len = 0;
                if (c->state != HEAD && c->state != BODY)
                    return; /* dropped */
                if (was_head && c->state == BODY) {
                    /* The rest is body: count what was used, go round. */
                    k = j + 1;
                    break;
                }
            } else if (c->line_len < LINE_MAX_LEN - 1) {
                c->line[c->line_len++] = ch;
            }
        }
        if (c->state == BODY && c->chunked && c->chunk_state == CH_DATA) {
            c->chunk_left -= (uint32_t)k;
            if (c->chunk_left == 0)
                c->chunk_state = CH_CRLF;
        }
        p += k;
        n -= k;
    }
}

static void on_readable(long i, double t, size_t limit)
{
    static char buf[READ_SIZE];
    if (limit > sizeof buf)
        limit = sizeof buf;
    ssize_t n = read(conns[i].fd, buf, limit);
    if (n > 0)
        on_bytes(i, buf, (size_t)n, t);
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        drop(i, &err.disconnect);
}

/* The ticker's publisher: one keep-alive connection, one POST at a time. */
static int pub_fd = -1;
static char pub_buf[8192];
static size_t pub_len;
static int pub_waiting; /* a POST awaits its answer */

static void pub_connect(void)
{
    struct sockaddr_in sa = server_address();
    int one = 1;
    struct timeval tv = {.tv_sec = 5};
    pub_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (pub_fd < 0)
        die("socket");
    setsockopt(pub_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(pub_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(pub_fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect (publisher)");
    fcntl(pub_fd, F_SETFL, fcntl(pub_fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_PUB};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, pub_fd, &ev) < 0)
        die("epoll_ctl");
    pub_len = 0;
}

static void pub_close(void)
{
    if (pub_fd >= 0)
        close(pub_fd);
    pub_fd = -1;
}

static void publish_next(void)
{
    static char filler[MAX_PAD + 1];
    char body[MAX_PAD + 256], req[MAX_PAD + 512];
    long seq = published + 1, key = seq % nkeys;
    if (seq > max_seq)
        return;
    if (pub_fd < 0)
        pub_connect();
    if (pad && !filler[0])
        memset(filler, 'x', (size_t)pad);
    int blen = snprintf(body, sizeof body,
                        "{\"data\": \"%ld %ld%s%s\", \"topic\": \"%s\", "
                        "\"key\": \"k%ld\"}",
                        key, seq, pad ? " " : "", filler, topic, key);
    int len = snprintf(req, sizeof req,
                       "POST /publish HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: %d\r\n\r\n%s",
                       port, blen, body);
    sent_at[seq] = now();
    if (send(pub_fd, req, (size_t)len, MSG_NOSIGNAL) != len) {
        perror("sseload: POST /publish");
        err.publish++;
        pub_close();
        return;
    }
    published = seq;
    pub_waiting = 1;
    pub_len = 0;
}

/* A whole answer is in pub_buf: its status, and the id it names. */
static int pub_answer_complete(void)
{
    pub_buf[pub_len] = '\0';
    char *head_end = strstr(pub_buf, "\r\n\r\n");
    if (!head_end)
        return 0;
    char *body = head_end + 4;
    char *cl = strcasestr(pub_buf, "content-length:");
    if (cl && cl < head_end) {
        if ((size_t)(pub_buf + pub_len - body) < strtoul(cl + 15, NULL, 10))
            return 0;
    } else if (!strstr(body, "\r\n0\r\n\r\n") && strncmp(body, "0\r\n\r\n", 5)) {
        return 0;
    }
    long seq = published;
    if (strncmp(pub_buf + 9, "200", 3) != 0) {
        fprintf(stderr, "sseload: publish %ld: %.12s\n", seq, pub_buf);
        err.publish++;
    } else {
        char *id = strstr(body, "\"id\": \"");
        if (id) {
            id += 7;
            char *q = strchr(id, '"');
            if (q) {
                *q = '\0';
                pub_ids[seq] = strdup(id);
                final_seq[seq % nkeys] = (uint32_t)seq;
                acked++;
            }
        }
        if (!pub_ids[seq])
            err.publish++;
    }
    pub_waiting = 0;
    return 1;
}

static void on_pub_readable(void)
{
    ssize_t n = read(pub_fd, pub_buf + pub_len, sizeof pub_buf - 1 - pub_len);
    if (n > 0) {
        pub_len += (size_t)n;
        if (pub_waiting)
            pub_answer_complete();
        if (pub_len >= sizeof pub_buf - 1)
            pub_len = 0;
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (pub_waiting) {
        fprintf(stderr, "sseload: the publisher's connection closed\n");
        err.publish++;
        pub_waiting = 0;
    }
    pub_close();
}

static void on_stdin(void)
{
    ssize_t n = read(STDIN_FILENO, in_buf + in_len, sizeof in_buf - 1 - in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        in_eof = 1;
        epoll_ctl(ep, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
        return;
    }
    in_len += (size_t)n;
}

static void poll_once(double deadline)
{
    static struct epoll_event evs[MAX_EVENTS];
    double left = deadline - now();
    int timeout = left <= 0 ? 0 : (int)ceil(left * 1e3);
    int n = epoll_wait(ep, evs, MAX_EVENTS, timeout);
    if (n < 0) {
        if (errno == EINTR)
            return;
        die("epoll_wait");
    }
    double t = now();
    for (int k = 0; k < n; k++) {
        uint64_t tag = evs[k].data.u64;
        if (tag == TAG_STDIN) {
            on_stdin();
        } else if (tag == TAG_PUB) {
            if (pub_fd >= 0)
                on_pub_readable();
        } else {
            long i = (long)tag;
            if (conns[i].state == CONNECTING)
                on_connected(i);
            else if (conns[i].state == HEAD || conns[i].state == BODY)
                on_readable(i, t, READ_SIZE);
        }
    }
}

/* The runner's next line (without its line break), or NULL at the deadline
 * or at end of file. Streams are read meanwhile. */
static char *next_command(double deadline)
{
    static char line[sizeof in_buf];
    for (;;) {
        char *nl = memchr(in_buf, '\n', in_len);
        if (nl) {
            size_t k = (size_t)(nl - in_buf);
            memcpy(line, in_buf, k);
            line[k] = '\0';
            memmove(in_buf, nl + 1, in_len - k - 1);
            in_len -= k + 1;
            return line;
        }
        if (in_eof || now() >= deadline)
            return NULL;
        if (in_len == sizeof in_buf - 1)
            in_len = 0; /* a line too long: forget it */
        poll_once(deadline);
    }
}

static void watch_stdin(void)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_STDIN};
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev) < 0)
        in_eof = 1; /* not a pipe: no commands */
}

/* Open (or reopen) every stream in [0, n) that is IDLE or ENDED, at most
 * max_inflight at once, until each has its greeting or the deadline. */
static void connect_all(long n, double deadline)
{
    long next = 0;
    for (;;) {
        while (inflight < max_inflight && next < n) {
            struct conn *c = &conns[next];
            if (c->state == ENDED) {
                reconnecting--;
                if (c->attempts >= MAX_ATTEMPTS) {
                    err.attempts++;
                    c->state = DEAD;
                } else {
                    start_connect(next);
                }
            } else if (c->state == IDLE) {
                start_connect(next);
            }
            next++;
        }
        /* A stream that ended again after the restart comes back too. */
        if (next == n && reconnecting > 0)
            next = 0;
        if (next == n && inflight == 0)
            return;
        if (now() >= deadline)
            break;
        poll_once(deadline);
    }
    for (long i = 0; i < n; i++) /* too slow: give up on them */
        if ((conns[i].state == CONNECTING || conns[i].state == HEAD ||
             conns[i].state == BODY) && !conns[i].greeted)
            drop(i, &err.connect_timeout);
}

static long error_total(void)
{
    return err.connect + err.http + err.connect_timeout + err.disconnect +
           err.attempts + err.publish + err.unexpected + err.timeout;
}

static void json_errors(void)
{
    printf("\"errors\": {\"connect\": %ld, \"http\": %ld, \"connect_timeout\": "
           "%ld, \"disconnect\": %ld, \"attempts\": %ld, \"publish\": %ld, "
           "\"unexpected\": %ld, \"timeout\": %ld}, \"error_total\": %ld}\n",
           err.connect, err.http, err.connect_timeout, err.disconnect,
           err.attempts, err.publish, err.unexpected, err.timeout,
           error_total());
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 32)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    putchar('"');
}

/* The ids seen for each number, for the runner to check. */
static void json_seq_ids(void)
{
    printf("\"ids\": {");
    int first = 1;
    for (long s = 1; s <= max_seq; s++)
        if (seq_ids[s]) {
            printf("%s\"%ld\": ", first ? "" : ", ", s);
            json_string(seq_ids[s]);
            first = 0;
        }
    printf("}, ");
}

static long count_open(void)
{
    long n = 0;
    for (long i = 0; i < nclients; i++)
        n += conns[i].greeted;
    return n;
}

/* storm */

static void cmd_wait(unsigned long seq, double secs)
{
    double deadline = now() + secs;
    long have = 0, open = 0;
    for (;;) {
        have = open = 0;
        for (long i = 0; i < nclients; i++)
            if (conns[i].greeted) {
                open++;
                have += conns[i].last_seq >= seq;
            }
        if (have == open || now() >= deadline)
            break;
        poll_once(fmin(deadline, now() + 0.01));
    }
    if (have < open) {
        fprintf(stderr, "sseload: %ld of %ld streams without %lu\n",
                open - have, open, seq);
        err.timeout++;
    }
    printf("HAVE %ld %ld\n", have, open);
}

static int probe(void)
{
    struct sockaddr_in sa = server_address();
    struct timeval tv = {.tv_usec = 200000};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static void cmd_probe(double secs)
{
    double deadline = now() + secs, up = NAN;
    while (now() < deadline) {
        if (probe()) {
            up = now();
            break;
        }
        poll_once(now() + 0.005);
    }
    if (isnan(up)) {
        printf("UP none\n");
        err.timeout++;
        return;
    }
    printf("UP %.6f\n", up);
    /* Streams that had not ended yet when the port came back (none should
     * have) are left as they are. */
    connect_all(nclients, now() + connect_timeout);
    printf("BACK %ld %.6f\n", count_open(), last_greet - up);
}

static void dump_streams(void)
{
    FILE *f = fopen(dump_path, "w");
    if (!f)
        die(dump_path);
    for (long i = 0; i < nclients; i++) {
        struct conn *c = &conns[i];
        fprintf(f, "%ld %d %d %ld %ld %s %.6f", i, c->attempts, c->resyncs,
                c->order_errors, c->id_mismatches,
                c->resyncs ? (c->resync_id[0] ? c->resync_id : "\"\"") : "-",
                c->greetings > 1 ? c->greeted_at : -1.0);
        for (long k = 0; k < c->nrecs; k++)
            fprintf(f, " %u:%.4f", c->recs[k].seq, c->recs[k].t + t_start);
        fputc('\n', f);
    }
    if (fclose(f) != 0)
        die(dump_path);
}

static int storm(void)
{
    double t0 = now();
    last_greet = t0;
    connect_all(nclients, t0 + connect_timeout);
    printf("READY %ld %.6f\n", count_open(), last_greet - t0);
    double ramp = last_greet - t0;
    watch_stdin();
    char *cmd;
    while ((cmd = next_command(now() + 3600)) != NULL) {
        unsigned long seq;
        double secs;
        if (sscanf(cmd, "WAIT %lu %lf", &seq, &secs) == 2) {
            cmd_wait(seq, secs);
        } else if (!strcmp(cmd, "STOP")) {
            stopping = 1;
            printf("STOPPING\n");
        } else if (sscanf(cmd, "PROBE %lf", &secs) == 1) {
            cmd_probe(secs);
        } else if (!strcmp(cmd, "END")) {
            break;
        } else {
            fprintf(stderr, "sseload: unknown command %s\n", cmd);
        }
    }
    stopping = 0;
    long open_at_end = count_open();
    for (long i = 0; i < nclients; i++)
        drop(i, NULL);
    if (dump_path)
        dump_streams();
    long order = 0, mismatches = 0, resyncs = 0, events = 0, retries = 0;
    int retry_min = 0, retry_max = 0;
    for (long i = 0; i < nclients; i++) {
        struct conn *c = &conns[i];
        order += c->order_errors;
        mismatches += c->id_mismatches;
        resyncs += c->resyncs;
        events += c->events;
        if (c->attempts > 1)
            retries += c->attempts - 2;
        if (c->retry_ms && (!retry_min || c->retry_ms < retry_min))
            retry_min = c->retry_ms;
        if (c->retry_ms > retry_max)
            retry_max = c->retry_ms;
    }
    printf("{\"clients\": %ld, \"open_at_end\": %ld, ", nclients, open_at_end);
    json_number("ramp_s", ramp, ", ");
    printf("\"events\": %ld, \"order_errors\": %ld, \"id_mismatches\": %ld, "
           "\"resyncs\": %ld, \"extra_reconnects\": %ld, \"retry_ms_min\": %d, "
           "\"retry_ms_max\": %d, ",
           events, order, mismatches, resyncs, retries, retry_min, retry_max);
    json_seq_ids();
    json_errors();
    return 0;
}

/* ticker */

/* Every stream holds the newest value of every key that has one. */
static long streams_complete(int slow)
{
    long n = 0;
    for (long i = 0; i < nclients; i++) {
        struct conn *c = &conns[i];
        if (c->slow != slow || !c->greeted)
            continue;
        long k = 0;
        while (k < nkeys && c->key_seq[k] == final_seq[k])
            k++;
        n += k == nkeys;
    }
    return n;
}

static void set_watch(long i, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)i};
    if (conns[i].state == HEAD || conns[i].state == BODY)
        epoll_ctl(ep, EPOLL_CTL_MOD, conns[i].fd, &ev);
}

static int ticker(void)
{
    nclients = nfast + nslow;
    for (long i = 0; i < nclients; i++) {
        conns[i].slow = i >= nfast;
        conns[i].key_seq = calloc((size_t)nkeys, sizeof(uint32_t));
        if (!conns[i].key_seq)
            die("calloc");
    }
    double t0 = now();
    last_greet = t0;
    connect_all(nclients, t0 + connect_timeout);
    printf("READY %ld %.6f\n", count_open(), last_greet - t0);
    watch_stdin();
    if (!next_command(now() + 120))
        fprintf(stderr, "sseload: no word from the runner, going on\n");
    /* Slow streams are read on a timer from now on. */
    for (long i = nfast; i < nclients; i++)
        set_watch(i, 0);
    double cpu0 = cpu_seconds(), start = now(), end = start + seconds;
    long fast_bytes0 = 0;
    for (long i = 0; i < nfast; i++)
        fast_bytes0 += conns[i].bytes;
    double tick = 0.01, next_tick = start + tick;
    long target = rate * seconds;
    if (target > max_seq)
        target = max_seq;
    while (now() < end || pub_waiting) {
        double t = now();
        if (!pub_waiting && published < target && t >= start + published / (double)rate)
            publish_next();
        if (t >= next_tick) {
            /* A tenth of the bytes the fast streams get, on average. */
            long fast_bytes = -fast_bytes0;
            for (long i = 0; i < nfast; i++)
                fast_bytes += conns[i].bytes;
            double per_s = nfast ? fast_bytes / (double)nfast / (t - start) : 0;
            long budget = (long)(per_s / slow_factor * tick) + 1;
            for (long i = nfast; i < nclients; i++) {
                struct conn *c = &conns[i];
                c->budget += budget;
                while (c->budget > 0 && (c->state == HEAD || c->state == BODY)) {
                    long before = c->bytes;
                    on_readable(i, t, (size_t)c->budget);
                    if (c->bytes == before)
                        break;
                    c->budget -= c->bytes - before;
                }
                if (c->budget > 4 * budget)
                    c->budget = 4 * budget; /* no saving up while idle */
            }
            next_tick += tick;
        }
        double wake = fmin(next_tick, pub_waiting || published >= target
                                          ? end
                                          : start + published / (double)rate);
        if (now() > end + 30) {
            fprintf(stderr, "sseload: the last publish went unanswered\n");
            err.publish++;
            break;
        }
        poll_once(fmax(wake, now()));
        if (published >= target && !pub_waiting)
            break;
    }
    double publish_s = now() - start, cpu1 = cpu_seconds();
    pub_close();
    /* Drain: every stream reads at full speed until it is complete. */
    for (long i = nfast; i < nclients; i++)
        set_watch(i, EPOLLIN);
    double deadline = now() + drain_timeout;
    while (now() < deadline &&
           streams_complete(0) + streams_complete(1) < count_open())
        poll_once(fmin(deadline, now() + 0.05));
    long fast_done = streams_complete(0), slow_done = streams_complete(1);
    long fast_open = 0, slow_open = 0, slow_events = 0, fast_events = 0;
    long order = 0, mismatches = 0;
    for (long i = 0; i < nclients; i++) {
        struct conn *c = &conns[i];
        order += c->order_errors;
        mismatches += c->id_mismatches;
        if (c->slow) {
            slow_open += c->greeted;
            slow_events += c->events;
        } else {
            fast_open += c->greeted;
            fast_events += c->events;
        }
    }
    printf("DONE\n");
    next_command(now() + 120);
    for (long i = 0; i < nclients; i++)
        drop(i, NULL);
    /* Fan-out to the fast streams: events that every fast stream got. */
    double *fanout = calloc((size_t)published + 1, sizeof *fanout);
    long nfan = 0, fast_missed = 0;
    if (!fanout)
        die("calloc");
    for (long s = 1; s <= published; s++) {
        if (fast_copies[s] == fast_open && fast_open > 0)
            fanout[nfan++] = (fast_last[s] - sent_at[s]) * 1e3;
        else
            fast_missed += fast_open - fast_copies[s];
    }
    qsort(fanout, (size_t)nfan, sizeof *fanout, cmp_double);
    long id_errors = 0;
    for (long s = 1; s <= published; s++)
        if (seq_ids[s] && (!pub_ids[s] || strcmp(seq_ids[s], pub_ids[s])))
            id_errors++;
    printf("{\"fast\": %ld, \"slow\": %ld, \"keys\": %ld, \"fast_open\": %ld, "
           "\"slow_open\": %ld, \"published\": %ld, \"acked\": %ld, ",
           nfast, nslow, nkeys, fast_open, slow_open, published, acked);
    json_number("publish_s", publish_s, ", ");
    json_number("publish_rate", published / publish_s, ", ");
    json_number("fanout_ms_p50", percentile(fanout, nfan, 50), ", ");
    json_number("fanout_ms_p99", percentile(fanout, nfan, 99), ", ");
    json_number("fanout_ms_max", percentile(fanout, nfan, 100), ", ");
    printf("\"fanout_events\": %ld, \"fast_copies_missed\": %ld, "
           "\"fast_events\": %ld, \"slow_events\": %ld, \"fast_complete\": %ld, "
           "\"slow_complete\": %ld, \"order_errors\": %ld, "
           "\"id_mismatches\": %ld, \"ids_not_acknowledged\": %ld, ",
           nfan, fast_missed, fast_events, slow_events, fast_done, slow_done,
           order, mismatches, id_errors);
    json_number("loadgen_cpu_s", cpu1 - cpu0, ", ");
    json_errors();
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: sseload storm --port P --clients N [--inflight M] "
            "[--path P] [--connect-timeout S] [--dump FILE] [--max-seq Q]\n"
            "       sseload ticker --port P --fast F --slow S --keys K "
            "--rate R --seconds D [--topic T] [--inflight M] "
            "[--connect-timeout S] [--drain-timeout S] [--slow-rcvbuf B] "
            "[--slow-factor X] [--pad BYTES]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    if (argc < 2)
        usage();
    if (!strcmp(argv[1], "storm"))
        mode_storm = 1;
    else if (strcmp(argv[1], "ticker"))
        usage();
    if (argc % 2 != 0)
        usage();
    for (int k = 2; k + 1 < argc; k += 2) {
        const char *o = argv[k], *v = argv[k + 1];
        if (!strcmp(o, "--port"))
            port = (int)parse_long(v, 1, 65535, o);
        else if (!strcmp(o, "--clients"))
            nclients = parse_long(v, 1, 1000000, o);
        else if (!strcmp(o, "--inflight"))
            max_inflight = parse_long(v, 1, 1000000, o);
        else if (!strcmp(o, "--connect-timeout"))
            connect_timeout = (double)parse_long(v, 1, 3600, o);
        else if (!strcmp(o, "--drain-timeout"))
            drain_timeout = (double)parse_long(v, 1, 3600, o);
        else if (!strcmp(o, "--max-seq"))
            max_seq = parse_long(v, 1, 10000000, o);
        else if (!strcmp(o, "--fast"))
            nfast = parse_long(v, 0, 1000000, o);
        else if (!strcmp(o, "--slow"))
            nslow = parse_long(v, 0, 1000000, o);
        else if (!strcmp(o, "--keys"))
            nkeys = parse_long(v, 1, 1000000, o);
        else if (!strcmp(o, "--rate"))
            rate = parse_long(v, 1, 100000, o);
        else if (!strcmp(o, "--seconds"))
            seconds = parse_long(v, 1, 3600, o);
        else if (!strcmp(o, "--slow-rcvbuf"))
            slow_rcvbuf = (int)parse_long(v, 1, 1 << 24, o);
        else if (!strcmp(o, "--slow-factor"))
            slow_factor = (int)parse_long(v, 1, 1000, o);
        else if (!strcmp(o, "--pad"))
            pad = parse_long(v, 0, MAX_PAD, o);
        else if (!strcmp(o, "--dump"))
            dump_path = v;
        else if (!strcmp(o, "--topic"))
            topic = v;
        else if (!strcmp(o, "--path")) {
            if (v[0] != '/' || strlen(v) > LINE_MAX_LEN || strpbrk(v, " \r\n")) {
                fprintf(stderr, "sseload: --path must be a request path of at "
                                "most %d characters\n", LINE_MAX_LEN);
                exit(2);
            }
            path = v;
        } else {
            fprintf(stderr, "sseload: unknown option %s\n", o);
            exit(2);
        }
    }
    if (!port)
        usage();
    if (strlen(topic) > 64 || strpbrk(topic, "\"\\ &?#/"))
        usage();
}

int main(int argc, char **argv)
{
    static char ticker_path[128];
    parse_args(argc, argv);
    if (!mode_storm) {
        nclients = nfast + nslow;
        snprintf(ticker_path, sizeof ticker_path, "/sse?topic=%s", topic);
        path = ticker_path;
        if (nclients == 0)
            usage();
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("setrlimit");
    if ((rlim_t)nclients + 16 > rl.rlim_cur) {
        fprintf(stderr, "sseload: %ld clients need more open files\n", nclients);
        exit(2);
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    t_start = now();
    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)nclients, sizeof *conns);
    seq_ids = calloc((size_t)max_seq + 1, sizeof *seq_ids);
    if (ep < 0 || !conns || !seq_ids)
        die("setup");
    for (long i = 0; i < nclients; i++)
        conns[i].fd = -1;
    if (mode_storm)
        return storm();
    sent_at = calloc((size_t)max_seq + 1, sizeof *sent_at);
    fast_last = calloc((size_t)max_seq + 1, sizeof *fast_last);
    fast_copies = calloc((size_t)max_seq + 1, sizeof *fast_copies);
    pub_ids = calloc((size_t)max_seq + 1, sizeof *pub_ids);
    final_seq = calloc((size_t)nkeys, sizeof *final_seq);
    if (!sent_at || !fast_last || !fast_copies || !pub_ids || !final_seq)
        die("setup");
    return ticker();
}
