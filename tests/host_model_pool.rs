//! Host model self-tests: pool tracking through the global allocator and
//! `ExAllocatePoolWithTag`, fault injection, the leak report, debugger output, and the
//! verifier's verdict at teardown.

mod host_model_support;

use host_model_support::*;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use tcpip::host::{
    Config, Entry, FaultInjection, Kernel, KernelHandle, PoolRecord, Rule, tag_name,
};
use tcpip::nt::NtStatus;
use tcpip::nt::pool::{TAG, try_box, try_vec};
use tcpip::nt::sys;
use tcpip::nt::types::*;

/// What the pool handlers do, and what they leave for the test.
#[derive(Default)]
struct Ctx {
    /// The request: see `pool_request`.
    op: AtomicU32,
    /// A block the driver keeps.
    kept: AtomicPtr<[u8; 40]>,
    /// A `Vec` buffer the driver keeps (pointer, capacity).
    vec: AtomicPtr<u8>,
    vec_capacity: AtomicU32,
    log: Log,
}

const KEEP_BOX: u32 = 1;
const KEEP_VEC_WITHOUT_SITE: u32 = 2;
const THREE_BOXES: u32 = 3;
const GROW_VEC: u32 = 4;
const EX_POOL: u32 = 5;
const PRINT: u32 = 6;
const WORK_ITEM: u32 = 7;
const PRINT_INFO: u32 = 8;
const BIG_VECS: u32 = 9;
/// The size of each of `BIG_VECS`' three blocks.
const BIG: usize = 400 * 1024;

const EX_TAG: u32 = u32::from_le_bytes(*b"Tst1");

/// The line of the `try_box` call in `pool_request`, checked against the recorded site.
static KEEP_BOX_LINE: AtomicU32 = AtomicU32::new(0);

unsafe fn pool_request(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the test installed a Ctx that outlives the driver.
    let ctx = unsafe { context::<Ctx>(device) };
    // SAFETY: a live IRP in this driver.
    if unsafe { current_stack(irp) }.MajorFunction != IRP_MJ_INTERNAL_DEVICE_CONTROL {
        // SAFETY: ours to complete.
        return unsafe { complete(irp, NtStatus::SUCCESS, 0) };
    }
    match ctx.op.load(Ordering::Acquire) {
        KEEP_BOX => {
            KEEP_BOX_LINE.store(line!() + 1, Ordering::Release);
            let kept = try_box([7u8; 40]).expect("no fault injected");
            ctx.kept.store(Box::into_raw(kept), Ordering::Release);
        }
        KEEP_VEC_WITHOUT_SITE => {
            let mut vec = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(64));
            ctx.vec.store(vec.as_mut_ptr(), Ordering::Release);
            ctx.vec_capacity
                .store(vec.capacity() as u32, Ordering::Release);
        }
        THREE_BOXES => {
            for _ in 0..3 {
                match try_box(0u64) {
                    Ok(_) => ctx.log.push(1),
                    Err(status) => ctx.log.push(if status == NtStatus::INSUFFICIENT_RESOURCES {
                        0
                    } else {
                        9
                    }),
                }
            }
        }
        GROW_VEC => {
            let mut vec: Vec<u32> = try_vec(1).expect("no fault injected");
            for i in 0..1000 {
                vec.push(i);
            }
            let mut vec = std::mem::ManuallyDrop::new(vec);
            ctx.vec.store(vec.as_mut_ptr().cast(), Ordering::Release);
            ctx.vec_capacity
                .store(vec.capacity() as u32 * 4, Ordering::Release);
        }
        EX_POOL => {
            // SAFETY: allocating and freeing a pool block with one tag.
            unsafe {
                let block = sys::ExAllocatePoolWithTag(NON_PAGED_POOL, 24, EX_TAG);
                ctx.log.push(u32::from(!block.is_null()));
                ctx.log.push(u32::from((block as usize).is_multiple_of(16)));
                let pool = KernelHandle::current().pool_records();
                ctx.log.push(u32::from(pool.iter().any(|r| {
                    r.address == block as usize && r.tag == EX_TAG && r.size == 24
                })));
                sys::ExFreePoolWithTag(block, EX_TAG);
            }
        }
        PRINT => {
            // SAFETY: "%s" with a NUL-terminated string.
            unsafe {
                sys::DbgPrintEx(
                    0,
                    0,
                    c"%s".as_ptr().cast(),
                    c"tcpip: hello\n".as_ptr().cast(),
                )
            };
        }
        BIG_VECS => {
            // Three blocks, all held until the end: the third may not fit.
            let mut held = Vec::new();
            for _ in 0..3 {
                match try_vec::<u8>(BIG) {
                    Ok(block) => {
                        held.push(block);
                        ctx.log.push(1);
                    }
                    Err(_) => ctx.log.push(0),
                }
            }
        }
        PRINT_INFO => {
            // SAFETY: "%s" with a NUL-terminated string; level 3 is DPFLTR_INFO_LEVEL.
            unsafe {
                sys::DbgPrintEx(
                    80,
                    3,
                    c"%s".as_ptr().cast(),
                    c"tcpip: detail\n".as_ptr().cast(),
                )
            };
        }
        WORK_ITEM => {
            // SAFETY: a device of this driver.
            let item = unsafe { sys::IoAllocateWorkItem(device) };
            ctx.log.push(u32::from(!item.is_null()));
            if !item.is_null() {
                // SAFETY: a live item that is not queued.
                unsafe { sys::IoFreeWorkItem(item) };
            }
        }
        _ => {}
    }
    // SAFETY: ours to complete.
    unsafe { complete(irp, NtStatus::SUCCESS, 0) }
}

