//! TCP over TDI on the loopback interface, request by request, with the statuses AFD and msafd
//! turn into Winsock errors (afd-tdi-contract.md §4.1, §4.3).

mod tdi_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use tcpip::host::Clock;
use tcpip::host::afd::wire;
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tdi_support::*;

/// A client endpoint bound to 0.0.0.0:0 and associated, as msafd's connect() makes it.
fn client(t: &Loaded) -> (tcpip::host::Handle, tcpip::host::Handle) {
    let address = t.open_address(any(0), 0).expect("client address");
    let connection = t.open_connection().expect("client endpoint");
    assert_eq!(t.associate(connection, address), NtStatus::SUCCESS);
    (address, connection)
}

#[test]
fn connect_to_a_port_nobody_listens_on_is_remote_not_listening() {
    let t = loaded();
    let (address, connection) = client(&t);
    let result = start_connect(&t, connection, local(1)).wait();
    assert_eq!(
        result.status,
        NtStatus::REMOTE_NOT_LISTENING,
        "msafd: WSAECONNREFUSED"
    );
    t.close(address);
    t.close(connection);
    t.unload();
}

#[test]
fn a_refused_connect_after_a_long_idle_spell_is_still_a_refusal() {
    // A request is applied before the pass that follows it: its deadlines must be reckoned
    // from the present, not from the last pass a minute ago (which made this refusal look
    // like a timeout, WSAETIMEDOUT instead of WSAECONNREFUSED).
    let t = Loaded::new(Clock::Virtual);
    let (address, connection) = client(&t);
    t.kernel.advance(Duration::from_secs(60));
    let result = start_connect(&t, connection, local(1)).wait();
    assert_eq!(result.status, NtStatus::REMOTE_NOT_LISTENING);
    t.close(address);
    t.close(connection);
    t.unload();
}

#[test]
fn connect_to_an_unroutable_address_is_network_unreachable() {
    let t = loaded();
    let (address, connection) = client(&t);
    let remote = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 80);
    let result = start_connect(&t, connection, remote).wait();
    assert_eq!(
        result.status,
        NtStatus::NETWORK_UNREACHABLE,
        "msafd: WSAENETUNREACH"
    );
    t.close(address);
    t.close(connection);
    t.unload();
}

#[test]
fn connect_that_gets_no_answer_times_out_as_local_disconnect() {
    // 127.0.0.2 is not an address of the loopback interface: the SYNs go nowhere.
    let t = Loaded::new(Clock::Virtual);
    let (address, connection) = client(&t);
    let remote = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 80);
    // A relative timeout of 3 s (100 ns units, negative).
    let connecting = start_connect_with_timeout(&t, connection, remote, Some(-30_000_000));
    t.kernel.advance(Duration::from_secs(2));
    assert!(!connecting.is_complete(), "still trying before the timeout");
    t.kernel.advance(Duration::from_secs(2));
    let result = connecting.wait();
    assert_eq!(
        result.status,
        NtStatus::LOCAL_DISCONNECT,
        "an error status (STATUS_TIMEOUT would read as success to AFD)"
    );
    t.close(address);
    t.close(connection);
    t.unload();
}

