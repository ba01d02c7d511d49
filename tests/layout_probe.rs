//! DDK layout probe: compares the layout table (`tcpip::nt::types::layout::FACTS`) with what the
//! mingw-w64 DDK headers say, for both x86 and x64.
//!
//! For each architecture the test generates one C file from `FACTS`: every fact becomes one
//! element of a `const unsigned long long` array (`sizeof(T)`, `_Alignof(T)` or
//! `offsetof(T, path)`). It compiles the file with `<arch>-w64-mingw32-gcc -c`, never links or
//! runs it, and reads the array back out of the COFF object's data with the `object` crate. A new
//! table entry is therefore probed without touching this file.
//!
//! Headers: `ddk/ntddk.h` (which pulls in `wdm.h`), `ddk/tdikrnl.h` (which pulls in `tdi.h`)
//! and `tdiinfo.h`. mingw-w64 has no `tcpioctl.h`, but the two structures of it this driver
//! uses, `TCP_REQUEST_QUERY_INFORMATION_EX` and `TCP_REQUEST_SET_INFORMATION_EX`, are in
//! `tdiinfo.h` (as they are in ReactOS), so every TDI structure is measured from a real header.
//!
//! The mingw-w64 compilers are a hard requirement: when one is missing the test fails; it is
//! never skipped.

use object::{Object, ObjectSection, ObjectSymbol};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tcpip::nt::types::layout::{FACTS, LayoutFact, Measure};

/// The first element of the probe array: finds misplaced reads.
const MAGIC: u64 = 0x4C41_594F_5554_5052;
/// The name of the probe array (i686 COFF adds a leading underscore).
const ARRAY: &str = "tcpip_layout_probe";

struct Arch {
    name: &'static str,
    gcc: &'static str,
    package: &'static str,
    expected: fn(&LayoutFact) -> usize,
}

const ARCHES: [Arch; 2] = [
    Arch {
        name: "x86",
        gcc: "i686-w64-mingw32-gcc",
        package: "gcc-mingw-w64-i686",
        expected: |fact| fact.x86,
    },
    Arch {
        name: "x64",
        gcc: "x86_64-w64-mingw32-gcc",
        package: "gcc-mingw-w64-x86-64",
        expected: |fact| fact.x64,
    },
];

/// A structure whose mingw-w64 declaration differs from the WDK's and ReactOS's: the probe
/// measures it inside a wrapper declared in [`PREAMBLE`] instead.
struct Override {
    item: &'static str,
    wrapper: &'static str,
    member: &'static str,
}

/// mingw-w64's `wdm.h` declares `_IRP` and `_DEVICE_OBJECT` without the
/// `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` that the WDK and ReactOS
/// (`sdk/include/xdk/iotypes.h`) give them (8 on x86, 16 on x64; it makes the x64
/// `DEVICE_OBJECT` 336 bytes instead of 328). The wrappers restore it; the structure is their
/// only member, at offset 0, so field offsets are measured unchanged.
const OVERRIDES: [Override; 2] = [
    Override {
        item: "IRP",
        wrapper: "PROBE_IRP",
        member: "Irp",
    },
    Override {
        item: "DEVICE_OBJECT",
        wrapper: "PROBE_DEVICE_OBJECT",
        member: "DeviceObject",
    },
];

const PREAMBLE: &str = r#"#include <stddef.h>
#include <ntddk.h>
#include <tdikrnl.h>
#include <tdiinfo.h>

/* Not in mingw-w64: the WDK and ReactOS declare IRP and DEVICE_OBJECT with
   DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT). See OVERRIDES in tests/layout_probe.rs. */
typedef struct DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT) { IRP Irp; } PROBE_IRP;
typedef struct DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT) { DEVICE_OBJECT DeviceObject; } PROBE_DEVICE_OBJECT;
"#;

/// The NDIS structures are not probed: mingw-w64's `ddk/ndis.h` (12.0) does not compile (it
/// redeclares `NDIS_REQUEST_TYPE` from `ntddndis.h`). Their table entries were checked against
/// ReactOS's `sdk/include/ddk/ndis.h` by hand, and the compile-time assertions keep them.
const NOT_PROBED: &str = "NDIS_";

