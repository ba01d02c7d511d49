/*
 * Scenario kdriver: the project's kernel TDI client, tdiecho.sys (src/echo.rs),
 * which echoes TCP on port 7400 through TDI event handlers only (connect with
 * TDI_ACCEPT, receive, disconnect; issue 18).  The runner puts it next to
 * tcpip.sys on the CD; the scenario installs it with the service control
 * manager as a kernel driver (\SystemRoot is the CD's reactos folder on the
 * livecd), starts it (DriverEntry opens \Device\Tcp), then:
 *   - one small round trip (100 bytes, half-close, the server's release);
 *   - `clients` connections at once (default 4), each echoing `kib` KiB
 *     (default 64), checked byte for byte;
 *   - `rounds` more one after the other (default 12, more than the driver's 8
 *     endpoints: each takes a new connection once its last one is over; when
 *     the clients outrun that, the driver finds no free endpoint and refuses,
 *     which resets the connection: such a round is retried after 100 ms, at
 *     most 5 times, and counted in `retries`);
 * to `addr` (default 127.0.0.1; `addr=card` is the card's 10.0.2.15), then
 * stops the service (DriverUnload closes everything) and checks that it is
 * stopped and that port 7400 refuses connections, and deletes the service.
 */
#include "tcpipvm.h"

#define KD_PORT 7400
#define KD_SEED 0x7d1ecU
#define KD_SERVICE "TdiEcho"

static struct sockaddr_in g_to;
static long g_kib;
static volatile LONG g_echoed, g_failed;

/* One connection: `len` bytes of the pattern of `seed` echoed and checked,
 * then a half-close and the server's release. */
static int echo_once(uint32_t seed, int len, int chunk)
{
    SOCKET s = tcp_socket();
    char *out = NULL, *in = NULL;
    int e, off;
    long bad;

    if (s == INVALID_SOCKET)
        return last_err();
    if ((e = tcp_connect_to(s, &g_to)) != 0)
        goto done;
    out = (char *)malloc((size_t)len);
    in = (char *)malloc((size_t)len);
    if (out == NULL || in == NULL) {
        e = ERR_NOMEM;
        goto done;
    }
    pattern_fill(seed, 0, out, (size_t)len);
    /* Send in chunks and read each echo back before the next: the server's
       backlog stays small whatever the receive window. */
    for (off = 0; off < len; off += chunk) {
        int n = len - off < chunk ? len - off : chunk;
        if ((e = send_all(s, out + off, n)) != 0 || (e = recv_exact(s, in + off, n)) != 0)
            goto done;
    }
    if ((bad = pattern_check(seed, 0, in, (size_t)len)) >= 0) {
        report_error("seed %lu: echo differs at byte %ld", (unsigned long)seed, bad);
        e = ERR_EXTRA;
        goto done;
    }
    InterlockedExchangeAdd(&g_echoed, len);
    if (shutdown(s, SD_SEND) != 0) {
        e = last_err();
        goto done;
    }
    e = expect_eof(s);
done:
    free(out);
    free(in);
    sock_close(&s);
    return e;
}

static DWORD WINAPI client_thread(LPVOID arg)
{
    uint32_t seed = KD_SEED + (uint32_t)(ULONG_PTR)arg;
    int e = echo_once(seed, (int)(g_kib * 1024), 16 * 1024);
    if (e != 0) {
        report_error("client %lu: %s", (unsigned long)(ULONG_PTR)arg, errname(e));
        InterlockedIncrement(&g_failed);
    }
    return 0;
}

/* Waits until the service reports `state` (10 s at most). */
static int wait_state(SC_HANDLE svc, DWORD state, SERVICE_STATUS *st)
{
    int i;
    for (i = 0; i < 100; i++) {
        if (!QueryServiceStatus(svc, st))
            return 0;
        if (st->dwCurrentState == state)
            return 1;
        Sleep(100);
    }
    return 0;
}

