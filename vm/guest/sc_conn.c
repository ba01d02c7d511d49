/*
 * Connection scenarios: serial, burst, many.
 */
#include "tcpipvm.h"

/* Shared state of one scenario run (one scenario per process). */
static struct {
    int port, size, msgs;
    HANDLE go;
    volatile LONG ok, failed, connects, messages;
    lat_t lat;
} C;

static uint32_t seed_of(int scenario, int a, int b)
{
    return mix32((uint32_t)scenario * 0x01000193U ^ mix32((uint32_t)a << 16 ^ (uint32_t)b));
}

static SOCKET open_conn(const char *tag, int *err)
{
    SOCKET s = tcp_socket();
    if (s == INVALID_SOCKET) {
        *err = last_err();
        report_error("%s socket: %s(%d)", tag, errname(*err), *err);
        return s;
    }
    *err = tcp_connect(s, C.port);
    if (*err != 0) {
        report_error("%s connect: %s(%d)", tag, errname(*err), *err);
        closesocket(s);
        return INVALID_SOCKET;
    }
    InterlockedIncrement(&C.connects);
    return s;
}

/* Send one message, wait for its exact echo. */
static int echo_msg(SOCKET s, uint32_t seed, char *snd, char *rcv, const char *tag)
{
    int e;
    long bad;
    pattern_fill(seed, 0, snd, (size_t)C.size);
    if ((e = send_all(s, snd, C.size)) != 0) {
        report_error("%s send: %s(%d)", tag, errname(e), e);
        return e;
    }
    if ((e = recv_exact(s, rcv, C.size)) != 0) {
        report_error("%s recv: %s(%d)", tag, errname(e), e);
        return e;
    }
    if ((bad = pattern_check(seed, 0, rcv, (size_t)C.size)) >= 0) {
        report_error("%s echo differs at byte %ld", tag, bad);
        return ERR_EXTRA;
    }
    return 0;
}

/* One connection of serial/burst: connect, one message, its echo, then the
 * server's end of stream, close. */
static int one_shot(uint32_t seed, char *snd, char *rcv, const char *tag)
{
    int e;
    SOCKET s = open_conn(tag, &e);
    if (s == INVALID_SOCKET)
        return e;
    e = echo_msg(s, seed, snd, rcv, tag);
    if (e == 0 && (e = expect_eof(s)) != 0)
        report_error("%s end of stream: %s(%d)", tag, errname(e), e);
    closesocket(s);
    return e;
}

static int alloc_pair(char **a, char **b)
{
    *a = (char *)malloc((size_t)C.size);
    *b = (char *)malloc((size_t)C.size);
    if (*a == NULL || *b == NULL) {
        free(*a);
        free(*b);
        report_error("out of memory");
        return ERR_NOMEM;
    }
    return 0;
}

/* Start n client threads that wait for C.go; returns how many started. */
static int start_clients(HANDLE *h, int n, LPTHREAD_START_ROUTINE fn)
{
    int i, started = 0;
    for (i = 0; i < n; i++) {
        h[i] = thread_start(fn, (void *)(INT_PTR)i);
        if (h[i] == NULL) {
            report_error("CreateThread %d failed: %lu", i, (unsigned long)GetLastError());
            InterlockedIncrement(&C.failed);
        } else {
            started++;
        }
    }
    return started;
}

static int wait_go(void)
{
    if (WaitForSingleObject(C.go, 120000) != WAIT_OBJECT_0) {
        InterlockedIncrement(&C.failed);
        return -1;
    }
    return 0;
}

static int setup(int nthreads, long lat_cap, HANDLE **h)
{
    C.ok = C.failed = C.connects = C.messages = 0;
    C.go = CreateEventA(NULL, TRUE, FALSE, NULL);
    *h = (HANDLE *)calloc((size_t)nthreads, sizeof(HANDLE));
    if (C.go == NULL || *h == NULL || lat_init(&C.lat, lat_cap) != 0) {
        report_error("setup failed (memory/event)");
        return -1;
    }
    return 0;
}

