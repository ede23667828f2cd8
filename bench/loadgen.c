/*
 * loadgen: a single-threaded epoll load generator for Server-Sent Events.
 *
 *   loadgen --port P [--clients N] [--rounds K] [--inflight M]
 *           [--connect-timeout S] [--round-timeout S] [--gap-ms MS]
 *           [--wait-timeout S] [--waves W] [--path /sse?...] [--publishes P]
 *
 * Phase 1 opens N streams (GET /sse, or --path) to 127.0.0.1:P, at most M connects in
 * flight, and times each until its "Gotcha" greeting. Phase 2 runs K rounds:
 * one POST /api per round on a fresh connection, then it waits until every
 * live stream has seen that round's "Something changed".
 *
 * The runner steers it through stdout and stdin, one line each way:
 *   "READY" after phase 1, then it waits for a byte (or EOF) on stdin;
 *   "DONE"  after phase 2, then it waits again, closes every stream and
 *   prints the report as one JSON object on one line.
 * Each wait, like every other, has a deadline. Diagnostics go to stderr.
 *
 * With --waves W (connection churn) there are no rounds: W times over, it
 * opens N streams as in phase 1, closes them all and prints
 * "WAVE <w> <reached>", then waits for the runner as above (which measures
 * the server once it has seen the closes). The report, printed after the last
 * wave, gives the connection rate of each wave.
 *
 * With --publishes P, once the runner has answered "DONE", it times P
 * publishes, one after the other, each a POST /publish on a connection of its
 * own to a topic no stream reads: the time until the answer's status line.
 *
 * Markers are found in the raw bytes, chunked framing included: every server
 * measured writes each event as one chunk, so framing never splits a marker.
 */
#define _GNU_SOURCE
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
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define PROGRAM "loadgen"
#include "benchlib.h"

#define GOTCHA "Gotcha"
#define CHANGED "Something changed"
/* Bytes kept from one read to the next: the longest marker, less one. */
#define TAIL_MAX (sizeof(CHANGED) - 2)
#define STATUS_LEN 12 /* "HTTP/1.1 200" */
#define READ_SIZE 16384
#define MAX_EVENTS 1024
#define TAG_STDIN UINT64_MAX
#define TAG_POST (UINT64_MAX - 1)

enum state { IDLE, CONNECTING, OPEN, DEAD };

struct conn {
    int fd;
    uint8_t state;
    uint8_t greeted;
    uint8_t status_len;
    uint8_t tail_len;
    char status[STATUS_LEN];
    char tail[TAIL_MAX];
    uint32_t changed;   /* "Something changed" seen so far */
    double started;     /* connect() called */
};

struct errors {
    long connect, http, connect_timeout, disconnect, post, round_timeout,
        unexpected;
};

/* Options. */
static int port;
static long nclients = 10000, nrounds = 20, max_inflight = 1000, nwaves;
static double connect_timeout = 120, round_timeout = 30, wait_timeout = 120;
static double gap = 0.05;
static long npublishes;

/* State. */
static int ep;
static struct conn *conns;
static long inflight, reached, live;
static double last_gotcha;
static double *connect_ms;   /* per greeted stream: greeting - connect() */
static double *latency;      /* [round * nclients + i], -1 until delivered */
static double *post_sent;    /* per round */
static double *round_last;   /* per round: last arrival */
static long round_now;       /* current round, 1-based; 0 before phase 2 */
static long pending;         /* live streams still waiting for round_now */
static long expected;        /* deliveries due: live streams, summed by round */
static struct errors err;
#define PATH_MAX_LEN 1024
static const char *path = "/sse";
static char request[PATH_MAX_LEN + 256];
static size_t request_len;

/* The POST of the current round. */
static int post_fd = -1;
static int post_done;
static char post_status[STATUS_LEN];
static size_t post_status_len;

static int stdin_seen; /* the runner said "go on" (or went away) */

static struct sockaddr_in server_address(void)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