/// The facts the C probe measures.
fn probed() -> Vec<&'static LayoutFact> {
    FACTS
        .iter()
        .filter(|fact| !fact.item.starts_with(NOT_PROBED))
        .collect()
}

/// The C expression that measures one fact.
fn c_expr(fact: &LayoutFact) -> String {
    let (ty, prefix) = match OVERRIDES.iter().find(|o| o.item == fact.item) {
        Some(o) => (o.wrapper, format!("{}.", o.member)),
        None => (fact.item, String::new()),
    };
    match fact.measure {
        Measure::Size => format!("sizeof({ty})"),
        Measure::Align => format!("_Alignof({ty})"),
        Measure::Offset(path) => format!("offsetof({ty}, {prefix}{path})"),
    }
}

/// How a fact is shown in failure reports.
fn describe(fact: &LayoutFact) -> (String, String) {
    let what = match fact.measure {
        Measure::Size => "sizeof".to_string(),
        Measure::Align => "alignof".to_string(),
        Measure::Offset(path) => format!("offsetof .{path}"),
    };
    (fact.item.to_string(), what)
}

/// The probe source: the array of all facts, preceded by a magic number and the count.
fn probe_source() -> String {
    let mut c = String::from(PREAMBLE);
    writeln!(
        c,
        "\n__attribute__((used)) const unsigned long long {ARRAY}[] = {{"
    )
    .unwrap();
    writeln!(c, "    {MAGIC:#x}ULL,").unwrap();
    writeln!(c, "    {}ULL,", probed().len()).unwrap();
    for fact in probed() {
        writeln!(c, "    {},", c_expr(fact)).unwrap();
    }
    c.push_str("};\n");
    c
}

/// The directory that holds mingw-w64's `ddk/ntddk.h`, taken from the compiler's own include
/// search list (Debian: `/usr/share/mingw-w64/include` through `/usr/<triple>/include`).
fn ddk_include_dir(gcc: &str) -> PathBuf {
    let out = Command::new(gcc)
        .args(["-xc", "-E", "-v", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {gcc}: {e}"));
    let log = String::from_utf8_lossy(&out.stderr);
    log.lines()
        .skip_while(|l| !l.starts_with("#include <...> search starts here:"))
        .skip(1)
        .take_while(|l| !l.starts_with("End of search list."))
        .map(|l| PathBuf::from(l.trim()).join("ddk"))
        .find(|dir| dir.join("ntddk.h").is_file())
        .unwrap_or_else(|| panic!("{gcc}: no ddk/ntddk.h on the include path:\n{log}"))
}

/// Compiles the probe for one architecture and returns the measured value of every fact.
fn measure(arch: &Arch, dir: &Path) -> Vec<u64> {
    let found = Command::new(arch.gcc)
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    assert!(
        matches!(found, Ok(status) if status.success()),
        "LAYOUT PROBE CANNOT RUN: `{}` is missing. Install the Debian package `{}` (CI does); \
         this test is never skipped.",
        arch.gcc,
        arch.package,
    );
    let source = dir.join(format!("layout_probe_{}.c", arch.name));
    let object_path = dir.join(format!("layout_probe_{}.o", arch.name));
    std::fs::write(&source, probe_source()).unwrap();
    let out = Command::new(arch.gcc)
        .arg("-c")
        .arg("-I")
        .arg(ddk_include_dir(arch.gcc))
        .arg("-o")
        .arg(&object_path)
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed on {}:\n{}",
        arch.gcc,
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );

    let bytes = std::fs::read(&object_path).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    assert_eq!(
        file.format(),
        object::BinaryFormat::Coff,
        "{}",
        object_path.display()
    );
    let symbol = file
        .symbols()
        .find(|s| s.name().is_ok_and(|n| n.trim_start_matches('_') == ARRAY))
        .unwrap_or_else(|| panic!("no `{ARRAY}` symbol in {}", object_path.display()));
    let section = file
        .section_by_index(symbol.section_index().unwrap())
        .unwrap();
    let data = section.data().unwrap();
    let start = usize::try_from(symbol.address() - section.address()).unwrap();
    let count = probed().len() + 2;
    let words: Vec<u64> = data[start..start + 8 * count]
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .collect();
    assert_eq!(words[0], MAGIC, "{}: probe array misread", arch.name);
    assert_eq!(
        words[1],
        probed().len() as u64,
        "{}: probe array misread",
        arch.name
    );
    words[2..].to_vec()
}

#[test]
fn layout_table_matches_ddk_headers() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let mut report = String::new();
    let mut mismatches = 0;
    for arch in &ARCHES {
        let actual = measure(arch, &dir);
        for (fact, &actual) in probed().into_iter().zip(&actual) {
            let expected = (arch.expected)(fact);
            if expected as u64 != actual {
                mismatches += 1;
                let (item, what) = describe(fact);
                writeln!(
                    report,
                    "{:<4} {item:<36} {what:<52} {expected:>8} {actual:>8}",
                    arch.name
                )
                .unwrap();
            }
        }
    }
    assert!(
        mismatches == 0,
        "{mismatches} layout fact(s) disagree with the DDK headers:\n\
         {:<4} {:<36} {:<52} {:>8} {:>8}\n{report}",
        "arch",
        "item",
        "fact",
        "expected",
        "actual",
    );
    eprintln!(
        "layout probe: {} facts x {} architectures agree",
        FACTS.len(),
        ARCHES.len()
    );
}