#[test]
fn listen_completes_with_the_peer_and_connections_wait_in_the_accept_queue() {
    let t = loaded();
    let server_address = t.open_address(any(7101), 0).expect("server address");
    let first = t.open_connection().expect("first endpoint");
    assert_eq!(t.associate(first, server_address), NtStatus::SUCCESS);
    let listening = start_listen(&t, first);
    let clients: Vec<_> = (0..3).map(|_| client(&t)).collect();
    for (_, connection) in &clients {
        let result = start_connect(&t, *connection, local(7101)).wait();
        assert_eq!(
            result.status,
            NtStatus::SUCCESS,
            "held, not reset, without a listen"
        );
    }
    assert_eq!(listening.wait().status, NtStatus::SUCCESS);
    let mut peers = vec![listening.returned_peer().expect("peer written")];
    let mut accepted = vec![first];
    for _ in 1..3 {
        let endpoint = t.open_connection().expect("endpoint");
        assert_eq!(t.associate(endpoint, server_address), NtStatus::SUCCESS);
        let listening = start_listen(&t, endpoint);
        assert_eq!(
            listening.wait().status,
            NtStatus::SUCCESS,
            "from the accept queue"
        );
        peers.push(listening.returned_peer().expect("peer written"));
        accepted.push(endpoint);
    }
    let mut expected = Vec::new();
    for (_, connection) in &clients {
        expected.push(t.query_address(*connection).expect("client address"));
    }
    peers.sort();
    expected.sort();
    assert_eq!(peers, expected, "each listen got one of the clients");
    for endpoint in &accepted {
        let local_address = t.query_address(*endpoint).expect("accepted address");
        assert_eq!(
            local_address,
            local(7101),
            "true local address, not 0.0.0.0"
        );
    }
    for (address, connection) in clients {
        t.close(connection);
        t.close(address);
    }
    for endpoint in accepted {
        t.close(endpoint);
    }
    t.close(server_address);
    t.unload();
}

#[test]
fn data_is_buffered_until_a_receive_is_posted_and_receive_completes_with_what_is_there() {
    let t = loaded();
    let pair = connected_pair(&t, local(7102));
    assert_eq!(send(&t, pair.client, b"first").status, NtStatus::SUCCESS);
    assert_eq!(send(&t, pair.client, b" second").status, NtStatus::SUCCESS);
    let mut received = Vec::new();
    while received.len() < 12 {
        let (result, data) = receive(&t, pair.server, 8192);
        assert_eq!(result.status, NtStatus::SUCCESS);
        assert!(!data.is_empty(), "completes with at least one byte");
        received.extend(data);
    }
    assert_eq!(received, b"first second");
    close_pair(&t, pair);
    t.unload();
}

#[test]
fn a_full_window_makes_sends_pend_until_the_reader_drains() {
    let t = loaded();
    let pair = connected_pair(&t, local(7103));
    let chunk = vec![0x5Au8; 16 * 1024];
    let mut sent = 0usize;
    let pending = loop {
        let mut buffer = chunk.clone();
        let request = t.start(
            pair.client,
            TDI_SEND,
            wire::send(chunk.len() as u32, 0),
            Some(&mut buffer),
        );
        // Once nothing is queued or running in the kernel, a send still pending is waiting
        // for window space.
        t.kernel.wait_quiescent();
        if !request.is_complete() {
            break (request, buffer);
        }
        let result = request.wait();
        assert_eq!(result.status, NtStatus::SUCCESS);
        sent += result.information;
        assert!(sent <= 1024 * 1024, "the window never closed");
    };
    assert!(
        sent >= 64 * 1024,
        "at least the receive window was accepted ({sent})"
    );
    let mut drained = 0usize;
    while !pending.0.is_complete() {
        let (result, data) = receive(&t, pair.server, 64 * 1024);
        assert_eq!(result.status, NtStatus::SUCCESS);
        drained += data.len();
    }
    assert_eq!(pending.0.wait().status, NtStatus::SUCCESS);
    assert!(drained > 0);
    drop(pending.1);
    close_pair(&t, pair);
    t.unload();
}

#[test]
fn release_sends_fin_and_the_peer_reads_zero_bytes_twice() {
    let t = loaded();
    let pair = connected_pair(&t, local(7104));
    assert_eq!(send(&t, pair.client, b"bye").status, NtStatus::SUCCESS);
    assert_eq!(
        disconnect(&t, pair.client, TDI_DISCONNECT_RELEASE).status,
        NtStatus::SUCCESS
    );
    let (result, data) = receive(&t, pair.server, 100);
    assert_eq!(
        (result.status, data.as_slice()),
        (NtStatus::SUCCESS, &b"bye"[..])
    );
    for _ in 0..2 {
        let (result, data) = receive(&t, pair.server, 100);
        assert_eq!(
            (result.status, data.len()),
            (NtStatus::SUCCESS, 0),
            "FIN: success, 0 bytes"
        );
    }
    close_pair(&t, pair);
    t.unload();
}