/* Close a stream. Counts it as an error of the given kind, if any. */
static void drop(long i, long *kind)
{
    struct conn *c = &conns[i];
    if (c->state == DEAD || c->state == IDLE)
        return;
    close(c->fd); /* also removes it from the epoll set */
    if (kind)
        (*kind)++;
    if (c->greeted) {
        live--;
        if (round_now && c->changed < (uint32_t)round_now)
            pending--;
    } else {
        inflight--;
    }
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
    c->state = CONNECTING;
    c->started = now();
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

/* The connect finished (or failed): send the request, then read. */
static void on_connected(long i)
{
    struct conn *c = &conns[i];
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0 ||
        so_error) {
        drop(i, &err.connect);
        return;
    }
    /* A fresh socket's send buffer always takes a request this small. */
    if (send(c->fd, request, request_len, MSG_NOSIGNAL) != (ssize_t)request_len) {
        drop(i, &err.connect);
        return;
    }
    c->state = OPEN;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

/* Count the occurrences of a marker that end in the new bytes, that is, past
 * the first `old` bytes of `buf` (those were scanned before). */
static long count_marker(const char *buf, size_t len, size_t old,
                         const char *marker)
{
    size_t mlen = strlen(marker);
    long n = 0;
    const char *p = buf, *end = buf + len, *q;
    while ((q = memmem(p, (size_t)(end - p), marker, mlen)) != NULL) {
        if ((size_t)(q - buf) + mlen > old)
            n++;
        p = q + 1;
    }
    return n;
}

static void on_greeted(long i, double t)
{
    struct conn *c = &conns[i];
    c->greeted = 1;
    connect_ms[reached] = (t - c->started) * 1e3;
    reached++;
    live++;
    inflight--;
    last_gotcha = t;
}

static void on_changed(long i, double t)
{
    struct conn *c = &conns[i];
    long r = (long)++c->changed; /* the round this event belongs to */
    if (r > round_now || !c->greeted) {
        err.unexpected++;
        return;
    }
    latency[(r - 1) * nclients + i] = t - post_sent[r - 1];
    if (t > round_last[r - 1])
        round_last[r - 1] = t;
    if (r == round_now)
        pending--;
}

/* New bytes for stream i sit at buf[TAIL_MAX ..]; the bytes before them are
 * free, so the tail of the previous read is put there and scanned again. */
static void on_bytes(long i, char *buf, size_t n, double t)
{
    struct conn *c = &conns[i];
    char *data = buf + TAIL_MAX;
    if (c->status_len < STATUS_LEN) {
        size_t k = STATUS_LEN - c->status_len;
        if (k > n)
            k = n;
        memcpy(c->status + c->status_len, data, k);
        c->status_len += k;
        if (c->status_len == STATUS_LEN &&
            memcmp(c->status, "HTTP/1.1 200", STATUS_LEN) != 0) {
            drop(i, &err.http);
            return;
        }
    }
    char *scan = data - c->tail_len;
    size_t len = c->tail_len + n;
    memcpy(scan, c->tail, c->tail_len);
    if (!c->greeted && count_marker(scan, len, c->tail_len, GOTCHA))
        on_greeted(i, t);
    for (long k = count_marker(scan, len, c->tail_len, CHANGED); k > 0; k--)
        on_changed(i, t);
    c->tail_len = len < TAIL_MAX ? len : TAIL_MAX;
    memcpy(c->tail, scan + len - c->tail_len, c->tail_len);
}

static void on_readable(long i, double t)
{
    static char buf[TAIL_MAX + READ_SIZE];
    ssize_t n = read(conns[i].fd, buf + TAIL_MAX, READ_SIZE);
    if (n > 0)
        on_bytes(i, buf, (size_t)n, t);
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        drop(i, &err.disconnect);
}

static void on_post_readable(void)
{
    char buf[4096];
    ssize_t n = read(post_fd, buf, sizeof buf);
    if (n > 0) {
        size_t k = STATUS_LEN - post_status_len;
        if (k > (size_t)n)
            k = (size_t)n;
        memcpy(post_status + post_status_len, buf, k);
        post_status_len += k;
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    /* The server closes after answering ("Connection: close"). */
    if (post_status_len < STATUS_LEN ||
        memcmp(post_status, "HTTP/1.1 200", STATUS_LEN) != 0) {
        fprintf(stderr, "loadgen: POST /api in round %ld failed\n", round_now);
        err.post++;
    }
    close(post_fd);
    post_fd = -1;
    post_done = 1;
}

static void on_stdin(void)
{
    char c;
    ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    stdin_seen = 1;
    if (n <= 0) /* EOF or error: stop watching stdin */
        epoll_ctl(ep, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
}

/* Wait for events until `deadline` at most, and handle them. */
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
        } else if (tag == TAG_POST) {
            if (post_fd >= 0)
                on_post_readable();
        } else {
            long i = (long)tag;
            if (conns[i].state == CONNECTING)
                on_connected(i);
            else if (conns[i].state == OPEN)
                on_readable(i, t);
        }
    }
}

