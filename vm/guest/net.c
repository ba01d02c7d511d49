/*
 * Time, the scenario time budget, bounded socket helpers, threads,
 * deterministic test data and latency statistics.
 *
 * Why select() before recv/send/accept: ReactOS's msafd waits without a
 * timeout on a blocking recv/send/accept and ignores SO_RCVTIMEO and
 * SO_SNDTIMEO, so the options alone would not bound anything there.  The
 * options are set as well (they bound the calls on Windows and Wine).
 * A helper returns 0 or an error: a WSA code or one of the ERR_ codes.
 */
#include "tcpipvm.h"

int g_io_ms = 20000;
int g_connect_block = 0;
int g_preselect = 1;

static LARGE_INTEGER g_freq;
static LONGLONG g_budget_end; /* 0: no budget */

LONGLONG now_ticks(void)
{
    LARGE_INTEGER t;
    if (g_freq.QuadPart == 0)
        QueryPerformanceFrequency(&g_freq);
    QueryPerformanceCounter(&t);
    return t.QuadPart;
}

unsigned long ticks_us(LONGLONG from, LONGLONG to)
{
    double us;
    if (g_freq.QuadPart == 0)
        QueryPerformanceFrequency(&g_freq);
    if (to <= from)
        return 0;
    us = (double)(to - from) * 1e6 / (double)g_freq.QuadPart;
    return us > 4.0e9 ? 4000000000UL : (unsigned long)us;
}

unsigned long ms_since(LONGLONG from)
{
    return ticks_us(from, now_ticks()) / 1000;
}

void budget_start(long ms)
{
    LONGLONG now = now_ticks();
    g_budget_end = ms > 0 ? now + (LONGLONG)((double)ms * (double)g_freq.QuadPart / 1000.0) : 0;
}

int op_ms(void)
{
    LONGLONG now;
    double left;
    if (g_budget_end == 0)
        return g_io_ms;
    now = now_ticks();
    if (now >= g_budget_end)
        return 0;
    left = (double)(g_budget_end - now) * 1000.0 / (double)g_freq.QuadPart;
    return left < (double)g_io_ms ? (int)left + 1 : g_io_ms;
}

/* How long to wait for threads whose every wait is bounded by op_ms():
 * the rest of the budget and 5 s.  A call that blocks despite its select()
 * costs at most 5 s per join after the budget, so that the child still
 * reports before the parent's timeout (30 s after the budget by default).
 * Without a budget: until the parent's timeout. */
DWORD join_bound(void)
{
    LONGLONG now;
    if (g_budget_end == 0)
        return 24UL * 3600UL * 1000UL;
    now = now_ticks();
    if (now >= g_budget_end)
        return 5000;
    return (DWORD)((double)(g_budget_end - now) * 1000.0 / (double)g_freq.QuadPart) + 5000;
}

int running_on_wine(void)
{
    HMODULE nt = GetModuleHandleA("ntdll.dll");
    return nt != NULL && GetProcAddress(nt, "wine_get_version") != NULL;
}

int last_err(void)
{
    int e = WSAGetLastError();
    return e != 0 ? e : WSAEINVAL;
}

int net_startup(void)
{
    WSADATA wd;
    return WSAStartup(MAKEWORD(2, 2), &wd);
}

SOCKET tcp_socket(void)
{
    SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s != INVALID_SOCKET) {
        DWORD t = (DWORD)g_io_ms;
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&t, sizeof t);
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, (const char *)&t, sizeof t);
    }
    return s;
}

static void loopback(struct sockaddr_in *a, int port)
{
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((u_short)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* Listen on 127.0.0.1:port; on WSAEADDRINUSE try the next 9 ports (TIME_WAIT
 * leftovers of an earlier run under Wine/Linux). */
SOCKET tcp_listen(int port, int backlog, int *actual_port, int *err)
{
    int i;
    for (i = 0; i < 10; i++) {
        struct sockaddr_in a;
        SOCKET s = tcp_socket();
        if (s == INVALID_SOCKET) {
            *err = last_err();
            return INVALID_SOCKET;
        }
        loopback(&a, port + i);
        if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
            *err = last_err();
            closesocket(s);
            if (*err == WSAEADDRINUSE)
                continue;
            return INVALID_SOCKET;
        }
        if (listen(s, backlog) != 0) {
            *err = last_err();
            closesocket(s);
            return INVALID_SOCKET;
        }
        *actual_port = port + i;
        *err = 0;
        return s;
    }
    return INVALID_SOCKET;
}

int set_nonblock(SOCKET s, int on)
{
    u_long v = on ? 1 : 0;
    return ioctlsocket(s, FIONBIO, &v) == 0 ? 0 : last_err();
}

int set_nodelay(SOCKET s)
{
    BOOL on = TRUE;
    return setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&on, sizeof on) == 0
               ? 0 : last_err();
}