fn send(kernel: &KernelHandle, fake: &Fake, ctx: &Ctx, op: u32) {
    ctx.op.store(op, Ordering::Release);
    let irp = request(kernel, IRP_MJ_INTERNAL_DEVICE_CONTROL, 0);
    let result = kernel.call_driver_sync(fake.device, irp);
    assert_eq!(result.status, NtStatus::SUCCESS);
}

fn setup(kernel: &Kernel, ctx: &Ctx) -> Fake {
    let fake = Fake::load(kernel);
    fake.handle(pool_request, ctx);
    fake
}

fn only_record(kernel: &KernelHandle) -> PoolRecord {
    let records = kernel.pool_records();
    assert_eq!(records.len(), 1, "{records:?}");
    records.into_iter().next().unwrap()
}

#[test]
fn driver_allocations_are_tracked_with_their_call_site() {
    let kernel = kernel(1);
    let ctx = Ctx::default();
    let fake = setup(&kernel, &ctx);
    assert!(
        kernel.pool_records().is_empty(),
        "the fake driver keeps nothing"
    );
    let before = kernel.pool_stats();
    let test_box = Box::new([0u8; 100]);
    assert_eq!(
        kernel.pool_stats().live_blocks,
        before.live_blocks,
        "test code is not tracked"
    );
    drop(test_box);

    send(&kernel, &fake, &ctx, KEEP_BOX);
    let record = only_record(&kernel);
    assert_eq!(record.tag, TAG);
    assert_eq!(tag_name(record.tag), "Rtcp");
    assert_eq!(record.size, 40);
    assert_eq!(record.address, ctx.kept.load(Ordering::Acquire) as usize);
    let location = record
        .site
        .location
        .expect("the nt pool wrapper notes the call site");
    assert!(
        location.file().ends_with("host_model_pool.rs"),
        "{location}"
    );
    assert_eq!(location.line(), KEEP_BOX_LINE.load(Ordering::Acquire));
    assert_eq!(
        record.site.entry,
        Entry::Dispatch {
            major: IRP_MJ_INTERNAL_DEVICE_CONTROL,
            minor: 0
        }
    );
    let stats = kernel.pool_stats();
    assert_eq!(stats.live_bytes, 40);
    assert_eq!(stats.by_tag.get(&TAG), Some(&(1, 40)));

    // Freed by the test: the tracked block leaves the tracker.
    // SAFETY: the block the driver handed over.
    drop(unsafe { Box::from_raw(ctx.kept.load(Ordering::Acquire)) });
    assert!(kernel.pool_records().is_empty());
    assert!(fake.driver.unload().is_clean());
}

