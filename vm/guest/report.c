/*
 * Line protocol output, the RESULT line's keys, and key=value arguments.
 *
 * Every protocol line is one OutputDebugStringA call of at most 199
 * characters ending in "\n", printable ASCII only.  With the environment
 * variable TCPIPVM_STDOUT=1 (set by the --stdout flag) each line is also
 * written to standard output.
 */
#include "tcpipvm.h"

#define LINE_MAX_CHARS 199   /* including the final "\n" */
#define MAX_ERROR_LINES 5

char g_name[NAME_CHARS + 1] = "tcpipvm";
static int g_mirror = -1;
static volatile LONG g_out_lock;
static volatile LONG g_errors;
static char g_res[256];
static size_t g_res_len;

static int mirror_on(void)
{
    if (g_mirror < 0) {
        char v[8];
        DWORD n = GetEnvironmentVariableA("TCPIPVM_STDOUT", v, sizeof v);
        g_mirror = (n > 0 && n < sizeof v && v[0] == '1');
    }
    return g_mirror;
}

static void vemit(const char *fmt, va_list ap)
{
    char line[LINE_MAX_CHARS + 8];
    int n;
    size_t i, len;

    memcpy(line, "TCPIPVM ", 8);
    n = _vsnprintf(line + 8, LINE_MAX_CHARS - 8, fmt, ap);
    if (n < 0 || n > LINE_MAX_CHARS - 9)
        n = LINE_MAX_CHARS - 9;   /* truncated: room for "\n" remains */
    len = 8 + (size_t)n;
    line[len] = 0;
    for (i = 8; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\t')
            line[i] = ' ';
        else if (c < 0x20 || c > 0x7e)
            line[i] = '?';
    }
    line[len++] = '\n';
    line[len] = 0;
    OutputDebugStringA(line);
    if (mirror_on()) {
        HANDLE h = GetStdHandle(STD_OUTPUT_HANDLE);
        DWORD wr;
        while (InterlockedExchange(&g_out_lock, 1) != 0)
            Sleep(0);
        if (h != NULL && h != INVALID_HANDLE_VALUE)
            WriteFile(h, line, (DWORD)len, &wr, NULL);
        InterlockedExchange(&g_out_lock, 0);
    }
}

void emit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vemit(fmt, ap);
    va_end(ap);
}

void report_error(const char *fmt, ...)
{
    char text[LINE_MAX_CHARS];
    va_list ap;
    LONG n = InterlockedIncrement(&g_errors);
    if (n > MAX_ERROR_LINES)
        return;
    va_start(ap, fmt);
    if (_vsnprintf(text, sizeof text - 1, fmt, ap) < 0)
        text[sizeof text - 1] = 0;
    text[sizeof text - 1] = 0;
    va_end(ap);
    emit("ERROR name=%s %s", g_name, text);
}

long errors_total(void)
{
    return g_errors;
}

void res_add_str(const char *key, const char *value)
{
    int n = _snprintf(g_res + g_res_len, sizeof g_res - g_res_len - 1,
                      " %s=%s", key, value);
    if (n > 0 && g_res_len + (size_t)n < sizeof g_res - 1)
        g_res_len += (size_t)n;
    g_res[g_res_len] = 0;
}

void res_add(const char *key, unsigned long value)
{
    char v[16];
    _snprintf(v, sizeof v, "%lu", value);
    v[sizeof v - 1] = 0;
    res_add_str(key, v);
}

void res_print(int pass, unsigned long elapsed_ms)
{
    if (g_errors > 0)
        res_add("errors", (unsigned long)g_errors);
    emit("RESULT name=%s status=%s elapsed_ms=%lu%s", g_name,
         pass ? "pass" : "fail", elapsed_ms, g_res);
}

