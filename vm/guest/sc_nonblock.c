/*
 * nonblock: non-blocking sockets driven by select(), as Winsock programs
 * commonly write them.  One thread runs a select() echo server for all
 * clients; another runs all clients with non-blocking connects, sends and
 * recvs in its own select() loop.  Every WSAEWOULDBLOCK is counted.
 *
 * Note: ReactOS's msafd copies select()'s sets into fd_sets of its own
 * default size (64), so keep clients well under 64 there.
 */
#include "tcpipvm.h"

#define NB_BUF 16384

static struct {
    int clients, size, port;
    unsigned long total;  /* bytes each client sends and gets back */
    SOCKET l;
    volatile LONG stop;
    volatile LONG wb_send, wb_recv, wb_connect, wb_accept;
    volatile LONG served, served_ok, clients_ok;
} N;

static uint32_t client_seed(int i)
{
    return mix32(0x6e6200U + (uint32_t)i);
}

static int wouldblock(volatile LONG *counter)
{
    if (WSAGetLastError() == WSAEWOULDBLOCK) {
        InterlockedIncrement(counter);
        return 1;
    }
    return 0;
}

/* ---- the select() echo server ---- */

typedef struct {
    SOCKET s;
    char *buf;
    int off, len, eof;
} sconn_t;

static void sconn_close(sconn_t *c, int ok)
{
    sock_close(&c->s);
    free(c->buf);
    c->buf = NULL;
    if (ok)
        InterlockedIncrement(&N.served_ok);
}

static void sconn_compact(sconn_t *c)
{
    if (c->off == c->len) {
        c->off = c->len = 0;
    } else if (c->len == NB_BUF && c->off > 0) {
        memmove(c->buf, c->buf + c->off, (size_t)(c->len - c->off));
        c->len -= c->off;
        c->off = 0;
    }
}

/* Reads what is there, then writes what it can; 0 when still fine. */
static int sconn_io(sconn_t *c, int readable)
{
    int n, e;
    sconn_compact(c);
    while (readable && !c->eof && c->len < NB_BUF) {
        n = recv(c->s, c->buf + c->len, NB_BUF - c->len, 0);
        if (n > 0) {
            c->len += n;
        } else if (n == 0) {
            c->eof = 1;
        } else {
            if (wouldblock(&N.wb_recv))
                break;
            e = last_err();
            report_error("server recv: %s(%d)", errname(e), e);
            return e;
        }
    }
    while (c->off < c->len) {
        n = send(c->s, c->buf + c->off, c->len - c->off, 0);
        if (n > 0) {
            c->off += n;
        } else {
            if (n == SOCKET_ERROR && wouldblock(&N.wb_send))
                break;
            e = last_err();
            report_error("server send: %s(%d)", errname(e), e);
            return e;
        }
    }
    sconn_compact(c);
    return 0;
}

static DWORD WINAPI nb_server(void *p)
{
    sconn_t *c = (sconn_t *)calloc((size_t)N.clients, sizeof *c);
    LONGLONG progress = now_ticks();
    int i, nopen = 0;
    (void)p;
    if (c == NULL) {
        report_error("server: out of memory");
        return 0;
    }
    while (!N.stop && (N.served < N.clients || nopen > 0)) {
        fd_set r, w;
        struct timeval tv = {0, 100000};
        int n, any = 0;
        FD_ZERO(&r);
        FD_ZERO(&w);
        if (N.served < N.clients) {
            FD_SET(N.l, &r);
            any++;
        }
        for (i = 0; i < (int)N.served; i++) {
            if (c[i].s == INVALID_SOCKET)
                continue;
            if (!c[i].eof && c[i].len < NB_BUF) {
                FD_SET(c[i].s, &r);
                any++;
            }
            if (c[i].off < c[i].len) {
                FD_SET(c[i].s, &w);
                any++;
            }
        }
        if (!any) {
            Sleep(10);
            continue;
        }
        n = select(0, &r, &w, NULL, &tv);
        if (n == SOCKET_ERROR) {
            int e = last_err();
            report_error("server select: %s(%d)", errname(e), e);
            break;
        }
        if (n == 0) {
            if (ms_since(progress) > (unsigned long)g_io_ms) {
                report_error("server: no progress for %d ms", g_io_ms);
                break;
            }
            continue;
        }
        progress = now_ticks();
        if (FD_ISSET(N.l, &r)) {
            while (N.served < N.clients) {
                SOCKET s = accept(N.l, NULL, NULL);
                if (s == INVALID_SOCKET) {
                    int e;
                    if (wouldblock(&N.wb_accept))
                        break;
                    e = last_err();
                    report_error("server accept: %s(%d)", errname(e), e);
                    break;
                }
                c[N.served].s = s;
                c[N.served].buf = (char *)malloc(NB_BUF);
                c[N.served].off = c[N.served].len = c[N.served].eof = 0;
                InterlockedIncrement(&N.served);
                nopen++;
                if (c[N.served - 1].buf == NULL || set_nonblock(s, 1) != 0) {
                    report_error("server: setup of connection %ld failed", (long)N.served - 1);
                    sconn_close(&c[N.served - 1], 0);
                    nopen--;
                }
            }
        }
        for (i = 0; i < (int)N.served; i++) {
            if (c[i].s == INVALID_SOCKET)
                continue;
            if (sconn_io(&c[i], FD_ISSET(c[i].s, &r)) != 0) {
                sconn_close(&c[i], 0);
                nopen--;
            } else if (c[i].eof && c[i].off == c[i].len) {
                sconn_close(&c[i], 1);  /* echoed everything: graceful close */
                nopen--;
            }
        }
    }
    for (i = 0; i < (int)N.served; i++)
        if (c[i].s != INVALID_SOCKET)
            sconn_close(&c[i], 0);
    free(c);
    return 0;
}

