#!/bin/bash
# Builds tcpipvm.exe and checks it under Wine (Winsock over Linux loopback):
# the default list must pass, and the parent's config, timeout, crash and
# exec handling must report what they should.  Prints "N passed, N failed".
#
# Wine runs the i686 build when wine32 is installed; otherwise the same
# sources are built with x86_64-w64-mingw32-gcc and that one is run.
#
# usage: bash vm/guest/wine-test.sh [workdir]
set -u
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$(mktemp -d /tmp/tcpipvm-wine.XXXXXX)}
mkdir -p "$work"
flags=(-O2 -Wall -Wextra -Werror -std=gnu11 -D_WIN32_WINNT=0x0502 -DWINVER=0x0502 -static-libgcc)
export WINEDEBUG=-all

i686-w64-mingw32-gcc "${flags[@]}" -o "$work/tcpipvm32.exe" "$here"/*.c -lws2_32 -liphlpapi || exit 1
exe="$work/tcpipvm32.exe"
if ! wine "$exe" help 2>/dev/null | grep -q '^usage:'; then
    echo "note: wine cannot run the i686 build here (no wine32); testing the x86_64 build"
    x86_64-w64-mingw32-gcc "${flags[@]}" -o "$work/tcpipvm64.exe" "$here"/*.c -lws2_32 -liphlpapi || exit 1
    exe="$work/tcpipvm64.exe"
fi
mkdir -p "$work/run"
cp "$exe" "$work/run/tcpipvm.exe"
cd "$work/run" || exit 1

pass=0
fail=0
check() { # description, grep -E pattern, file
    if grep -Eq -- "$2" "$3"; then
        pass=$((pass + 1)); echo "ok   $1"
    else
        fail=$((fail + 1)); echo "FAIL $1 (no line matching: $2)"
    fi
}

# 1. The default list (no tcpipvm.cfg), as the parent runs it.
rm -f tcpipvm.cfg
start=$(date +%s)
timeout 900 wine tcpipvm.exe --stdout all 2>/dev/null | tr -d '\r' > default.log
echo "default list: $(( $(date +%s) - start )) s wall"
grep '^TCPIPVM' default.log
for s in serial burst bulk pingpong many edge nonblock; do
    check "default $s passes" "^TCPIPVM RESULT name=$s status=pass " default.log
done
check "default END" '^TCPIPVM END pass=7 fail=0$' default.log
check "default START" '^TCPIPVM START version=1 scenarios=7$' default.log

# 2. The machinery: a reduced list, a timeout, a crash, exec lines, bad lines.
cat > tcpipvm.cfg <<'EOF'
# reduced list
bulk mib=1   # comment after the keys
pingpong count=100 warmup=10 label=pp_small
selftest_sleep ms=10000 timeout=1
selftest_crash
burst conns=10 delay_ms=20000 io_ms=2000 label=burst_lost
exec name=echo cmd=cmd /c echo hello world & exit 3
exec name=ok0 timeout=20 cmd=cmd /c echo fine
exec name=nocmd
nosuch
serial typo=1
EOF
timeout 900 wine tcpipvm.exe --stdout all 2>/dev/null | tr -d '\r' > machinery.log
grep '^TCPIPVM' machinery.log
check "cfg START counts lines" '^TCPIPVM START version=1 scenarios=10$' machinery.log
check "cfg bulk mib=1" '^TCPIPVM RESULT name=bulk status=pass .*bytes=1048576 ' machinery.log
check "cfg label" '^TCPIPVM RESULT name=pp_small status=pass .*ok=100 ' machinery.log
check "timeout" '^TCPIPVM RESULT name=selftest_sleep status=timeout elapsed_ms=[0-9]+$' machinery.log
check "crash" '^TCPIPVM RESULT name=selftest_crash status=crash elapsed_ms=[0-9]+ exit=3221225477$' machinery.log
check "crash ERROR" '^TCPIPVM ERROR name=selftest_crash unhandled exception 0xc0000005' machinery.log
check "lost connections fail, bounded" '^TCPIPVM RESULT name=burst_lost status=fail .*ok=0 failed=10 ' machinery.log
check "lost connections ERROR" '^TCPIPVM ERROR name=burst_lost c[0-9]+ recv: timeout' machinery.log
check "exec output" '^TCPIPVM OUT name=echo \| hello world' machinery.log
check "exec exit 3" '^TCPIPVM RESULT name=echo status=fail elapsed_ms=[0-9]+ exit=3$' machinery.log
check "exec exit 0" '^TCPIPVM RESULT name=ok0 status=pass elapsed_ms=[0-9]+ exit=0$' machinery.log
check "exec without cmd" '^TCPIPVM RESULT name=nocmd status=fail ' machinery.log
check "unknown scenario" '^TCPIPVM ERROR name=nosuch unknown scenario nosuch' machinery.log
check "unknown key" '^TCPIPVM ERROR name=serial unknown key typo' machinery.log
check "cfg END" '^TCPIPVM END pass=3 fail=7$' machinery.log

# 3. Every line: ASCII, under 200 characters, one protocol word after TCPIPVM.
bad=$(grep '^TCPIPVM' default.log machinery.log | cut -d: -f2- |
      awk 'length($0) >= 199 || $0 ~ /[^ -~]/ || $2 !~ /^(START|RESULT|ERROR|OUT|END)$/' | wc -l)
if [ "$bad" -eq 0 ]; then pass=$((pass + 1)); echo "ok   line format"; else
    fail=$((fail + 1)); echo "FAIL line format ($bad bad lines)"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
