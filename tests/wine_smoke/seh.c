/* The driver's x64 guarded copy (src/nt/sys/seh.rs, compiled by tests/wine_smoke.rs into an
 * object that exports it as tcpip_guarded_copy) under Wine's real x64 exception dispatch: its
 * .pdata/.xdata handler must catch every fault of the copy, resume after it with the exception
 * code, and leave the copied prefix of a copy that faults half-way. Prints "seh: ..." lines and
 * exits with 0 only if every check held. */
#include <windows.h>
#include <stdio.h>
#include <string.h>

extern int tcpip_guarded_copy(void *dst, const void *src, size_t len);

#define AV ((int)0xC0000005)
static int failed;

static void check(const char *what, int got, int expected)
{
    printf("seh: %s: 0x%08x (expected 0x%08x)\n", what, (unsigned)got, (unsigned)expected);
    failed |= got != expected;
}

int main(void)
{
    char buf[64];
    char *pages = VirtualAlloc(NULL, 0x3000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    char *freed = VirtualAlloc(NULL, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    DWORD old;
    if (!pages || !freed) {
        printf("seh: setup FAILED\n");
        return 1;
    }
    memset(pages, 0x5A, 0x3000);
    VirtualProtect(pages + 0x1000, 0x1000, PAGE_NOACCESS, &old);
    VirtualProtect(pages + 0x2000, 0x1000, PAGE_READONLY, &old);
    VirtualFree(freed, 0, MEM_RELEASE);

    memset(buf, 0, sizeof buf);
    check("read a good page", tcpip_guarded_copy(buf, pages, 16), 0);
    failed |= buf[0] != 0x5A || buf[15] != 0x5A;
    check("read 0x1000", tcpip_guarded_copy(buf, (void *)0x1000, 16), AV);
    check("write 0x1000", tcpip_guarded_copy((void *)0x1000, buf, 16), AV);
    check("read a freed page", tcpip_guarded_copy(buf, freed, 16), AV);
    check("write a read-only page", tcpip_guarded_copy(pages + 0x2000, buf, 16), AV);
    failed |= pages[0x2000] != 0x5A;
    memset(buf, 0, sizeof buf);
    check("read across into a no-access page",
          tcpip_guarded_copy(buf, pages + 0x1000 - 8, 16), AV);
    printf("seh: copied before the fault: %d of 8\n", buf[7] == 0x5A ? 8 : 0);
    failed |= buf[7] != 0x5A || buf[8] != 0;
    check("read a good page again", tcpip_guarded_copy(buf, pages, 16), 0);
    printf("seh: %s\n", failed ? "FAILED" : "OK");
    fflush(stdout);
    return failed;
}
