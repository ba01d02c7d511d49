/*
 * The echo server the scenarios run against: one accept thread on
 * 127.0.0.1, serving each connection inline or in its own thread.
 */
#include "tcpipvm.h"

typedef struct {
    server_t *sv;
    SOCKET s;
} conn_arg_t;

/* Receive one msg_size message, echo it, half-close, read to EOF. */
static int serve_one(server_t *sv, SOCKET s)
{
    char *buf = (char *)malloc((size_t)sv->msg_size);
    int e, got;
    const char *step = "recv";
    if (buf == NULL)
        return ERR_NOMEM;
    e = recv_exact(s, buf, sv->msg_size);
    if (e == 0) {
        step = "send";
        e = send_all(s, buf, sv->msg_size);
    }
    if (e == 0) {
        step = "shutdown";
        if (shutdown(s, SD_SEND) != 0)
            e = last_err();
    }
    while (e == 0) {
        step = "drain";
        e = recv_some(s, buf, sv->msg_size, &got);
        if (e == 0 && got == 0)
            break;
    }
    free(buf);
    if (e != 0)
        report_error("server %s: %s(%d)", step, errname(e), e);
    return e;
}

/* Echo everything until EOF, then close. */
static int serve_stream(server_t *sv, SOCKET s)
{
    const int size = 64 * 1024;
    char *buf = (char *)malloc((size_t)size);
    int e = 0, got;
    const char *step = "recv";
    (void)sv;
    if (buf == NULL)
        return ERR_NOMEM;
    for (;;) {
        step = "recv";
        e = recv_some(s, buf, size, &got);
        if (e != 0 || got == 0)
            break;
        step = "send";
        e = send_all(s, buf, got);
        if (e != 0)
            break;
    }
    free(buf);
    if (e != 0)
        report_error("server %s: %s(%d)", step, errname(e), e);
    return e;
}

static void serve(server_t *sv, SOCKET s)
{
    int e;
    if (sv->nodelay && (e = set_nodelay(s)) != 0)
        report_error("server TCP_NODELAY: %s(%d)", errname(e), e);
    e = sv->mode == SRV_ONE ? serve_one(sv, s) : serve_stream(sv, s);
    closesocket(s);
    InterlockedIncrement(e == 0 ? &sv->served_ok : &sv->served_fail);
}

static DWORD WINAPI worker_main(void *p)
{
    conn_arg_t *a = (conn_arg_t *)p;
    serve(a->sv, a->s);
    free(a);
    return 0;
}

static DWORD WINAPI accept_main(void *p)
{
    server_t *sv = (server_t *)p;
    LONGLONG t0 = now_ticks();
    while (!sv->stop && ms_since(t0) < (unsigned long)sv->delay_ms)
        Sleep(10);
    while (!sv->stop && (sv->expect == 0 || sv->accepted < sv->expect)) {
        int e, ms = op_ms();
        SOCKET s;
        if (ms <= 0)
            break;
        s = tcp_accept(sv->l, ms < 200 ? ms : 200, &e, NULL);
        if (s == INVALID_SOCKET) {
            if (e != ERR_TIMEOUT) {
                report_error("server accept: %s(%d)", errname(e), e);
                InterlockedIncrement(&sv->served_fail);
                Sleep(50);
            }
            continue;
        }
        InterlockedIncrement(&sv->accepted);
        if (sv->threaded && sv->nworkers < sv->maxworkers) {
            conn_arg_t *a = (conn_arg_t *)malloc(sizeof *a);
            HANDLE h = NULL;
            if (a != NULL) {
                a->sv = sv;
                a->s = s;
                h = thread_start(worker_main, a);
            }
            if (h != NULL) {
                sv->workers[sv->nworkers] = h;
                InterlockedIncrement(&sv->nworkers);
                continue;
            }
            free(a);
            report_error("server CreateThread failed: %lu", (unsigned long)GetLastError());
        }
        serve(sv, s);
    }
    /* Stay until server_stop: ReactOS's AFD posts an accepted connection's first
       TDI receive as an IRP of the accepting thread, and the I/O manager cancels a
       thread's IRPs when it ends; a worker would then get error 995 on its next recv. */
    while (!sv->stop)
        Sleep(10);
    return 0;
}

int server_start(server_t *sv, int port)
{
    int e;
    sv->stop = 0;
    sv->accepted = sv->served_ok = sv->served_fail = 0;
    sv->nworkers = 0;
    sv->workers = NULL;
    sv->thread = NULL;
    sv->l = tcp_listen(port, SOMAXCONN, &sv->port, &e);
    if (sv->l == INVALID_SOCKET) {
        report_error("server listen port %d: %s(%d)", port, errname(e), e);
        return e ? e : WSAEADDRINUSE;
    }
    if (sv->threaded) {
        sv->maxworkers = sv->expect > 0 ? sv->expect : 1024;
        sv->workers = (HANDLE *)calloc((size_t)sv->maxworkers, sizeof(HANDLE));
        if (sv->workers == NULL) {
            sock_close(&sv->l);
            return ERR_NOMEM;
        }
    }
    sv->thread = thread_start(accept_main, sv);
    if (sv->thread == NULL) {
        report_error("server CreateThread failed: %lu", (unsigned long)GetLastError());
        sock_close(&sv->l);
        return ERR_THREAD;
    }
    return 0;
}

int server_stop(server_t *sv)
{
    int left = 0;
    /* The workers first: the accepting thread ends last (see accept_main). */
    left += threads_join(sv->workers, (int)sv->nworkers, join_bound());
    sv->stop = 1;
    if (sv->thread != NULL)
        left += threads_join(&sv->thread, 1, join_bound());
    if (left == 0) {
        free(sv->workers);
        sv->workers = NULL;
    }
    if (left != 0)
        report_error("server: %d thread(s) did not end", left);
    sock_close(&sv->l);
    return left;
}
