/*
 * Scenario dhcp: the card's address comes from DHCP.
 *
 * QEMU's user-mode network has a DHCP server (10.0.2.2) that leases 10.0.2.15
 * and up.  ReactOS's DHCP client service (dhcpcsvc) finds the card through the
 * IP helper (GetIfTable), asks for a lease over UDP broadcast and sets the
 * address through tcpip.sys.  This scenario waits, up to wait_s seconds, until
 * the IP helper shows an Ethernet adapter with DHCP enabled and a lease, and
 * reports it.  Run it before `card`, which then finds the address in place.
 */
#include "tcpipvm.h"
#include <iphlpapi.h>

/* 1 and the adapter's address and lease server when one has a DHCP lease. */
static int leased(char *ip, size_t ip_len, char *server, size_t server_len)
{
    ULONG size = 0;
    IP_ADAPTER_INFO *info, *a;
    int found = 0;
    if (GetAdaptersInfo(NULL, &size) != ERROR_BUFFER_OVERFLOW || size == 0)
        return 0;
    if ((info = (IP_ADAPTER_INFO *)malloc(size)) == NULL)
        return 0;
    if (GetAdaptersInfo(info, &size) == NO_ERROR) {
        for (a = info; a != NULL && !found; a = a->Next) {
            if (a->Type == MIB_IF_TYPE_ETHERNET && a->DhcpEnabled &&
                strcmp(a->IpAddressList.IpAddress.String, "0.0.0.0") != 0 &&
                a->IpAddressList.IpAddress.String[0] != 0) {
                _snprintf(ip, ip_len, "%s", a->IpAddressList.IpAddress.String);
                ip[ip_len - 1] = 0;
                _snprintf(server, server_len, "%s", a->DhcpServer.IpAddress.String);
                server[server_len - 1] = 0;
                found = 1;
            }
        }
    }
    free(info);
    return found;
}

int sc_dhcp(void)
{
    long wait_s = arg_long("wait_s", 60, 1, 3600);
    char ip[20] = "", server[20] = "";
    LONGLONG t0 = now_ticks();

    if (args_check())
        return 0;
    while (!leased(ip, sizeof ip, server, sizeof server)) {
        if (ms_since(t0) > (unsigned long)wait_s * 1000) {
            report_error("no DHCP lease on an Ethernet adapter after %ld s", wait_s);
            return 0;
        }
        Sleep(500);
    }
    res_add("lease_ms", ms_since(t0));
    res_add_str("ip", ip);
    res_add_str("server", server);
    return 1;
}
