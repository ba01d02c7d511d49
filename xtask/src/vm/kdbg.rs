//! ReactOS's built-in kernel debugger (KDBG) on COM1: recognising its prompt, asking it what a
//! developer asks after a crash, and turning the answer into a report in which every address
//! inside our `tcpip.sys` is named with our PDB.
//!
//! A bugcheck prints `*** Fatal System Error: 0xCODE` and its four parameters before KDBG takes
//! over; a failed assertion in a debug build asks `Break repeatedly, break Once, Ignore, ...
//! (boipt)?`, answered `o` to get a prompt. At `kdb:> ` the runner sends [`COMMANDS`] one by one;
//! KDBG pages long output with a `--- Press q to abort ...` line that any key continues.

use crate::vm::symbols::Symbols;
use std::fmt::Write as _;

/// What the runner asks KDBG, in order: the backtrace, the registers, the current thread.
pub const COMMANDS: [&str; 3] = ["bt", "regs", "thread"];

/// KDBG's command prompt.
pub fn is_prompt(partial: &str) -> bool {
    partial.trim_end().ends_with("kdb:>")
}

/// KDBG's pager, or a debug build's assertion question (answered to get to the prompt).
pub fn is_pager(partial: &str) -> bool {
    partial.contains("Press q to abort") || partial.contains("any other key to continue")
}

/// A debug build's assertion question: `... (boipt)?`. The answer is `o`: break once.
pub fn is_assertion_question(partial: &str) -> bool {
    partial.trim_end().ends_with("(boipt)?")
}

/// A line that means the kernel is in trouble.
pub fn is_trouble(line: &str) -> bool {
    line.contains("*** Fatal System Error")
        || line.contains("*** STOP")
        || line.contains("Entered debugger")
        || line.contains("Assertion")
        || line.contains("KeBugCheck")
        || line.contains("tcpip: panic")
}

/// What KDBG answered, command by command.
#[derive(Default, Debug)]
pub struct Session {
    answers: Vec<(String, Vec<String>)>,
}

impl Session {
    /// Records what `command` printed.
    pub fn record(&mut self, command: &str, output: Vec<String>) {
        self.answers.push((command.to_string(), output));
    }
}

/// Where our driver was loaded, from the loader's `Loading: ...\tcpip.sys at F6635000 with 83
/// pages` line: (base, size in bytes).
pub fn driver_range(lines: &[String]) -> Option<(u64, u64)> {
    lines.iter().rev().find_map(|line| {
        let at = line.find("\\tcpip.sys at ")?;
        let mut words = line[at..].split_whitespace().skip(2);
        let base = u64::from_str_radix(words.next()?, 16).ok()?;
        let pages = u64::from_str_radix(words.nth(1)?, 16).ok()?;
        Some((base, pages * 4096))
    })
}

/// The bugcheck code and parameters printed before the debugger took over, if any.
pub fn bugcheck(lines: &[String]) -> Option<String> {
    let at = lines
        .iter()
        .rposition(|l| l.contains("Fatal System Error"))?;
    let mut text = lines[at].trim().to_string();
    if let Some(next) = lines.get(at + 1)
        && next.trim_start().starts_with('(')
    {
        text.push(' ');
        text.push_str(next.trim());
    }
    Some(text)
}

/// The crash report: the bugcheck line, our driver's own panic line, then each KDBG answer with
/// every address inside `range` (and every `<tcpip.sys:offset>`) named with `symbols`.
pub fn report(
    lines: &[String],
    session: &Session,
    range: Option<(u64, u64)>,
    symbols: Option<&Symbols>,
) -> String {
    let mut out = String::new();
    match bugcheck(lines) {
        Some(text) => writeln!(out, "bugcheck: {text}").unwrap_or(()),
        None => writeln!(out, "no bugcheck line: the debugger was entered otherwise").unwrap_or(()),
    }
    for line in lines
        .iter()
        .filter(|l| l.contains("tcpip: panic") || l.contains("Assertion"))
    {
        writeln!(out, "{}", line.trim()).unwrap_or(());
    }
    match range {
        Some((base, size)) => {
            writeln!(out, "tcpip.sys loaded at {base:#x}, {size:#x} bytes").unwrap_or(())
        }
        None => writeln!(out, "tcpip.sys: no load line seen").unwrap_or(()),
    }
    for (command, output) in &session.answers {
        writeln!(out, "kdb:> {command}").unwrap_or(());
        for line in output {
            let names = symbolize(line, range, symbols);
            if names.is_empty() {
                writeln!(out, "  {line}").unwrap_or(());
            } else {
                writeln!(out, "  {line}    <= {}", names.join("; ")).unwrap_or(());
            }
        }
    }
    out
}

