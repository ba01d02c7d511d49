/*
 * Scenario card: traffic through the network card instead of the loopback.
 *
 * QEMU's user-mode network puts the guest on 10.0.2.0/24 and, started with
 * restrict=on, lets it reach only QEMU itself and what the runner forwards:
 * TCP to peer:tcp_port is handed to an echo program QEMU starts on the host
 * (guestfwd ... cmd:cat), and QEMU's own TFTP server (tftp:69) serves a file
 * the runner wrote.  The scenario gives the card its address (AddIPAddress,
 * as a static configuration would; one it has already from DHCP is fine),
 * echoes TCP messages and a bulk stream through the peer, then fetches the
 * file over UDP and checks every byte.  Before any traffic it asks the IP
 * helper for MAC addresses (SendARP, IOCTL_QUERY_IP_HW_ADDRESS): its own, and
 * that of QEMU's DNS address, which it has not talked to, so the answer has to
 * come from an ARP exchange on the wire (QEMU answers with 52:55 and the IP).
 */
#include "tcpipvm.h"
#include <iphlpapi.h>

#define CARD_SEED 0xca4dU

/* The index of the first Ethernet interface the IP helper lists, else def. */
static DWORD card_index(DWORD def, const char **source)
{
    ULONG size = 0;
    MIB_IFTABLE *table;
    DWORD i, index = def;
    *source = "default";
    if (GetIfTable(NULL, &size, FALSE) != ERROR_INSUFFICIENT_BUFFER || size == 0)
        return def;
    if ((table = (MIB_IFTABLE *)malloc(size)) == NULL)
        return def;
    if (GetIfTable(table, &size, FALSE) == NO_ERROR) {
        for (i = 0; i < table->dwNumEntries; i++) {
            if (table->table[i].dwType == MIB_IF_TYPE_ETHERNET) {
                index = table->table[i].dwIndex;
                *source = "iftable";
                break;
            }
        }
    }
    free(table);
    return index;
}

/* SendARP for `target`: 0 and the MAC in mac[6], or the error. */
static DWORD send_arp(IPAddr target, unsigned char mac[6])
{
    ULONG buffer[2] = {0, 0}, len = sizeof buffer;
    DWORD r = SendARP(target, 0, buffer, &len);
    if (r == NO_ERROR && len != 6)
        return ERROR_INVALID_DATA;
    memcpy(mac, buffer, 6);
    return r;
}

/* The card's own MAC (from the interface table) and QEMU's at `qemu_ip`, by SendARP. */
static void card_arp(DWORD index, const char *own_ip, const char *qemu_ip)
{
    MIB_IFROW row;
    unsigned char mac[6], want[6] = {0x52, 0x55, 0, 0, 0, 0};
    unsigned long qemu = inet_addr(qemu_ip);
    LONGLONG t0 = now_ticks();
    DWORD r;
    memset(&row, 0, sizeof row);
    row.dwIndex = index;
    if (GetIfEntry(&row) != NO_ERROR || row.dwPhysAddrLen != 6) {
        report_error("arp: no interface entry for %lu", (unsigned long)index);
        return;
    }
    r = send_arp(inet_addr(own_ip), mac);
    if (r != NO_ERROR || memcmp(mac, row.bPhysAddr, 6) != 0)
        report_error("arp: SendARP(%s) gave %lu, not the card's own MAC", own_ip,
                     (unsigned long)r);
    memcpy(want + 2, &qemu, 4);
    r = send_arp(qemu, mac);
    res_add("arp_ms", ms_since(t0));
    if (r != NO_ERROR)
        report_error("arp: SendARP(%s) failed: %lu", qemu_ip, (unsigned long)r);
    else if (memcmp(mac, want, 6) != 0)
        report_error("arp: SendARP(%s) gave %02x-%02x-%02x-%02x-%02x-%02x", qemu_ip, mac[0],
                     mac[1], mac[2], mac[3], mac[4], mac[5]);
}

