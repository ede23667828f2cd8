/*
 * cserver: a minimal single-threaded epoll Server-Sent Events server, the
 * floor the benchmark measures the others against.
 *
 *   cserver PORT
 *
 * It answers what the loadgen asks, the way ssedemo does: GET /sse opens a
 * chunked text/event-stream that starts with a retry field and the Gotcha
 * greeting; POST /api writes one "Something changed" event, with an id, to
 * every open stream (one send() each), then answers 200 with a small JSON
 * body and closes. Bytes the kernel does not take are kept per connection
 * and sent when it is writable again, in order. Anything else gets 404.
 * Listens on 127.0.0.1 only; stops on SIGTERM or SIGINT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#define REQUEST_MAX 16384
#define MAX_EVENTS 1024

struct conn {
    int stream;    /* index in streams[], or -1 */
    size_t inlen;  /* request bytes so far */
    char *out;     /* bytes the kernel has not taken yet */
    size_t outlen;
    char in[REQUEST_MAX];
};

static int ep, listener;
static struct conn **conns; /* by descriptor */
static int *streams, nstreams;
static long next_id;
static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void watch(int fd, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, op, fd, &ev) < 0)
        die("epoll_ctl");
}

static void drop(int fd)
{
    struct conn *c = conns[fd];
    if (c->stream >= 0) { /* the last stream takes its place */
        int last = streams[--nstreams];
        streams[c->stream] = last;
        conns[last]->stream = c->stream;
    }
    free(c->out);
    free(c);
    conns[fd] = NULL;
    close(fd); /* also leaves the epoll set */
}

/* Send, or keep what the kernel does not take; 0 if the peer is gone. */
static int put(int fd, const char *data, size_t len)
{
    struct conn *c = conns[fd];
    if (c->outlen == 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n == (ssize_t)len)
            return 1;
        if (n < 0 && errno != EAGAIN)
            return 0;
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
        watch(fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
    }
    char *grown = realloc(c->out, c->outlen + len);
    if (!grown)
        die("realloc");
    memcpy(grown + c->outlen, data, len);
    c->out = grown;
    c->outlen += len;
    return 1;
}

static void flush(int fd)
{
    struct conn *c = conns[fd];
    ssize_t n = send(fd, c->out, c->outlen, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN)
            drop(fd);
        return;
    }
    memmove(c->out, c->out + n, c->outlen - (size_t)n);
    c->outlen -= (size_t)n;
    if (c->outlen == 0)
        watch(fd, EPOLLIN, EPOLL_CTL_MOD);
}

/* Frame an event as one HTTP/1.1 chunk. */
static size_t chunk(char *buf, size_t size, const char *event)
{
    size_t len = strlen(event);
    return (size_t)snprintf(buf, size, "%zx\r\n%s\r\n", len, event);
}

static void open_stream(int fd)
{
    static const char head[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/event-stream; charset=utf-8\r\n"
                               "Cache-Control: no-cache\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
    char buf[512];
    size_t n = strlen(head);
    memcpy(buf, head, n);
    n += chunk(buf + n, sizeof buf - n,
               "retry: 3000\n\ndata: {\"message\": \"Gotcha\"}\n\n");
    if (!put(fd, buf, n)) {
        drop(fd);
        return;
    }
    conns[fd]->stream = nstreams;
    streams[nstreams++] = fd;
}

static void publish(int fd)
{
    char event[128], buf[192], answer[256];
    long id = ++next_id;
    snprintf(event, sizeof event,
             "id: %ld\ndata: {\"message\": \"Something changed\"}\n\n", id);
    size_t len = chunk(buf, sizeof buf, event);
    int delivered = 0;
    for (int i = 0; i < nstreams;) {
        int s = streams[i];
        if (put(s, buf, len)) {
            delivered++;
            i++;
        } else {
            drop(s); /* the last stream moves to i */
        }
    }
    char body[64];
    int blen = snprintf(body, sizeof body, "{\"id\": \"%ld\", \"delivered\": %d}",
                        id, delivered);
    int alen = snprintf(answer, sizeof answer,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                        blen, body);
    put(fd, answer, (size_t)alen);
    shutdown(fd, SHUT_WR);
}

static void not_found(int fd)
{
    static const char answer[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                                 "Connection: close\r\n\r\n";
    put(fd, answer, sizeof answer - 1);
    shutdown(fd, SHUT_WR);
}

/* A request is complete once its head is, and its Content-Length body. */
static void on_request(int fd)
{
    struct conn *c = conns[fd];
    c->in[c->inlen] = '\0';
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end)
        return;
    size_t head = (size_t)(end - c->in) + 4, body = 0;
    char *length = strcasestr(c->in, "\r\nContent-Length:");
    if (length && length < end)
        body = strtoul(length + 17, NULL, 10);
    if (c->inlen < head + body)
        return;
    if (!strncmp(c->in, "GET /sse", 8))
        open_stream(fd);
    else if (!strncmp(c->in, "POST /api", 9))
        publish(fd);
    else
        not_found(fd);
}

static void on_readable(int fd)
{
    struct conn *c = conns[fd];
    char scratch[4096];
    int stream = c->stream >= 0;
    char *into = stream ? scratch : c->in + c->inlen;
    size_t room = stream ? sizeof scratch : REQUEST_MAX - 1 - c->inlen;
    ssize_t n = recv(fd, into, room, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN) || (!stream && room == 0)) {
        drop(fd);
        return;
    }
    if (n > 0 && !stream) {
        c->inlen += (size_t)n;
        on_request(fd);
    }
}

static void on_accept(void)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct conn *c = calloc(1, sizeof *c);
        if (!c)
            die("calloc");
        c->stream = -1;
        conns[fd] = c;
        watch(fd, EPOLLIN, EPOLL_CTL_ADD);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: cserver PORT\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    conns = calloc(rl.rlim_cur, sizeof *conns);
    streams = calloc(rl.rlim_cur, sizeof *streams);
    if (!conns || !streams)
        die("calloc");

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        listen(listener, 4096) < 0)
        die("listen");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    watch(listener, EPOLLIN, EPOLL_CTL_ADD);

    static struct epoll_event evs[MAX_EVENTS];
    while (!stopping) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, 1000);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int k = 0; k < n; k++) {
            int fd = evs[k].data.fd;
            if (fd == listener) {
                on_accept();
                continue;
            }
            if (conns[fd] && (evs[k].events & EPOLLOUT))
                flush(fd);
            if (conns[fd] && (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                on_readable(fd);
        }
    }
    return 0;
}
