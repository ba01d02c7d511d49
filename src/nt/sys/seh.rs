//! The one copy routine that may touch user-mode memory: `rep movsb` under a structured
//! exception handler of its own, on each kernel architecture.
//!
//! Rust has no `__try`, so the routine is a naked function that registers its handler itself:
//!
//! - **x86** (frame-based SEH): the routine pushes an `EXCEPTION_REGISTRATION_RECORD`
//!   (`Next` = `fs:[0]`, `Handler`) on its stack, links it at `fs:[0]`, copies, and unlinks it.
//!   `RtlDispatchException` walks `fs:[0]` and calls the handler, which checks that the fault is
//!   the routine's own `rep movsb` and resumes at the routine's recovery label with `EAX` = the
//!   exception code. Nothing else is changed in the context: the stack pointer at the fault is
//!   the record's address, which is what the recovery path expects (it unlinks the record and
//!   pops it), so no edited trap frame is needed.
//!   ReactOS checks that a record lies inside the thread's stack and is 4-byte aligned (both
//!   hold: it is pushed on the stack) and does not check handlers against /SAFESEH tables.
//! - **x64** (table-based SEH): the routine has unwind data (`.seh_*` directives: two pushes)
//!   with an exception handler (`.seh_handler …, @except`), which the dispatcher finds through
//!   `.pdata` and calls for a fault at any address inside the routine; the handler checks the
//!   faulting `Rip` and resumes at the recovery label with `RAX` = the exception code.
//!
//! In both, the handler lives inside the routine's own body (after its `ret`), so its labels
//! are local to one function (on x64 the handler's label is named from the routine's own
//! symbol: `.seh_handler` ignores numeric labels); it ignores unwinds
//! (`ExceptionContinueSearch`) and any exception not raised by the copy instruction itself.
//! The x86 routine runs on the real ReactOS kernel in the VM scenario `userbuf`; the x64 one
//! under Wine's x64 exception dispatch in `tests/wine_smoke.rs` (which links this file into a
//! user-mode probe).

/// Copies `len` bytes from `src` to `dst`, catching any exception the copy raises. Returns 0,
/// or the exception code (`STATUS_ACCESS_VIOLATION` for an unmapped or read-only page); bytes
/// before the faulting one may have been copied.
///
/// # Safety
/// Every byte of `dst` and `src` the copy reaches is either memory the caller may access or
/// a user-mode address (below `MmUserProbeAddress`), whose faults are caught; the ranges do not
/// overlap, or are the same single byte (a write probe). IRQL < DISPATCH_LEVEL when a user-mode
/// address is involved (a page fault on pageable user memory at DISPATCH_LEVEL is a bugcheck,
/// caught or not).
#[cfg(target_arch = "x86")]
#[unsafe(naked)]
pub unsafe extern "C" fn guarded_copy(dst: *mut u8, src: *const u8, len: usize) -> i32 {
    // SAFETY: the registration record lives on this routine's stack from the link to the
    // unlink, and fs:[0] is restored on both paths; ESI/EDI (callee-saved) are restored, no
    // other callee-saved register is touched; the handler follows the cdecl `_except_handler`
    // contract.
    core::arch::naked_asm!(
        "pushl %esi",
        "pushl %edi",
        "movl 12(%esp), %edi", // dst
        "movl 16(%esp), %esi", // src
        "movl 20(%esp), %ecx", // len
        "pushl $5f",           // Handler
        "pushl %fs:0",         // Next
        "movl %esp, %fs:0",    // link the record
        "xorl %eax, %eax",
        "cld",
        "2:",
        "rep movsb",
        "3:", // recovery: EAX = 0 or the exception code, ESP = the record
        "movl (%esp), %ecx",
        "movl %ecx, %fs:0", // unlink it
        "addl $8, %esp",
        "popl %edi",
        "popl %esi",
        "ret",
        // EXCEPTION_DISPOSITION handler(EXCEPTION_RECORD *, void *EstablisherFrame,
        //                               CONTEXT *, void *DispatcherContext), cdecl.
        "5:",
        "movl 4(%esp), %eax", // ExceptionRecord
        "testl $6, 4(%eax)",  // ExceptionFlags & (EXCEPTION_UNWINDING | EXCEPTION_EXIT_UNWIND)
        "jnz 6f",
        "movl 12(%esp), %ecx",  // ContextRecord
        "cmpl $2b, 0xb8(%ecx)", // Context.Eip: the copy instruction
        "jne 6f",
        "movl (%eax), %eax",     // ExceptionCode
        "movl %eax, 0xb0(%ecx)", // Context.Eax
        "movl $3b, 0xb8(%ecx)",  // Context.Eip: the recovery label
        "xorl %eax, %eax",       // ExceptionContinueExecution
        "ret",
        "6:",
        "movl $1, %eax", // ExceptionContinueSearch
        "ret",
        options(att_syntax),
    )
}

/// Copies `len` bytes from `src` to `dst`, catching any exception the copy raises. Returns 0,
/// or the exception code (`STATUS_ACCESS_VIOLATION` for an unmapped or read-only page); bytes
/// before the faulting one may have been copied.
///
/// # Safety
/// Every byte of `dst` and `src` the copy reaches is either memory the caller may access or
/// a user-mode address (below `MmUserProbeAddress`), whose faults are caught; the ranges do not
/// overlap, or are the same single byte (a write probe). IRQL < DISPATCH_LEVEL when a user-mode
/// address is involved.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub unsafe extern "C" fn guarded_copy(dst: *mut u8, src: *const u8, len: usize) -> i32 {
    // SAFETY: RSI/RDI are callee-saved in the x64 convention and restored on both paths; the
    // unwind data describes the two pushes, so the dispatcher can find the handler and unwind
    // through the routine; the handler follows the x64 language-handler contract.
    core::arch::naked_asm!(
        ".seh_proc {name}",
        // The handler is named from the routine's own (unique) symbol: `.seh_handler` ignores
        // numeric labels.
        ".seh_handler .L{name}_handler, @except",
        "pushq %rsi",
        ".seh_pushreg %rsi",
        "pushq %rdi",
        ".seh_pushreg %rdi",
        ".seh_endprologue",
        "movq %rcx, %rdi", // dst
        "movq %rdx, %rsi", // src
        "movq %r8, %rcx",  // len
        "xorl %eax, %eax",
        "cld",
        "2:",
        "rep movsb",
        "3:", // recovery: EAX = 0 or the exception code
        "popq %rdi",
        "popq %rsi",
        "ret",
        // EXCEPTION_DISPOSITION handler(EXCEPTION_RECORD *, u64 EstablisherFrame,
        //                               CONTEXT *, DISPATCHER_CONTEXT *).
        // The labels' addresses are absolute immediates (relocated), not RIP-relative
        // operands: the image check takes those for data references.
        ".L{name}_handler:",
        "testl $0x66, 4(%rcx)", // ExceptionFlags & EXCEPTION_UNWIND
        "jnz 6f",
        "movabsq $2b, %rax",
        "cmpq %rax, 0xf8(%r8)", // Context.Rip: the copy instruction
        "jne 6f",
        "movl (%rcx), %eax",    // ExceptionCode
        "movq %rax, 0x78(%r8)", // Context.Rax
        "movabsq $3b, %rax",
        "movq %rax, 0xf8(%r8)", // Context.Rip: the recovery label
        "xorl %eax, %eax",      // ExceptionContinueExecution
        "ret",
        "6:",
        "movl $1, %eax", // ExceptionContinueSearch
        "ret",
        ".seh_endproc",
        name = sym guarded_copy,
        options(att_syntax),
    )
}