/* Joins the clients and the server; 1 when everything ended. */
static int finish(HANDLE *h, int n, server_t *sv)
{
    int left = threads_join(h, n, join_bound());
    if (left != 0)
        report_error("%d client thread(s) did not end", left);
    if (server_stop(sv) != 0)
        left++;
    return left == 0;
}

/* ---- serial: one-at-a-time server, many client threads ---- */

static int serial_conns;

static DWORD WINAPI serial_client(void *p)
{
    int t = (int)(INT_PTR)p, j;
    char *snd, *rcv, tag[32];
    if (wait_go() != 0)
        return 0;
    if (alloc_pair(&snd, &rcv) != 0) {
        InterlockedExchangeAdd(&C.failed, serial_conns);
        return 0;
    }
    for (j = 0; j < serial_conns; j++) {
        LONGLONG t0 = now_ticks();
        if (op_ms() <= 0) {
            report_error("t%d: time budget spent, %d connections not made", t, serial_conns - j);
            InterlockedExchangeAdd(&C.failed, serial_conns - j);
            break;
        }
        _snprintf(tag, sizeof tag, "t%d c%d", t, j);
        tag[sizeof tag - 1] = 0;
        if (one_shot(seed_of(1, t, j), snd, rcv, tag) == 0) {
            InterlockedIncrement(&C.ok);
            lat_add(&C.lat, ticks_us(t0, now_ticks()));
        } else {
            InterlockedIncrement(&C.failed);
        }
    }
    free(snd);
    free(rcv);
    return 0;
}

int sc_serial(void)
{
    int threads = (int)arg_long("threads", 8, 1, 500);
    int port = (int)arg_long("port", 20100, 1, 65000);
    server_t sv;
    HANDLE *h;
    LONGLONG t0;
    unsigned long ms;
    int joined, total;

    serial_conns = (int)arg_long("conns", 25, 1, 100000);
    C.size = (int)arg_long("size", 64, 1, 1 << 20);
    if (args_check())
        return 0;
    total = threads * serial_conns;
    if (setup(threads, total, &h) != 0)
        return 0;
    memset(&sv, 0, sizeof sv);
    sv.mode = SRV_ONE;
    sv.msg_size = C.size;
    sv.expect = total;
    if (server_start(&sv, port) != 0)
        return 0;
    C.port = sv.port;
    start_clients(h, threads, serial_client);
    t0 = now_ticks();
    SetEvent(C.go);
    joined = finish(h, threads, &sv);
    ms = ms_since(t0);
    res_add("ok", (unsigned long)C.ok);
    res_add("failed", (unsigned long)(total - C.ok));
    res_add("connects", (unsigned long)C.connects);
    res_add("conn_per_s", ms ? (unsigned long)((double)C.ok * 1000.0 / (double)ms) : 0);
    lat_report(&C.lat);
    return joined && C.ok == total && sv.served_ok == total && errors_total() == 0;
}

/* ---- burst: many connects at once against a listener that accepts late ---- */

static DWORD WINAPI burst_client(void *p)
{
    int i = (int)(INT_PTR)p;
    char *snd, *rcv, tag[16];
    if (wait_go() != 0)
        return 0;
    if (alloc_pair(&snd, &rcv) != 0) {
        InterlockedIncrement(&C.failed);
        return 0;
    }
    _snprintf(tag, sizeof tag, "c%d", i);
    tag[sizeof tag - 1] = 0;
    if (one_shot(seed_of(2, i, 0), snd, rcv, tag) == 0)
        InterlockedIncrement(&C.ok);
    else
        InterlockedIncrement(&C.failed);
    free(snd);
    free(rcv);
    return 0;
}