/* 0 when s becomes readable (writable) within ms, else an error. */
int wait_io(SOCKET s, int for_write, int ms)
{
    fd_set fds;
    struct timeval tv;
    int r;
    if (ms <= 0)
        return ERR_BUDGET;
    FD_ZERO(&fds);
    FD_SET(s, &fds);
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    r = select(0, for_write ? NULL : &fds, for_write ? &fds : NULL, NULL, &tv);
    if (r < 0)
        return last_err();
    return r == 0 ? ERR_TIMEOUT : 0;
}

/* connect to 127.0.0.1:port (tcp_connect_to: to a). */
int tcp_connect(SOCKET s, int port)
{
    struct sockaddr_in a;
    loopback(&a, port);
    return tcp_connect_to(s, &a);
}

/* Default: non-blocking connect, select() for writability (or exceptfds for a
 * failure) within the bound, then back to blocking.  With connect=block in the
 * arguments: a plain blocking connect. */
int tcp_connect_to(SOCKET s, const struct sockaddr_in *to)
{
    struct sockaddr_in a = *to;
    fd_set wfds, efds;
    struct timeval tv;
    int e, r, ms = op_ms();

    if (ms <= 0)
        return ERR_BUDGET;
    if (g_connect_block)
        return connect(s, (struct sockaddr *)&a, sizeof a) == 0 ? 0 : last_err();
    if ((e = set_nonblock(s, 1)) != 0)
        return e;
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
        return set_nonblock(s, 0);
    e = WSAGetLastError();
    if (e != WSAEWOULDBLOCK)
        return e ? e : WSAEINVAL;
    FD_ZERO(&wfds);
    FD_ZERO(&efds);
    FD_SET(s, &wfds);
    FD_SET(s, &efds);
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    r = select(0, NULL, &wfds, &efds, &tv);
    if (r < 0)
        return last_err();
    if (r == 0)
        return ERR_TIMEOUT;
    if (FD_ISSET(s, &efds)) {
        int so = 0, len = sizeof so;
        if (getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&so, &len) != 0)
            return last_err();
        return so != 0 ? so : ERR_CONNFAIL;
    }
    return set_nonblock(s, 0);
}

SOCKET tcp_accept(SOCKET l, int ms, int *err, struct sockaddr_in *peer)
{
    struct sockaddr_in a;
    int alen = sizeof a;
    SOCKET s;
    int e = wait_io(l, 0, ms);
    if (e != 0) {
        *err = e;
        return INVALID_SOCKET;
    }
    s = accept(l, (struct sockaddr *)&a, &alen);
    if (s == INVALID_SOCKET) {
        *err = last_err();
        return s;
    }
    if (peer != NULL)
        *peer = a;
    *err = 0;
    {
        DWORD t = (DWORD)g_io_ms;
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (const char *)&t, sizeof t);
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, (const char *)&t, sizeof t);
    }
    return s;
}

/* The bound before a recv/send: select() unless preselect=0 was given (then
 * only SO_RCVTIMEO/SO_SNDTIMEO bound the call, which ReactOS ignores). */
static int wait_maybe(SOCKET s, int for_write)
{
    int ms = op_ms();
    if (ms <= 0)
        return ERR_BUDGET;
    return g_preselect ? wait_io(s, for_write, ms) : 0;
}

int send_all(SOCKET s, const void *buf, int len)
{
    const char *p = (const char *)buf;
    while (len > 0) {
        int n, e = wait_maybe(s, 1);
        if (e != 0)
            return e;
        n = send(s, p, len, 0);
        if (n == SOCKET_ERROR)
            return WSAGetLastError() == WSAETIMEDOUT ? ERR_TIMEOUT : last_err();
        p += n;
        len -= n;
    }
    return 0;
}

/* One recv: 0 with *got > 0 for data, 0 with *got == 0 at end of stream. */
int recv_some(SOCKET s, void *buf, int len, int *got)
{
    int n, e = wait_maybe(s, 0);
    *got = 0;
    if (e != 0)
        return e;
    n = recv(s, (char *)buf, len, 0);
    if (n == SOCKET_ERROR)
        return WSAGetLastError() == WSAETIMEDOUT ? ERR_TIMEOUT : last_err();
    *got = n;
    return 0;
}

