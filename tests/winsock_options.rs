//! setsockopt through wshtcpip's plumbing, as Winsock programs call it.

mod echo_support;

use echo_support::{Env, loopback};
use tcpip::host::FaultInjection;

/// TCP_NODELAY on both ends of a connection, the accepted one included: wshtcpip sends it for
/// an accepted socket with an entity no bind gave it, and the transport must not make
/// setsockopt fail there (WSAEINVAL). (Found by the benchmark's ping-pong after the
/// information model began to check entities.)
#[test]
fn tcp_nodelay_succeeds_on_connected_and_accepted_sockets() {
    let env = Env::start("TCP_NODELAY", 2, FaultInjection::None);
    let ws = &env.ws;
    let listener = ws.socket().unwrap();
    ws.bind(listener, loopback(5101)).unwrap();
    ws.listen(listener, 5).unwrap();
    let client = ws.socket().unwrap();
    ws.connect(client, loopback(5101)).unwrap();
    let (server, _) = ws.accept(listener).unwrap();
    assert_eq!(ws.set_nodelay(client, true), Ok(()));
    assert_eq!(ws.set_nodelay(server, true), Ok(()));
    ws.send_all(client, b"ping").unwrap();
    let mut echo = [0u8; 4];
    assert!(ws.recv_exact(server, &mut echo).unwrap());
    assert_eq!(&echo, b"ping");
    for s in [client, server, listener] {
        ws.closesocket(s).unwrap();
    }
    env.finish();
}
