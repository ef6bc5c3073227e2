/* echo_load: a closed-loop echo load generator in C, independent of iomodels'
 * Python one, to check `iomodels bench` against (issue 4).
 *
 * Each connection sends MSIZE bytes, waits for exactly those bytes back
 * (checked), then sends again.  One thread, one epoll loop, loopback only.
 * Sends are blocking and whole (MSIZE must fit the socket buffer: keep it
 * <= 64 KiB); receives are MSG_DONTWAIT after epoll says readable.  Latency is from the send to the last byte back;
 * a fixed histogram of 1 us buckets up to 1 s (and one overflow bucket).
 *
 * Build: gcc -O2 -o echo_load bench/echo_load.c
 * Usage: echo_load PORT CONNECTIONS SECONDS MSIZE [WARMUP_SECONDS]
 * Prints one line: requests req_per_s p50_us p90_us p99_us errors
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 1000001 /* 0..1e6 us, the last one is ">= 1 s" */

struct conn {
    int fd;
    size_t sent, got;
    uint64_t t0;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t percentile(const uint64_t *hist, uint64_t total, double p) {
    uint64_t want = (uint64_t)(p * (double)total), seen = 0;
    for (uint64_t us = 0; us < BUCKETS; us++) {
        seen += hist[us];
        if (seen > want) return us;
    }
    return BUCKETS - 1;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s PORT CONNECTIONS SECONDS MSIZE [WARMUP_SECONDS]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    double seconds = atof(argv[3]), warmup = argc > 5 ? atof(argv[5]) : 1.0;
    size_t msize = (size_t)atol(argv[4]);
    if (port <= 0 || n <= 0 || seconds <= 0 || msize == 0 || msize > 65536) {
        fprintf(stderr, "echo_load: bad arguments\n");
        return 2;
    }
    char *payload = malloc(msize), *buf = malloc(msize);
    uint64_t *hist = calloc(BUCKETS, sizeof *hist);
    struct conn *conns = calloc((size_t)n, sizeof *conns);
    if (!payload || !buf || !hist || !conns) return 1;
    for (size_t i = 0; i < msize; i++) payload[i] = (char)('a' + i % 26);

    int ep = epoll_create1(0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only, by construction */
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
            perror("echo_load: connect");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }

    uint64_t start = now_ns(), measure_from = start + (uint64_t)(warmup * 1e9);
    uint64_t end = measure_from + (uint64_t)(seconds * 1e9), requests = 0, errors = 0;
    for (int i = 0; i < n; i++) { /* prime: the first request of every connection */
        conns[i].t0 = now_ns();
        if (send(conns[i].fd, payload, msize, MSG_NOSIGNAL) != (ssize_t)msize) errors++;
        conns[i].sent = msize;
    }
    struct epoll_event events[256];
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end) break;
        int ready = epoll_wait(ep, events, 256, 100);
        for (int k = 0; k < ready; k++) {
            struct conn *c = &conns[events[k].data.u32];
            ssize_t r = recv(c->fd, buf, msize - c->got, MSG_DONTWAIT);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            if (memcmp(buf, payload + c->got, (size_t)r) != 0) errors++;
            c->got += (size_t)r;
            if (c->got < msize) continue;
            uint64_t done = now_ns();
            if (done >= measure_from && done < end) {
                uint64_t us = (done - c->t0) / 1000;
                hist[us < BUCKETS ? us : BUCKETS - 1]++;
                requests++;
            }
            c->got = 0;
            c->t0 = done;
            if (send(c->fd, payload, msize, MSG_NOSIGNAL) != (ssize_t)msize) errors++;
        }
    }
    double window = (double)(end - measure_from) / 1e9;
    printf("requests=%llu req_per_s=%.0f p50_us=%llu p90_us=%llu p99_us=%llu errors=%llu\n",
           (unsigned long long)requests, (double)requests / window,
           (unsigned long long)percentile(hist, requests, 0.50),
           (unsigned long long)percentile(hist, requests, 0.90),
           (unsigned long long)percentile(hist, requests, 0.99), (unsigned long long)errors);
    for (int i = 0; i < n; i++) close(conns[i].fd);
    return errors ? 1 : 0;
}
