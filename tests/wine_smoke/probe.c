/* User-mode probe for tests/wine_smoke.rs, run inside Wine. Every step prints "probe:" lines and
 * the program exits with 0 only if the step succeeded.
 *
 *   probe start NAME   make service NAME demand-start, start it, wait until it runs
 *   probe channel      open \Device\Tcp as a TDI control channel (NtCreateFile without extended
 *                      attributes), query the entity list with IOCTL_TCP_QUERY_INFORMATION_EX and
 *                      a zero-length output buffer, then with bad user pointers (unmapped,
 *                      freed, read-only: each must fail) and a good one after them, close the
 *                      handle
 *   probe stop NAME    stop service NAME, wait until it has stopped
 *
 * The service steps retry while the service database is locked: Wine's services.exe holds the
 * lock while it starts its own services at the beginning of a session. */
#include <windows.h>
#include <winternl.h>
#include <stdio.h>
#include <string.h>

#define IOCTL_TCP_QUERY_INFORMATION_EX 0x00120003
#define GENERIC_ENTITY 0
#define INFO_CLASS_GENERIC 0x100
#define INFO_TYPE_PROVIDER 0x100
#define ENTITY_LIST_ID 0
#define TIMEOUT_MS 60000

/* TCP_REQUEST_QUERY_INFORMATION_EX: a TDIObjectID followed by 16 bytes of context. */
typedef struct {
    ULONG tei_entity;
    ULONG tei_instance;
    ULONG toi_class;
    ULONG toi_type;
    ULONG toi_id;
    ULONG_PTR Context[16 / sizeof(ULONG_PTR)];
} QUERY_INFORMATION_EX;

static const char *state_name(DWORD state)
{
    switch (state) {
    case SERVICE_STOPPED: return "STOPPED";
    case SERVICE_START_PENDING: return "START_PENDING";
    case SERVICE_STOP_PENDING: return "STOP_PENDING";
    case SERVICE_RUNNING: return "RUNNING";
    default: return "OTHER";
    }
}

/* Opens service NAME, retrying while the service database is busy. */
static SC_HANDLE open_service(const char *name)
{
    DWORD start = GetTickCount();
    for (;;) {
        SC_HANDLE manager = OpenSCManagerA(NULL, NULL, SC_MANAGER_ALL_ACCESS);
        SC_HANDLE service = manager ? OpenServiceA(manager, name, SERVICE_ALL_ACCESS) : NULL;
        DWORD error = GetLastError();
        if (manager) CloseServiceHandle(manager);
        if (service) return service;
        if (GetTickCount() - start > TIMEOUT_MS) {
            printf("probe: cannot open service %s: error %lu\n", name, (unsigned long)error);
            return NULL;
        }
        Sleep(200);
    }
}

/* Waits until SERVICE leaves PENDING; prints and returns its final state. */
static DWORD wait_state(SC_HANDLE service, const char *name, DWORD pending)
{
    DWORD start = GetTickCount();
    SERVICE_STATUS status;
    memset(&status, 0, sizeof(status));
    while (QueryServiceStatus(service, &status) && status.dwCurrentState == pending &&
           GetTickCount() - start < TIMEOUT_MS)
        Sleep(100);
    printf("probe: service %s is %s (state %lu, exit code %lu)\n", name,
           state_name(status.dwCurrentState), (unsigned long)status.dwCurrentState,
           (unsigned long)status.dwWin32ExitCode);
    return status.dwCurrentState;
}

static int start_service(const char *name)
{
    SC_HANDLE service = open_service(name);
    DWORD start = GetTickCount();
    DWORD state;
    if (!service) return 1;
    if (!ChangeServiceConfigA(service, SERVICE_NO_CHANGE, SERVICE_DEMAND_START, SERVICE_NO_CHANGE,
                              NULL, NULL, NULL, NULL, NULL, NULL, NULL))
        printf("probe: cannot make %s demand-start: error %lu\n", name,
               (unsigned long)GetLastError());
    while (!StartServiceA(service, 0, NULL)) {
        DWORD error = GetLastError();
        if (error != ERROR_SERVICE_DATABASE_LOCKED || GetTickCount() - start > TIMEOUT_MS) {
            printf("probe: cannot start %s: error %lu\n", name, (unsigned long)error);
            CloseServiceHandle(service);
            return 1;
        }
        Sleep(200);
    }
    state = wait_state(service, name, SERVICE_START_PENDING);
    CloseServiceHandle(service);
    return state != SERVICE_RUNNING;
}

static int stop_service(const char *name)
{
    SC_HANDLE service = open_service(name);
    SERVICE_STATUS status;
    DWORD state;
    if (!service) return 1;
    if (!ControlService(service, SERVICE_CONTROL_STOP, &status))
        printf("probe: stop request for %s: error %lu\n", name, (unsigned long)GetLastError());
    state = wait_state(service, name, SERVICE_STOP_PENDING);
    CloseServiceHandle(service);
    return state != SERVICE_STOPPED;
}

