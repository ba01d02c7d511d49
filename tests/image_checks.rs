//! Structural checks that the packaged kernel images are loadable NT kernel drivers: `tcpip.sys`
//! and the tdiecho test driver `tdiecho.sys`, each for x86 and x64 (every check runs on all
//! four).
//!
//! The images are built the way `cargo xtask package` builds them (the same `xtask` code, run
//! once per test binary; incremental, so it is a no-op when they are up to date) and read from
//! `target/package/{x86,x64}`. The PE side is read with `object`, the PDB with `pdb`, the code
//! with `iced-x86`; the only hand-written algorithm is the PE checksum.
//!
//! The ReactOS export lists are read from `../shared/reference/reactos-exports/` relative to the
//! repository root; if that folder is missing the import check fails.

use iced_x86::{
    CpuidFeature, Decoder, DecoderOptions, EncodingKind, Formatter, Instruction, Mnemonic,
    NasmFormatter, OpKind, Register,
};
use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, ImageThunkData, PeFile};
use pdb::FallibleIterator;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use xtask::{Arch, Output, X86};

/// The import DLLs a transport driver may bind to.
const ALLOWED_DLLS: [&str; 4] = ["ntoskrnl.exe", "hal.dll", "ndis.sys", "tdi.sys"];

/// One packaged image and what the checks need to know about it.
struct Image {
    arch: Arch,
    path: PathBuf,
    /// The PDB's file name, which the CodeView record must name.
    pdb_name: &'static str,
    bytes: Vec<u8>,
    pdb: PdbFacts,
}

/// The facts read from an image's PDB.
struct PdbFacts {
    /// The GUID in the byte order of a CodeView record (the Windows `GUID` layout).
    guid: [u8; 16],
    /// The age in the DBI stream, which debuggers compare with the image's CodeView age.
    dbi_age: u32,
    /// Public symbols that are functions: name and RVA.
    public_functions: Vec<(String, u32)>,
    /// Procedures from the module streams: name, RVA, code size.
    procedures: Vec<(String, u32, u32)>,
}

/// The facts read from an image's PE headers and tables.
struct PeFacts {
    machine: u16,
    subsystem: u16,
    subsystem_version: (u16, u16),
    entry_point: u32,
    image_base: u64,
    checksum: u32,
    checksum_offset: usize,
    tls_directory: Option<(u32, u32)>,
    relocation_directory: Option<(u32, u32)>,
    exports: Vec<String>,
    /// (DLL, name) per import; ordinal imports are listed as `#<ordinal>`.
    imports: Vec<(String, String)>,
    codeview: Option<([u8; 16], u32, String)>,
    sections: Vec<Section>,
}

struct Section {
    name: String,
    rva: u32,
    virtual_size: u32,
    executable: bool,
    data: Vec<u8>,
}

impl Image {
    fn pe(&self) -> PeFacts {
        let result = match self.arch.name {
            "x86" => pe_facts::<pe::ImageNtHeaders32>(&self.bytes),
            _ => pe_facts::<pe::ImageNtHeaders64>(&self.bytes),
        };
        result.unwrap_or_else(|e| panic!("{}: not a readable PE image: {e}", self.path.display()))
    }
}

