// tcpipvm.exe: the guest test program of the tcpip.sys VM runs.
//
// Build (from the repository root):
// i686-w64-mingw32-gcc -O2 -Wall -Wextra -Werror -std=gnu11 -D_WIN32_WINNT=0x0502 -DWINVER=0x0502 -static-libgcc -o tcpipvm.exe vm/guest/*.c -lws2_32 -liphlpapi
//
/*
 * Usage (README.md has the details and the line protocol):
 *   tcpipvm.exe                  parent, as userinit: run the list, END, sleep forever
 *   tcpipvm.exe all [cfgfile]    parent for a person: run the list, END, exit 0/1
 *   tcpipvm.exe run NAME [k=v..] child: one scenario, its RESULT, exit 0 pass / 1 fail
 *   --stdout before any of these also writes every protocol line to stdout.
 *
 * The parent reads tcpipvm.cfg beside the program (one scenario per line,
 * "name [key=value ...]", "exec name=N [timeout=S] cmd=COMMAND LINE",
 * "#" comments) or runs the default list, each scenario in a child process
 * with a timeout.
 */
#include "tcpipvm.h"

#define DEFAULT_TIMEOUT_S 120
#define MAX_ENTRIES 64

typedef struct {
    const char *name;
    int (*fn)(void);
} scenario_t;

/* Self-tests of the parent's timeout and crash handling (not in the
 * default list): "selftest_sleep ms=N" sleeps then passes,
 * "selftest_crash" dies of an access violation. */
static int sc_selftest_sleep(void)
{
    long ms = arg_long("ms", 1000, 0, 86400000L);
    if (args_check())
        return 0;
    Sleep((DWORD)ms);
    return 1;
}

static int sc_selftest_crash(void)
{
    volatile int *volatile p = NULL;
    if (args_check())
        return 0;
    *p = 1;
    return 0;
}

static const scenario_t g_scenarios[] = {
    {"serial", sc_serial},     {"burst", sc_burst}, {"bulk", sc_bulk},
    {"pingpong", sc_pingpong}, {"many", sc_many},   {"edge", sc_edge},
    {"nonblock", sc_nonblock}, {"udp", sc_udp}, {"names", sc_names},       {"card", sc_card},
    {"dhcp", sc_dhcp},         {"userbuf", sc_userbuf}, {"kdriver", sc_kdriver},
};
#define NSCENARIOS ((int)(sizeof g_scenarios / sizeof g_scenarios[0]))

static const scenario_t g_selftests[] = {
    {"selftest_sleep", sc_selftest_sleep},
    {"selftest_crash", sc_selftest_crash},
};

static char g_self[MAX_PATH];

/* ====================================================================== */
/* child                                                                   */
/* ====================================================================== */

static LONG WINAPI crash_filter(EXCEPTION_POINTERS *ep)
{
    emit("ERROR name=%s unhandled exception 0x%08lx at 0x%08lx", g_name,
         (unsigned long)ep->ExceptionRecord->ExceptionCode,
         (unsigned long)(ULONG_PTR)ep->ExceptionRecord->ExceptionAddress);
    return EXCEPTION_EXECUTE_HANDLER; /* exit code = exception code: crash */
}

static void copy_name(char *dst, size_t n, const char *src)
{
    size_t i;
    for (i = 0; i + 1 < n && src[i] != 0; i++)
        dst[i] = (src[i] > ' ' && src[i] < 0x7f) ? src[i] : '_';
    dst[i] = 0;
}

/* Tell the parent that the RESULT line is out (and whether it passed). */
static void signal_parent(int pass)
{
    char v[64];
    DWORD n = GetEnvironmentVariableA("TCPIPVM_EVENTS", v, sizeof v);
    char *end;
    unsigned long hp, hf;
    if (n == 0 || n >= sizeof v)
        return;
    hp = strtoul(v, &end, 10);
    if (*end != ',')
        return;
    hf = strtoul(end + 1, NULL, 10);
    SetEvent((HANDLE)(ULONG_PTR)(pass ? hp : hf));
}