#[test]
fn allocations_without_a_noted_site_are_attributed_to_the_entry_point() {
    let kernel = kernel(1);
    let ctx = Ctx::default();
    let fake = setup(&kernel, &ctx);
    send(&kernel, &fake, &ctx, KEEP_VEC_WITHOUT_SITE);
    let record = only_record(&kernel);
    assert_eq!(record.site.location, None);
    assert!(matches!(record.site.entry, Entry::Dispatch { .. }));
    assert_eq!(
        record.site.to_string(),
        "in dispatch IRP_MJ_INTERNAL_DEVICE_CONTROL (minor 0x00)"
    );
    let capacity = ctx.vec_capacity.load(Ordering::Acquire) as usize;
    // SAFETY: the Vec the driver handed over, with its capacity.
    drop(unsafe { Vec::from_raw_parts(ctx.vec.load(Ordering::Acquire), 0, capacity) });
    assert!(fake.driver.unload().is_clean());
}

#[test]
fn a_growing_vec_stays_one_tracked_block() {
    let kernel = kernel(1);
    let ctx = Ctx::default();
    let fake = setup(&kernel, &ctx);
    send(&kernel, &fake, &ctx, GROW_VEC);
    let record = only_record(&kernel);
    let bytes = ctx.vec_capacity.load(Ordering::Acquire) as usize;
    assert_eq!(record.size, bytes);
    assert_eq!(record.address, ctx.vec.load(Ordering::Acquire) as usize);
    assert!(
        kernel.pool_stats().allocations > 1,
        "each growth is an allocation"
    );
    // SAFETY: the Vec the driver handed over, with its capacity.
    drop(unsafe {
        Vec::from_raw_parts(ctx.vec.load(Ordering::Acquire).cast::<u32>(), 0, bytes / 4)
    });
    assert!(fake.driver.unload().is_clean());
}

#[test]
fn ex_allocate_pool_with_tag_is_tracked_under_its_tag() {
    let kernel = kernel(1);
    let ctx = Ctx::default();
    let fake = setup(&kernel, &ctx);
    send(&kernel, &fake, &ctx, EX_POOL);
    assert_eq!(ctx.log.entries(), vec![1, 1, 1]);
    assert!(kernel.pool_records().is_empty());
    assert!(fake.driver.unload().is_clean());
}

#[test]
fn fault_injection_fails_the_nth_allocation() {
    let kernel = kernel(1);
    let ctx = Ctx::default();
    let fake = setup(&kernel, &ctx);
    kernel.set_fault_injection(FaultInjection::FailNth(2));
    send(&kernel, &fake, &ctx, THREE_BOXES);
    assert_eq!(ctx.log.entries(), vec![1, 0, 1]);
    assert_eq!(kernel.pool_stats().injected_failures, 1);
    kernel.set_fault_injection(FaultInjection::FailNth(1));
    send(&kernel, &fake, &ctx, WORK_ITEM);
    assert_eq!(
        ctx.log.entries(),
        vec![1, 0, 1, 0],
        "IoAllocateWorkItem fails too"
    );
    kernel.set_fault_injection(FaultInjection::None);
    assert!(fake.driver.unload().is_clean());
}

/// The pass/fail pattern of 60 allocations under a seeded random policy.
fn random_pattern(seed: u64, percent: u8) -> Vec<u32> {
    let kernel = kernel(1);
    let ctx = Ctx::default();
    let fake = setup(&kernel, &ctx);
    kernel.set_fault_injection(FaultInjection::Random { seed, percent });
    for _ in 0..20 {
        send(&kernel, &fake, &ctx, THREE_BOXES);
    }
    kernel.set_fault_injection(FaultInjection::None);
    assert!(fake.driver.unload().is_clean());
    ctx.log.entries()
}

#[test]
fn seeded_random_fault_injection_is_deterministic() {
    let a = random_pattern(42, 50);
    assert_eq!(a.len(), 60);
    assert_eq!(a, random_pattern(42, 50), "same seed, same failures");
    assert_ne!(a, random_pattern(43, 50), "another seed, other failures");
    let failures = a.iter().filter(|&&x| x == 0).count();
    assert!((10..=50).contains(&failures), "about half fail: {failures}");
    assert!(random_pattern(7, 0).iter().all(|&x| x == 1));
    assert!(random_pattern(7, 100).iter().all(|&x| x == 0));
}

