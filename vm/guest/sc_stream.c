/*
 * Stream scenarios: bulk (full-duplex throughput), pingpong (latency).
 */
#include "tcpipvm.h"

#define BULK_SEED 0xb01cU

static struct {
    SOCKET s;
    unsigned long total;
    int chunk;
    uint64_t hash;
    unsigned long sent;
    int err;
    volatile LONG abort; /* the receiver failed and closed the socket */
} B;

/* Sender thread: total bytes of the pattern in chunk-sized sends, then
 * half-close. */
static DWORD WINAPI bulk_sender(void *p)
{
    char *buf = (char *)malloc((size_t)B.chunk);
    (void)p;
    B.hash = FNV64_INIT;
    if (buf == NULL) {
        B.err = ERR_NOMEM;
        report_error("sender: out of memory");
        return 0;
    }
    while (B.sent < B.total) {
        unsigned long n = B.total - B.sent;
        int e;
        if (n > (unsigned long)B.chunk)
            n = (unsigned long)B.chunk;
        pattern_fill(BULK_SEED, (uint32_t)B.sent, buf, n);
        B.hash = fnv1a64(B.hash, buf, n);
        if ((e = send_all(B.s, buf, (int)n)) != 0) {
            B.err = e;
            if (!B.abort)
                report_error("send at byte %lu: %s(%d)", B.sent, errname(e), e);
            break;
        }
        B.sent += n;
    }
    if (B.err == 0 && !B.abort && shutdown(B.s, SD_SEND) != 0) {
        B.err = last_err();
        report_error("shutdown: %s(%d)", errname(B.err), B.err);
    }
    free(buf);
    return 0;
}

int sc_bulk(void)
{
    long kib = arg_long("kib", 0, 0, 4000L * 1024);
    long mib = arg_long("mib", 8, 1, 4000);
    int port = (int)arg_long("port", 20300, 1, 65000);
    const int rsize = 64 * 1024;
    server_t sv;
    HANDLE th;
    char *rbuf;
    unsigned long got_total = 0, ms;
    uint64_t rhash = FNV64_INIT;
    long first_bad = -1;
    LONGLONG t0;
    int e = 0, joined = 1;

    B.chunk = (int)arg_long("chunk", 65536, 1, 1 << 22);
    if (args_check())
        return 0;
    B.total = kib > 0 ? (unsigned long)kib * 1024UL : (unsigned long)mib * 1048576UL;
    B.sent = 0;
    B.err = 0;
    B.abort = 0;
    rbuf = (char *)malloc((size_t)rsize);
    if (rbuf == NULL) {
        report_error("out of memory");
        return 0;
    }
    memset(&sv, 0, sizeof sv);
    sv.mode = SRV_STREAM;
    sv.expect = 1;
    if (server_start(&sv, port) != 0)
        return 0;
    B.s = tcp_socket();
    if (B.s == INVALID_SOCKET || (e = tcp_connect(B.s, sv.port)) != 0) {
        if (e == 0)
            e = last_err();
        report_error("connect: %s(%d)", errname(e), e);
        sock_close(&B.s);
        server_stop(&sv);
        return 0;
    }
    t0 = now_ticks();
    th = thread_start(bulk_sender, NULL);
    if (th == NULL) {
        report_error("CreateThread failed: %lu", (unsigned long)GetLastError());
        sock_close(&B.s);
        server_stop(&sv);
        return 0;
    }
    /* Receive and check concurrently with the sender. */
    for (;;) {
        int got;
        e = recv_some(B.s, rbuf, rsize, &got);
        if (e != 0) {
            report_error("recv at byte %lu: %s(%d)", got_total, errname(e), e);
            break;
        }
        if (got == 0)
            break;
        if (first_bad < 0 && got_total + (unsigned long)got <= B.total) {
            long bad = pattern_check(BULK_SEED, (uint32_t)got_total, rbuf, (size_t)got);
            if (bad >= 0) {
                first_bad = (long)got_total + bad;
                report_error("echo differs at byte %ld", first_bad);
            }
        }
        rhash = fnv1a64(rhash, rbuf, (size_t)got);
        got_total += (unsigned long)got;
    }
    ms = ms_since(t0);
    if (e != 0) {
        B.abort = 1;
        sock_close(&B.s); /* unblocks the sender if it is stuck in send */
    }
    if (threads_join(&th, 1, join_bound()) != 0) {
        report_error("sender thread did not end");
        joined = 0;
    }
    if (joined)
        sock_close(&B.s);
    if (server_stop(&sv) != 0)
        joined = 0;
    free(rbuf);
    if (e == 0 && got_total != B.total)
        report_error("received %lu bytes of %lu", got_total, B.total);
    if (joined && B.err == 0 && got_total == B.total && rhash != B.hash)
        report_error("checksum differs: sent %08lx%08lx got %08lx%08lx",
                     (unsigned long)(B.hash >> 32), (unsigned long)B.hash,
                     (unsigned long)(rhash >> 32), (unsigned long)rhash);
    res_add("bytes", got_total);
    res_add("kib_per_s", ms ? (unsigned long)((double)got_total / 1024.0 * 1000.0 / (double)ms) : 0);
    res_add("transfer_ms", ms);
    return joined && e == 0 && B.err == 0 && got_total == B.total &&
           rhash == B.hash && first_bad < 0 && sv.served_ok == 1 && errors_total() == 0;
}

