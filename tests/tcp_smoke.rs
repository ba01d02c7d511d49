//! One Winsock echo round trip over loopback through the AFD model and the real driver.

use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::host::winsock::Winsock;
use tcpip::host::{Clock, Config, Kernel};
use tcpip::nt::entry::driver_entry;

#[test]
fn echo_once_over_loopback() {
    let kernel = Kernel::new(Config {
        clock: Clock::Real,
        ..Config::default()
    });
    let driver = kernel.load_driver(driver_entry).expect("DriverEntry");
    let ws = Winsock::new(&kernel);
    let server = ws.socket().expect("server socket");
    let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5000);
    ws.bind(server, address).expect("bind");
    ws.listen(server, 5).expect("listen");
    let client = ws.socket().expect("client socket");
    ws.connect(client, address).expect("connect");
    let (accepted, peer) = ws.accept(server).expect("accept");
    assert_eq!(peer.ip(), &Ipv4Addr::LOCALHOST);
    ws.send_all(client, b"hello, tcpip.sys").expect("send");
    let mut buffer = [0u8; 16];
    assert!(ws.recv_exact(accepted, &mut buffer).expect("recv"));
    ws.send_all(accepted, &buffer).expect("echo");
    let mut echo = [0u8; 16];
    assert!(ws.recv_exact(client, &mut echo).expect("recv echo"));
    assert_eq!(&echo, b"hello, tcpip.sys");
    ws.closesocket(client).expect("close client");
    ws.closesocket(accepted).expect("close accepted");
    ws.closesocket(server).expect("close server");
    drop(ws);
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
}