int sc_burst(void)
{
    int conns = (int)arg_long("conns", 200, 1, 2000);
    int delay = (int)arg_long("delay_ms", 2000, 0, 600000);
    int port = (int)arg_long("port", 20200, 1, 65000);
    server_t sv;
    HANDLE *h;
    LONGLONG t0;
    int joined;

    C.size = (int)arg_long("size", 64, 1, 1 << 20);
    if (args_check())
        return 0;
    if (setup(conns, 1, &h) != 0)
        return 0;
    memset(&sv, 0, sizeof sv);
    sv.mode = SRV_ONE;
    sv.msg_size = C.size;
    sv.threaded = 1;
    sv.expect = conns;
    sv.delay_ms = delay;
    /* The client threads start first; the server's delay runs from its start,
     * right before the burst is released. */
    start_clients(h, conns, burst_client);
    if (server_start(&sv, port) != 0) {
        SetEvent(C.go);
        threads_join(h, conns, join_bound());
        return 0;
    }
    C.port = sv.port;
    t0 = now_ticks();
    SetEvent(C.go);
    joined = finish(h, conns, &sv);
    res_add("ok", (unsigned long)C.ok);
    res_add("failed", (unsigned long)(conns - C.ok));
    res_add("connects", (unsigned long)C.connects);
    res_add("accepted", (unsigned long)sv.accepted);
    res_add("burst_ms", ms_since(t0));
    return joined && C.ok == conns && sv.served_ok == conns && errors_total() == 0;
}

/* ---- many: concurrent connections, each echoing several messages ---- */

static DWORD WINAPI many_client(void *p)
{
    int i = (int)(INT_PTR)p, m, e = 0;
    char *snd, *rcv, tag[24];
    SOCKET s;
    if (wait_go() != 0)
        return 0;
    if (alloc_pair(&snd, &rcv) != 0) {
        InterlockedIncrement(&C.failed);
        return 0;
    }
    _snprintf(tag, sizeof tag, "c%d", i);
    tag[sizeof tag - 1] = 0;
    s = open_conn(tag, &e);
    for (m = 0; s != INVALID_SOCKET && m < C.msgs; m++) {
        LONGLONG t0 = now_ticks();
        _snprintf(tag, sizeof tag, "c%d m%d", i, m);
        tag[sizeof tag - 1] = 0;
        if ((e = echo_msg(s, seed_of(3, i, m), snd, rcv, tag)) != 0)
            break;
        /* The first echo of a connection also waits for the server to start the
           connection's thread: a cost of the test, not of the transport. */
        if (m > 0)
            lat_add(&C.lat, ticks_us(t0, now_ticks()));
        InterlockedIncrement(&C.messages);
    }
    if (s != INVALID_SOCKET && e == 0) {
        if (shutdown(s, SD_SEND) != 0) {
            e = last_err();
            report_error("c%d shutdown: %s(%d)", i, errname(e), e);
        } else if ((e = expect_eof(s)) != 0) {
            report_error("c%d end of stream: %s(%d)", i, errname(e), e);
        }
    }
    if (s != INVALID_SOCKET)
        closesocket(s);
    InterlockedIncrement(e == 0 ? &C.ok : &C.failed);
    free(snd);
    free(rcv);
    return 0;
}

int sc_many(void)
{
    int conns = (int)arg_long("conns", 50, 1, 1000);
    int port = (int)arg_long("port", 20500, 1, 65000);
    server_t sv;
    HANDLE *h;
    int joined;

    C.msgs = (int)arg_long("msgs", 20, 1, 1000000);
    C.size = (int)arg_long("size", 1024, 1, 1 << 20);
    if (args_check())
        return 0;
    if (setup(conns, (long)conns * C.msgs, &h) != 0)
        return 0;
    memset(&sv, 0, sizeof sv);
    sv.mode = SRV_STREAM;
    sv.threaded = 1;
    sv.expect = conns;
    if (server_start(&sv, port) != 0)
        return 0;
    C.port = sv.port;
    start_clients(h, conns, many_client);
    SetEvent(C.go);
    joined = finish(h, conns, &sv);
    res_add("ok", (unsigned long)C.ok);
    res_add("failed", (unsigned long)(conns - C.ok));
    res_add("messages", (unsigned long)C.messages);
    res_add("bytes", (unsigned long)C.messages * (unsigned long)C.size);
    lat_report(&C.lat);
    return joined && C.ok == conns && sv.served_ok == conns && errors_total() == 0;
}