fn pe_facts<Pe: ImageNtHeaders>(data: &[u8]) -> object::Result<PeFacts> {
    let file = PeFile::<Pe>::parse(data)?;
    let header = file.nt_headers().file_header();
    let optional = file.nt_headers().optional_header();
    // The checksum field sits 64 bytes into the optional header of both PE32 and PE32+.
    let optional_offset = file.dos_header().nt_headers_offset() as usize
        + 4
        + std::mem::size_of::<pe::ImageFileHeader>();
    let directory = |index| {
        file.data_directory(index)
            .map(|d| (d.virtual_address.get(LE), d.size.get(LE)))
    };
    let mut exports = Vec::new();
    if let Some(table) = file.export_table()? {
        for export in table.exports()? {
            exports.push(String::from_utf8_lossy(export.name.unwrap_or(b"<ordinal>")).into());
        }
    }
    let mut imports = Vec::new();
    if let Some(table) = file.import_table()? {
        let mut descriptors = table.descriptors()?;
        while let Some(descriptor) = descriptors.next()? {
            let dll = String::from_utf8_lossy(table.name(descriptor.name.get(LE))?).into_owned();
            let mut thunks = table.thunks(descriptor.original_first_thunk.get(LE))?;
            while let Some(thunk) = thunks.next::<Pe>()? {
                let name = if thunk.is_ordinal() {
                    format!("#{}", thunk.ordinal())
                } else {
                    match table.import::<Pe>(thunk)? {
                        object::read::pe::Import::Name(_, name) => {
                            String::from_utf8_lossy(name).into_owned()
                        }
                        object::read::pe::Import::Ordinal(n) => format!("#{n}"),
                    }
                };
                imports.push((dll.clone(), name));
            }
        }
    }
    let codeview = object::Object::pdb_info(&file)?.map(|cv| {
        (
            cv.guid(),
            cv.age(),
            String::from_utf8_lossy(cv.path()).into_owned(),
        )
    });
    let sections = file
        .section_table()
        .iter()
        .map(|s| Section {
            name: String::from_utf8_lossy(s.raw_name())
                .trim_end_matches('\0')
                .to_string(),
            rva: s.virtual_address.get(LE),
            virtual_size: s.virtual_size.get(LE),
            executable: s.characteristics.get(LE) & pe::IMAGE_SCN_MEM_EXECUTE != 0,
            data: s.pe_data(data).unwrap_or_default().to_vec(),
        })
        .collect();
    Ok(PeFacts {
        machine: header.machine.get(LE),
        subsystem: optional.subsystem(),
        subsystem_version: (
            optional.major_subsystem_version(),
            optional.minor_subsystem_version(),
        ),
        entry_point: optional.address_of_entry_point(),
        image_base: optional.image_base(),
        checksum: optional.check_sum(),
        checksum_offset: optional_offset + 64,
        tls_directory: directory(pe::IMAGE_DIRECTORY_ENTRY_TLS),
        relocation_directory: directory(pe::IMAGE_DIRECTORY_ENTRY_BASERELOC),
        exports,
        imports,
        codeview,
        sections,
    })
}

fn pdb_facts(path: &Path) -> pdb::Result<PdbFacts> {
    let file = std::fs::File::open(path)?;
    let mut pdb = pdb::PDB::open(file)?;
    let guid = pdb.pdb_information()?.guid.to_bytes_le();
    let dbi = pdb.debug_information()?;
    let dbi_age = dbi.age().unwrap_or(0);
    let address_map = pdb.address_map()?;
    let mut public_functions = Vec::new();
    let globals = pdb.global_symbols()?;
    let mut symbols = globals.iter();
    while let Some(symbol) = symbols.next()? {
        if let Ok(pdb::SymbolData::Public(public)) = symbol.parse()
            && public.function
            && let Some(rva) = public.offset.to_rva(&address_map)
        {
            public_functions.push((public.name.to_string().into_owned(), rva.0));
        }
    }
    let mut procedures = Vec::new();
    let mut modules = dbi.modules()?;
    while let Some(module) = modules.next()? {
        let Some(info) = pdb.module_info(&module)? else {
            continue;
        };
        let mut symbols = info.symbols()?;
        while let Some(symbol) = symbols.next()? {
            if let Ok(pdb::SymbolData::Procedure(procedure)) = symbol.parse()
                && let Some(rva) = procedure.offset.to_rva(&address_map)
            {
                let name = procedure.name.to_string().into_owned();
                procedures.push((name, rva.0, procedure.len));
            }
        }
    }
    Ok(PdbFacts {
        guid,
        dbi_age,
        public_functions,
        procedures,
    })
}