static int child_main(int argc, char **argv)
{
    const scenario_t *sc = NULL;
    const char *label, *mode;
    LONGLONG t0;
    long budget;
    int i, pass = 0;

    SetUnhandledExceptionFilter(crash_filter);
    copy_name(g_name, sizeof g_name, argv[0]);
    args_init(argc - 1, argv + 1);
    label = arg_str("label", arg_str("name", NULL)); /* name= is an alias */
    if (label != NULL)
        copy_name(g_name, sizeof g_name, label);
    g_io_ms = (int)arg_long("io_ms", 20000, 100, 200000);
    budget = arg_long("budget_ms", 0, 0, 86400000L);
    g_preselect = (int)arg_long("preselect", 1, 0, 1);
    mode = arg_str("connect", "select");
    if (strcmp(mode, "block") == 0)
        g_connect_block = 1;
    else if (strcmp(mode, "select") != 0)
        report_error("bad value connect=%.20s (block or select)", mode);
    for (i = 0; i < NSCENARIOS; i++)
        if (strcmp(argv[0], g_scenarios[i].name) == 0)
            sc = &g_scenarios[i];
    for (i = 0; i < (int)(sizeof g_selftests / sizeof g_selftests[0]); i++)
        if (strcmp(argv[0], g_selftests[i].name) == 0)
            sc = &g_selftests[i];

    t0 = now_ticks();
    if (sc == NULL) {
        report_error("unknown scenario %.40s", argv[0]);
    } else if ((i = net_startup()) != 0) {
        report_error("WSAStartup: %d", i);
    } else if (errors_total() == 0) {
        budget_start(budget);
        pass = sc->fn();
    }
    res_print(pass, ms_since(t0));
    signal_parent(pass);
    ExitProcess(pass ? 0 : 1);
    return pass ? 0 : 1;
}

/* ====================================================================== */
/* parent                                                                  */
/* ====================================================================== */

typedef struct {
    char name[NAME_CHARS + 1]; /* name in the lines: label, scenario or exec name */
    char scen[48];    /* scenario to run (empty for exec) */
    char args[600];   /* key=value words for the child */
    char cmd[600];    /* exec: the command line */
    int is_exec;
    long listen_port; /* exec: hold a TCP listener and a UDP socket on it while it runs */
    long timeout_s;
    char error[120];  /* a bad config line: reported as a failure */
} entry_t;

static entry_t g_entries[MAX_ENTRIES];
static int g_nentries;

static void entry_error(entry_t *e, const char *msg, const char *tok)
{
    if (e->error[0] == 0)
        _snprintf(e->error, sizeof e->error - 1, "%s%s%.60s", msg, tok ? " " : "",
                  tok ? tok : "");
}

static void append_arg(entry_t *e, const char *tok, size_t len)
{
    size_t have = strlen(e->args);
    if (have + len + 2 >= sizeof e->args) {
        entry_error(e, "config: too many arguments", NULL);
        return;
    }
    if (have > 0)
        e->args[have++] = ' ';
    memcpy(e->args + have, tok, len);
    e->args[have + len] = 0;
}

/* Parses one config line into a new entry; blank and comment lines add
 * nothing. */
