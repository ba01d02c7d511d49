//! The kernel runtime that `core`/`alloc` expect from their environment (kernel targets only).
//!
//! - [`PoolAllocator`], the `#[global_allocator]`: non-paged pool with the driver's one tag,
//!   [`TAG`].
//! - The panic handler: one `DbgPrintEx` line with file, line and message (component
//!   `DPFLTR_IHVNETWORK_ID`, `DPFLTR_ERROR_LEVEL`, which is printed whatever the filter mask),
//!   then `KeBugCheckEx(`[`BUGCHECK_RUST_PANIC`]`, ..)`.
//! - `_fltused`, which `core`'s float formatting references on `*-msvc` targets.
//! - The stack probes LLVM calls for frames larger than a page: `__chkstk` on x64 (probe only)
//!   and `_chkstk` on x86 (probe and move ESP), with the MSVC runtime's contracts.
//!
//! The x86 64-bit division and shift helpers (`_alldiv` & co.) are imported from ntoskrnl in
//! [`crate::nt::sys`].

use crate::nt::log::{self, Level, Message};
use crate::nt::pool::TAG;
use crate::nt::sys::{DbgPrintEx, ExAllocatePoolWithTag, ExFreePoolWithTag, KeBugCheckEx};
use crate::nt::types::NON_PAGED_POOL;
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

/// The bug check code of a Rust panic in the driver: 0x20544350.
///
/// Bit 29 is the "customer" bit of NT status-style codes, which no Microsoft bug check code
/// sets, and the low three bytes read `TCP` in ASCII. The parameters are
/// 1. the line of the panic (0 if unknown);
/// 2. a pointer to the source file name (UTF-8, not NUL-terminated; 0 if unknown);
/// 3. the length of that file name in bytes;
/// 4. a pointer to the NUL-terminated message that was printed with `DbgPrintEx` (it lives on
///    the panicking thread's stack, which a crash dump keeps).
pub const BUGCHECK_RUST_PANIC: u32 = 0x2054_4350;

/// `MEMORY_ALLOCATION_ALIGNMENT`: the alignment of every pool block (8 on x86, 16 on x64).
const POOL_ALIGN: usize = 2 * core::mem::size_of::<usize>();

/// The global allocator: `ExAllocatePoolWithTag(NonPagedPool, .., TAG)`.
///
/// Non-paged, so that `alloc` may be used at any IRQL ≤ DISPATCH_LEVEL. Requests with an
/// alignment above [`POOL_ALIGN`] over-allocate by the alignment, return the first aligned
/// address past the pool block's start, and keep the block's address in the word just below the
/// returned pointer, where `dealloc` finds it.
pub struct PoolAllocator;

#[global_allocator]
static GLOBAL: PoolAllocator = PoolAllocator;

// SAFETY: pool blocks are at least `size` bytes and `POOL_ALIGN`-aligned; larger alignments are
// served from an over-allocated block as described on the type, and `dealloc` frees exactly the
// block `alloc` obtained, with the same tag.
unsafe impl GlobalAlloc for PoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= POOL_ALIGN {
            // SAFETY: NonPagedPool may be allocated from at IRQL ≤ DISPATCH_LEVEL, the only
            // levels the driver runs Rust code at.
            return unsafe { ExAllocatePoolWithTag(NON_PAGED_POOL, layout.size(), TAG) }.cast();
        }
        let Some(total) = layout.size().checked_add(layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: as above.
        let block = unsafe { ExAllocatePoolWithTag(NON_PAGED_POOL, total, TAG) }.cast::<u8>();
        if block.is_null() {
            return block;
        }
        // `block` is POOL_ALIGN-aligned and the alignment is a larger power of two, so the
        // aligned address lies in `block + POOL_ALIGN ..= block + align`: it leaves room for the
        // back pointer below it and `size` bytes above it inside the `size + align` block.
        let offset = layout.align() - (block as usize & (layout.align() - 1));
        // SAFETY: `offset <= align`, so the result stays inside the block (see above).
        let aligned = unsafe { block.add(offset) };
        // SAFETY: the word below `aligned` is inside the block (offset ≥ POOL_ALIGN) and
        // usize-aligned, because `aligned` is.
        unsafe { aligned.cast::<*mut u8>().sub(1).write(block) };
        aligned
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let block = if layout.align() <= POOL_ALIGN {
            ptr
        } else {
            // SAFETY: `ptr` came from `alloc` with this layout, which stored the block's address
            // in the word just below it.
            unsafe { ptr.cast::<*mut u8>().sub(1).read() }
        };
        // SAFETY: `block` was returned by ExAllocatePoolWithTag with TAG and is freed once.
        unsafe { ExFreePoolWithTag(block.cast::<c_void>(), TAG) };
    }
}

