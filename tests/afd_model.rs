//! The AFD model and the Winsock layer, tested on their own: the bytes they send (against the
//! driver's decoders), msafd's error table, the real driver's control channel as wshtcpip uses
//! it, and AFD's habits end to end over a fake transport (`afd_support`) that can be told to
//! break the contract (deferred cancel, completion at DISPATCH_LEVEL, failing listens).

mod afd_support;

use afd_support::{FAKE_TCP, Fake, Misbehave, SERIAL, Seen};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, mpsc};
use tcpip::host::afd::status::{STATUS_CONNECTION_ABORTED, STATUS_END_OF_FILE, STATUS_IO_TIMEOUT};
use tcpip::host::afd::wire::{self, ConnectionInfo};
use tcpip::host::afd::{Afd, RequestKind, WsaError, translate_nt_status};
use tcpip::host::winsock::{self, Winsock};
use tcpip::host::{Clock, Config, Kernel, Rule};
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tcpip::tdi::request::{AssociateParams, KernelRequest, Parameters, ReceiveParams, SendParams};
use tcpip::tdi::{CreateRequest, QueryInformationEx, SetInformationEx, TransportAddress};

fn bytes(parameters: IoStackParameters) -> Parameters {
    // SAFETY: IoStackParameters is plain data of exactly this size.
    unsafe { std::mem::transmute::<IoStackParameters, Parameters>(parameters) }
}

#[test]
fn address_and_connection_eas_are_what_the_driver_decodes() {
    let address = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080);
    let ea = wire::address_file_ea(address);
    assert_eq!(
        ea[5], 16,
        "EaNameLength of TransportAddress, without the NUL"
    );
    assert_eq!(u16::from_le_bytes([ea[6], ea[7]]), 22, "EaValueLength");
    assert_eq!(&ea[8..24], b"TransportAddress");
    assert_eq!(ea[24], 0, "NUL after the name");
    assert_eq!(
        ea.len(),
        25 + 22,
        "the value starts at the unaligned offset 25"
    );
    assert_eq!(
        CreateRequest::parse(&ea),
        Ok(CreateRequest::AddressFile(TransportAddress::new(
            Ipv4Addr::LOCALHOST,
            8080
        )))
    );
    assert_eq!(
        wire::ta_ip_address(address),
        TransportAddress::new(Ipv4Addr::LOCALHOST, 8080).emit_ta_ip_address()
    );

    let ea = wire::connection_file_ea();
    assert_eq!(ea[5], 17);
    assert_eq!(&ea[8..25], b"ConnectionContext");
    assert_eq!(
        ea.len(),
        26 + size_of::<usize>(),
        "a NULL pointer at offset 26"
    );
    assert_eq!(
        CreateRequest::parse(&ea),
        Ok(CreateRequest::ConnectionEndpoint { context: 0 })
    );
}

#[test]
fn tdi_overlays_are_what_the_driver_decodes() {
    let mut call = ConnectionInfo::new(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7));
    let mut ret = ConnectionInfo::null();
    let mut timeout = 0i64;
    let request = KernelRequest::parse(&bytes(wire::kernel_request(
        TDI_DISCONNECT_RELEASE,
        call.as_ptr(),
        ret.as_ptr(),
        &raw mut timeout,
    )));
    assert_eq!(request.flags, TDI_DISCONNECT_RELEASE);
    assert_eq!(
        request.request_connection_information,
        call.as_ptr() as usize
    );
    assert_eq!(request.return_connection_information, ret.as_ptr() as usize);
    assert_eq!(request.request_specific, &raw mut timeout as usize);

    let receive = ReceiveParams::parse(&bytes(wire::receive(8192, TDI_RECEIVE_NORMAL)));
    assert_eq!(receive.length, 8192);
    assert!(receive.flags.normal() && !receive.flags.peek());
    let send = SendParams::parse(&bytes(wire::send(100, 0)));
    assert_eq!((send.length, send.flags.0), (100, 0));
    let associate = AssociateParams::parse(&bytes(wire::associate(0x1234 as HANDLE)));
    assert_eq!(associate.address_handle, 0x1234);

    // TdiBuildConnectionInfo: the TA_IP_ADDRESS right after the structure.
    let base = call.as_ptr() as usize;
    assert_eq!(
        call.info.RemoteAddress as usize,
        base + size_of::<TDI_CONNECTION_INFORMATION>()
    );
    assert_eq!(call.info.RemoteAddressLength, 22);
    assert_eq!((call.info.OptionsLength, call.info.UserDataLength), (0, 0));
    // TdiBuildNullConnectionInfo: 0.0.0.0:0, OptionsLength 4 with Options NULL.
    assert_eq!(ret.info.OptionsLength, 4);
    assert!(ret.info.Options.is_null());
    assert_eq!(
        ret.remote(),
        Some(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
    );
}

