//! The tdiecho test driver (`tcpip::echo`, the `tdiecho.sys` image) loaded in the host model
//! next to the driver, through the same `DriverEntry`/`DriverUnload` glue as in ReactOS: it
//! opens `\Device\Tcp` with `ZwCreateFile`, registers its event handlers and echoes to Winsock
//! clients through the AFD model (4 × 1 MiB full duplex at once, checked by hash, then small
//! round trips that reuse each endpoint after its disconnect), with the verifier on;
//! both drivers then unload with a clean leak check.

mod echo_support;

use echo_support::{Env, loopback, stream_and_check};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tcpip::echo::{ENDPOINTS, EchoDriver, PORT};
use tcpip::host::winsock::Shutdown;
use tcpip::host::{FaultInjection, Rule};
use tcpip::nt::entry::{client_entry, loaded_client};
use tcpip::nt::types::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING};

/// tdiecho.sys's `DriverEntry`.
unsafe extern "system" fn tdiecho_entry(
    driver: *mut DRIVER_OBJECT,
    _registry: *const UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: forwarded from the model's loader.
    unsafe { client_entry::<EchoDriver>(driver) }
}

#[test]
fn the_echo_driver_serves_winsock_clients_through_events() {
    let env = Env::start("tdiecho: echo", 2, FaultInjection::None);
    let tdiecho = env
        .kernel
        .handle()
        .load_driver(tdiecho_entry)
        .expect("tdiecho DriverEntry");
    let echo = loaded_client::<EchoDriver>().expect("loaded").echo();

    // Four clients at once, 1 MiB each way, full duplex.
    let clients: Vec<_> = (0..4u64)
        .map(|seed| {
            let s = env.ws.socket().unwrap();
            env.ws.connect(s, loopback(PORT)).expect("connect");
            (s, seed)
        })
        .collect();
    for &(s, seed) in &clients {
        stream_and_check(&env, s, 1 << 20, seed);
    }
    for &(s, _) in &clients {
        env.ws.shutdown(s, Shutdown::Send).expect("shutdown");
        let mut rest = [0u8; 1];
        assert_eq!(env.ws.recv(s, &mut rest).expect("FIN"), 0, "released");
        env.ws.closesocket(s).expect("close");
    }
    // More, one after the other, than there are endpoints: each takes a new connection once
    // its last one is over.
    let rounds = 3 * ENDPOINTS;
    for i in 0..rounds {
        let s = env.ws.socket().unwrap();
        env.ws.connect(s, loopback(PORT)).expect("connect again");
        let message = [i as u8; 100];
        env.ws.send_all(s, &message).expect("send");
        let mut back = [0u8; 100];
        assert!(env.ws.recv_exact(s, &mut back).expect("recv"), "echo {i}");
        assert_eq!(back, message);
        env.ws.shutdown(s, Shutdown::Send).expect("shutdown");
        let mut rest = [0u8; 1];
        assert_eq!(env.ws.recv(s, &mut rest).expect("FIN"), 0, "released");
        env.ws.closesocket(s).expect("close");
    }
    let total = 4 + rounds;
    let deadline = Instant::now() + Duration::from_secs(10);
    while echo.closed.load(Ordering::SeqCst) < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(echo.accepted.load(Ordering::SeqCst), total);
    assert_eq!(echo.closed.load(Ordering::SeqCst), total);
    assert_eq!(echo.refused.load(Ordering::SeqCst), 0);
    assert_eq!(
        echo.echoed.load(Ordering::SeqCst),
        4 * (1 << 20) + rounds as u64 * 100
    );

    // The model keeps one pool for the kernel, so tdiecho's unload report also lists what the
    // loaded tcpip holds; the leak check that counts is tcpip's, after both (env.finish),
    // which sees anything tdiecho left too.
    let report = tdiecho.unload();
    assert!(
        report.leaks_of(Rule::UnloadRefused).next().is_none(),
        "ReactOS would not unload tdiecho: {report}"
    );
    let text = format!("{report}\n{:?}", env.kernel.handle().take_violations());
    for own in ["src/echo.rs", "src/nt/tdi_client.rs", "\\Device\\TdiEcho"] {
        assert!(!text.contains(own), "tdiecho left {own} behind: {text}");
    }
    env.finish();
}