/// Set by the first panic, so that a panic while reporting one bugchecks at once.
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Logs the panic and bugchecks with [`BUGCHECK_RUST_PANIC`]. Allocates nothing: the message
/// is formatted into a fixed buffer on the stack.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let (file, line) = info.location().map_or(("", 0), |l| (l.file(), l.line()));
    let mut message = Message::new();
    if !PANICKING.swap(true, Ordering::Relaxed) {
        // `Message` never fails; a `Display` impl that errors only cuts the text short.
        let _ = writeln!(message, "tcpip: panic at {file}:{line}: {}", info.message());
        let text = message.as_c_bytes();
        // SAFETY: "%s" consumes exactly one argument, and `text` is NUL-terminated and lives
        // across the call; DbgPrintEx may be called at any IRQL the driver runs at.
        unsafe {
            DbgPrintEx(
                log::COMPONENT,
                Level::Error.dpfltr_level(),
                c"%s".as_ptr().cast(),
                text.as_ptr(),
            )
        };
    }
    let text = message.as_c_bytes().as_ptr();
    // SAFETY: KeBugCheckEx never returns; its parameters are only recorded for the debugger.
    unsafe {
        KeBugCheckEx(
            BUGCHECK_RUST_PANIC,
            line as usize,
            file.as_ptr() as usize,
            file.len(),
            text as usize,
        )
    }
}

/// Tells the MSVC toolchain that floating point is in use; `core`'s float formatting refers to
/// it on `*-msvc` targets. Its value is the one the MSVC runtime gives it.
#[used]
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals, reason = "the MSVC runtime's symbol name")]
pub static _fltused: i32 = 0x9875;

/// The x64 stack probe LLVM calls for frames larger than a page, with the frame size in `RAX`.
///
/// It touches one byte in every page from the caller's `RSP` down to `RSP - RAX`, in order, so
/// that an overflowing frame hits the kernel stack's guard page instead of jumping over it. It
/// only probes: the caller then subtracts `RAX` from `RSP` itself. Only `R10`, `R11` and the
/// flags are changed, as the MSVC contract allows.
///
/// # Safety
/// Only to be called by compiler-generated prologues, with the frame size in `RAX`.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __chkstk() {
    // SAFETY: reads (never writes) the stack pages between the current stack pointer and the
    // new frame's bottom, and returns with every register but R10/R11 and the flags intact.
    core::arch::naked_asm!(
        "lea r10, [rsp + 8]", // the caller's RSP (skip our return address)
        "mov r11, r10",
        "sub r11, rax", // the lowest address of the caller's new frame
        "2:",
        "sub r10, 0x1000",
        "cmp r10, r11",
        "jb 3f",
        "test byte ptr [r10], 0", // touch the next page down
        "jmp 2b",
        "3:",
        "test byte ptr [r11], 0", // and the frame's bottom
        "ret",
    )
}

/// The x86 stack probe LLVM calls (`call __chkstk`, the C symbol of `_chkstk`) for frames
/// larger than a page, with the frame size in `EAX`.
///
/// It touches one byte in every page from the caller's `ESP` down to `ESP - EAX`, in order,
/// then, unlike the x64 probe, moves `ESP` there itself (with the MSVC runtime's contract) and
/// returns with `EAX` and every other register intact.
///
/// # Safety
/// Only to be called by compiler-generated prologues, with the frame size in `EAX`.
#[cfg(target_arch = "x86")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _chkstk() {
    // SAFETY: reads the stack pages between the current stack pointer and the new frame's
    // bottom, then switches ESP to that bottom with the return address pushed just below it,
    // as the caller's prologue expects; ECX and EAX are restored before returning.
    core::arch::naked_asm!(
        "push ecx",
        "lea ecx, [esp + 8]", // the caller's ESP (skip the saved ECX and our return address)
        "2:",
        "cmp eax, 0x1000",
        "jb 3f",
        "sub ecx, 0x1000",
        "test byte ptr [ecx], 0", // touch the next page down
        "sub eax, 0x1000",
        "jmp 2b",
        "3:",
        "sub ecx, eax", // ECX = the caller's new ESP
        "test byte ptr [ecx], 0",
        "lea eax, [esp + 4]", // EAX = the address of our return address
        "mov esp, ecx",
        "mov ecx, [eax - 4]",   // restore ECX
        "push dword ptr [eax]", // the return address, just below the new frame
        "sub eax, esp",         // restore EAX: entry ESP - (new ESP - 4) = the frame size
        "ret",
    )
}