int recv_exact(SOCKET s, void *buf, int len)
{
    char *p = (char *)buf;
    while (len > 0) {
        int got, e = recv_some(s, p, len, &got);
        if (e != 0)
            return e;
        if (got == 0)
            return ERR_EOF;
        p += got;
        len -= got;
    }
    return 0;
}

/* The next recv must report end of stream. */
int expect_eof(SOCKET s)
{
    char b[64];
    int got, e = recv_some(s, b, sizeof b, &got);
    if (e != 0)
        return e;
    return got == 0 ? 0 : ERR_EXTRA;
}

void sock_close(SOCKET *s)
{
    if (*s != INVALID_SOCKET) {
        closesocket(*s);
        *s = INVALID_SOCKET;
    }
}

/* Threads reserve 64 KiB of stack: hundreds of them fit easily. */
HANDLE thread_start(LPTHREAD_START_ROUTINE fn, void *arg)
{
    return CreateThread(NULL, 64 * 1024, fn, arg,
                        STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
}

/* Wait up to ms in total for n threads; closes the handles of those that
 * ended (set to NULL) and returns how many are still running. */
int threads_join(HANDLE *h, int n, DWORD ms)
{
    LONGLONG t0 = now_ticks();
    int i, left = 0;
    for (i = 0; i < n; i++) {
        unsigned long spent;
        DWORD wait;
        if (h[i] == NULL)
            continue;
        spent = ms_since(t0);
        wait = spent >= ms ? 0 : ms - spent;
        if (WaitForSingleObject(h[i], wait) == WAIT_OBJECT_0) {
            CloseHandle(h[i]);
            h[i] = NULL;
        } else {
            left++;
        }
    }
    return left;
}

/* ---- deterministic test data ---- */

uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* Byte at stream offset o of stream seed: a byte of mix32(seed-key ^ o/4). */
static uint32_t pattern_word(uint32_t key, uint32_t w)
{
    return mix32(key ^ (w * 0x9e3779b9U));
}

void pattern_fill(uint32_t seed, uint32_t off, void *buf, size_t n)
{
    unsigned char *p = (unsigned char *)buf;
    uint32_t key = mix32(seed + 0x51ed270bU);
    size_t i = 0;
    while (i < n) {
        uint32_t o = off + (uint32_t)i;
        uint32_t w = pattern_word(key, o >> 2);
        unsigned sh = (o & 3) * 8;
        for (; sh < 32 && i < n; sh += 8)
            p[i++] = (unsigned char)(w >> sh);
    }
}

/* Offset (relative to buf) of the first byte that differs, or -1. */
long pattern_check(uint32_t seed, uint32_t off, const void *buf, size_t n)
{
    const unsigned char *p = (const unsigned char *)buf;
    uint32_t key = mix32(seed + 0x51ed270bU);
    size_t i = 0;
    while (i < n) {
        uint32_t o = off + (uint32_t)i;
        uint32_t w = pattern_word(key, o >> 2);
        unsigned sh = (o & 3) * 8;
        for (; sh < 32 && i < n; sh += 8, i++)
            if (p[i] != (unsigned char)(w >> sh))
                return (long)i;
    }
    return -1;
}

uint64_t fnv1a64(uint64_t h, const void *buf, size_t n)
{
    const unsigned char *p = (const unsigned char *)buf;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ---- latency statistics ---- */

int lat_init(lat_t *l, long cap)
{
    l->n = 0;
    l->cap = cap;
    l->v = (unsigned long *)calloc((size_t)(cap > 0 ? cap : 1), sizeof *l->v);
    return l->v != NULL ? 0 : ERR_NOMEM;
}

void lat_add(lat_t *l, unsigned long us)
{
    LONG i = InterlockedIncrement(&l->n) - 1;
    if (i < l->cap)
        l->v[i] = us;
}

static int cmp_ul(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentiles. */
static unsigned long pct(const unsigned long *v, long n, int p)
{
    long rank = (long)(((double)p * (double)n + 99.0) / 100.0);
    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

void lat_report(lat_t *l)
{
    long n = l->n < l->cap ? l->n : l->cap;
    if (n <= 0)
        return;
    qsort(l->v, (size_t)n, sizeof *l->v, cmp_ul);
    res_add("p50_us", pct(l->v, n, 50));
    res_add("p90_us", pct(l->v, n, 90));
    res_add("p99_us", pct(l->v, n, 99));
    res_add("max_us", l->v[n - 1]);
}

void lat_free(lat_t *l)
{
    free(l->v);
    l->v = NULL;
}