#[test]
fn the_leak_report_names_each_leaked_block() {
    let kernel = kernel(1);
    let ctx = Ctx::default();
    let fake = setup(&kernel, &ctx);
    send(&kernel, &fake, &ctx, KEEP_BOX);
    let report = fake.driver.unload();
    let leaks: Vec<_> = report.leaks_of(Rule::PoolLeak).collect();
    assert_eq!(leaks.len(), 1, "{report}");
    let line = KEEP_BOX_LINE.load(Ordering::Acquire);
    let detail = &leaks[0].detail;
    assert!(
        detail.starts_with("40 bytes tagged 'Rtcp' at 0x"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("host_model_pool.rs:{line}:")),
        "{detail}"
    );
    assert!(
        detail.contains("in dispatch IRP_MJ_INTERNAL_DEVICE_CONTROL"),
        "{detail}"
    );
    let violations = kernel.take_violations();
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].rule, Rule::PoolLeak);
    assert!(violations[0].message.contains(detail.as_str()));
    assert!(
        violations[0]
            .to_string()
            .starts_with("PoolLeak: 1 leaked item(s) at unload")
    );
    // SAFETY: the leaked block, freed now that the report was checked.
    drop(unsafe { Box::from_raw(ctx.kept.load(Ordering::Acquire)) });
}

#[test]
fn debugger_output_is_captured() {
    let kernel = kernel(1);
    let ctx = Ctx::default();
    let fake = setup(&kernel, &ctx);
    send(&kernel, &fake, &ctx, PRINT);
    assert_eq!(kernel.debug_output(), vec!["tcpip: hello".to_owned()]);
    assert_eq!(kernel.take_debug_output().len(), 1);
    assert!(kernel.debug_output().is_empty());
    assert!(fake.driver.unload().is_clean());
}

#[test]
fn the_debugger_shows_info_lines_only_when_the_mask_lets_them_through() {
    let kernel = kernel(1);
    let ctx = Ctx::default();
    let fake = setup(&kernel, &ctx);
    send(&kernel, &fake, &ctx, PRINT_INFO);
    assert!(
        kernel.debug_output().is_empty(),
        "info shown with a zero mask"
    );
    kernel.set_debug_print_mask(0x8);
    send(&kernel, &fake, &ctx, PRINT_INFO);
    assert_eq!(kernel.debug_output(), vec!["tcpip: detail".to_owned()]);
    assert!(fake.driver.unload().is_clean());
}

#[test]
#[should_panic(expected = "unexpected violation: SpinLockNotHeld")]
fn teardown_fails_on_an_unexpected_violation() {
    let _kernel = kernel(1);
    let mut lock: KSPIN_LOCK = 0;
    // SAFETY: a deliberate release of a lock that is not held (the model only reports it).
    unsafe { sys::KeReleaseSpinLock(&mut lock, 0) };
}

#[test]
#[should_panic(expected = "expected violation IrpCompletedTwice never fired")]
fn teardown_fails_when_an_expected_violation_never_fires() {
    let kernel = kernel(1);
    kernel.expect_violation(Rule::IrpCompletedTwice);
}

#[test]
fn an_expected_violation_does_not_fail_teardown() {
    let kernel = kernel(1);
    kernel.expect_violation(Rule::SpinLockNotHeld);
    let mut lock: KSPIN_LOCK = 0;
    // SAFETY: a deliberate release of a lock that is not held (the model only reports it).
    unsafe { sys::KeReleaseSpinLock(&mut lock, 0) };
}

/// The non-paged pool has a size, as on a real machine: an allocation that would go past it
/// fails with a status (and is counted), and freed blocks make room again.
#[test]
fn allocations_past_the_non_paged_pool_limit_fail_and_freed_bytes_return() {
    let kernel = Kernel::new(Config {
        processors: 1,
        nonpaged_pool_limit: Some(1024 * 1024),
        ..Config::default()
    });
    let ctx = Ctx::default();
    let fake = setup(&kernel, &ctx);
    let baseline = kernel.pool_stats().live_bytes;
    send(&kernel, &fake, &ctx, BIG_VECS);
    assert_eq!(
        ctx.log.entries(),
        vec![1, 1, 0],
        "the third 400 KiB block is past 1 MiB"
    );
    // Freed blocks made room again.
    send(&kernel, &fake, &ctx, BIG_VECS);
    assert_eq!(ctx.log.entries(), vec![1, 1, 0, 1, 1, 0]);
    let stats = kernel.pool_stats();
    assert_eq!(stats.limit_failures, 2, "{stats:?}");
    assert_eq!(stats.live_bytes, baseline, "{stats:?}");
    assert!(fake.driver.unload().is_clean());
}
