/* Machine stall probe for the JACK soak (benchmarks/soak_jack.py builds and runs it).

   One SCHED_FIFO thread per CPU, pinned to it, at a priority above JACK's, wakes every
   millisecond on an absolute schedule and notes how late each wake-up came. It does nothing
   else, so a late wake-up is time the machine did not give a real-time thread: the kernel or,
   on a virtual machine, the hypervisor kept that CPU. Any JACK client on that CPU, however
   little it does, would have been stalled alike. The soak compares the times of its xruns
   with the stalls found here.

   Usage: machine_stalls THRESHOLD_US   (runs until SIGTERM/SIGINT; then prints JSON on stdout:
   wake-ups, the largest lateness, and every wake-up later than THRESHOLD_US as
   [CLOCK_MONOTONIC seconds when it was due, lateness in ms, cpu]).

   Build: cc -O2 -pthread -o machine_stalls machine_stalls.c */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 1000000L
#define MAX_STALLS 100000

typedef struct {
    int cpu;
    long wakeups, max_late_ns;
    long n_stalls;
    double *stall_due, *stall_late_ms;
    int rt_ok;
} probe_t;

static volatile sig_atomic_t stop_flag = 0;
static long threshold_ns;

static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static long to_ns(struct timespec t) { return t.tv_sec * 1000000000L + t.tv_nsec; }

static void *probe_main(void *arg) {
    probe_t *p = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(p->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    struct sched_param sp = {.sched_priority = 95};
    p->rt_ok = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
    struct timespec due;
    clock_gettime(CLOCK_MONOTONIC, &due);
    while (!stop_flag) {
        due.tv_nsec += PERIOD_NS;
        if (due.tv_nsec >= 1000000000L) { due.tv_nsec -= 1000000000L; due.tv_sec++; }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR && !stop_flag) {}
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long late = to_ns(now) - to_ns(due);
        p->wakeups++;
        if (late > p->max_late_ns) p->max_late_ns = late;
        if (late > threshold_ns && p->n_stalls < MAX_STALLS) {
            p->stall_due[p->n_stalls] = to_ns(due) / 1e9;
            p->stall_late_ms[p->n_stalls] = late / 1e6;
            p->n_stalls++;
        }
        if (late > PERIOD_NS) due = now;  /* don't replay the missed ticks as a burst */
    }
    return NULL;
}

int main(int argc, char **argv) {
    threshold_ns = (argc > 1 ? atol(argv[1]) : 2000) * 1000L;
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    probe_t *probes = calloc(ncpu, sizeof *probes);
    pthread_t *threads = calloc(ncpu, sizeof *threads);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    for (int c = 0; c < ncpu; c++) {
        probes[c].cpu = c;
        probes[c].stall_due = calloc(MAX_STALLS, sizeof(double));
        probes[c].stall_late_ms = calloc(MAX_STALLS, sizeof(double));
    }
    mlockall(MCL_CURRENT | MCL_FUTURE);
    for (int c = 0; c < ncpu; c++) pthread_create(&threads[c], NULL, probe_main, &probes[c]);
    for (int c = 0; c < ncpu; c++) pthread_join(threads[c], NULL);

    long wakeups = 0, max_late = 0;
    int rt_ok = 1;
    for (int c = 0; c < ncpu; c++) {
        wakeups += probes[c].wakeups;
        if (probes[c].max_late_ns > max_late) max_late = probes[c].max_late_ns;
        rt_ok &= probes[c].rt_ok;
    }
    printf("{\"cpus\": %d, \"realtime\": %s, \"period_ms\": %.3f, \"threshold_ms\": %.3f, \"wakeups\": %ld, "
           "\"max_late_ms\": %.3f, \"stalls\": [",
           ncpu, rt_ok ? "true" : "false", PERIOD_NS / 1e6, threshold_ns / 1e6, wakeups, max_late / 1e6);
    int first = 1;
    for (int c = 0; c < ncpu; c++)
        for (long i = 0; i < probes[c].n_stalls; i++) {
            printf("%s[%.6f, %.3f, %d]", first ? "" : ", ", probes[c].stall_due[i], probes[c].stall_late_ms[i], c);
            first = 0;
        }
    printf("]}\n");
    return 0;
}