int sc_kdriver(void)
{
    const char *addr = arg_str("addr", "127.0.0.1");
    long clients = arg_long("clients", 4, 1, 8);
    long rounds = arg_long("rounds", 12, 0, 1000);
    const char *path = arg_str("path", "\\SystemRoot\\System32\\drivers\\tdiecho.sys");
    SC_HANDLE scm = NULL, svc = NULL;
    SERVICE_STATUS st;
    HANDLE threads[8];
    SOCKET s;
    long i;
    int e, unloaded = 0, refused = 0;
    unsigned long retries = 0;
    LONGLONG t0;

    g_kib = arg_long("kib", 64, 1, 4096);
    if (args_check())
        return 0;
    memset(&g_to, 0, sizeof g_to);
    g_to.sin_family = AF_INET;
    g_to.sin_port = htons(KD_PORT);
    g_to.sin_addr.s_addr = inet_addr(strcmp(addr, "card") == 0 ? "10.0.2.15" : addr);

    scm = OpenSCManagerA(NULL, NULL, SC_MANAGER_ALL_ACCESS);
    if (scm == NULL) {
        report_error("OpenSCManager: %lu", (unsigned long)GetLastError());
        return 0;
    }
    svc = CreateServiceA(scm, KD_SERVICE, KD_SERVICE, SERVICE_ALL_ACCESS, SERVICE_KERNEL_DRIVER,
                         SERVICE_DEMAND_START, SERVICE_ERROR_NORMAL, path, NULL, NULL, NULL,
                         NULL, NULL);
    if (svc == NULL && GetLastError() == ERROR_SERVICE_EXISTS)
        svc = OpenServiceA(scm, KD_SERVICE, SERVICE_ALL_ACCESS);
    if (svc == NULL) {
        report_error("CreateService(%s): %lu", path, (unsigned long)GetLastError());
        CloseServiceHandle(scm);
        return 0;
    }
    t0 = now_ticks();
    if (!StartServiceA(svc, 0, NULL) && GetLastError() != ERROR_SERVICE_ALREADY_RUNNING) {
        report_error("StartService: %lu", (unsigned long)GetLastError());
        goto out;
    }
    if (!wait_state(svc, SERVICE_RUNNING, &st)) {
        report_error("service not running: state %lu", (unsigned long)st.dwCurrentState);
        goto out;
    }
    res_add("start_ms", ms_since(t0));

    /* A small round trip. */
    if ((e = echo_once(KD_SEED, 100, 100)) != 0) {
        report_error("round trip: %s", errname(e));
        goto stop;
    }
    /* Clients at once. */
    t0 = now_ticks();
    for (i = 0; i < clients; i++)
        threads[i] = thread_start(client_thread, (LPVOID)(ULONG_PTR)(i + 1));
    for (i = 0; i < clients; i++) {
        if (threads[i] == NULL) {
            report_error("CreateThread failed");
            InterlockedIncrement(&g_failed);
        }
    }
    if (threads_join(threads, (int)clients, join_bound()) != 0)
        report_error("clients still running");
    res_add("clients_ms", ms_since(t0));
    /* More connections than endpoints, one after the other. */
    for (i = 0; i < rounds && g_failed == 0; i++) {
        int tries = 0;
        while ((e = echo_once(KD_SEED + 100 + (uint32_t)i, 1000, 1000)) == WSAECONNRESET &&
               tries < 5) {
            tries++;
            retries++;
            Sleep(100);
        }
        if (e != 0) {
            report_error("round %ld: %s", i, errname(e));
            InterlockedIncrement(&g_failed);
        }
    }
    res_add("rounds", (unsigned long)i);
    res_add("retries", (unsigned long)retries);
stop:
    res_add("echoed", (unsigned long)g_echoed);
    /* DriverUnload: the service stops, and nothing listens on the port any more. */
    if (!ControlService(svc, SERVICE_CONTROL_STOP, &st))
        report_error("ControlService(STOP): %lu", (unsigned long)GetLastError());
    else if (!wait_state(svc, SERVICE_STOPPED, &st))
        report_error("service not stopped: state %lu", (unsigned long)st.dwCurrentState);
    else
        unloaded = 1;
    if (unloaded) {
        s = tcp_socket();
        if (s != INVALID_SOCKET) {
            e = tcp_connect_to(s, &g_to);
            refused = e == WSAECONNREFUSED;
            if (!refused)
                report_error("port %d after unload: %s", KD_PORT, e == 0 ? "connects" : errname(e));
            sock_close(&s);
        }
    }
    res_add("unloaded", (unsigned long)unloaded);
    res_add("refused_after", (unsigned long)refused);
out:
    DeleteService(svc);
    CloseServiceHandle(svc);
    CloseServiceHandle(scm);
    return errors_total() == 0 && g_failed == 0;
}