#[test]
fn ioctl_buffers_are_what_the_driver_decodes() {
    let query = wire::query_information_ex(
        GENERIC_ENTITY,
        0,
        INFO_CLASS_GENERIC,
        INFO_TYPE_PROVIDER,
        ENTITY_LIST_ID,
    );
    assert_eq!(query.len(), QueryInformationEx::LEN);
    let parsed = QueryInformationEx::parse(&query).expect("decodes");
    assert_eq!(parsed.id.toi_id, ENTITY_LIST_ID);
    assert_eq!(parsed.id.toi_class, INFO_CLASS_GENERIC);

    let set = wire::set_information_ex(
        CO_TL_ENTITY,
        3,
        INFO_CLASS_PROTOCOL,
        INFO_TYPE_CONNECTION,
        TCP_SOCKET_NODELAY,
        &1u32.to_le_bytes(),
    );
    assert_eq!(
        set.len(),
        28 + 4,
        "sizeof(TCP_REQUEST_SET_INFORMATION_EX) + OptionLength"
    );
    let parsed = SetInformationEx::parse(&set).expect("decodes");
    assert_eq!(parsed.id.toi_entity.tei_entity, CO_TL_ENTITY);
    assert_eq!(parsed.id.toi_entity.tei_instance, 3);
    assert_eq!(parsed.id.toi_type, INFO_TYPE_CONNECTION);
    assert_eq!(parsed.id.toi_id, TCP_SOCKET_NODELAY);
    assert_eq!(parsed.buffer, &[1, 0, 0, 0]);

    let info = TransportAddress::new(Ipv4Addr::new(10, 1, 2, 3), 4242).emit_address_info(1);
    assert_eq!(
        wire::parse_address_info(&info),
        Some(SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 4242))
    );
}

#[test]
fn status_mapping_is_msafds_translate_nt_status_error() {
    let table = [
        (NtStatus::CANT_WAIT, WsaError::WSAEWOULDBLOCK),
        (NtStatus::TIMEOUT, WsaError::WSAETIMEDOUT),
        (NtStatus::FILE_CLOSED, WsaError::WSAECONNRESET),
        (STATUS_END_OF_FILE, WsaError::WSAESHUTDOWN),
        (NtStatus::PENDING, WsaError::WSA_IO_PENDING),
        (NtStatus::BUFFER_TOO_SMALL, WsaError::WSAEMSGSIZE),
        (NtStatus::BUFFER_OVERFLOW, WsaError::WSAEMSGSIZE),
        (NtStatus::INSUFFICIENT_RESOURCES, WsaError::WSAENOBUFS),
        (NtStatus::INVALID_CONNECTION, WsaError::WSAENOTCONN),
        (NtStatus::INVALID_ADDRESS, WsaError::WSAEADDRNOTAVAIL),
        (NtStatus::REMOTE_NOT_LISTENING, WsaError::WSAECONNREFUSED),
        (NtStatus::REMOTE_DISCONNECT, WsaError::WSAECONNREFUSED),
        (NtStatus::NETWORK_UNREACHABLE, WsaError::WSAENETUNREACH),
        (NtStatus::HOST_UNREACHABLE, WsaError::WSAEHOSTUNREACH),
        (NtStatus::INVALID_PARAMETER, WsaError::WSAEINVAL),
        (NtStatus::CANCELLED, WsaError::WSA_OPERATION_ABORTED),
        (NtStatus::ADDRESS_ALREADY_EXISTS, WsaError::WSAEADDRINUSE),
        (NtStatus::LOCAL_DISCONNECT, WsaError::WSAECONNABORTED),
        (NtStatus::ACCESS_DENIED, WsaError::WSAEACCES),
        (NtStatus::NOT_IMPLEMENTED, WsaError::WSAEOPNOTSUPP),
        // msafd's gaps: everything else is WSAENETDOWN.
        (NtStatus::CONNECTION_REFUSED, WsaError::WSAENETDOWN),
        (NtStatus::CONNECTION_RESET, WsaError::WSAENETDOWN),
        (STATUS_CONNECTION_ABORTED, WsaError::WSAENETDOWN),
        (STATUS_IO_TIMEOUT, WsaError::WSAENETDOWN),
        (NtStatus::INVALID_DEVICE_REQUEST, WsaError::WSAENETDOWN),
    ];
    for (status, error) in table {
        assert_eq!(translate_nt_status(status), Some(error), "{status}");
    }
    assert_eq!(translate_nt_status(NtStatus::SUCCESS), None);
}