/* ---- the clients, all in one thread ---- */

enum { CS_CONNECTING, CS_OPEN, CS_DONE, CS_FAILED };
typedef struct {
    SOCKET s;
    int state, shut;
    unsigned long sent, rcvd;
} cconn_t;

static void cdrop(cconn_t *c)
{
    sock_close(&c->s);
    c->state = CS_FAILED;
}

static void cfail(cconn_t *c, int i, const char *what, int e)
{
    report_error("client %d %s: %s(%d)", i, what, errname(e), e);
    cdrop(c);
}

static void client_io(cconn_t *c, int i, int readable, int writable, char *tmp)
{
    uint32_t seed = client_seed(i);
    int n;
    while (writable && c->sent < N.total) {
        unsigned long want = N.total - c->sent;
        if (want > (unsigned long)N.size)
            want = (unsigned long)N.size;
        pattern_fill(seed, (uint32_t)c->sent, tmp, want);
        n = send(c->s, tmp, (int)want, 0);
        if (n > 0) {
            c->sent += (unsigned long)n;
        } else {
            if (n == SOCKET_ERROR && wouldblock(&N.wb_send))
                break;
            cfail(c, i, "send", last_err());
            return;
        }
    }
    if (c->sent == N.total && !c->shut) {
        if (shutdown(c->s, SD_SEND) != 0) {
            cfail(c, i, "shutdown", last_err());
            return;
        }
        c->shut = 1;
    }
    while (readable) {
        n = recv(c->s, tmp, N.size, 0);
        if (n > 0) {
            long bad = c->rcvd + (unsigned long)n > N.total ? 0
                     : pattern_check(seed, (uint32_t)c->rcvd, tmp, (size_t)n);
            if (bad >= 0) {
                report_error("client %d echo differs at byte %lu", i,
                             c->rcvd + (unsigned long)bad);
                cdrop(c);
                return;
            }
            c->rcvd += (unsigned long)n;
        } else if (n == 0) {
            if (c->rcvd != N.total || !c->shut) {
                report_error("client %d end of stream after %lu of %lu bytes", i,
                             c->rcvd, N.total);
                cdrop(c);
                return;
            }
            sock_close(&c->s);
            c->state = CS_DONE;
            InterlockedIncrement(&N.clients_ok);
            return;
        } else {
            if (wouldblock(&N.wb_recv))
                break;
            cfail(c, i, "recv", last_err());
            return;
        }
    }
}

