/*
 * Scenario dhcp: the cards' addresses come from DHCP.
 *
 * QEMU's user-mode network has a DHCP server (10.0.2.2) that leases 10.0.2.15
 * and up.  ReactOS's DHCP client service (dhcpcsvc) finds the card through the
 * IP helper (GetIfTable), asks for a lease over UDP broadcast and sets the
 * address through tcpip.sys.  This scenario waits, up to wait_s seconds, until
 * the IP helper shows `adapters` Ethernet adapters (default 1) with DHCP enabled
 * and a lease, and reports the first one's address and server, and every
 * leased address in `ips`.  Run it before `card`, which then finds the address
 * in place.
 */
#include "tcpipvm.h"
#include <iphlpapi.h>

/* How many Ethernet adapters have a DHCP lease; the first one's address and
 * lease server, and every leased address separated by commas in `all`. */
static int leased(char *ip, size_t ip_len, char *server, size_t server_len,
                  char *all, size_t all_len)
{
    ULONG size = 0;
    IP_ADAPTER_INFO *info, *a;
    int found = 0;
    size_t used = 0;
    if (GetAdaptersInfo(NULL, &size) != ERROR_BUFFER_OVERFLOW || size == 0)
        return 0;
    if ((info = (IP_ADAPTER_INFO *)malloc(size)) == NULL)
        return 0;
    all[0] = 0;
    if (GetAdaptersInfo(info, &size) == NO_ERROR) {
        for (a = info; a != NULL; a = a->Next) {
            if (a->Type == MIB_IF_TYPE_ETHERNET && a->DhcpEnabled &&
                strcmp(a->IpAddressList.IpAddress.String, "0.0.0.0") != 0 &&
                a->IpAddressList.IpAddress.String[0] != 0) {
                if (found == 0) {
                    _snprintf(ip, ip_len, "%s", a->IpAddressList.IpAddress.String);
                    ip[ip_len - 1] = 0;
                    _snprintf(server, server_len, "%s", a->DhcpServer.IpAddress.String);
                    server[server_len - 1] = 0;
                }
                if (used + 20 < all_len) {
                    int n = _snprintf(all + used, all_len - used, "%s%s", found ? "," : "",
                                      a->IpAddressList.IpAddress.String);
                    if (n > 0)
                        used += (size_t)n;
                    all[all_len - 1] = 0;
                }
                found++;
            }
        }
    }
    free(info);
    return found;
}

int sc_dhcp(void)
{
    long wait_s = arg_long("wait_s", 60, 1, 3600);
    long adapters = arg_long("adapters", 1, 1, 8);
    char ip[20] = "", server[20] = "", all[200] = "";
    LONGLONG t0 = now_ticks();
    int count;

    if (args_check())
        return 0;
    while ((count = leased(ip, sizeof ip, server, sizeof server, all, sizeof all)) < adapters) {
        if (ms_since(t0) > (unsigned long)wait_s * 1000) {
            report_error("%d of %ld Ethernet adapters have a DHCP lease after %ld s (%s)",
                         count, adapters, wait_s, all);
            return 0;
        }
        Sleep(500);
    }
    res_add("lease_ms", ms_since(t0));
    res_add("adapters", (unsigned long)count);
    res_add_str("ip", ip);
    res_add_str("server", server);
    res_add_str("ips", all);
    return 1;
}