#[test]
fn wshtcpip_entity_list_probe_pair_works_on_the_real_driver() {
    let kernel = Kernel::new(Config::default());
    let driver = kernel
        .load_driver(tcpip::nt::entry::driver_entry)
        .expect("DriverEntry");
    let channel = kernel
        .create_file("\\Device\\Tcp", None, wire::SHARE_READ_WRITE)
        .expect("control channel");
    let entities = winsock::entity_list(&kernel, channel).expect("ENTITY_LIST");
    kernel.close(channel);
    assert!(
        entities.contains(&(CL_NL_ENTITY, 0)),
        "loopback's IP entity in {entities:x?}"
    );
    let report = driver.unload();
    assert!(report.is_clean(), "{report}");
}

/// A kernel, the fake transport and Winsock over it; the fake is serialised between tests.
fn with_fake(misbehave: Misbehave, test: impl FnOnce(&Kernel, &Fake, &Arc<Winsock>)) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kernel = Kernel::new(Config {
        clock: Clock::Real,
        ..Config::default()
    });
    let fake = Fake::load(&kernel, misbehave);
    let ws = Arc::new(Winsock::over(Afd::with_device(&kernel, FAKE_TCP)));
    test(&kernel, &fake, &ws);
    assert_eq!(ws.open_sockets(), 0, "the test closes its sockets");
    drop(ws);
    let report = fake.unload();
    assert!(report.is_clean(), "{report}");
}

fn loopback(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

fn find(seen: &[Seen], major: u8, minor: u8) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| s.major == major && s.minor == minor)
        .collect()
}