#[test]
fn abort_resets_and_the_peers_pending_receive_fails() {
    let t = loaded();
    let pair = connected_pair(&t, local(7105));
    let mut buffer = vec![0u8; 100];
    let pending = t.start(
        pair.server,
        TDI_RECEIVE,
        wire::receive(100, TDI_RECEIVE_NORMAL),
        Some(&mut buffer),
    );
    assert_eq!(
        disconnect(&t, pair.client, TDI_DISCONNECT_ABORT).status,
        NtStatus::SUCCESS
    );
    assert_eq!(
        pending.wait().status,
        NtStatus::FILE_CLOSED,
        "msafd: WSAECONNRESET"
    );
    close_pair(&t, pair);
    t.unload();
}

#[test]
fn closing_with_unread_data_resets_the_connection() {
    let t = loaded();
    let pair = connected_pair(&t, local(7106));
    assert_eq!(
        send(&t, pair.client, b"never read").status,
        NtStatus::SUCCESS
    );
    let mut buffer = vec![0u8; 100];
    let pending = t.start(
        pair.client,
        TDI_RECEIVE,
        wire::receive(100, TDI_RECEIVE_NORMAL),
        Some(&mut buffer),
    );
    // Let the data arrive (a peek sees it without consuming it), then close the server
    // endpoint without reading it.
    let mut peek = vec![0u8; 1];
    let result = t.request(
        pair.server,
        TDI_RECEIVE,
        wire::receive(1, TDI_RECEIVE_PEEK),
        Some(&mut peek),
    );
    assert_eq!(
        (result.status, result.information),
        (NtStatus::SUCCESS, 1),
        "peek sees the data"
    );
    t.close(pair.server);
    assert_eq!(
        pending.wait().status,
        NtStatus::FILE_CLOSED,
        "RST, as Windows sends"
    );
    for handle in [pair.client, pair.client_address, pair.server_address] {
        t.close(handle);
    }
    t.unload();
}

#[test]
fn query_information_answers_every_query_type() {
    let t = loaded();
    let pair = connected_pair(&t, local(7107));
    let client_address = t.query_address(pair.client).expect("client");
    assert_eq!(
        client_address.ip(),
        &Ipv4Addr::LOCALHOST,
        "source chosen for 0.0.0.0"
    );
    assert!(client_address.port() >= 49152);
    let cases = [
        (TDI_QUERY_CONNECTION_INFO, size_of::<TDI_CONNECTION_INFO>()),
        (TDI_QUERY_PROVIDER_INFO, size_of::<TDI_PROVIDER_INFO>()),
        (TDI_QUERY_MAX_DATAGRAM_INFO, 4),
    ];
    for (query, size) in cases {
        let mut out = [0u8; 128];
        let result = t.request(
            pair.client,
            TDI_QUERY_INFORMATION,
            wire::query_information(query),
            Some(&mut out),
        );
        assert_eq!(
            (result.status, result.information),
            (NtStatus::SUCCESS, size),
            "query {query}"
        );
    }
    let mut small = [0u8; 10];
    let result = t.request(
        pair.client,
        TDI_QUERY_INFORMATION,
        wire::query_information(TDI_QUERY_ADDRESS_INFO),
        Some(&mut small),
    );
    assert_eq!(result.status, NtStatus::BUFFER_TOO_SMALL);
    let mut out = [0u8; 64];
    let result = t.request(
        pair.client,
        TDI_QUERY_INFORMATION,
        wire::query_information(77),
        Some(&mut out),
    );
    assert_eq!(
        result.status,
        NtStatus::NOT_IMPLEMENTED,
        "unknown query type"
    );
    close_pair(&t, pair);
    t.unload();
}

