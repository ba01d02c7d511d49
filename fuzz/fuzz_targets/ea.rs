//! `tdi::ea`: the EA chain of `IRP_MJ_CREATE` (`CreateRequest::parse`, `EaEntries`).
//!
//! Invariants: every entry the walk yields lies inside the input, in order and without
//! overlap; a parsed request, emitted as AFD would send it, parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpip::tdi::CreateRequest;
use tcpip::tdi::ea::EaEntries;

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    let mut last = range.start;
    for entry in EaEntries::new(data) {
        let Ok(entry) = entry else { break };
        for part in [entry.name, entry.value] {
            let part = part.as_ptr_range();
            assert!(range.start <= part.start && part.end <= range.end);
            assert!(part.start >= last, "entries move forward");
        }
        last = entry.value.as_ptr_range().end;
    }
    if let Ok(request) = CreateRequest::parse(data) {
        let mut out = vec![0u8; request.buffer_len()];
        assert_eq!(request.emit(&mut out), Ok(out.len()));
        assert_eq!(CreateRequest::parse(&out), Ok(request));
        if !out.is_empty() {
            assert!(request.emit(&mut out[1..]).is_err(), "short buffer refused");
        }
    }
});
