/* User-mode probe for tests/wine_smoke.rs: opens \Device\Tcp as a TDI control channel (an
 * NtCreateFile without extended attributes), asks for the entity list with
 * IOCTL_TCP_QUERY_INFORMATION_EX and a zero-length output buffer, and closes the handle.
 * Prints one "probe:" line per step and exits with 0 only if every step succeeded. */
#include <windows.h>
#include <winternl.h>
#include <stdio.h>

#define IOCTL_TCP_QUERY_INFORMATION_EX 0x00120003
#define GENERIC_ENTITY 0
#define INFO_CLASS_GENERIC 0x100
#define INFO_TYPE_PROVIDER 0x100
#define ENTITY_LIST_ID 0

/* TCP_REQUEST_QUERY_INFORMATION_EX (tdiinfo.h / tcpioctl.h): TDIObjectID + 16 context bytes. */
typedef struct {
    ULONG tei_entity;
    ULONG tei_instance;
    ULONG toi_class;
    ULONG toi_type;
    ULONG toi_id;
    ULONG_PTR Context[16 / sizeof(ULONG_PTR)];
} QUERY_INFORMATION_EX;

int main(void)
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
    if (status != 0) {
        printf("probe: FAILED\n");
        return 1;
    }

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

    status = NtClose(handle);
    printf("probe: close: status 0x%08lx\n", (unsigned long)status);
    failed |= status != 0;

    printf("probe: %s\n", failed ? "FAILED" : "OK");
    return failed;
}