/* ---- pingpong: round-trip latency on one TCP_NODELAY connection ---- */

int sc_pingpong(void)
{
    long rounds = arg_long("count", 2000, 1, 10000000);
    long warmup = arg_long("warmup", 50, 0, 1000000);
    int size = (int)arg_long("size", 64, 1, 1 << 20);
    int port = (int)arg_long("port", 20400, 1, 65000);
    server_t sv;
    SOCKET s;
    char *snd, *rcv;
    lat_t lat;
    long i, ok = 0;
    int e = 0, pass;

    if (args_check())
        return 0;
    snd = (char *)malloc((size_t)size);
    rcv = (char *)malloc((size_t)size);
    if (snd == NULL || rcv == NULL || lat_init(&lat, rounds) != 0) {
        report_error("out of memory");
        return 0;
    }
    memset(&sv, 0, sizeof sv);
    sv.mode = SRV_STREAM;
    sv.nodelay = 1;
    sv.expect = 1;
    if (server_start(&sv, port) != 0)
        return 0;
    s = tcp_socket();
    if (s == INVALID_SOCKET || (e = tcp_connect(s, sv.port)) != 0) {
        if (e == 0)
            e = last_err();
        report_error("connect: %s(%d)", errname(e), e);
        sock_close(&s);
        server_stop(&sv);
        return 0;
    }
    if ((e = set_nodelay(s)) != 0)
        report_error("TCP_NODELAY: %s(%d)", errname(e), e);
    for (i = 0; e == 0 && i < rounds; i++) {
        LONGLONG t0;
        long bad;
        pattern_fill((uint32_t)i, 0, snd, (size_t)size);
        t0 = now_ticks();
        if ((e = send_all(s, snd, size)) != 0) {
            report_error("round %ld send: %s(%d)", i, errname(e), e);
            break;
        }
        if ((e = recv_exact(s, rcv, size)) != 0) {
            report_error("round %ld recv: %s(%d)", i, errname(e), e);
            break;
        }
        if (i >= warmup)
            lat_add(&lat, ticks_us(t0, now_ticks()));
        if ((bad = pattern_check((uint32_t)i, 0, rcv, (size_t)size)) >= 0) {
            report_error("round %ld echo differs at byte %ld", i, bad);
            e = ERR_EXTRA;
            break;
        }
        ok++;
    }
    if (e == 0 && shutdown(s, SD_SEND) != 0) {
        e = last_err();
        report_error("shutdown: %s(%d)", errname(e), e);
    }
    if (e == 0 && (e = expect_eof(s)) != 0)
        report_error("end of stream: %s(%d)", errname(e), e);
    closesocket(s);
    pass = server_stop(&sv) == 0;
    res_add("ok", (unsigned long)ok);
    res_add("failed", (unsigned long)(rounds - ok));
    lat_report(&lat);
    lat_free(&lat);
    free(snd);
    free(rcv);
    return pass && e == 0 && ok == rounds && sv.served_ok == 1 && errors_total() == 0;
}