/* Echo msgs messages of varying sizes, then a bulk stream, through the peer. */
static int card_tcp(const struct sockaddr_in *peer, int msgs, long bulk)
{
    char *snd = (char *)malloc(65536), *rcv = (char *)malloc(65536);
    SOCKET s = INVALID_SOCKET;
    int i, e = ERR_NOMEM, ok = 0;
    unsigned long done = 0, ms;
    LONGLONG t0;
    if (snd == NULL || rcv == NULL)
        goto out;
    s = tcp_socket();
    if ((e = tcp_connect_to(s, peer)) != 0) {
        report_error("tcp connect: %s(%d)", errname(e), e);
        goto out;
    }
    for (i = 0; i < msgs; i++) {
        int n = 1 + (i * 997) % 1460;
        pattern_fill(CARD_SEED + (uint32_t)i, 0, snd, (size_t)n);
        if ((e = send_all(s, snd, n)) != 0 || (e = recv_exact(s, rcv, n)) != 0) {
            report_error("tcp message %d: %s(%d)", i, errname(e), e);
            goto out;
        }
        if (pattern_check(CARD_SEED + (uint32_t)i, 0, rcv, (size_t)n) >= 0) {
            report_error("tcp message %d: echo differs", i);
            e = ERR_EXTRA;
            goto out;
        }
        ok++;
    }
    /* Bulk in 16 KiB steps: each step's echo is read before the next is sent,
       so neither side's buffers can fill up. */
    t0 = now_ticks();
    while (done < (unsigned long)bulk) {
        int n = (int)(bulk - (long)done < 16384 ? bulk - (long)done : 16384);
        pattern_fill(CARD_SEED, (uint32_t)done, snd, (size_t)n);
        if ((e = send_all(s, snd, n)) != 0 || (e = recv_exact(s, rcv, n)) != 0) {
            report_error("tcp bulk at byte %lu: %s(%d)", done, errname(e), e);
            goto out;
        }
        if (pattern_check(CARD_SEED, (uint32_t)done, rcv, (size_t)n) >= 0) {
            report_error("tcp bulk at byte %lu: echo differs", done);
            e = ERR_EXTRA;
            goto out;
        }
        done += (unsigned long)n;
    }
    ms = ms_since(t0);
    res_add("tcp_kib_per_s", ms ? (unsigned long)((double)done / 1.024 / (double)ms) : 0);
    e = 0;
out:
    res_add("tcp_ok", (unsigned long)ok);
    res_add("tcp_bytes", done);
    sock_close(&s);
    free(snd);
    free(rcv);
    return e;
}

/* Byte i of the runner's TFTP file (xtask/src/vm/peers.rs, tftp_byte). */
static unsigned char tftp_byte(unsigned long i)
{
    return (unsigned char)(((i ^ (i >> 8) ^ (i >> 16)) * 31 + 7) & 0xff);
}

/* Fetch file from the TFTP server at server:69 (RFC 1350, octet mode, one
 * 512-byte DATA block and one ACK at a time), checking every byte against
 * tftp_byte.  Returns the bytes fetched, or -1. */