#[test]
fn every_pending_request_kind_can_be_cancelled() {
    let t = Loaded::new(Clock::Virtual);
    // A receive with no data.
    let pair = connected_pair(&t, local(7108));
    let mut buffer = vec![0u8; 64];
    let receiving = t.start(
        pair.server,
        TDI_RECEIVE,
        wire::receive(64, TDI_RECEIVE_NORMAL),
        Some(&mut buffer),
    );
    assert!(t.kernel.cancel_irp(receiving.irp));
    assert_eq!(
        receiving.status().status,
        NtStatus::CANCELLED,
        "completed before IoCancelIrp returned"
    );
    // A listen with no client.
    let listener_address = t.open_address(local(7109), 0).expect("address");
    let endpoint = t.open_connection().expect("endpoint");
    assert_eq!(t.associate(endpoint, listener_address), NtStatus::SUCCESS);
    let listening = start_listen(&t, endpoint);
    assert!(t.kernel.cancel_irp(listening.irp));
    assert_eq!(listening.status().status, NtStatus::CANCELLED);
    // A connect that gets no answer.
    let (address, connection) = client(&t);
    let connecting = start_connect(
        &t,
        connection,
        SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 9),
    );
    assert!(t.kernel.cancel_irp(connecting.irp));
    assert_eq!(connecting.status().status, NtStatus::CANCELLED);
    // The endpoint whose listen was cancelled can listen again.
    let listening = start_listen(&t, endpoint);
    let (second_address, second) = client(&t);
    assert_eq!(
        start_connect(&t, second, local(7109)).wait().status,
        NtStatus::SUCCESS
    );
    assert_eq!(listening.wait().status, NtStatus::SUCCESS);
    for handle in [
        address,
        connection,
        second_address,
        second,
        endpoint,
        listener_address,
    ] {
        t.close(handle);
    }
    close_pair(&t, pair);
    t.unload();
}

#[test]
fn close_completes_pending_requests_with_cancelled() {
    let t = loaded();
    let pair = connected_pair(&t, local(7110));
    let mut buffer = vec![0u8; 64];
    let receiving = t.start(
        pair.server,
        TDI_RECEIVE,
        wire::receive(64, TDI_RECEIVE_NORMAL),
        Some(&mut buffer),
    );
    t.close(pair.server);
    assert_eq!(receiving.wait().status, NtStatus::CANCELLED);
    let listener_address = t.open_address(local(7111), 0).expect("address");
    let endpoint = t.open_connection().expect("endpoint");
    assert_eq!(t.associate(endpoint, listener_address), NtStatus::SUCCESS);
    let listening = start_listen(&t, endpoint);
    t.close(listener_address);
    assert_eq!(
        listening.wait().status,
        NtStatus::CANCELLED,
        "the listener went with its address"
    );
    for handle in [
        endpoint,
        pair.client,
        pair.client_address,
        pair.server_address,
    ] {
        t.close(handle);
    }
    t.unload();
}

#[test]
fn event_handlers_are_accepted_and_unknown_requests_rejected() {
    let t = loaded();
    let address = t.open_address(local(7112), 0).expect("address");
    // TDI_REQUEST_KERNEL_SET_EVENT { EventType, EventHandler, EventContext }: EventType is the
    // low half of the first pointer-sized argument.
    let set_event = |event_type: i32| IoStackParameters {
        Others: OtherParameters {
            Argument1: event_type as u32 as usize as *mut core::ffi::c_void,
            Argument2: std::ptr::null_mut(),
            Argument3: std::ptr::null_mut(),
            Argument4: std::ptr::null_mut(),
        },
    };
    assert_eq!(
        t.request(address, TDI_SET_EVENT_HANDLER, set_event(0), None)
            .status,
        NtStatus::SUCCESS
    );
    assert_eq!(
        t.request(address, TDI_SET_EVENT_HANDLER, set_event(99), None)
            .status,
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        t.request(address, TDI_ACCEPT, set_event(0), None).status,
        NtStatus::NOT_IMPLEMENTED
    );
    assert_eq!(
        t.request(address, 0x40, set_event(0), None).status,
        NtStatus::INVALID_DEVICE_REQUEST
    );
    t.close(address);
    t.unload();
}