/// The packaged images (tcpip.sys and tdiecho.sys, both architectures), built once per test binary (a failed build fails every check with
/// its output, without building again).
fn images() -> &'static [Image] {
    static IMAGES: OnceLock<Result<Vec<Image>, String>> = OnceLock::new();
    let images = IMAGES.get_or_init(|| {
        let root = xtask::workspace_root();
        let packages = xtask::package(&root, Output::Capture)
            .map_err(|e| format!("building the kernel images failed:\n{e}"))?;
        packages
            .into_iter()
            .flat_map(|package| {
                [
                    (package.arch, package.sys, package.pdb, "tcpip.pdb"),
                    (
                        package.arch,
                        package.test_sys,
                        package.test_pdb,
                        "tdiecho.pdb",
                    ),
                ]
            })
            .map(|(arch, sys, pdb, pdb_name)| {
                Ok(Image {
                    arch,
                    bytes: std::fs::read(&sys).map_err(|e| format!("{}: {e}", sys.display()))?,
                    pdb: pdb_facts(&pdb).map_err(|e| format!("{}: {e}", pdb.display()))?,
                    path: sys,
                    pdb_name,
                })
            })
            .collect()
    });
    images.as_deref().unwrap_or_else(|e| panic!("{e}"))
}

/// At most this many problems are listed per image; the rest are counted.
const MAX_LISTED: usize = 20;

