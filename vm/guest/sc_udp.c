/*
 * UDP scenario: udp. Echo over 127.0.0.1 with datagrams up to 8 KiB - 1,
 * every byte checked. UDP may lose datagrams under load: loss is reported
 * as a metric, and the scenario fails only on corruption, socket errors or
 * total loss.
 *
 * Each client thread has its own echo server thread and socket, and keeps
 * one datagram outstanding: ReactOS's AFD stops posting receives for good
 * once the datagrams it stores for a socket reach its 8 KiB window, so no
 * socket is ever given more than one datagram to hold.
 */
#include "tcpipvm.h"

#define UDP_SEED 0x0d9aU
#define UDP_HEADER 8 /* pair index and sequence number, in front of the pattern */

typedef struct {
    int index;
    int port;   /* the server's */
    int msgs, max_size, wait_ms;
    SOCKET server, client;
    volatile LONG stop;
    long ok, lost, late, corrupt;
    unsigned long bytes, echoed;
    int err;
} pair_t;

static int udp_size(const pair_t *p, long seq)
{
    if (seq % 10 == 9)
        return p->max_size;
    return UDP_HEADER + (int)((seq * 2039L + p->index * 131L) % (p->max_size - UDP_HEADER + 1));
}

static uint32_t udp_seed(int index, long seq)
{
    return UDP_SEED ^ mix32((uint32_t)index * 65536U + (uint32_t)seq);
}

static SOCKET udp_socket(int port, int *actual, int *err)
{
    struct sockaddr_in a;
    int len = sizeof a;
    SOCKET s = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    if (s == INVALID_SOCKET) {
        *err = last_err();
        return s;
    }
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((u_short)port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &len) != 0) {
        *err = last_err();
        closesocket(s);
        return INVALID_SOCKET;
    }
    *actual = ntohs(a.sin_port);
    return s;
}

/* Echo server of one pair: every datagram back to its sender, until stop. */
static DWORD WINAPI udp_server(void *arg)
{
    pair_t *p = (pair_t *)arg;
    char *buf = (char *)malloc(65536);
    if (buf == NULL) {
        p->err = ERR_NOMEM;
        return 0;
    }
    while (!p->stop) {
        struct sockaddr_in from;
        int len = sizeof from, got;
        int e = wait_io(p->server, 0, 200);
        if (e == ERR_TIMEOUT)
            continue;
        if (e != 0) {
            p->err = e;
            report_error("p%d server select: %s(%d)", p->index, errname(e), e);
            break;
        }
        got = recvfrom(p->server, buf, 65536, 0, (struct sockaddr *)&from, &len);
        if (got < 0) {
            e = last_err();
            p->err = e;
            report_error("p%d server recvfrom: %s(%d)", p->index, errname(e), e);
            break;
        }
        if (sendto(p->server, buf, got, 0, (struct sockaddr *)&from, len) != got) {
            e = last_err();
            p->err = e;
            report_error("p%d server sendto: %s(%d)", p->index, errname(e), e);
            break;
        }
        p->echoed++;
    }
    free(buf);
    return 0;
}

/* Checks one received echo against message seq; 1 when it is intact. */
static int udp_intact(const pair_t *p, const unsigned char *buf, int got, long seq)
{
    uint32_t head[2];
    if (got != udp_size(p, seq))
        return 0;
    memcpy(head, buf, sizeof head);
    if (head[0] != (uint32_t)p->index || head[1] != (uint32_t)seq)
        return 0;
    return pattern_check(udp_seed(p->index, seq), 0, buf + UDP_HEADER,
                         (size_t)(got - UDP_HEADER)) < 0;
}

/* Client of one pair: msgs datagrams, one outstanding, each echo checked. */
static DWORD WINAPI udp_client(void *arg)
{
    pair_t *p = (pair_t *)arg;
    unsigned char *snd = (unsigned char *)malloc((size_t)p->max_size);
    unsigned char *rcv = (unsigned char *)malloc(65536);
    struct sockaddr_in to;
    long seq;

    if (snd == NULL || rcv == NULL) {
        p->err = ERR_NOMEM;
        free(snd);
        free(rcv);
        return 0;
    }
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons((u_short)p->port);
    for (seq = 0; seq < p->msgs && p->err == 0; seq++) {
        int size = udp_size(p, seq), e;
        uint32_t head[2];
        head[0] = (uint32_t)p->index;
        head[1] = (uint32_t)seq;
        memcpy(snd, head, sizeof head);
        pattern_fill(udp_seed(p->index, seq), 0, snd + UDP_HEADER, (size_t)(size - UDP_HEADER));
        if (sendto(p->client, (const char *)snd, size, 0, (struct sockaddr *)&to, sizeof to) != size) {
            e = last_err();
            p->err = e;
            report_error("p%d sendto #%ld (%d bytes): %s(%d)", p->index, seq, size, errname(e), e);
            break;
        }
        for (;;) {
            int ms = op_ms(), got;
            uint32_t rhead[2];
            if (ms > p->wait_ms)
                ms = p->wait_ms;
            e = wait_io(p->client, 0, ms);
            if (e == ERR_TIMEOUT) {
                p->lost++;
                break;
            }
            if (e != 0) {
                p->err = e;
                report_error("p%d select #%ld: %s(%d)", p->index, seq, errname(e), e);
                break;
            }
            got = recvfrom(p->client, (char *)rcv, 65536, 0, NULL, NULL);
            if (got < 0) {
                e = last_err();
                p->err = e;
                report_error("p%d recvfrom #%ld: %s(%d)", p->index, seq, errname(e), e);
                break;
            }
            memcpy(rhead, rcv, got >= UDP_HEADER ? sizeof rhead : 0);
            if (got >= UDP_HEADER && rhead[0] == (uint32_t)p->index &&
                (long)rhead[1] < seq && udp_intact(p, rcv, got, (long)rhead[1])) {
                p->late++; /* the echo of a datagram counted lost */
                continue;
            }
            if (udp_intact(p, rcv, got, seq)) {
                p->ok++;
                p->bytes += (unsigned long)got;
            } else {
                p->corrupt++;
                report_error("p%d #%ld: echo of %d bytes differs (%d received)", p->index, seq, size, got);
            }
            break;
        }
    }
    free(snd);
    free(rcv);
    return 0;
}