static DWORD WINAPI nb_clients(void *p)
{
    cconn_t *c = (cconn_t *)calloc((size_t)N.clients, sizeof *c);
    char *tmp = (char *)malloc((size_t)N.size);
    struct sockaddr_in a;
    LONGLONG progress = now_ticks();
    int i, active;
    (void)p;
    if (c == NULL || tmp == NULL) {
        report_error("clients: out of memory");
        free(c);
        free(tmp);
        return 0;
    }
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((u_short)N.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (i = 0; i < N.clients; i++) {
        int e;
        c[i].s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
        if (c[i].s == INVALID_SOCKET) {
            cfail(&c[i], i, "socket", last_err());
            continue;
        }
        if ((e = set_nonblock(c[i].s, 1)) != 0) {
            cfail(&c[i], i, "FIONBIO", e);
            continue;
        }
        if (connect(c[i].s, (struct sockaddr *)&a, sizeof a) == 0) {
            c[i].state = CS_OPEN;  /* allowed, though Windows never does it */
        } else if (wouldblock(&N.wb_connect)) {
            c[i].state = CS_CONNECTING;
        } else {
            cfail(&c[i], i, "connect", last_err());
        }
    }
    for (;;) {
        fd_set r, w, x;
        struct timeval tv = {0, 100000};
        int n;
        FD_ZERO(&r);
        FD_ZERO(&w);
        FD_ZERO(&x);
        active = 0;
        for (i = 0; i < N.clients; i++) {
            if (c[i].state == CS_CONNECTING) {
                FD_SET(c[i].s, &w);
                FD_SET(c[i].s, &x);
            } else if (c[i].state == CS_OPEN) {
                FD_SET(c[i].s, &r);
                if (c[i].sent < N.total)
                    FD_SET(c[i].s, &w);
            } else {
                continue;
            }
            active++;
        }
        if (active == 0)
            break;
        if (op_ms() <= 0) {
            report_error("clients: time budget spent with %d active", active);
            break;
        }
        n = select(0, &r, &w, &x, &tv);
        if (n == SOCKET_ERROR) {
            int e = last_err();
            report_error("clients select: %s(%d)", errname(e), e);
            break;
        }
        if (n == 0) {
            if (ms_since(progress) > (unsigned long)g_io_ms) {
                report_error("clients: no progress for %d ms, %d active", g_io_ms, active);
                break;
            }
            continue;
        }
        progress = now_ticks();
        for (i = 0; i < N.clients; i++) {
            if (c[i].state == CS_CONNECTING) {
                if (FD_ISSET(c[i].s, &x)) {
                    int so = 0, len = sizeof so;
                    getsockopt(c[i].s, SOL_SOCKET, SO_ERROR, (char *)&so, &len);
                    cfail(&c[i], i, "connect (select exceptfds)", so ? so : ERR_CONNFAIL);
                } else if (FD_ISSET(c[i].s, &w)) {
                    c[i].state = CS_OPEN;
                    client_io(&c[i], i, 0, 1, tmp);
                }
            } else if (c[i].state == CS_OPEN) {
                client_io(&c[i], i, FD_ISSET(c[i].s, &r), FD_ISSET(c[i].s, &w), tmp);
            }
        }
    }
    for (i = 0; i < N.clients; i++)
        sock_close(&c[i].s);
    free(c);
    free(tmp);
    return 0;
}

int sc_nonblock(void)
{
    long msgs = arg_long("msgs", 16, 1, 1000000);
    HANDLE th[2];
    int e, left;
    N.clients = (int)arg_long("clients", 16, 1, 250);
    N.size = (int)arg_long("size", 4096, 1, 1 << 20);
    N.port = (int)arg_long("port", 20700, 1, 65000);
    if (args_check())
        return 0;
    N.total = (unsigned long)msgs * (unsigned long)N.size;
    N.l = tcp_listen(N.port, SOMAXCONN, &N.port, &e);
    if (N.l == INVALID_SOCKET) {
        report_error("listen: %s(%d)", errname(e), e);
        return 0;
    }
    if ((e = set_nonblock(N.l, 1)) != 0) {
        report_error("listener FIONBIO: %s(%d)", errname(e), e);
        return 0;
    }
    th[0] = thread_start(nb_server, NULL);
    th[1] = thread_start(nb_clients, NULL);
    if (th[0] == NULL || th[1] == NULL) {
        report_error("CreateThread failed: %lu", (unsigned long)GetLastError());
        N.stop = 1;
        threads_join(th, 2, join_bound());
        return 0;
    }
    left = threads_join(&th[1], 1, join_bound());
    N.stop = 1;
    left += threads_join(&th[0], 1, join_bound());
    if (left != 0)
        report_error("%d thread(s) did not end", left);
    else
        sock_close(&N.l);
    res_add("ok", (unsigned long)N.clients_ok);
    res_add("failed", (unsigned long)(N.clients - N.clients_ok));
    res_add("bytes", (unsigned long)N.clients_ok * N.total);
    res_add("wb_connect", (unsigned long)N.wb_connect);
    res_add("wb_send", (unsigned long)N.wb_send);
    res_add("wb_recv", (unsigned long)N.wb_recv);
    res_add("wb_accept", (unsigned long)N.wb_accept);
    return left == 0 && N.clients_ok == N.clients && N.served_ok == N.clients &&
           errors_total() == 0;
}