/// Runs `check` on both images and fails with every image's problems.
fn check_all(check: impl Fn(&Image, &PeFacts) -> Vec<String>) {
    let mut failures = Vec::new();
    for image in images() {
        let problems = check(image, &image.pe());
        let shown = image.path.display();
        for problem in problems.iter().take(MAX_LISTED) {
            failures.push(format!("{shown} ({}): {problem}", image.arch.name));
        }
        if problems.len() > MAX_LISTED {
            failures.push(format!(
                "{shown}: ... and {} more",
                problems.len() - MAX_LISTED
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A GUID in its registry form, from the bytes of a Windows `GUID`.
fn guid_text(g: &[u8; 16]) -> String {
    format!(
        "{{{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}}}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10..]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    )
}

#[test]
fn machine_type() {
    check_all(|image, pe| {
        let expected = match image.arch {
            X86 => pe::IMAGE_FILE_MACHINE_I386,
            _ => pe::IMAGE_FILE_MACHINE_AMD64,
        };
        (pe.machine != expected)
            .then(|| format!("machine {:#06x}, expected {expected:#06x}", pe.machine))
            .into_iter()
            .collect()
    });
}

#[test]
fn native_subsystem_and_version() {
    check_all(|image, pe| {
        let mut problems = Vec::new();
        if pe.subsystem != pe::IMAGE_SUBSYSTEM_NATIVE {
            problems.push(format!("subsystem {}, expected NATIVE (1)", pe.subsystem));
        }
        let expected = if image.arch == X86 { (5, 1) } else { (5, 2) };
        if pe.subsystem_version != expected {
            problems.push(format!(
                "subsystem version {}.{:02}, expected {}.{:02}",
                pe.subsystem_version.0, pe.subsystem_version.1, expected.0, expected.1
            ));
        }
        problems
    });
}

/// The entry point is the RVA of the `DriverEntry` public symbol in the PDB (`_DriverEntry@8`
/// on x86, where the linker resolved `/ENTRY:DriverEntry` to the stdcall name), in code.
#[test]
fn entry_point_is_driver_entry() {
    check_all(|image, pe| {
        let is_driver_entry = |name: &str| {
            name == "DriverEntry" || name == "_DriverEntry" || name.starts_with("_DriverEntry@")
        };
        let found: BTreeSet<u32> = image
            .pdb
            .public_functions
            .iter()
            .filter(|(name, _)| is_driver_entry(name))
            .map(|&(_, rva)| rva)
            .collect();
        let mut problems = Vec::new();
        match found.iter().collect::<Vec<_>>()[..] {
            [] => problems.push("no DriverEntry public symbol in the PDB".to_string()),
            [&rva] if rva == pe.entry_point => {}
            _ => problems.push(format!(
                "entry point {:#x}, DriverEntry at {found:x?}",
                pe.entry_point
            )),
        }
        let in_code = pe
            .sections
            .iter()
            .any(|s| s.executable && (s.rva..s.rva + s.virtual_size).contains(&pe.entry_point));
        if !in_code {
            problems.push(format!("entry point {:#x} is not in code", pe.entry_point));
        }
        problems
    });
}

#[test]
fn base_relocations_present() {
    check_all(|_, pe| {
        let mut problems = Vec::new();
        if !matches!(pe.relocation_directory, Some((_, size)) if size > 0) {
            problems.push("no base relocation directory".to_string());
        }
        if !pe
            .sections
            .iter()
            .any(|s| s.name == ".reloc" && s.virtual_size > 0)
        {
            problems.push("no non-empty .reloc section".to_string());
        }
        problems
    });
}

#[test]
fn no_tls_directory() {
    check_all(|_, pe| {
        let mut problems = Vec::new();
        if let Some((rva, size)) = pe.tls_directory {
            problems.push(format!("TLS directory at {rva:#x} ({size} bytes)"));
        }
        if pe.sections.iter().any(|s| s.name == ".tls") {
            problems.push("a .tls section".to_string());
        }
        problems
    });
}

#[test]
fn no_exports_except_driver_entry() {
    check_all(|_, pe| {
        pe.exports
            .iter()
            .filter(|name| *name != "DriverEntry")
            .map(|name| format!("exports {name}"))
            .collect()
    });
}

/// The standard PE checksum: the file summed as little-endian 16-bit words with end-around
/// carry, skipping the checksum field itself, folded to 16 bits, plus the file length.
fn pe_checksum(data: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, word) in data.chunks(2).enumerate() {
        let offset = 2 * i;
        if offset == checksum_offset || offset == checksum_offset + 2 {
            continue;
        }
        sum += u64::from(u16::from_le_bytes([word[0], *word.get(1).unwrap_or(&0)]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u32 + data.len() as u32
}

#[test]
fn checksum_is_valid() {
    check_all(|image, pe| {
        let computed = pe_checksum(&image.bytes, pe.checksum_offset);
        (pe.checksum != computed)
            .then(|| format!("checksum {:#010x}, computed {computed:#010x}", pe.checksum))
            .into_iter()
            .collect()
    });
}

#[test]
fn codeview_record_matches_pdb() {
    check_all(|image, pe| {
        let Some((guid, age, path)) = &pe.codeview else {
            return vec!["no CodeView (RSDS) debug record".to_string()];
        };
        let mut problems = Vec::new();
        if *guid != image.pdb.guid {
            problems.push(format!(
                "CodeView GUID {} != PDB GUID {}",
                guid_text(guid),
                guid_text(&image.pdb.guid)
            ));
        }
        if *age != image.pdb.dbi_age {
            problems.push(format!(
                "CodeView age {age} != PDB age {}",
                image.pdb.dbi_age
            ));
        }
        if path != image.pdb_name {
            problems.push(format!(
                "CodeView PDB path {path:?}, expected {:?}",
                image.pdb_name
            ));
        }
        problems
    });
}

#[test]
fn imports_only_from_kernel_modules() {
    check_all(|_, pe| {
        let dlls: BTreeSet<&str> = pe.imports.iter().map(|(dll, _)| dll.as_str()).collect();
        let mut problems: Vec<String> = dlls
            .iter()
            .filter(|dll| !ALLOWED_DLLS.contains(&dll.to_ascii_lowercase().as_str()))
            .map(|dll| format!("imports from {dll}"))
            .collect();
        if !dlls
            .iter()
            .any(|dll| dll.eq_ignore_ascii_case("ntoskrnl.exe"))
        {
            problems.push("imports nothing from ntoskrnl.exe".to_string());
        }
        problems
    });
}

/// The export lists of the ReactOS modules: `(module, arch) -> names`, read from
/// `../shared/reference/reactos-exports/` beside the repository.
fn reactos_exports() -> &'static BTreeMap<(String, String), BTreeSet<String>> {
    static EXPORTS: OnceLock<BTreeMap<(String, String), BTreeSet<String>>> = OnceLock::new();
    EXPORTS.get_or_init(|| {
        let dir = xtask::workspace_root().join("../shared/reference/reactos-exports");
        assert!(
            dir.is_dir(),
            "\n\n*** {} is missing: the import check needs the ReactOS export lists of \
             shared/reference beside the repository (CI has them there). ***\n",
            dir.display()
        );
        let mut exports = BTreeMap::new();
        for module in ["ntoskrnl", "hal", "ndis", "tdi"] {
            for arch in ["i386", "amd64"] {
                let file = dir.join(format!("{module}.{arch}.txt"));
                let text = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
                let names = text
                    .lines()
                    .filter_map(|line| line.split('\t').next())
                    .filter(|name| !name.is_empty())
                    .map(str::to_string)
                    .collect();
                exports.insert((module.to_string(), arch.to_string()), names);
            }
        }
        exports
    })
}

#[test]
fn imports_exported_by_reactos() {
    check_all(|image, pe| {
        let arch = if image.arch == X86 { "i386" } else { "amd64" };
        pe.imports
            .iter()
            .filter_map(|(dll, name)| {
                let lower = dll.to_ascii_lowercase();
                let module = lower.rsplit_once('.').map_or(lower.as_str(), |(m, _)| m);
                let exported = reactos_exports()
                    .get(&(module.to_string(), arch.to_string()))
                    .is_some_and(|names| names.contains(name));
                (!exported)
                    .then(|| format!("imports {dll}!{name}, which ReactOS {arch} does not export"))
            })
            .collect()
    });
}

/// Why an instruction is not allowed in this image, if it is not: x87, MMX, 3DNow! and AVX
/// (VEX/EVEX/XOP) anywhere; SSE also on x86, where the kernel does not save XMM state for
/// drivers (x64 NT saves the volatile XMM registers, so SSE is allowed there).
fn forbidden(instruction: &Instruction, arch: Arch) -> Option<&'static str> {
    if instruction.encoding() != EncodingKind::Legacy {
        return Some("AVX-class (VEX/EVEX/XOP/3DNow!) encoding");
    }
    for feature in instruction.cpuid_features() {
        let name = format!("{feature:?}");
        if name.starts_with("FPU") || *feature == CpuidFeature::FXSR {
            return Some("x87");
        }
        if *feature == CpuidFeature::MMX || name.contains("D3NOW") {
            return Some("MMX/3DNow!");
        }
        if name.starts_with("AVX") || name.starts_with("FMA") || name == "F16C" {
            return Some("AVX");
        }
        if arch == X86 && (name.starts_with("SSE") || name == "SSSE3") {
            return Some("SSE");
        }
    }
    for i in 0..instruction.op_count() {
        if instruction.op_kind(i) != OpKind::Register {
            continue;
        }
        let register: Register = instruction.op_register(i);
        if register.is_st() {
            return Some("x87 register");
        }
        if register.is_mm() {
            return Some("MMX register");
        }
        if register.is_ymm() || register.is_zmm() || register.is_k() || register.is_tmm() {
            return Some("AVX register");
        }
        if arch == X86 && register.is_xmm() {
            return Some("SSE register");
        }
    }
    None
}

/// What decoding the executable sections found.
#[derive(Default)]
struct Scan {
    /// Function ranges decoded: start RVA, end RVA, name.
    functions: Vec<(u32, u32, String)>,
    /// RVAs used as absolute or RIP-relative memory operands.
    referenced: BTreeSet<u32>,
    /// RVAs that direct calls and jumps go to.
    branch_targets: BTreeSet<u32>,
    /// Forbidden or undecodable instructions.
    problems: Vec<String>,
    instructions: usize,
}

/// Decodes every function in `starts` (start RVA → (code size or 0 if unknown, name)) within
/// its bounds. A function of unknown size ends at the next known start or at the next address
/// that code uses as data (`known_data`), whichever comes first.
fn scan(
    image: &Image,
    pe: &PeFacts,
    starts: &BTreeMap<u32, (u32, String)>,
    known_data: &BTreeSet<u32>,
) -> Scan {
    let bitness = if image.arch == X86 { 32 } else { 64 };
    let mut result = Scan::default();
    let mut formatter = NasmFormatter::new();
    for section in pe.sections.iter().filter(|s| s.executable) {
        let end = section.rva + section.virtual_size.min(section.data.len() as u32);
        let functions: Vec<_> = starts.range(section.rva..end).collect();
        for (i, &(&start, (len, name))) in functions.iter().enumerate() {
            let next_start = functions.get(i + 1).map_or(end, |next| *next.0);
            let stop = if *len > 0 {
                (start + len).min(end)
            } else {
                let next_data = known_data.range(start + 1..).next().copied().unwrap_or(end);
                next_start.min(next_data)
            };
            result.functions.push((start, stop, name.clone()));
            let code = &section.data[(start - section.rva) as usize..(stop - section.rva) as usize];
            let ip = pe.image_base + u64::from(start);
            let mut decoder = Decoder::with_ip(bitness, code, ip, DecoderOptions::NONE);
            let mut instruction = Instruction::default();
            let rva = |address: u64| u32::try_from(address.wrapping_sub(pe.image_base)).ok();
            while decoder.can_decode() {
                decoder.decode_out(&mut instruction);
                result.instructions += 1;
                if instruction.is_invalid() {
                    result.problems.push(format!(
                        "undecodable bytes at {:#x} in {name}",
                        instruction.ip()
                    ));
                    break;
                }
                let has_memory_operand =
                    (0..instruction.op_count()).any(|i| instruction.op_kind(i) == OpKind::Memory);
                if instruction.is_ip_rel_memory_operand() {
                    result
                        .referenced
                        .extend(rva(instruction.ip_rel_memory_address()));
                } else if has_memory_operand && instruction.memory_base() == Register::None {
                    result
                        .referenced
                        .extend(rva(instruction.memory_displacement64()));
                }
                if matches!(
                    instruction.op0_kind(),
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
                ) {
                    result
                        .branch_targets
                        .extend(rva(instruction.near_branch_target()));
                }
                if let Some(why) = forbidden(&instruction, image.arch) {
                    let mut text = String::new();
                    formatter.format(&instruction, &mut text);
                    result.problems.push(format!(
                        "{why}: `{text}` at {:#x} in {name}",
                        instruction.ip()
                    ));
                }
            }
        }
    }
    result
}

/// No x87/MMX/SSE/AVX instruction in the x86 image, and no x87/MMX/AVX one in the x64 image.
///
/// Code and data are told apart instead of sweeping `.text` linearly, because LLVM puts x86
/// jump tables in `.text` (after their function, as 32-bit label differences without
/// relocations), and their bytes decode as `fld`/`fcom` & co.:
/// 1. the functions are the PDB's procedures (from the module streams, with their code size,
///    which ends before the jump tables), its public function symbols (naked functions such as
///    `__chkstk` have no procedure record), and, repeated until nothing new turns up, every
///    target of a direct call or jump that lies outside them (code without debug info);
/// 2. each is decoded linearly within its bounds and every instruction is classified;
/// 3. every other byte of an executable section must be `int3`/`nop` padding or data that a
///    decoded instruction uses as a memory operand (a jump table); anything else fails the
///    check, so code that none of the above describes cannot go unchecked.
#[test]
fn no_forbidden_fp_or_simd_instructions() {
    check_all(|image, pe| {
        let mut starts: BTreeMap<u32, (u32, String)> = BTreeMap::new();
        for (name, rva, len) in &image.pdb.procedures {
            starts.insert(*rva, (*len, name.clone()));
        }
        let covers = |starts: &BTreeMap<u32, (u32, String)>, rva: u32| {
            starts
                .range(..=rva)
                .next_back()
                .is_some_and(|(&start, (len, _))| rva == start || rva < start + len)
        };
        for (name, rva) in &image.pdb.public_functions {
            if !covers(&starts, *rva) {
                starts.insert(*rva, (0, name.clone()));
            }
        }
        let in_code = |rva: u32| {
            pe.sections
                .iter()
                .any(|s| s.executable && (s.rva..s.rva + s.virtual_size).contains(&rva))
        };
        let mut known_data = BTreeSet::new();
        let result = loop {
            let result = scan(image, pe, &starts, &known_data);
            let decoded = |rva: u32| result.functions.iter().any(|f| (f.0..f.1).contains(&rva));
            let new: Vec<u32> = result
                .branch_targets
                .iter()
                .copied()
                .filter(|&t| in_code(t) && !decoded(t))
                .collect();
            if new.is_empty() && known_data == result.referenced {
                break result;
            }
            for target in new {
                starts.insert(
                    target,
                    (0, format!("code at {target:#x} without debug info")),
                );
            }
            known_data = result.referenced.clone();
        };
        let mut problems = result.problems;
        let bitness = if image.arch == X86 { 32 } else { 64 };
        let mut table_bytes = 0;
        for section in pe.sections.iter().filter(|s| s.executable) {
            let end = section.rva + section.virtual_size.min(section.data.len() as u32);
            let mut position = section.rva;
            let mut gaps = Vec::new();
            for &(start, stop, _) in result
                .functions
                .iter()
                .filter(|f| (section.rva..end).contains(&f.0))
            {
                if start > position {
                    gaps.push((position, start));
                }
                position = position.max(stop);
            }
            gaps.push((position, end));
            for (gap_start, gap_end) in gaps {
                let bytes = &section.data
                    [(gap_start - section.rva) as usize..(gap_end - section.rva) as usize];
                let ip = pe.image_base + u64::from(gap_start);
                let mut decoder = Decoder::with_ip(bitness, bytes, ip, DecoderOptions::NONE);
                let mut instruction = Instruction::default();
                while decoder.can_decode() {
                    let at = gap_start + decoder.position() as u32;
                    decoder.decode_out(&mut instruction);
                    if matches!(instruction.mnemonic(), Mnemonic::Int3 | Mnemonic::Nop) {
                        continue;
                    }
                    if result.referenced.contains(&at) {
                        table_bytes += gap_end - at;
                    } else {
                        problems.push(format!(
                            "{} bytes at RVA {at:#x} in {} are in no function and are not \
                             data used by the code",
                            gap_end - at,
                            section.name
                        ));
                    }
                    break;
                }
            }
        }
        eprintln!(
            "{}: decoded {} functions ({} instructions); skipped {table_bytes} bytes of jump tables",
            image.arch.name,
            result.functions.len(),
            result.instructions,
        );
        if result.functions.is_empty() {
            problems.push("no functions found in the PDB".to_string());
        }
        problems
    });
}

/// The largest stack frame a function of the driver may set up: x86 kernel stacks are 12 KiB
/// and x64 ones 24 KiB, and `DriverEntry` runs the NDIS bind, the miniport and NDIS itself
/// below its own frames. A frame past the budget is how the VM found a kernel stack overflow
/// (bugcheck 0x50 in `_chkstk`: an 11 KiB frame built the driver's state on x86).
const FRAME_BUDGET_X86: u64 = 8 * 1024;
const FRAME_BUDGET_X64: u64 = 16 * 1024;

/// The stack frame a function's prologue sets up: `sub esp/rsp, N`, or `mov eax, N` followed
/// by the call to the stack probe (`_chkstk`/`__chkstk`), which frames of a page or more use.
fn frame_size(code: &[u8], ip: u64, bitness: u32, probe: Option<u64>) -> u64 {
    let mut decoder = Decoder::with_ip(bitness, code, ip, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut probe_size = None;
    let mut largest = 0;
    for _ in 0..16 {
        if !decoder.can_decode() {
            break;
        }
        decoder.decode_out(&mut instruction);
        let stack = matches!(instruction.op0_register(), Register::ESP | Register::RSP);
        match instruction.mnemonic() {
            Mnemonic::Mov
                if instruction.op0_register() == Register::EAX
                    && instruction.op1_kind() == OpKind::Immediate32 =>
            {
                probe_size = Some(u64::from(instruction.immediate32()));
            }
            Mnemonic::Call => {
                let size = probe_size.take().unwrap_or(0);
                if Some(instruction.near_branch_target()) == probe {
                    largest = largest.max(size);
                }
            }
            Mnemonic::Sub if stack => {
                let size = match instruction.op1_kind() {
                    OpKind::Immediate8to32 | OpKind::Immediate32 => {
                        u64::from(instruction.immediate32())
                    }
                    OpKind::Immediate8to64 | OpKind::Immediate32to64 => instruction.immediate64(),
                    _ => 0,
                };
                largest = largest.max(size);
            }
            _ => {}
        }
    }
    largest
}

/// No function sets up a stack frame past the budget of its architecture.
#[test]
fn stack_frames_fit_the_kernel_stack() {
    check_all(|image, pe| {
        let (bitness, budget) = if image.arch == X86 {
            (32, FRAME_BUDGET_X86)
        } else {
            (64, FRAME_BUDGET_X64)
        };
        let probe = image
            .pdb
            .public_functions
            .iter()
            .find(|(name, _)| name.trim_start_matches('_') == "chkstk")
            .map(|(_, rva)| pe.image_base + u64::from(*rva));
        // tcpip.sys has frames past a page, so LLVM's probe is linked in; the small tdiecho.sys
        // may have none (then no frame is past a page, and `sub esp` tells every size).
        assert!(
            probe.is_some() || image.pdb_name != "tcpip.pdb",
            "no stack probe (_chkstk/__chkstk) in the PDB"
        );
        let mut frames: Vec<(u64, String)> = Vec::new();
        for (name, rva, len) in &image.pdb.procedures {
            let Some(section) = pe
                .sections
                .iter()
                .find(|s| s.executable && (s.rva..s.rva + s.data.len() as u32).contains(rva))
            else {
                continue;
            };
            let start = (rva - section.rva) as usize;
            let end = (start + *len as usize).min(section.data.len());
            let ip = pe.image_base + u64::from(*rva);
            let size = frame_size(&section.data[start..end], ip, bitness, probe);
            frames.push((size, name.clone()));
        }
        frames.sort_unstable_by_key(|frame| std::cmp::Reverse(frame.0));
        assert!(
            frames.first().is_some_and(|(size, _)| *size > 256),
            "no frame found at all: the prologue reader is broken"
        );
        eprintln!(
            "{}: largest stack frames {:?}",
            image.arch.name,
            &frames[..3.min(frames.len())]
        );
        frames
            .iter()
            .filter(|(size, _)| *size > budget)
            .map(|(size, name)| {
                format!("{name} sets up a {size}-byte stack frame (budget {budget})")
            })
            .collect()
    });
}

/// tcpip.sys carries none of the test driver's code (the TDI client side and the echo logic
/// are only reached from tdiecho.sys's `DriverEntry`), and tdiecho.sys none of the transport.
#[test]
fn each_image_carries_only_its_own_code() {
    check_all(|image, _| {
        let foreign: &[&str] = if image.pdb_name == "tcpip.pdb" {
            &["tcpip::echo::", "tcpip::nt::tdi_client::"]
        } else {
            &[
                "tcpip::core::",
                "tcpip::dispatch::",
                "tcpip::ndis::",
                "smoltcp::",
            ]
        };
        image
            .pdb
            .procedures
            .iter()
            .filter(|(name, _, _)| foreign.iter().any(|f| name.contains(f)))
            .map(|(name, _, _)| format!("{name} does not belong in this image"))
            .collect()
    });
}
