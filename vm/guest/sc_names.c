/*
 * Scenario names: the control channel under its Win32 name.
 *
 * Windows' tcpip.sys makes \DosDevices\Tcp (DD_TCP_SYMBOLIC_DEVICE_NAME in
 * tcpioctl.h), so user mode can open "\\.\Tcp" with CreateFile and send
 * IOCTL_TCP_QUERY_INFORMATION_EX to it, as ReactOS's own API tests do.  The
 * scenario opens it, asks for the entity list (the zero-length probe, then the
 * fetch), and checks that no other name is made ("\\.\Udp", "\\.\Ip").
 */
#include "tcpipvm.h"

#define IOCTL_TCP_QUERY_INFORMATION_EX 0x00120003

/* TCP_REQUEST_QUERY_INFORMATION_EX: TDIObjectID (entity, instance, class, type,
   id) and a 16-byte context. */
typedef struct {
    unsigned long entity, instance, toi_class, toi_type, toi_id;
    unsigned char context[16];
} query_t;

int sc_names(void)
{
    query_t q;
    HANDLE h;
    DWORD got = 0, need;
    unsigned char list[1024];
    const char *others[] = {"\\\\.\\Udp", "\\\\.\\Ip", "\\\\.\\RawIp"};
    int i;

    if (args_check())
        return 0;
    h = CreateFileA("\\\\.\\Tcp", GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE,
                    NULL, OPEN_EXISTING, 0, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        report_error("CreateFile(\\\\.\\Tcp): %lu", (unsigned long)GetLastError());
        return 0;
    }
    memset(&q, 0, sizeof q);
    q.entity = 0;          /* GENERIC_ENTITY */
    q.toi_class = 0x100;   /* INFO_CLASS_GENERIC */
    q.toi_type = 0x100;    /* INFO_TYPE_PROVIDER */
    q.toi_id = 0;          /* ENTITY_LIST_ID */
    if (!DeviceIoControl(h, IOCTL_TCP_QUERY_INFORMATION_EX, &q, sizeof q, NULL, 0, &need, NULL) ||
        need == 0 || need % 8 != 0 || need > sizeof list) {
        report_error("entity list probe: error %lu, size %lu", (unsigned long)GetLastError(),
                     (unsigned long)need);
    } else if (!DeviceIoControl(h, IOCTL_TCP_QUERY_INFORMATION_EX, &q, sizeof q, list, need,
                                &got, NULL) ||
               got != need) {
        report_error("entity list: error %lu, %lu bytes of %lu", (unsigned long)GetLastError(),
                     (unsigned long)got, (unsigned long)need);
    }
    res_add("entities", got / 8);
    CloseHandle(h);
    for (i = 0; i < 3; i++) {
        h = CreateFileA(others[i], GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                        OPEN_EXISTING, 0, NULL);
        if (h != INVALID_HANDLE_VALUE) {
            report_error("%s opens; Windows makes only \\\\.\\Tcp", others[i]);
            CloseHandle(h);
        }
    }
    return errors_total() == 0;
}
