/*
 * tcpipvm: guest test program for the tcpip.sys VM runs (see README.md).
 * Shared declarations of all the .c files in this directory.
 */
#ifndef TCPIPVM_H
#define TCPIPVM_H

/* select() sets hold up to 256 sockets (must come before winsock2.h). */
#define FD_SETSIZE 256
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <windows.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TCPIPVM_VERSION 1
#define NAME_CHARS 24 /* longest name= value in the lines */

/* Pseudo error codes next to the WSA ones (which are all positive). */
#define ERR_TIMEOUT  (-1) /* a select() bound expired */
#define ERR_EOF      (-2) /* the peer closed before the expected bytes */
#define ERR_EXTRA    (-3) /* data where end-of-stream was expected */
#define ERR_BUDGET   (-4) /* the scenario's time budget is spent */
#define ERR_CONNFAIL (-5) /* select() flagged a connect failure, SO_ERROR 0 */
#define ERR_NOMEM    (-6)
#define ERR_THREAD   (-7) /* CreateThread failed */

/* ---- report.c: line protocol, result keys, arguments ---- */
extern char g_name[NAME_CHARS + 1];     /* scenario name printed in lines */
void emit(const char *fmt, ...);        /* one "TCPIPVM ..." line */
void report_error(const char *fmt, ...);/* ERROR line (first 5 only) */
long errors_total(void);
void res_add(const char *key, unsigned long value);
void res_add_str(const char *key, const char *value);
void res_print(int pass, unsigned long elapsed_ms);
const char *errname(int code);          /* "WSAECONNRESET" etc. */

void args_init(int argc, char **argv);  /* "key=value" words */
long arg_long(const char *key, long def, long min, long max);
const char *arg_str(const char *key, const char *def);
int args_check(void);                   /* 0 ok; reports bad/unknown keys */

/* ---- net.c: time, bounded socket helpers, threads, data ---- */
extern int g_io_ms;        /* bound of one blocking operation */
extern int g_connect_block;/* 1: plain blocking connect() */
extern int g_preselect;    /* 1: select() before every recv/send/accept */

LONGLONG now_ticks(void);
unsigned long ticks_us(LONGLONG from, LONGLONG to);
unsigned long ms_since(LONGLONG from);
void budget_start(long ms);      /* 0: no budget */
int op_ms(void);                  /* bound for the next wait; 0 if spent */
DWORD join_bound(void);           /* bound for joining worker threads */

int net_startup(void);
SOCKET tcp_socket(void);
SOCKET tcp_listen(int port, int backlog, int *actual_port, int *err);
int tcp_connect(SOCKET s, int port);
int tcp_connect_to(SOCKET s, const struct sockaddr_in *to);
SOCKET tcp_accept(SOCKET l, int ms, int *err, struct sockaddr_in *peer);
int wait_io(SOCKET s, int for_write, int ms);
int send_all(SOCKET s, const void *buf, int len);
int recv_exact(SOCKET s, void *buf, int len);
int recv_some(SOCKET s, void *buf, int len, int *got);
int expect_eof(SOCKET s);
int set_nonblock(SOCKET s, int on);
int set_nodelay(SOCKET s);
void sock_close(SOCKET *s);
int last_err(void);
int running_on_wine(void);

HANDLE thread_start(LPTHREAD_START_ROUTINE fn, void *arg);
int threads_join(HANDLE *h, int n, DWORD ms);

uint32_t mix32(uint32_t x);
void pattern_fill(uint32_t seed, uint32_t off, void *buf, size_t n);
long pattern_check(uint32_t seed, uint32_t off, const void *buf, size_t n);
uint64_t fnv1a64(uint64_t h, const void *buf, size_t n);
#define FNV64_INIT 0xcbf29ce484222325ULL

typedef struct {
    unsigned long *v;
    volatile LONG n;
    LONG cap;
} lat_t;
int lat_init(lat_t *l, long cap);
void lat_add(lat_t *l, unsigned long us);
void lat_report(lat_t *l);  /* p50_us p90_us p99_us max_us */
void lat_free(lat_t *l);

/* ---- server.c: echo server for the scenarios ---- */
enum { SRV_ONE, SRV_STREAM };
typedef struct {
    int mode;       /* SRV_ONE: echo one msg_size message, half-close, drain;
                       SRV_STREAM: echo everything until EOF */
    int msg_size;
    int nodelay;
    int threaded;   /* one thread per connection */
    int delay_ms;   /* start accepting this long after server_start */
    int expect;     /* stop accepting after this many (0: until stopped) */
    int port;       /* actual port */
    SOCKET l;
    volatile LONG stop;
    HANDLE thread;
    volatile LONG accepted, served_ok, served_fail;
    HANDLE *workers;
    volatile LONG nworkers;
    int maxworkers;
} server_t;
int server_start(server_t *sv, int port);
int server_stop(server_t *sv); /* 0 when every thread was joined */

/* ---- scenarios ---- */
int sc_serial(void);
int sc_burst(void);
int sc_many(void);
int sc_bulk(void);
int sc_pingpong(void);
int sc_edge(void);
int sc_nonblock(void);
int sc_udp(void);
int sc_names(void);
int sc_card(void);
int sc_dhcp(void);
int sc_userbuf(void);
int sc_kdriver(void);

#endif