/* Block until the runner writes a byte to stdin, closes it, or the deadline
 * passes; stdin that epoll cannot watch (a file, /dev/null) means no wait. */
static void wait_for_runner(void)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_STDIN};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev) < 0)
        return;
    stdin_seen = 0;
    double deadline = now() + wait_timeout;
    while (!stdin_seen && now() < deadline)
        poll_once(deadline);
    epoll_ctl(ep, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
    if (!stdin_seen)
        fprintf(stderr, "loadgen: no word from the runner, going on\n");
}

/* Phase 1: open every stream; returns the time of the first connect(). */
static double connect_all(void)
{
    double t0 = now(), deadline = t0 + connect_timeout;
    long next = 0;
    last_gotcha = t0;
    while (now() < deadline) {
        while (inflight < max_inflight && next < nclients)
            start_connect(next++);
        if (next == nclients && inflight == 0)
            break;
        poll_once(deadline);
    }
    for (long i = 0; i < nclients; i++) /* too slow: give up on them */
        if (conns[i].state != DEAD && !conns[i].greeted)
            drop(i, &err.connect_timeout);
    return t0;
}

/* Send round r's POST on a fresh connection. Loopback connect and a small
 * send complete in the kernel; SO_SNDTIMEO bounds them all the same. */
static int send_post(long r)
{
    static const char body[] = "{}";
    char req[256];
    int len = snprintf(req, sizeof req,
                       "POST /api HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       port, sizeof body - 1, body);
    struct sockaddr_in sa = server_address();
    struct timeval tv = {.tv_sec = 5};
    int one = 1;
    post_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (post_fd < 0)
        return -1;
    setsockopt(post_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(post_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    post_status_len = 0;
    post_done = 0;
    if (connect(post_fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        goto fail;
    post_sent[r - 1] = now();
    if (send(post_fd, req, (size_t)len, MSG_NOSIGNAL) != len)
        goto fail;
    fcntl(post_fd, F_SETFL, fcntl(post_fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_POST};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, post_fd, &ev) < 0)
        die("epoll_ctl");
    return 0;
fail:
    perror("loadgen: POST /api");
    close(post_fd);
    post_fd = -1;
    return -1;
}

/* Phase 2; returns the number of rounds completed. */
static long run_rounds(void)
{
    long done = 0;
    for (long r = 1; r <= nrounds && live > 0; r++) {
        round_now = r;
        pending = 0;
        for (long i = 0; i < nclients; i++)
            if (conns[i].state == OPEN && conns[i].greeted &&
                conns[i].changed < (uint32_t)r)
                pending++;
        expected += live;
        if (send_post(r) < 0) {
            err.post++;
            break;
        }
        double deadline = now() + round_timeout;
        while ((pending > 0 || !post_done) && now() < deadline)
            poll_once(deadline);
        if (pending > 0 || !post_done) {
            fprintf(stderr, "loadgen: round %ld timed out, %ld streams short\n",
                    r, pending);
            err.round_timeout++;
            break;
        }
        done++;
        /* A short gap, still reading, so that rounds never overlap. */
        double until = now() + gap;
        while (now() < until)
            poll_once(until);
    }
    if (post_fd >= 0) {
        close(post_fd);
        post_fd = -1;
    }
    return done;
}

/* Time one POST /publish until its status line; -1 if it failed. */
static double time_publish(long k)
{
    char req[512], buf[64];
    char body[128];
    int blen = snprintf(body, sizeof body,
                        "{\"data\": \"latency %ld\", \"topic\": \"bench-latency\"}", k);
    int len = snprintf(req, sizeof req,
                       "POST /publish HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                       port, blen, body);
    struct sockaddr_in sa = server_address();
    struct timeval tv = {.tv_sec = 5};
    int one = 1;
    size_t got = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    double t0 = now();
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        send(fd, req, (size_t)len, MSG_NOSIGNAL) != len) {
        close(fd);
        return -1;
    }
    while (got < STATUS_LEN) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    double t = now() - t0;
    close(fd);
    if (got < STATUS_LEN || memcmp(buf, "HTTP/1.1 200", STATUS_LEN) != 0)
        return -1;
    return t;
}

static void parse_args(int argc, char **argv)
{
    for (int k = 1; k + 1 < argc; k += 2) {
        const char *o = argv[k], *v = argv[k + 1];
        if (!strcmp(o, "--port"))
            port = (int)parse_long(v, 1, 65535, o);
        else if (!strcmp(o, "--clients"))
            nclients = parse_long(v, 1, 1000000, o);
        else if (!strcmp(o, "--rounds"))
            nrounds = parse_long(v, 0, 100000, o);
        else if (!strcmp(o, "--inflight"))
            max_inflight = parse_long(v, 1, 1000000, o);
        else if (!strcmp(o, "--connect-timeout"))
            connect_timeout = (double)parse_long(v, 1, 3600, o);
        else if (!strcmp(o, "--round-timeout"))
            round_timeout = (double)parse_long(v, 1, 3600, o);
        else if (!strcmp(o, "--wait-timeout"))
            wait_timeout = (double)parse_long(v, 1, 3600, o);
        else if (!strcmp(o, "--waves"))
            nwaves = parse_long(v, 0, 1000, o);
        else if (!strcmp(o, "--publishes"))
            npublishes = parse_long(v, 0, 100000, o);
        else if (!strcmp(o, "--gap-ms"))
            gap = parse_long(v, 0, 60000, o) / 1e3;
        else if (!strcmp(o, "--path")) {
            if (v[0] != '/' || strlen(v) > PATH_MAX_LEN || strpbrk(v, " \r\n")) {
                fprintf(stderr, "loadgen: --path must be a request path of at most "
                                "%d characters\n", PATH_MAX_LEN);
                exit(2);
            }
            path = v;
        }
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", o);
            exit(2);
        }
    }
    if (argc % 2 == 0 || !port) {
        fprintf(stderr, "usage: loadgen --port P [--clients N] [--rounds K] "
                        "[--inflight M] [--connect-timeout S] "
                        "[--round-timeout S] [--wait-timeout S] [--gap-ms MS] "
                        "[--waves W] [--path P] [--publishes P]\n");
        exit(2);
    }
}

/* Raise the open-file limit as far as allowed; one fd per stream, plus a few. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("setrlimit");
    if ((rlim_t)nclients + 16 > rl.rlim_cur) {
        fprintf(stderr, "loadgen: %ld clients need more than %lu open files\n",
                nclients, (unsigned long)rl.rlim_cur);
        exit(2);
    }
}

static long error_total(void)
{
    return err.connect + err.http + err.connect_timeout + err.disconnect +
           err.post + err.round_timeout + err.unexpected;
}

static void json_errors(void)
{
    printf("\"errors\": {\"connect\": %ld, \"http\": %ld, \"connect_timeout\": %ld, "
           "\"disconnect\": %ld, \"post\": %ld, \"round_timeout\": %ld, "
           "\"unexpected\": %ld}, \"error_total\": %ld}\n",
           err.connect, err.http, err.connect_timeout, err.disconnect, err.post,
           err.round_timeout, err.unexpected, error_total());
}

/* Connection churn: waves of N streams opened, greeted and closed. */
static int churn(void)
{
    double *rates = calloc((size_t)nwaves, sizeof *rates);
    double *all_ms = calloc((size_t)(nclients * nwaves), sizeof *all_ms);
    long total = 0;
    if (!rates || !all_ms)
        die("calloc");
    for (long w = 0; w < nwaves; w++) {
        memset(conns, 0, (size_t)nclients * sizeof *conns);
        reached = live = inflight = 0;
        connect_ms = all_ms + total; /* on_greeted fills it from [0] */
        double t0 = connect_all();
        rates[w] = last_gotcha > t0 ? reached / (last_gotcha - t0) : NAN;
        total += reached;
        for (long i = 0; i < nclients; i++)
            drop(i, NULL);
        printf("WAVE %ld %ld\n", w + 1, reached);
        wait_for_runner();
    }
    qsort(all_ms, (size_t)total, sizeof *all_ms, cmp_double);
    printf("{\"clients\": %ld, \"waves\": %ld, \"reached\": %ld, ", nclients,
           nwaves, total);
    printf("\"connect_rate_by_wave\": [");
    for (long w = 0; w < nwaves; w++) {
        if (w)
            printf(", ");
        if (isfinite(rates[w]))
            printf("%.6g", rates[w]);
        else
            printf("null");
    }
    printf("], ");
    json_number("connect_ms_p50", percentile(all_ms, total, 50), ", ");
    json_number("connect_ms_p99", percentile(all_ms, total, 99), ", ");
    json_errors();
    return 0;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    request_len = (size_t)snprintf(request, sizeof request,
                                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                   "Accept: text/event-stream\r\n"
                                   "Cache-Control: no-cache\r\n\r\n",
                                   path, port);
    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)nclients, sizeof *conns);
    connect_ms = calloc((size_t)nclients, sizeof *connect_ms);
    latency = malloc((size_t)(nclients * (nrounds ? nrounds : 1)) * sizeof *latency);
    post_sent = calloc((size_t)nrounds + 1, sizeof *post_sent);
    round_last = calloc((size_t)nrounds + 1, sizeof *round_last);
    if (ep < 0 || !conns || !connect_ms || !latency || !post_sent || !round_last)
        die("setup");
    for (long k = 0; k < nclients * nrounds; k++)
        latency[k] = -1;
    if (nwaves)
        return churn();

    double t0 = connect_all();
    double connect_s = last_gotcha - t0;
    printf("READY %ld\n", reached);
    wait_for_runner();

    double cpu0 = cpu_seconds();
    long completed = run_rounds();
    double cpu1 = cpu_seconds();
    printf("DONE\n");
    wait_for_runner();
    double *publish_ms = calloc((size_t)npublishes + 1, sizeof *publish_ms);
    long npub = 0;
    if (!publish_ms)
        die("calloc");
    double publish_deadline = now() + 20; /* within the runner's slack */
    for (long k = 0; k < npublishes && now() < publish_deadline; k++) {
        double t = time_publish(k);
        if (t < 0) {
            fprintf(stderr, "loadgen: POST /publish %ld failed\n", k);
            err.post++;
        } else {
            publish_ms[npub++] = t * 1e3;
        }
    }
    qsort(publish_ms, (size_t)npub, sizeof *publish_ms, cmp_double);
    for (long i = 0; i < nclients; i++)
        drop(i, NULL);

    /* Collect the deliveries and each completed round's fan-out time. */
    long ndel = 0;
    for (long k = 0; k < nclients * nrounds; k++)
        if (latency[k] >= 0)
            latency[ndel++] = latency[k];
    double *fanout = calloc((size_t)nrounds + 1, sizeof *fanout);
    if (!fanout)
        die("calloc");
    for (long r = 0; r < completed; r++)
        fanout[r] = round_last[r] - post_sent[r];
    qsort(latency, (size_t)ndel, sizeof *latency, cmp_double);
    qsort(fanout, (size_t)completed, sizeof *fanout, cmp_double);
    qsort(connect_ms, (size_t)reached, sizeof *connect_ms, cmp_double);
    printf("{\"clients\": %ld, \"rounds\": %ld, \"reached\": %ld, ", nclients,
           nrounds, reached);
    json_number("connect_s", connect_s, ", ");
    json_number("connect_rate", connect_s > 0 ? reached / connect_s : NAN, ", ");
    json_number("connect_ms_p50", percentile(connect_ms, reached, 50), ", ");
    json_number("connect_ms_p99", percentile(connect_ms, reached, 99), ", ");
    json_number("connect_ms_max", percentile(connect_ms, reached, 100), ", ");
    printf("\"rounds_completed\": %ld, ", completed);
    json_number("fanout_ms_p50", percentile(fanout, completed, 50) * 1e3, ", ");
    json_number("fanout_ms_p99", percentile(fanout, completed, 99) * 1e3, ", ");
    json_number("fanout_ms_max", percentile(fanout, completed, 100) * 1e3, ", ");
    json_number("delivery_ms_p50", percentile(latency, ndel, 50) * 1e3, ", ");
    json_number("delivery_ms_p99", percentile(latency, ndel, 99) * 1e3, ", ");
    printf("\"deliveries\": %ld, \"expected_deliveries\": %ld, ", ndel, expected);
    printf("\"publishes\": %ld, ", npub);
    json_number("publish_ms_p50", percentile(publish_ms, npub, 50), ", ");
    json_number("publish_ms_p99", percentile(publish_ms, npub, 99), ", ");
    json_number("loadgen_cpu_s", cpu1 - cpu0, ", ");
    json_number("loadgen_cpu_us_per_delivery",
                ndel ? (cpu1 - cpu0) * 1e6 / ndel : NAN, ", ");
    json_errors();
    return 0;
}