static void parse_line(char *line, int lineno)
{
    entry_t *e;
    char *p = line, *tok;
    size_t len;
    while (*p == ' ' || *p == '\t')
        p++;
    len = strlen(p);
    while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n' || p[len - 1] == ' ' ||
                       p[len - 1] == '\t'))
        p[--len] = 0;
    if (*p == 0 || *p == '#')
        return;
    if (g_nentries == MAX_ENTRIES)
        return;
    e = &g_entries[g_nentries++];
    memset(e, 0, sizeof *e);
    e->timeout_s = DEFAULT_TIMEOUT_S;
    tok = p;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    len = (size_t)(p - tok);
    if (len == 4 && strncmp(tok, "exec", 4) == 0) {
        e->is_exec = 1;
        _snprintf(e->name, sizeof e->name - 1, "exec%d", lineno);
    } else {
        if (len >= sizeof e->scen)
            len = sizeof e->scen - 1;
        memcpy(e->scen, tok, len);
        e->scen[len] = 0;
        copy_name(e->name, sizeof e->name, e->scen);
    }
    for (;;) {
        char *eq;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == 0 || *p == '#')
            break;
        if (e->is_exec && strncmp(p, "cmd=", 4) == 0) {
            strncpy(e->cmd, p + 4, sizeof e->cmd - 1);
            break;  /* the command is the rest of the line */
        }
        tok = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        len = (size_t)(p - tok);
        eq = memchr(tok, '=', len);
        if (eq == NULL || eq == tok) {
            char t[64];
            _snprintf(t, sizeof t - 1, "%.*s", (int)(len < 60 ? len : 60), tok);
            t[sizeof t - 1] = 0;
            entry_error(e, "config: not key=value:", t);
            continue;
        }
        if (strncmp(tok, "timeout=", 8) == 0) {
            char *end;
            e->timeout_s = strtol(tok + 8, &end, 10);
            if (end != p || e->timeout_s < 1 || e->timeout_s > 86400)
                entry_error(e, "config: bad timeout", NULL);
            continue;
        }
        if (e->is_exec && strncmp(tok, "listen=", 7) == 0) {
            char *end;
            e->listen_port = strtol(tok + 7, &end, 10);
            if (end != p || e->listen_port < 1 || e->listen_port > 65535)
                entry_error(e, "config: bad listen port", NULL);
            continue;
        }
        if (strncmp(tok, "name=", 5) == 0 || strncmp(tok, "label=", 6) == 0) {
            char *v = eq + 1;
            char t[48];
            size_t vl = (size_t)(p - v);
            if (vl == 0 || vl >= sizeof t) {
                entry_error(e, "config: bad name", NULL);
                continue;
            }
            memcpy(t, v, vl);
            t[vl] = 0;
            copy_name(e->name, sizeof e->name, t);
            if (e->is_exec)
                continue;
        }
        if (e->is_exec) {
            entry_error(e, "config: exec takes name=, timeout=, listen=, cmd= only, not", tok);
            continue;
        }
        append_arg(e, tok, len);
    }
    if (e->is_exec && e->cmd[0] == 0)
        entry_error(e, "config: exec needs cmd=", NULL);
}

static void load_entries(const char *cfg)
{
    FILE *f = fopen(cfg, "r");
    char line[1024];
    int i, lineno = 0;
    if (f == NULL) {
        for (i = 0; i < NSCENARIOS; i++) {
            entry_t *e = &g_entries[g_nentries++];
            memset(e, 0, sizeof *e);
            strcpy(e->scen, g_scenarios[i].name);
            strcpy(e->name, g_scenarios[i].name);
            e->timeout_s = DEFAULT_TIMEOUT_S;
        }
        return;
    }
    while (fgets(line, sizeof line, f) != NULL)
        parse_line(line, ++lineno);
    fclose(f);
}

static int mirror_wanted(void)
{
    char v[8];
    DWORD n = GetEnvironmentVariableA("TCPIPVM_STDOUT", v, sizeof v);
    return n > 0 && n < sizeof v && v[0] == '1';
}