#[test]
fn echo_over_the_fake_transport_shows_afds_habits() {
    with_fake(Misbehave::default(), |kernel, fake, ws| {
        let server = ws.socket().unwrap();
        ws.bind(server, loopback(7001)).unwrap();
        ws.listen(server, 5).unwrap();
        let client = ws.socket().unwrap();
        let ws2 = ws.clone();
        let (accepted_tx, accepted_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        // The accept thread lives until the test is done with the socket: it built the socket's
        // pending TDI_RECEIVE, a threaded IRP its end would cancel (IoCancelThreadIo).
        let accepter = kernel.spawn("accept", move || {
            let (s, peer) = ws2.accept(server).unwrap();
            let mut buf = [0u8; 64];
            let n = ws2.recv(s, &mut buf).unwrap();
            ws2.send_all(s, &buf[..n]).unwrap();
            accepted_tx.send((s, peer)).unwrap();
            let _ = done_rx.recv();
        });
        ws.connect(client, loopback(7001)).unwrap();
        assert_eq!(
            ws.afd().in_flight(ws.afd_socket(client).unwrap()).unwrap(),
            vec![RequestKind::Receive],
            "exactly one TDI_RECEIVE pending on a connected socket"
        );
        ws.send_all(client, b"hello").unwrap();
        let mut buf = [0u8; 16];
        assert!(ws.recv_exact(client, &mut buf[..5]).unwrap());
        assert_eq!(&buf[..5], b"hello");
        let (accepted, peer) = accepted_rx.recv().unwrap();
        assert_eq!(
            peer.port(),
            ws.getsockname(client).unwrap().port(),
            "accept's peer is the client"
        );
        assert_eq!(ws.getpeername(accepted).unwrap(), peer);
        assert_eq!(ws.getpeername(client).unwrap(), loopback(7001));
        ws.closesocket(client).unwrap();
        assert_eq!(
            ws.recv(accepted, &mut buf).unwrap(),
            0,
            "FIN: success with 0 bytes"
        );
        ws.closesocket(accepted).unwrap();
        done_tx.send(()).unwrap();
        accepter.join().unwrap();
        ws.closesocket(server).unwrap();
        let stats = ws.stats();
        assert_eq!(stats.listens_rearmed, 1);
        assert_eq!((stats.use_after_free, stats.dead_listeners), (0, 0));

        let seen = fake.seen();
        let creates = find(&seen, IRP_MJ_CREATE, 0);
        let address_creates: Vec<_> = creates.iter().filter(|s| s.bytes.len() == 47).collect();
        assert_eq!(
            address_creates.len(),
            2,
            "server bind + client's wildcard bind"
        );
        assert!(address_creates.iter().all(|s| s.share_access == 0));
        let queries: Vec<_> = find(&seen, IRP_MJ_DEVICE_CONTROL, 0)
            .into_iter()
            .filter(|s| s.flags == IOCTL_TCP_QUERY_INFORMATION_EX)
            .map(|s| s.length)
            .collect();
        assert_eq!(queries.len(), 4, "one probe pair per bind: {queries:?}");
        assert_eq!((queries[0], queries[2]), (0, 0), "zero-length probes first");
        for s in find(&seen, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_ASSOCIATE_ADDRESS) {
            assert!(
                s.has_event && s.has_iosb && !s.has_completion_routine,
                "{s:?}"
            );
        }
        for minor in [
            TDI_LISTEN,
            TDI_CONNECT,
            TDI_RECEIVE,
            TDI_SEND,
            TDI_DISCONNECT,
        ] {
            let requests = find(&seen, IRP_MJ_INTERNAL_DEVICE_CONTROL, minor);
            assert!(!requests.is_empty(), "minor {minor:#x} seen");
            for s in requests {
                assert!(
                    !s.has_event && !s.has_iosb && s.has_completion_routine,
                    "async TDI request without event or IOSB: {s:?}"
                );
                assert_eq!(s.requestor_mode, KERNEL_MODE);
            }
        }
        for s in find(&seen, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_RECEIVE) {
            assert_eq!(s.flags, TDI_RECEIVE_NORMAL);
            assert!(s.length > 0 && s.length <= 8192);
        }
        let connect = find(&seen, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_CONNECT)[0];
        assert_eq!(
            (connect.flags, connect.timeout),
            (0, None),
            "no timeout pointer"
        );
        let listen = find(&seen, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_LISTEN)[0];
        assert_eq!(
            (listen.flags, listen.length),
            (0, 4),
            "flags 0, OptionsLength 4"
        );
        for s in find(&seen, IRP_MJ_INTERNAL_DEVICE_CONTROL, TDI_DISCONNECT) {
            assert_eq!((s.flags, s.timeout), (TDI_DISCONNECT_RELEASE, Some(0)));
        }
        // The client's close: DISASSOCIATE, then the address file, then the connection.
        let tail: Vec<(u8, u8, String)> = seen
            .iter()
            .filter(|s| {
                matches!(s.major, IRP_MJ_CLOSE)
                    || (s.major == IRP_MJ_INTERNAL_DEVICE_CONTROL
                        && s.minor == TDI_DISASSOCIATE_ADDRESS)
            })
            .map(|s| {
                (
                    s.major,
                    s.minor,
                    String::from_utf8_lossy(&s.bytes).into_owned(),
                )
            })
            .collect();
        let first_disassociate = tail
            .iter()
            .position(|t| t.0 == IRP_MJ_INTERNAL_DEVICE_CONTROL)
            .expect("a DISASSOCIATE");
        let closes: Vec<&str> = tail[first_disassociate..]
            .iter()
            .filter(|t| t.0 == IRP_MJ_CLOSE && t.2 != "Some(Control)")
            .take(2)
            .map(|t| t.2.as_str())
            .collect();
        assert_eq!(closes, ["Some(Address)", "Some(Connection)"], "{tail:?}");
    });
}

#[test]
fn connections_queued_before_accept_are_all_accepted_and_the_listen_is_rearmed() {
    with_fake(Misbehave::default(), |kernel, _fake, ws| {
        let server = ws.socket().unwrap();
        ws.bind(server, loopback(7002)).unwrap();
        ws.listen(server, 5).unwrap();
        let clients: Vec<_> = (0..5)
            .map(|i| {
                let ws = ws.clone();
                kernel.spawn("client", move || {
                    let s = ws.socket().unwrap();
                    ws.connect(s, loopback(7002)).unwrap();
                    ws.send_all(s, &[i; 100]).unwrap();
                    let mut buf = [0u8; 100];
                    assert!(ws.recv_exact(s, &mut buf).unwrap());
                    assert_eq!(buf, [i; 100]);
                    ws.closesocket(s).unwrap();
                })
            })
            .collect();
        for _ in 0..5 {
            let (s, _) = ws.accept(server).unwrap();
            let mut buf = [0u8; 100];
            assert!(ws.recv_exact(s, &mut buf).unwrap());
            ws.send_all(s, &buf).unwrap();
            let mut rest = [0u8; 1];
            assert_eq!(ws.recv(s, &mut rest).unwrap(), 0);
            ws.closesocket(s).unwrap();
        }
        for c in clients {
            c.join().unwrap();
        }
        ws.closesocket(server).unwrap();
        assert_eq!(ws.stats().listens_rearmed, 5);
    });
}

#[test]
fn pending_connections_are_closed_with_the_listener_and_synchronous_requests_may_pend() {
    let misbehave = Misbehave {
        pend_synchronous: true,
        ..Misbehave::default()
    };
    with_fake(misbehave, |_kernel, fake, ws| {
        let server = ws.socket().unwrap();
        ws.bind(server, loopback(7003)).unwrap();
        ws.listen(server, 5).unwrap();
        let clients: Vec<_> = (0..3)
            .map(|_| {
                let s = ws.socket().unwrap();
                ws.connect(s, loopback(7003)).unwrap();
                s
            })
            .collect();
        // ListenComplete runs on the fake's completion thread after the connects complete.
        fake.wait_idle();
        let afd_server = ws.afd_socket(server).unwrap();
        assert_eq!(ws.afd().pending_connections(afd_server).unwrap(), 3);
        ws.closesocket(server).unwrap();
        for s in clients {
            let mut buf = [0u8; 4];
            assert_eq!(
                ws.recv(s, &mut buf).unwrap(),
                0,
                "the unaccepted peer was closed"
            );
            ws.closesocket(s).unwrap();
        }
    });
}

#[test]
fn partial_sends_slide_the_window_and_the_rest_follows() {
    let misbehave = Misbehave {
        send_limit: 1000,
        ..Misbehave::default()
    };
    with_fake(misbehave, |kernel, _fake, ws| {
        let server = ws.socket().unwrap();
        ws.bind(server, loopback(7004)).unwrap();
        ws.listen(server, 1).unwrap();
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let ws2 = ws.clone();
        let sender = kernel.spawn("sender", move || {
            let s = ws2.socket().unwrap();
            ws2.set_nodelay(s, true).unwrap();
            ws2.connect(s, loopback(7004)).unwrap();
            ws2.send_all(s, &data).unwrap();
            ws2.closesocket(s).unwrap();
        });
        let (s, _) = ws.accept(server).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 3000];
        loop {
            let n = ws.recv(s, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got == expected,
            "all bytes in order ({} of {})",
            got.len(),
            expected.len()
        );
        sender.join().unwrap();
        ws.closesocket(s).unwrap();
        ws.closesocket(server).unwrap();
    });
}

#[test]
fn connect_to_a_port_nobody_listens_on_is_refused_and_a_failed_bind_probe_is_wsaeinval() {
    with_fake(Misbehave::default(), |_kernel, _fake, ws| {
        let s = ws.socket().unwrap();
        assert_eq!(
            ws.connect(s, loopback(7999)),
            Err(WsaError::WSAECONNREFUSED)
        );
        ws.closesocket(s).unwrap();
        let a = ws.socket().unwrap();
        let b = ws.socket().unwrap();
        ws.bind(a, loopback(7005)).unwrap();
        assert_eq!(ws.bind(b, loopback(7005)), Err(WsaError::WSAEADDRINUSE));
        ws.closesocket(a).unwrap();
        ws.closesocket(b).unwrap();
    });
    let misbehave = Misbehave {
        fail_entity_list: true,
        ..Misbehave::default()
    };
    with_fake(misbehave, |_kernel, _fake, ws| {
        let s = ws.socket().unwrap();
        assert_eq!(ws.bind(s, loopback(7006)), Err(WsaError::WSAEINVAL));
        ws.closesocket(s).unwrap();
    });
}

#[test]
fn a_failed_listen_is_not_rearmed_and_the_listener_is_dead() {
    let misbehave = Misbehave {
        fail_listens: true,
        ..Misbehave::default()
    };
    with_fake(misbehave, |_kernel, _fake, ws| {
        let server = ws.socket().unwrap();
        ws.bind(server, loopback(7007)).unwrap();
        ws.listen(server, 5).unwrap();
        assert_eq!(ws.stats().dead_listeners, 1);
        assert!(
            !ws.select_acceptable(server, std::time::Duration::from_millis(10))
                .unwrap()
        );
        let afd_server = ws.afd_socket(server).unwrap();
        assert!(
            ws.afd().in_flight(afd_server).unwrap().is_empty(),
            "no listen re-posted"
        );
        ws.closesocket(server).unwrap();
    });
}

/// Connects a client to an accepted socket on `port`; returns (client, accepted).
fn pair(ws: &Arc<Winsock>, port: u16) -> (winsock::Socket, winsock::Socket, winsock::Socket) {
    let server = ws.socket().unwrap();
    ws.bind(server, loopback(port)).unwrap();
    ws.listen(server, 1).unwrap();
    let client = ws.socket().unwrap();
    ws.connect(client, loopback(port)).unwrap();
    let (accepted, _) = ws.accept(server).unwrap();
    (server, client, accepted)
}

#[test]
fn a_cancel_routine_that_defers_completion_is_an_afd_use_after_free() {
    let misbehave = Misbehave {
        deferred_cancel: true,
        ..Misbehave::default()
    };
    with_fake(misbehave, |kernel, fake, ws| {
        kernel.expect_violation(Rule::CancelRoutineDidNotComplete);
        let (server, client, accepted) = pair(ws, 7008);
        // The accepted socket's TDI_RECEIVE is pending; AfdCloseSocket cancels it, the cancel
        // routine keeps it, and it completes once the FCB is freed.
        ws.closesocket(accepted).unwrap();
        assert_eq!(ws.stats().use_after_free, 0);
        fake.release_deferred();
        let violations = ws.afd().take_violations();
        assert!(
            violations.iter().any(|v| v.contains("use-after-free")),
            "{violations:?}"
        );
        assert!(ws.stats().use_after_free >= 1);
        let _ = ws.closesocket(client);
        ws.closesocket(server).unwrap();
        fake.release_deferred();
        ws.afd().take_violations();
    });
}

#[test]
fn a_completion_at_dispatch_level_fails_the_verifier() {
    let misbehave = Misbehave {
        complete_at_dispatch: true,
        ..Misbehave::default()
    };
    with_fake(misbehave, |kernel, _fake, ws| {
        kernel.expect_violation(Rule::PassiveCompletionAtDispatch);
        kernel.expect_violation(Rule::WaitAtDispatch);
        let (server, client, accepted) = pair(ws, 7009);
        for s in [client, accepted, server] {
            ws.closesocket(s).unwrap();
        }
        let fired: Vec<Rule> = kernel.take_violations().iter().map(|v| v.rule).collect();
        assert!(
            fired.contains(&Rule::PassiveCompletionAtDispatch),
            "{fired:?}"
        );
    });
}