/* One ENTITY_LIST query with the given buffers; prints and returns its status. */
static NTSTATUS query_entities(HANDLE handle, const char *what, void *input, ULONG input_len,
                               void *output, ULONG output_len, ULONG_PTR *information)
{
    IO_STATUS_BLOCK iosb;
    NTSTATUS status;
    memset(&iosb, 0, sizeof(iosb));
    status = NtDeviceIoControlFile(handle, NULL, NULL, NULL, &iosb, IOCTL_TCP_QUERY_INFORMATION_EX,
                                   input, input_len, output, output_len);
    printf("probe: ENTITY_LIST %s: status 0x%08lx, information %lu\n", what,
           (unsigned long)status, (unsigned long)iosb.Information);
    if (information) *information = iosb.Information;
    return status;
}

/* The METHOD_NEITHER query with bad user pointers: an unmapped page (0x1000), a freed buffer,
 * a read-only page; each must fail, and a good query must still answer the same afterwards. */
static int bad_pointers(HANDLE handle, QUERY_INFORMATION_EX *query, ULONG needed)
{
    ULONG_PTR information = 0, again = 0;
    int failed = 0;
    char *good = VirtualAlloc(NULL, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    char *freed = VirtualAlloc(NULL, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    char *readonly = VirtualAlloc(NULL, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_READONLY);
    DWORD old;
    if (!good || !freed || !readonly || needed == 0 || needed > 0x1000) {
        printf("probe: bad pointers: setup failed (needed %lu)\n", (unsigned long)needed);
        return 1;
    }
    VirtualFree(freed, 0, MEM_RELEASE);
    failed |= query_entities(handle, "fetch", query, sizeof(*query), good, needed, &information)
              != 0;
    failed |= information != needed;
    failed |= query_entities(handle, "with output at 0x1000", query, sizeof(*query),
                             (void *)0x1000, needed, NULL) == 0;
    failed |= query_entities(handle, "with input at 0x1000", (void *)0x1000, sizeof(*query),
                             good, needed, NULL) == 0;
    failed |= query_entities(handle, "with a freed output", query, sizeof(*query), freed, needed,
                             NULL) == 0;
    failed |= query_entities(handle, "with a read-only output", query, sizeof(*query), readonly,
                             needed, NULL) == 0;
    failed |= readonly[0] != 0;
    failed |= query_entities(handle, "fetch again", query, sizeof(*query), good, needed, &again)
              != 0;
    failed |= again != needed;
    printf("probe: bad pointers %s\n", failed ? "FAILED" : "OK");
    VirtualProtect(readonly, 0x1000, PAGE_READWRITE, &old);
    VirtualFree(readonly, 0, MEM_RELEASE);
    VirtualFree(good, 0, MEM_RELEASE);
    return failed;
}

static int control_channel(void)
{
    UNICODE_STRING name;
    OBJECT_ATTRIBUTES attributes;
    IO_STATUS_BLOCK iosb;
    HANDLE handle = NULL;
    QUERY_INFORMATION_EX query;
    NTSTATUS status;
    int failed = 0;

    RtlInitUnicodeString(&name, L"\\Device\\Tcp");
    InitializeObjectAttributes(&attributes, &name, OBJ_CASE_INSENSITIVE, NULL, NULL);
    status = NtCreateFile(&handle, SYNCHRONIZE | GENERIC_READ | GENERIC_WRITE, &attributes, &iosb,
                          NULL, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ | FILE_SHARE_WRITE,
                          FILE_OPEN_IF, FILE_SYNCHRONOUS_IO_NONALERT, NULL, 0);
    printf("probe: open \\Device\\Tcp control channel: status 0x%08lx\n", (unsigned long)status);
    if (status != 0) return 1;

    memset(&query, 0, sizeof(query));
    query.tei_entity = GENERIC_ENTITY;
    query.toi_class = INFO_CLASS_GENERIC;
    query.toi_type = INFO_TYPE_PROVIDER;
    query.toi_id = ENTITY_LIST_ID;
    memset(&iosb, 0, sizeof(iosb));
    status = NtDeviceIoControlFile(handle, NULL, NULL, NULL, &iosb, IOCTL_TCP_QUERY_INFORMATION_EX,
                                   &query, sizeof(query), NULL, 0);
    printf("probe: ENTITY_LIST with a 0-byte output buffer: status 0x%08lx, information %lu\n",
           (unsigned long)status, (unsigned long)iosb.Information);
    failed |= status != 0;
    failed |= bad_pointers(handle, &query, (ULONG)iosb.Information);

    status = NtClose(handle);
    printf("probe: close: status 0x%08lx\n", (unsigned long)status);
    failed |= status != 0;
    return failed;
}

int main(int argc, char **argv)
{
    int failed;
    if (argc == 3 && !strcmp(argv[1], "start"))
        failed = start_service(argv[2]);
    else if (argc == 3 && !strcmp(argv[1], "stop"))
        failed = stop_service(argv[2]);
    else if (argc == 2 && !strcmp(argv[1], "channel"))
        failed = control_channel();
    else {
        printf("usage: probe start NAME | probe channel | probe stop NAME\n");
        return 2;
    }
    printf("probe: %s %s\n", argv[1], failed ? "FAILED" : "OK");
    fflush(stdout);
    return failed;
}