static long card_tftp(const char *server, const char *file)
{
    struct sockaddr_in to, from;
    unsigned char pkt[4 + 512];
    char rrq[128];
    SOCKET s = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    unsigned short block = 1;
    long got = 0;
    int rrq_len, tries = 0;

    if (s == INVALID_SOCKET) {
        report_error("udp socket: %s(%d)", errname(last_err()), last_err());
        return -1;
    }
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons(69);
    to.sin_addr.s_addr = inet_addr(server);
    rrq[0] = 0;
    rrq[1] = 1; /* RRQ */
    rrq_len = 2 + _snprintf(rrq + 2, sizeof rrq - 2, "%s%coctet", file, 0) + 1;
    if (sendto(s, rrq, rrq_len, 0, (struct sockaddr *)&to, sizeof to) != rrq_len) {
        report_error("tftp RRQ: %s(%d)", errname(last_err()), last_err());
        got = -1;
        goto out;
    }
    for (;;) {
        int len = sizeof from, n, e = wait_io(s, 0, 5000);
        unsigned char ack[4];
        if (e != 0) {
            /* Lost on the way (either way): ask again with the last ACK (or
               the RRQ), a few times. */
            if (++tries > 5) {
                report_error("tftp: no block %u: %s(%d)", block, errname(e), e);
                got = -1;
                break;
            }
            if (block == 1)
                sendto(s, rrq, rrq_len, 0, (struct sockaddr *)&to, sizeof to);
            continue;
        }
        n = recvfrom(s, (char *)pkt, sizeof pkt, 0, (struct sockaddr *)&from, &len);
        if (n < 4) {
            report_error("tftp recvfrom gave %d: %s(%d)", n, errname(last_err()), last_err());
            got = -1;
            break;
        }
        if (pkt[1] == 5) { /* ERROR */
            report_error("tftp ERROR %u from the server", (pkt[2] << 8) | pkt[3]);
            got = -1;
            break;
        }
        if (pkt[1] != 3 || ((pkt[2] << 8) | pkt[3]) != block)
            continue; /* a duplicate of an earlier block */
        for (e = 0; e < n - 4; e++) {
            if (pkt[4 + e] != tftp_byte((unsigned long)got + (unsigned long)e)) {
                report_error("tftp: byte %ld differs", got + e);
                got = -1;
                goto out;
            }
        }
        got += n - 4;
        tries = 0;
        ack[0] = 0;
        ack[1] = 4; /* ACK */
        ack[2] = (unsigned char)(block >> 8);
        ack[3] = (unsigned char)block;
        sendto(s, (const char *)ack, 4, 0, (struct sockaddr *)&from, len);
        if (n - 4 < 512)
            break;
        block++;
    }
out:
    closesocket(s);
    return got;
}

int sc_card(void)
{
    const char *ip = arg_str("ip", "10.0.2.15");
    const char *mask = arg_str("mask", "255.255.255.0");
    const char *peer_ip = arg_str("peer", "10.0.2.100");
    DWORD def_if = (DWORD)arg_long("if", 1, 1, 1000000);
    int tcp_port = (int)arg_long("tcp_port", 7, 1, 65535);
    const char *tftp_server = arg_str("tftp", "10.0.2.2");
    const char *arp_ip = arg_str("arp", "10.0.2.3");
    const char *tftp_file = arg_str("tftp_file", "card.bin");
    long tftp_size = arg_long("tftp_size", 128 * 512 + 100, 0, 1L << 30);
    int msgs = (int)arg_long("msgs", 50, 0, 100000);
    long bulk = arg_long("bulk_kib", 1024, 0, 1024L * 1024) * 1024;
    struct sockaddr_in peer;
    const char *source;
    ULONG context = 0, instance = 0;
    DWORD index, r;
    long fetched;
    int e;

    if (args_check())
        return 0;
    index = card_index(def_if, &source);
    res_add("if", index);
    res_add_str("if_from", source);
    r = AddIPAddress(inet_addr(ip), inet_addr(mask), index, &context, &instance);
    /* 0, or an error when the card has its address already (from DHCP): the
       echoes below tell whether the card works either way. */
    res_add("add_ip", r);
    card_arp(index, ip, arp_ip);
    memset(&peer, 0, sizeof peer);
    peer.sin_family = AF_INET;
    peer.sin_port = htons((u_short)tcp_port);
    peer.sin_addr.s_addr = inet_addr(peer_ip);
    e = card_tcp(&peer, msgs, bulk);
    fetched = card_tftp(tftp_server, tftp_file);
    res_add("tftp_bytes", fetched < 0 ? 0 : (unsigned long)fetched);
    if (fetched >= 0 && fetched != tftp_size)
        report_error("tftp: %ld bytes, want %ld", fetched, tftp_size);
    return e == 0 && fetched == tftp_size && errors_total() == 0;
}