static void inheritable_std(STARTUPINFOA *si)
{
    si->dwFlags |= STARTF_USESTDHANDLES;
    si->hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    si->hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
    si->hStdError = GetStdHandle(STD_ERROR_HANDLE);
    SetHandleInformation(si->hStdInput, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
    SetHandleInformation(si->hStdOutput, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
    SetHandleInformation(si->hStdError, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
}

/* Runs one scenario in a child process; 1 when it passed. */
static int run_child(entry_t *e)
{
    SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    char cmd[1024], ev[64];
    HANDLE evp, evf;
    LONGLONG t0;
    DWORD w, code = 0;
    long tmo_ms = e->timeout_s * 1000L;
    int have_result, passed, created;

    _snprintf(cmd, sizeof cmd - 1, "\"%s\" run %s %s", g_self, e->scen, e->args);
    cmd[sizeof cmd - 1] = 0;
    /* The child stops on its own a bit before the timeout, so that a slow
     * run still reports its counts; budget_ms= on the line overrides. */
    if (strstr(e->args, "budget_ms=") == NULL && tmo_ms >= 10000) {
        long budget = tmo_ms - (tmo_ms / 4 < 30000 ? tmo_ms / 4 : 30000);
        size_t l = strlen(cmd);
        _snprintf(cmd + l, sizeof cmd - 1 - l, " budget_ms=%ld", budget);
    }
    evp = CreateEventA(&sa, TRUE, FALSE, NULL);
    evf = CreateEventA(&sa, TRUE, FALSE, NULL);
    _snprintf(ev, sizeof ev - 1, "%lu,%lu", (unsigned long)(ULONG_PTR)evp,
              (unsigned long)(ULONG_PTR)evf);
    ev[sizeof ev - 1] = 0;
    SetEnvironmentVariableA("TCPIPVM_EVENTS", ev);
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    if (mirror_wanted())
        inheritable_std(&si);
    t0 = now_ticks();
    created = evp != NULL && evf != NULL &&
              CreateProcessA(g_self, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi);
    SetEnvironmentVariableA("TCPIPVM_EVENTS", NULL);
    if (!created) {
        emit("ERROR name=%s CreateProcess of the child failed: %lu", e->name,
             (unsigned long)GetLastError());
        emit("RESULT name=%s status=fail elapsed_ms=0", e->name);
        if (evp)
            CloseHandle(evp);
        if (evf)
            CloseHandle(evf);
        return 0;
    }
    CloseHandle(pi.hThread);
    w = WaitForSingleObject(pi.hProcess, (DWORD)tmo_ms);
    if (w != WAIT_OBJECT_0) {
        TerminateProcess(pi.hProcess, 3);
        if (WaitForSingleObject(pi.hProcess, 10000) != WAIT_OBJECT_0)
            emit("ERROR name=%s child did not end after TerminateProcess", e->name);
    }
    passed = WaitForSingleObject(evp, 0) == WAIT_OBJECT_0;
    have_result = passed || WaitForSingleObject(evf, 0) == WAIT_OBJECT_0;
    if (w == WAIT_OBJECT_0) {
        GetExitCodeProcess(pi.hProcess, &code);
        if (!have_result)
            emit("RESULT name=%s status=crash elapsed_ms=%lu exit=%lu", e->name,
                 ms_since(t0), (unsigned long)code);
    } else if (have_result) {
        emit("ERROR name=%s child hung after its RESULT; terminated after %lds", e->name,
             e->timeout_s);
    } else {
        emit("RESULT name=%s status=timeout elapsed_ms=%lu", e->name, ms_since(t0));
    }
    CloseHandle(pi.hProcess);
    CloseHandle(evp);
    CloseHandle(evf);
    return passed;
}

/* ---- exec: run a command, relay its output ---- */

typedef struct {
    HANDLE rd;
    const char *name;
} reader_t;

static void out_line(const char *name, const char *text)
{
    emit("OUT name=%s | %s", name, text);
}

static DWORD WINAPI exec_reader(void *p)
{
    reader_t *r = (reader_t *)p;
    char buf[512], line[200];
    size_t n = 0, max = 199 - 1 - 8 - 9 - strlen(r->name) - 3;
    DWORD got, i;
    if (max > sizeof line - 1)
        max = sizeof line - 1;
    if (max < 20)
        max = 20;
    while (ReadFile(r->rd, buf, sizeof buf, &got, NULL) && got > 0) {
        for (i = 0; i < got; i++) {
            char c = buf[i];
            if (c == '\r')
                continue;
            if (c == '\n' || n == max) {
                line[n] = 0;
                out_line(r->name, line);
                n = 0;
                if (c == '\n')
                    continue;
            }
            line[n++] = c;
        }
    }
    if (n > 0) {
        line[n] = 0;
        out_line(r->name, line);
    }
    return 0;
}

/* Opens what `listen=PORT` asks an exec to see: a TCP listener and a UDP socket, both on
 * 0.0.0.0:PORT, held by this process (the runner checks that netstat lists them with this
 * process's id). Returns 0 on success. */
static int hold_sockets(entry_t *e, SOCKET held[2])
{
    struct sockaddr_in a;
    int i;
    held[0] = held[1] = INVALID_SOCKET;
    if (net_startup() != 0) {
        emit("ERROR name=%s WSAStartup failed", e->name);
        return -1;
    }
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((u_short)e->listen_port);
    held[0] = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    held[1] = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    for (i = 0; i < 2; i++) {
        if (held[i] == INVALID_SOCKET || bind(held[i], (struct sockaddr *)&a, sizeof a) != 0 ||
            (i == 0 && listen(held[i], 1) != 0)) {
            emit("ERROR name=%s cannot hold %s port %ld: %d", e->name, i == 0 ? "TCP" : "UDP",
                 e->listen_port, WSAGetLastError());
            return -1;
        }
    }
    return 0;
}

/* Runs the exec's command, relays its output, and prints its RESULT with `extra` keys. */
static int run_command(entry_t *e, const char *extra, LONGLONG t0)
{
    SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    HANDLE rd = NULL, wr = NULL, nul, th;
    reader_t r;
    char cmd[sizeof e->cmd];
    DWORD w, code = 0;

    if (!CreatePipe(&rd, &wr, &sa, 0)) {
        emit("ERROR name=%s CreatePipe failed: %lu", e->name, (unsigned long)GetLastError());
        emit("RESULT name=%s status=fail elapsed_ms=0", e->name);
        return 0;
    }
    SetHandleInformation(rd, HANDLE_FLAG_INHERIT, 0);
    nul = CreateFileA("NUL", GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, &sa,
                      OPEN_EXISTING, 0, NULL);
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = nul != INVALID_HANDLE_VALUE ? nul : NULL;
    si.hStdOutput = wr;
    si.hStdError = wr;
    strcpy(cmd, e->cmd);
    if (!CreateProcessA(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
        emit("ERROR name=%s CreateProcess failed: %lu", e->name, (unsigned long)GetLastError());
        emit("RESULT name=%s status=fail elapsed_ms=%lu", e->name, ms_since(t0));
        CloseHandle(rd);
        CloseHandle(wr);
        if (nul != INVALID_HANDLE_VALUE)
            CloseHandle(nul);
        return 0;
    }
    CloseHandle(wr);
    if (nul != INVALID_HANDLE_VALUE)
        CloseHandle(nul);
    CloseHandle(pi.hThread);
    r.rd = rd;
    r.name = e->name;
    th = CreateThread(NULL, 0, exec_reader, &r, 0, NULL);
    w = WaitForSingleObject(pi.hProcess, (DWORD)(e->timeout_s * 1000L));
    if (w != WAIT_OBJECT_0) {
        TerminateProcess(pi.hProcess, 3);
        WaitForSingleObject(pi.hProcess, 10000);
    }
    GetExitCodeProcess(pi.hProcess, &code);
    CloseHandle(pi.hProcess);
    /* The output ends when every holder of the pipe's write end is gone. */
    if (th != NULL && WaitForSingleObject(th, 5000) != WAIT_OBJECT_0) {
        emit("ERROR name=%s output pipe still open 5s after the exit; stopped reading",
             e->name);
        TerminateThread(th, 0);
    }
    if (th != NULL)
        CloseHandle(th);
    CloseHandle(rd);
    if (w != WAIT_OBJECT_0) {
        emit("RESULT name=%s status=timeout elapsed_ms=%lu", e->name, ms_since(t0));
        return 0;
    }
    emit("RESULT name=%s status=%s elapsed_ms=%lu exit=%lu%s", e->name,
         code == 0 ? "pass" : "fail", ms_since(t0), (unsigned long)code, extra);
    return code == 0;
}

static int run_exec(entry_t *e)
{
    SOCKET held[2] = {INVALID_SOCKET, INVALID_SOCKET};
    char extra[64] = "";
    int i, ok;
    LONGLONG t0 = now_ticks();

    if (e->listen_port != 0) {
        if (hold_sockets(e, held) != 0) {
            for (i = 0; i < 2; i++)
                if (held[i] != INVALID_SOCKET)
                    closesocket(held[i]);
            emit("RESULT name=%s status=fail elapsed_ms=0", e->name);
            return 0;
        }
        _snprintf(extra, sizeof extra - 1, " listen=%ld pid=%lu", e->listen_port,
                  (unsigned long)GetCurrentProcessId());
    }
    ok = run_command(e, extra, t0);
    for (i = 0; i < 2; i++)
        if (held[i] != INVALID_SOCKET)
            closesocket(held[i]);
    return ok;
}

static int parent_main(const char *cfg_arg, int forever)
{
    char cfg[MAX_PATH + 16];
    int i, pass = 0, fail = 0;

    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX | SEM_NOOPENFILEERRORBOX);
    if (cfg_arg != NULL) {
        strncpy(cfg, cfg_arg, sizeof cfg - 1);
        cfg[sizeof cfg - 1] = 0;
    } else {
        char *slash;
        strcpy(cfg, g_self);
        slash = strrchr(cfg, '\\');
        strcpy(slash != NULL ? slash + 1 : cfg, "tcpipvm.cfg");
    }
    load_entries(cfg);
    emit("START version=%d scenarios=%d", TCPIPVM_VERSION, g_nentries);
    for (i = 0; i < g_nentries; i++) {
        entry_t *e = &g_entries[i];
        int ok;
        if (e->error[0] != 0) {
            emit("ERROR name=%s %s", e->name, e->error);
            emit("RESULT name=%s status=fail elapsed_ms=0", e->name);
            ok = 0;
        } else {
            ok = e->is_exec ? run_exec(e) : run_child(e);
        }
        if (ok)
            pass++;
        else
            fail++;
    }
    emit("END pass=%d fail=%d", pass, fail);
    while (forever)
        Sleep(INFINITE);
    return fail == 0 ? 0 : 1;
}

static void usage(void)
{
    int i;
    printf("usage: tcpipvm.exe [--stdout] [all [cfgfile] | run NAME [key=value ...]]\n"
           "scenarios:");
    for (i = 0; i < NSCENARIOS; i++)
        printf(" %s", g_scenarios[i].name);
    printf("\nsee vm/guest/README.md\n");
}

int main(int argc, char **argv)
{
    if (GetModuleFileNameA(NULL, g_self, sizeof g_self) == 0)
        strcpy(g_self, "tcpipvm.exe");
    if (argc >= 2 && strcmp(argv[1], "--stdout") == 0) {
        SetEnvironmentVariableA("TCPIPVM_STDOUT", "1");
        argc--;
        argv++;
    }
    if (argc >= 3 && strcmp(argv[1], "run") == 0)
        return child_main(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "all") == 0)
        return parent_main(argc >= 3 ? argv[2] : NULL, 0);
    if (argc >= 2 && (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "--help") == 0)) {
        usage();
        return 0;
    }
    /* No argument, or anything else: userinit mode. */
    return parent_main(NULL, 1);
}