/// The structures the driver and the host model rely on must stay in the table.
#[test]
fn layout_table_covers_the_driver_structures() {
    let items: BTreeSet<&str> = FACTS.iter().map(|f| f.item).collect();
    let required = [
        "IRP",
        "IO_STACK_LOCATION",
        "FILE_OBJECT",
        "DEVICE_OBJECT",
        "DRIVER_OBJECT",
        "MDL",
        "KDPC",
        "KTIMER",
        "KEVENT",
        "LIST_ENTRY",
        "IO_STATUS_BLOCK",
        "UNICODE_STRING",
        "FILE_FULL_EA_INFORMATION",
        "TA_IP_ADDRESS",
        "TDI_ADDRESS_IP",
        "TA_ADDRESS",
        "TRANSPORT_ADDRESS",
        "TDI_ADDRESS_INFO",
        "TDI_CONNECTION_INFORMATION",
        "TDI_REQUEST_KERNEL",
        "TDI_REQUEST_KERNEL_ASSOCIATE",
        "TDI_REQUEST_KERNEL_RECEIVE",
        "TDI_REQUEST_KERNEL_SEND",
        "TDI_REQUEST_KERNEL_RECEIVEDG",
        "TDI_REQUEST_KERNEL_SENDDG",
        "TDI_REQUEST_KERNEL_QUERY_INFORMATION",
        "TDI_REQUEST_KERNEL_SET_EVENT",
        "TDI_PROVIDER_INFO",
        "TDI_CONNECTION_INFO",
        "TDI_MAX_DATAGRAM_INFO",
        "TDIEntityID",
        "TDIObjectID",
        "TCP_REQUEST_QUERY_INFORMATION_EX",
        "TCP_REQUEST_SET_INFORMATION_EX",
        "NDIS_PROTOCOL_CHARACTERISTICS",
        "NDIS_PACKET_PRIVATE",
        "NDIS_PACKET",
        "NDIS_REQUEST",
        "NDIS_EVENT",
        "OBJECT_ATTRIBUTES",
        "KEY_VALUE_PARTIAL_INFORMATION",
    ];
    let missing: Vec<_> = required.iter().filter(|r| !items.contains(*r)).collect();
    assert!(
        missing.is_empty(),
        "missing from the layout table: {missing:?}"
    );
    for item in ["KDPC", "IRP"] {
        assert!(
            FACTS
                .iter()
                .any(|f| f.item == item && f.measure == Measure::Align)
        );
    }
}
