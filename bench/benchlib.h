/*
 * What the load generators (loadgen.c, sseload.c) share: the clocks, a
 * fatal error, option numbers, and the figures of their JSON reports.
 * Define PROGRAM (the name their messages start with) before including it.
 */
#ifndef BENCHLIB_H
#define BENCHLIB_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static inline void die(const char *what)
{
    perror(what);
    exit(2);
}

/* The number s, which must lie in [lo, hi], for the option called name. */
static inline long parse_long(const char *s, long lo, long hi, const char *name)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, PROGRAM ": %s must be between %ld and %ld\n", name, lo,
                hi);
        exit(2);
    }
    return v;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n); NAN when empty. */
static inline double percentile(const double *v, long n, double p)
{
    if (n == 0)
        return NAN;
    long k = (long)ceil(p / 100 * n);
    return v[k < 1 ? 0 : k - 1];
}

static inline void json_number(const char *name, double x, const char *sep)
{
    if (isfinite(x))
        printf("\"%s\": %.6g%s", name, x, sep);
    else
        printf("\"%s\": null%s", name, sep);
}

#endif
