/*
 * Scenario userbuf: bad user pointers on IOCTL_TCP_QUERY_INFORMATION_EX.
 *
 * The query is METHOD_NEITHER: the I/O manager hands the driver this process's
 * own addresses, unprobed, and the driver must reach them only under SEH.  On
 * \Device\Tcp and \Device\Ip (NtCreateFile without EAs: a control channel, as
 * iphlpapi opens it) the scenario asks for the entity list with a good buffer,
 * then with bad ones, each followed by the good query again:
 *
 *   out1000  output at 0x1000 (never mapped)           ACCESS_VIOLATION
 *   in1000   input at 0x1000                           ACCESS_VIOLATION
 *   freed    output in a page released by VirtualFree  ACCESS_VIOLATION
 *   ro       output in a read-only page                ACCESS_VIOLATION
 *   split    output starting 8 bytes before a
 *            PAGE_NOACCESS page                        ACCESS_VIOLATION
 *   past     output ending past MmUserProbeAddress     INVALID_PARAMETER or AV
 *   kout     output at a kernel address (0x80100000)   INVALID_PARAMETER or AV
 *   kin      input at a kernel address                 INVALID_PARAMETER or AV
 *
 * It passes when every bad query fails with its status, writes nothing (the
 * read-only page and the 8 bytes before the no-access page keep their
 * contents), and the good query after each one answers as before.  The
 * statuses go into the RESULT line, one letter per case in the order above
 * (`tcp=AAAAAIII ip=...`: A ACCESS_VIOLATION, I INVALID_PARAMETER, S success,
 * ? anything else, which an ERROR line shows in full).
 * A driver that touches the pointers without SEH takes the machine down
 * (KMODE_EXCEPTION_NOT_HANDLED) instead.
 */
#include "tcpipvm.h"
#include <winternl.h>

#define IOCTL_TCP_QUERY_INFORMATION_EX 0x00120003
#define STATUS_ACCESS_VIOLATION_ ((LONG)0xC0000005)
#define STATUS_INVALID_PARAMETER_ ((LONG)0xC000000D)
#define PAGE 0x1000
#define USER_PROBE_ADDRESS 0x7FFF0000UL /* MmUserProbeAddress of x86 NT */

typedef NTSTATUS(NTAPI *create_file_t)(PHANDLE, ACCESS_MASK, POBJECT_ATTRIBUTES,
                                       PIO_STATUS_BLOCK, PLARGE_INTEGER, ULONG, ULONG, ULONG,
                                       ULONG, PVOID, ULONG);
typedef NTSTATUS(NTAPI *ioctl_t)(HANDLE, HANDLE, PVOID, PVOID, PIO_STATUS_BLOCK, ULONG, PVOID,
                                 ULONG, PVOID, ULONG);
typedef NTSTATUS(NTAPI *close_t)(HANDLE);

static create_file_t p_create;
static ioctl_t p_ioctl;
static close_t p_close;

/* TCP_REQUEST_QUERY_INFORMATION_EX for the entity list: TDIObjectID + 16 bytes. */
typedef struct {
    ULONG entity, instance, cls, type, id;
    UCHAR context[16];
} query_t;

static LONG query(HANDLE h, void *in, ULONG in_len, void *out, ULONG out_len, ULONG_PTR *info)
{
    IO_STATUS_BLOCK iosb;
    NTSTATUS status;
    memset(&iosb, 0, sizeof iosb);
    status = p_ioctl(h, NULL, NULL, NULL, &iosb, IOCTL_TCP_QUERY_INFORMATION_EX, in, in_len, out,
                     out_len);
    if (info)
        *info = iosb.Information;
    return (LONG)status;
}

static HANDLE open_device(const wchar_t *path)
{
    UNICODE_STRING name;
    OBJECT_ATTRIBUTES attributes;
    IO_STATUS_BLOCK iosb;
    HANDLE h = NULL;
    NTSTATUS status;
    name.Buffer = (PWSTR)path;
    name.Length = (USHORT)(wcslen(path) * sizeof(wchar_t));
    name.MaximumLength = name.Length;
    InitializeObjectAttributes(&attributes, &name, OBJ_CASE_INSENSITIVE, NULL, NULL);
    status = p_create(&h, SYNCHRONIZE | GENERIC_READ | GENERIC_WRITE, &attributes, &iosb, NULL,
                      FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ | FILE_SHARE_WRITE, FILE_OPEN_IF,
                      FILE_SYNCHRONOUS_IO_NONALERT, NULL, 0);
    if (status != 0) {
        report_error("open %ls: status 0x%08lx", path, (unsigned long)status);
        return NULL;
    }
    return h;
}

