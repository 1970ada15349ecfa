/* A cold wall clock for the simulator (tests/test_clock_tls.py), as an ESP32 has at
 * power-on: LD_PRELOAD'ed into the MicroPython process, it adds the offset stored in the
 * file $MPOCPP_CLOCK_FILE (seconds, text) to every wall-clock reading: time(),
 * gettimeofday() and clock_gettime(CLOCK_REALTIME), which mbedTLS and MicroPython's
 * time.time() use.  The test writes an offset that puts the clock at 2000-01-01; the
 * simulated board rewrites it when the firmware sets the clock (boards/unix_sim).
 * Monotonic clocks are left alone. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long offset(void) {
    const char *path = getenv("MPOCPP_CLOCK_FILE");
    long off = 0;
    FILE *f;
    if (!path || !(f = fopen(path, "r")))
        return 0;
    if (fscanf(f, "%ld", &off) != 1)
        off = 0;
    fclose(f);
    return off;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real)
        real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int r = real(id, ts);
    if (r == 0 && id == CLOCK_REALTIME)
        ts->tv_sec += offset();
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    static int (*real)(struct timeval *, void *);
    if (!real)
        real = (int (*)(struct timeval *, void *))dlsym(RTLD_NEXT, "gettimeofday");
    int r = real(tv, tz);
    if (r == 0 && tv)
        tv->tv_sec += offset();
    return r;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t)
        *t = ts.tv_sec;
    return ts.tv_sec;
}