const char *errname(int code)
{
    switch (code) {
    case 0: return "ok";
    case ERR_TIMEOUT: return "timeout";
    case ERR_EOF: return "eof";
    case ERR_EXTRA: return "extra-data";
    case ERR_BUDGET: return "budget-spent";
    case ERR_CONNFAIL: return "connect-failed";
    case ERR_NOMEM: return "no-memory";
    case ERR_THREAD: return "no-thread";
    case WSAEINTR: return "WSAEINTR";
    case WSAEACCES: return "WSAEACCES";
    case WSAEFAULT: return "WSAEFAULT";
    case WSAEINVAL: return "WSAEINVAL";
    case WSAEMFILE: return "WSAEMFILE";
    case WSAEWOULDBLOCK: return "WSAEWOULDBLOCK";
    case WSAEINPROGRESS: return "WSAEINPROGRESS";
    case WSAEALREADY: return "WSAEALREADY";
    case WSAENOTSOCK: return "WSAENOTSOCK";
    case WSAEMSGSIZE: return "WSAEMSGSIZE";
    case WSAEOPNOTSUPP: return "WSAEOPNOTSUPP";
    case WSAEAFNOSUPPORT: return "WSAEAFNOSUPPORT";
    case WSAEADDRINUSE: return "WSAEADDRINUSE";
    case WSAEADDRNOTAVAIL: return "WSAEADDRNOTAVAIL";
    case WSAENETDOWN: return "WSAENETDOWN";
    case WSAENETUNREACH: return "WSAENETUNREACH";
    case WSAENETRESET: return "WSAENETRESET";
    case WSAECONNABORTED: return "WSAECONNABORTED";
    case WSAECONNRESET: return "WSAECONNRESET";
    case WSAENOBUFS: return "WSAENOBUFS";
    case WSAEISCONN: return "WSAEISCONN";
    case WSAENOTCONN: return "WSAENOTCONN";
    case WSAESHUTDOWN: return "WSAESHUTDOWN";
    case WSAETIMEDOUT: return "WSAETIMEDOUT";
    case WSAECONNREFUSED: return "WSAECONNREFUSED";
    case WSAEHOSTUNREACH: return "WSAEHOSTUNREACH";
    case WSANOTINITIALISED: return "WSANOTINITIALISED";
    default: return "error";
    }
}

/* ---- key=value arguments of the child ---- */

#define MAX_ARGS 32
static struct {
    char key[32];
    const char *val;
    int used;
} g_args[MAX_ARGS];
static int g_nargs;
static int g_args_bad;

void args_init(int argc, char **argv)
{
    int i;
    for (i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        size_t klen;
        if (eq == NULL || eq == argv[i] || (klen = (size_t)(eq - argv[i])) >= 32) {
            report_error("bad argument %.40s (want key=value)", argv[i]);
            g_args_bad = 1;
            continue;
        }
        if (g_nargs == MAX_ARGS) {
            report_error("too many arguments");
            g_args_bad = 1;
            break;
        }
        memcpy(g_args[g_nargs].key, argv[i], klen);
        g_args[g_nargs].key[klen] = 0;
        g_args[g_nargs].val = eq + 1;
        g_args[g_nargs].used = 0;
        g_nargs++;
    }
}

static int arg_find(const char *key)
{
    int i, found = -1;
    for (i = 0; i < g_nargs; i++)
        if (strcmp(g_args[i].key, key) == 0) {
            g_args[i].used = 1;
            found = i;  /* the last one wins */
        }
    return found;
}

long arg_long(const char *key, long def, long min, long max)
{
    int i = arg_find(key);
    char *end;
    long v;
    if (i < 0)
        return def;
    v = strtol(g_args[i].val, &end, 10);
    if (end == g_args[i].val || *end != 0 || v < min || v > max) {
        report_error("bad value %s=%.20s (integer %ld..%ld)", key,
                     g_args[i].val, min, max);
        g_args_bad = 1;
        return def;
    }
    return v;
}

const char *arg_str(const char *key, const char *def)
{
    int i = arg_find(key);
    return i < 0 ? def : g_args[i].val;
}

int args_check(void)
{
    int i;
    for (i = 0; i < g_nargs; i++)
        if (!g_args[i].used) {
            report_error("unknown key %.30s for this scenario", g_args[i].key);
            g_args_bad = 1;
        }
    return g_args_bad;
}