int sc_udp(void)
{
    int npairs = (int)arg_long("pairs", 4, 1, 32);
    int msgs = (int)arg_long("msgs", 200, 1, 1000000);
    int max_size = (int)arg_long("max", 8191, UDP_HEADER, 65507);
    int wait_ms = (int)arg_long("wait_ms", 2000, 1, 600000);
    int port = (int)arg_long("port", 20800, 1, 65000);
    pair_t *pairs;
    HANDLE *threads;
    long ok = 0, lost = 0, late = 0, corrupt = 0;
    unsigned long bytes = 0, ms;
    int i, started = 0, joined = 1, failed = 0;
    LONGLONG t0;

    if (args_check())
        return 0;
    pairs = (pair_t *)calloc((size_t)npairs, sizeof *pairs);
    threads = (HANDLE *)calloc((size_t)npairs * 2, sizeof *threads);
    if (pairs == NULL || threads == NULL) {
        report_error("out of memory");
        return 0;
    }
    for (i = 0; i < npairs; i++)
        pairs[i].server = pairs[i].client = INVALID_SOCKET;
    for (i = 0; i < npairs; i++) {
        pair_t *p = &pairs[i];
        int e = 0, ignored;
        p->index = i;
        p->msgs = msgs;
        p->max_size = max_size;
        p->wait_ms = wait_ms;
        p->server = udp_socket(port + i, &p->port, &e);
        p->client = p->server == INVALID_SOCKET ? INVALID_SOCKET : udp_socket(0, &ignored, &e);
        if (p->client == INVALID_SOCKET) {
            report_error("p%d socket/bind: %s(%d)", i, errname(e), e);
            failed = 1;
            break;
        }
    }
    t0 = now_ticks();
    for (i = 0; i < npairs && !failed; i++) {
        threads[2 * i] = thread_start(udp_server, &pairs[i]);
        threads[2 * i + 1] = thread_start(udp_client, &pairs[i]);
        if (threads[2 * i] == NULL || threads[2 * i + 1] == NULL) {
            report_error("CreateThread failed: %lu", (unsigned long)GetLastError());
            failed = 1;
        }
        started = i + 1;
    }
    /* Clients first; then stop the servers. */
    for (i = 0; i < started; i++)
        if (threads[2 * i + 1] != NULL && threads_join(&threads[2 * i + 1], 1, join_bound()) != 0) {
            report_error("p%d client thread did not end", i);
            joined = 0;
        }
    ms = ms_since(t0);
    for (i = 0; i < started; i++) {
        pairs[i].stop = 1;
        if (threads[2 * i] != NULL && threads_join(&threads[2 * i], 1, join_bound()) != 0) {
            report_error("p%d server thread did not end", i);
            joined = 0;
        }
    }
    for (i = 0; i < npairs; i++) {
        pair_t *p = &pairs[i];
        if (joined) {
            sock_close(&p->client);
            sock_close(&p->server);
        }
        ok += p->ok;
        lost += p->lost;
        late += p->late;
        corrupt += p->corrupt;
        bytes += p->bytes;
        if (p->err != 0)
            failed = 1;
    }
    res_add("ok", (unsigned long)ok);
    res_add("lost", (unsigned long)lost);
    res_add("late", (unsigned long)late);
    res_add("corrupt", (unsigned long)corrupt);
    res_add("bytes", bytes);
    res_add("loss_permille", (unsigned long)(lost * 1000L / ((long)npairs * msgs)));
    res_add("kib_per_s", ms ? (unsigned long)((double)bytes / 1024.0 * 1000.0 / (double)ms) : 0);
    free(pairs);
    free(threads);
    return !failed && joined && corrupt == 0 && ok > 0 && errors_total() == 0;
}
