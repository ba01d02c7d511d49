//! Suite 6: low resources — suite 1 and the edge cases of suite 5 again with 1% of the
//! driver's pool allocations failing (seeded). Winsock calls may fail, but only with clean
//! Winsock errors; nothing panics, nothing leaks (the unload leak check), and every IRP is
//! completed exactly once (the verifier's double-completion rule and the IRP leak check).

mod echo_support;

use echo_support::{Env, clean_low_resource_error, loopback, serial_echo_tolerant, size};
use std::time::Duration;
use tcpip::host::FaultInjection;
use tcpip::host::winsock::WsaError;

fn low_resources(seed: u64) -> FaultInjection {
    FaultInjection::Random { seed, percent: 1 }
}

fn clean<T>(result: Result<T, WsaError>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(clean_low_resource_error(e), "unexpected Winsock error {e}");
            None
        }
    }
}

#[test]
fn serial_echo_with_one_percent_allocation_failures() {
    let env = Env::start(
        "suite 6 serial echo, 1% pool failures",
        2,
        low_resources(0x6001),
    );
    let (echoes, errors) = serial_echo_tolerant(
        &env,
        5006,
        size(64, 16),
        size(50, 8),
        Duration::from_secs(5),
    );
    eprintln!("suite 6 serial echo: {echoes} echoes, {errors} clean errors");
    assert!(echoes > 0, "some connections get through at 1% failures");
    env.finish();
}

#[test]
fn edge_cases_with_one_percent_allocation_failures() {
    let env = Env::start(
        "suite 6 edge cases, 1% pool failures",
        2,
        low_resources(0x6002),
    );
    let ws = &env.ws;
    for round in 0..size(200, 50) {
        let port = 5200 + (round % 50) as u16;
        // Refused connect.
        if let Some(s) = clean(ws.socket()) {
            let _ = clean(ws.connect(s, loopback(5999)));
            let _ = clean(ws.closesocket(s));
        }
        let Some(l) = clean(ws.socket()) else {
            continue;
        };
        if clean(ws.bind(l, loopback(port)).and_then(|()| ws.listen(l, 4))).is_none() {
            let _ = clean(ws.closesocket(l));
            continue;
        }
        let c = ws.socket().unwrap();
        ws.set_receive_timeout(c, Some(Duration::from_secs(5)))
            .unwrap();
        if clean(ws.connect(c, loopback(port))).is_some()
            && clean(ws.select_acceptable(l, Duration::from_secs(5))) == Some(true)
            && let Some((a, _)) = clean(ws.accept(l))
        {
            ws.set_receive_timeout(a, Some(Duration::from_secs(5)))
                .unwrap();
            let _ = clean(ws.getsockname(a));
            let _ = clean(ws.getpeername(a));
            if round % 2 == 0 {
                // Abortive close seen by the peer.
                ws.set_linger(a, Some(0)).unwrap();
            }
            let _ = clean(ws.send_all(a, &[9u8; 3000]));
            let _ = clean(ws.closesocket(a));
            let mut buf = [0u8; 4096];
            while let Some(n) = clean(ws.recv(c, &mut buf)) {
                if n == 0 {
                    break;
                }
            }
        }
        let _ = clean(ws.closesocket(c));
        // Closing the listener, possibly with a queued connection.
        let _ = clean(ws.closesocket(l));
    }
    env.finish();
}