/// The names of the addresses in `line` that fall inside our driver.
fn symbolize(line: &str, range: Option<(u64, u64)>, symbols: Option<&Symbols>) -> Vec<String> {
    let mut names = Vec::new();
    let name = |rva: u64| -> String {
        let described = u32::try_from(rva)
            .ok()
            .and_then(|rva| symbols.and_then(|s| s.describe(rva)));
        described.unwrap_or_else(|| format!("tcpip.sys+{rva:#x}"))
    };
    // `<tcpip.sys:1a2b>` and `<tcpip.sys:1a2b (...)>`: KDBG's module-relative form.
    let mut rest = line;
    while let Some(at) = rest.find("tcpip.sys:") {
        rest = &rest[at + "tcpip.sys:".len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
        if let Ok(rva) = u64::from_str_radix(&digits, 16) {
            names.push(name(rva));
        }
    }
    if let Some((base, size)) = range {
        for word in line.split(|c: char| !c.is_ascii_hexdigit() && c != 'x') {
            let digits = word.trim_start_matches("0x");
            if digits.len() < 6 || digits.len() > 16 {
                continue;
            }
            if let Ok(address) = u64::from_str_radix(digits, 16)
                && address >= base
                && address - base < size
            {
                names.push(name(address - base));
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn prompts_are_recognised() {
        assert!(is_prompt("kdb:> "));
        assert!(!is_prompt("kdb:> bt"));
        assert!(is_pager(
            "--- Press q to abort, any other key to continue ---"
        ));
        assert!(is_assertion_question(
            "Break repeatedly, break Once, Ignore, terminate Process or terminate Thread (boipt)? "
        ));
    }

    #[test]
    fn the_load_line_gives_the_driver_range() {
        let log = lines(
            "(/ntoskrnl/mm/ARM3/sysldr.c:170) Loading: \\SystemRoot\\System32\\drivers\\afd.sys at F7054000 with 36 pages\n\
             (/ntoskrnl/mm/ARM3/sysldr.c:170) Loading: \\SystemRoot\\System32\\drivers\\tcpip.sys at F6635000 with 1c pages",
        );
        assert_eq!(driver_range(&log), Some((0xF663_5000, 0x1c * 4096)));
        assert_eq!(driver_range(&lines("nothing")), None);
    }

    #[test]
    fn bugcheck_code_and_parameters_are_found() {
        let log = lines(
            "before\n*** Fatal System Error: 0x20544350\n                       (0x0000002A,0xF6640000,0x00000010,0xF5E1C9B4)\n",
        );
        assert_eq!(
            bugcheck(&log).as_deref(),
            Some(
                "*** Fatal System Error: 0x20544350 (0x0000002A,0xF6640000,0x00000010,0xF5E1C9B4)"
            )
        );
    }

    #[test]
    fn addresses_inside_the_driver_are_named_and_others_are_not() {
        let range = Some((0xF663_5000, 0x1c000));
        let names = symbolize("<tcpip.sys:1a2b>  F6636010 80401234", range, None);
        assert_eq!(names, vec!["tcpip.sys+0x1a2b", "tcpip.sys+0x1010"]);
        assert!(symbolize("<ntoskrnl.exe:1234> 80401234", range, None).is_empty());
    }

    #[test]
    fn the_report_has_the_bugcheck_and_each_answer() {
        let log = lines(
            "Loading: \\SystemRoot\\System32\\drivers\\tcpip.sys at F6635000 with 1c pages\n*** Fatal System Error: 0x0000000A\n",
        );
        let mut session = Session::default();
        session.record("bt", vec!["Frame:    Eip:".into(), "<tcpip.sys:10>".into()]);
        let text = report(&log, &session, driver_range(&log), None);
        assert!(
            text.contains("bugcheck: *** Fatal System Error: 0x0000000A"),
            "{text}"
        );
        assert!(text.contains("kdb:> bt"), "{text}");
        assert!(
            text.contains("<tcpip.sys:10>    <= tcpip.sys+0x10"),
            "{text}"
        );
    }

    /// COM1 of a real boot: a driver built to panic in DriverEntry (an out-of-bounds index),
    /// the bugcheck, and the runner's KDBG session (escape bytes removed).
    const REAL_PANIC: &str = include_str!("testdata/kdbg-panic.log");

    #[test]
    fn a_real_kdbg_session_is_understood() {
        let log = lines(REAL_PANIC);
        let range = driver_range(&log);
        assert_eq!(range, Some((0xF668_E000, 0x1c000)));
        assert_eq!(
            bugcheck(&log).as_deref(),
            Some(
                "*** Fatal System Error: 0x20544350 (0x0000004E,0xF66A78BA,0x0000000D,0xF71D0D84)"
            )
        );
        let prompts = log.iter().filter(|l| is_prompt(l)).count()
            + log.iter().filter(|l| l.starts_with("kdb:> ")).count();
        assert!(prompts >= COMMANDS.len(), "{prompts} prompts");
        let frames: Vec<String> = log.iter().flat_map(|l| symbolize(l, range, None)).collect();
        // The panic handler, core's panic path, then DriverEntry: every frame of ours is named.
        for rva in ["0x168c7", "0x16dd2", "0x16eab", "0x1af5"] {
            assert!(frames.contains(&format!("tcpip.sys+{rva}")), "{frames:?}");
        }
    }
}