static int all_bytes(const unsigned char *p, size_t n, unsigned char value)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i] != value)
            return 0;
    return 1;
}

/* The bad-pointer cases on one device; 1 when all of them behaved. */
static int device_cases(const wchar_t *path, const char *prefix)
{
    HANDLE h = open_device(path);
    query_t q;
    ULONG_PTR needed = 0, info = 0;
    unsigned char *good, *freed, *ro, *split;
    DWORD old;
    LONG status;
    int ok = 1, i;
    char key[32], letters[9] = "";
    if (!h)
        return 0;
    memset(&q, 0, sizeof q);
    q.cls = 0x100;  /* INFO_CLASS_GENERIC */
    q.type = 0x100; /* INFO_TYPE_PROVIDER; entity GENERIC_ENTITY, id ENTITY_LIST_ID: 0 */
    status = query(h, &q, sizeof q, NULL, 0, &needed);
    good = VirtualAlloc(NULL, PAGE, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    freed = VirtualAlloc(NULL, PAGE, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    ro = VirtualAlloc(NULL, PAGE, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    split = VirtualAlloc(NULL, 2 * PAGE, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (status != 0 || needed <= 8 || needed > PAGE || !good || !freed || !ro || !split) {
        report_error("%s: size probe: status 0x%08lx, needed %lu", prefix, (unsigned long)status,
                     (unsigned long)needed);
        p_close(h);
        return 0;
    }
    memset(ro, 0x5A, PAGE);
    memset(split, 0x5A, 2 * PAGE);
    VirtualProtect(ro, PAGE, PAGE_READONLY, &old);
    VirtualProtect(split + PAGE, PAGE, PAGE_NOACCESS, &old);
    VirtualFree(freed, 0, MEM_RELEASE);

    for (i = 0; i < 8; i++) {
        static const char *names[] = {"out1000", "in1000", "freed", "ro",
                                      "split",   "past",   "kout",  "kin"};
        void *in = &q, *out = good;
        ULONG out_len = (ULONG)needed;
        int range_case = i >= 5;
        switch (i) {
        case 0: out = (void *)0x1000; break;
        case 1: in = (void *)0x1000; break;
        case 2: out = freed; break;
        case 3: out = ro; break;
        case 4: out = split + PAGE - 8; break;
        case 5: out = (void *)(USER_PROBE_ADDRESS - 8); break;
        case 6: out = (void *)0x80100000UL; break;
        case 7: in = (void *)0x80100000UL; break;
        }
        status = query(h, in, sizeof q, out, out_len, &info);
        _snprintf(key, sizeof key, "%s_%s", prefix, names[i]);
        letters[i] = status == STATUS_ACCESS_VIOLATION_    ? 'A'
                     : status == STATUS_INVALID_PARAMETER_ ? 'I'
                     : status == 0                         ? 'S'
                                                           : '?';
        if (status == STATUS_ACCESS_VIOLATION_ ||
            (range_case && status == STATUS_INVALID_PARAMETER_)) {
            /* the status a driver gives for this case */
        } else {
            report_error("%s: status 0x%08lx (information %lu)", key, (unsigned long)status,
                         (unsigned long)info);
            ok = 0;
        }
        if (!all_bytes(ro, PAGE, 0x5A) || !all_bytes(split + PAGE - 8, 8, 0x5A)) {
            report_error("%s: the driver wrote into a buffer it refused", key);
            ok = 0;
        }
        memset(good, 0, PAGE);
        status = query(h, &q, sizeof q, good, (ULONG)needed, &info);
        if (status != 0 || info != needed || all_bytes(good, needed, 0)) {
            report_error("%s: the good query after it: status 0x%08lx, information %lu", key,
                         (unsigned long)status, (unsigned long)info);
            ok = 0;
        }
    }
    letters[8] = 0;
    res_add_str(prefix, letters);
    VirtualFree(good, 0, MEM_RELEASE);
    VirtualFree(ro, 0, MEM_RELEASE);
    VirtualFree(split, 0, MEM_RELEASE);
    p_close(h);
    return ok;
}

int sc_userbuf(void)
{
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    int ok;
    if (args_check())
        return 0;
    p_create = (create_file_t)(void *)GetProcAddress(ntdll, "NtCreateFile");
    p_ioctl = (ioctl_t)(void *)GetProcAddress(ntdll, "NtDeviceIoControlFile");
    p_close = (close_t)(void *)GetProcAddress(ntdll, "NtClose");
    if (!p_create || !p_ioctl || !p_close) {
        report_error("ntdll exports missing");
        return 0;
    }
    ok = device_cases(L"\\Device\\Tcp", "tcp");
    ok &= device_cases(L"\\Device\\Ip", "ip");
    return ok;
}
