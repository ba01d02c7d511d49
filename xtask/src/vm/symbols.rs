//! Addresses inside our `tcpip.sys` named with our PDB: function + offset, and the source line
//! where the PDB has one. KDBG reads ReactOS's own symbol format, not PDBs, so it prints our
//! frames as bare addresses or `<tcpip.sys:offset>`.

use crate::{Error, Result};
use pdb::FallibleIterator;
use std::path::Path;

/// One function of the image.
struct Function {
    rva: u32,
    len: u32,
    name: String,
    /// (rva, file, line) for the function's line records, sorted by rva.
    lines: Vec<(u32, String, u32)>,
}

/// The functions of one PDB, sorted by RVA.
pub struct Symbols {
    functions: Vec<Function>,
}

impl Symbols {
    /// Reads the procedures (with their line records) of every module of `pdb_path`, and the
    /// public functions that have none (naked functions).
    pub fn load(pdb_path: &Path) -> Result<Self> {
        read(pdb_path).map_err(|e| Error(format!("cannot read {}: {e}", pdb_path.display())))
    }

    /// `function+0xoff (file:line)` for an image-relative address, or `None` outside every
    /// function.
    pub fn describe(&self, rva: u32) -> Option<String> {
        let index = self
            .functions
            .partition_point(|f| f.rva <= rva)
            .checked_sub(1)?;
        let function = &self.functions[index];
        let offset = rva - function.rva;
        if offset >= function.len.max(1) {
            return None;
        }
        let mut text = format!("{}+{offset:#x}", function.name);
        let line = function
            .lines
            .iter()
            .rev()
            .find(|(start, _, _)| *start <= rva);
        if let Some((_, file, line)) = line {
            text.push_str(&format!(" ({file}:{line})"));
        }
        Some(text)
    }
}

fn read(path: &Path) -> pdb::Result<Symbols> {
    let mut pdb = pdb::PDB::open(std::fs::File::open(path)?)?;
    let address_map = pdb.address_map()?;
    let strings = pdb.string_table()?;
    let dbi = pdb.debug_information()?;
    let mut functions = Vec::new();
    let mut modules = dbi.modules()?;
    while let Some(module) = modules.next()? {
        let Some(info) = pdb.module_info(&module)? else {
            continue;
        };
        let program = info.line_program()?;
        let mut symbols = info.symbols()?;
        while let Some(symbol) = symbols.next()? {
            let Ok(pdb::SymbolData::Procedure(procedure)) = symbol.parse() else {
                continue;
            };
            let Some(rva) = procedure.offset.to_rva(&address_map) else {
                continue;
            };
            let mut lines = Vec::new();
            let mut records = program.lines_for_symbol(procedure.offset);
            while let Some(record) = records.next()? {
                let Some(at) = record.offset.to_rva(&address_map) else {
                    continue;
                };
                let file = program.get_file_info(record.file_index)?;
                let name = strings.get(file.name)?.to_string().into_owned();
                lines.push((at.0, short_path(&name), record.line_start));
            }
            lines.sort_by_key(|(at, _, _)| *at);
            functions.push(Function {
                rva: rva.0,
                len: procedure.len,
                name: procedure.name.to_string().into_owned(),
                lines,
            });
        }
    }
    // Naked functions (`__chkstk`, the guarded user copy) have no procedure record, only a
    // public symbol: they span up to the next function.
    let publics = pdb.global_symbols()?;
    let mut iter = publics.iter();
    let mut naked = Vec::new();
    while let Some(symbol) = iter.next()? {
        let Ok(pdb::SymbolData::Public(public)) = symbol.parse() else {
            continue;
        };
        let Some(rva) = public.offset.to_rva(&address_map) else {
            continue;
        };
        if public.function && !functions.iter().any(|f: &Function| f.rva == rva.0) {
            naked.push(Function {
                rva: rva.0,
                len: 0,
                name: public.name.to_string().into_owned(),
                lines: Vec::new(),
            });
        }
    }
    functions.extend(naked);
    functions.sort_by_key(|f| f.rva);
    for index in 0..functions.len() {
        if functions[index].len == 0 {
            let next = functions.get(index + 1).map_or(u32::MAX, |f| f.rva);
            functions[index].len = next - functions[index].rva;
        }
    }
    Ok(Symbols { functions })
}

/// A source path from the build machine, shortened to the part a reader can find: from `src/`
/// for the driver's own files, from the crate folder for dependencies and the standard library.
fn short_path(path: &str) -> String {
    let path = path.replace('\\', "/");
    for marker in ["/registry/src/", "/library/", "/src/"] {
        if let Some(at) = path.rfind(marker) {
            let tail = &path[at + 1..];
            return if marker == "/registry/src/" {
                // registry/src/<index>/<crate-version>/...: keep from the crate on.
                tail.splitn(4, '/').nth(3).unwrap_or(tail).to_string()
            } else {
                tail.to_string()
            };
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shortened_to_what_a_reader_can_find() {
        assert_eq!(
            short_path("/work/main/src/core/state.rs"),
            "src/core/state.rs"
        );
        assert_eq!(
            short_path(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/smoltcp-0.14.0/src/iface/mod.rs"
            ),
            "smoltcp-0.14.0/src/iface/mod.rs"
        );
        assert_eq!(
            short_path("/rustc/abc/library\\core\\src\\panicking.rs"),
            "library/core/src/panicking.rs"
        );
    }
}
