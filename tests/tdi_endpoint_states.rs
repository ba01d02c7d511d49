//! The connection endpoint's state machine (issue 16, `core::endpoint`): every TDI request in
//! every state, each endpoint driven into its state by real requests over loopback, with the
//! status the request gets, what becomes of the request the state had pending, and a clean
//! teardown (every IRP completed once, nothing leaked at unload, no verifier rule broken).

mod tdi_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use tcpip::host::Handle;
use tcpip::host::afd::wire;
use tcpip::nt::NtStatus;
use tcpip::nt::types::*;
use tdi_support::*;

/// The states of `core::endpoint::State`, as a test reaches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Unassociated,
    Idle,
    Listening,
    Connecting,
    Connected,
    Disconnecting,
    /// Over by a local abort.
    Disconnected,
    /// Connected, the peer's FIN received (CLOSE-WAIT): still sends.
    PeerClosed,
    /// Over by the peer's reset.
    PeerReset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Associate,
    Disassociate,
    Listen,
    Connect,
    Send,
    Receive,
    Release,
    Abort,
    Wait,
    QueryAddress,
}

const VERBS: [Verb; 10] = [
    Verb::Associate,
    Verb::Disassociate,
    Verb::Listen,
    Verb::Connect,
    Verb::Send,
    Verb::Receive,
    Verb::Release,
    Verb::Abort,
    Verb::Wait,
    Verb::QueryAddress,
];

/// What a request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Completes(NtStatus),
    /// Still pending once the core has seen it (completed with STATUS_CANCELLED at close).
    Pends,
}

use Outcome::{Completes, Pends};

const OK: Outcome = Completes(NtStatus::SUCCESS);
const INVALID_CONNECTION: Outcome = Completes(NtStatus::INVALID_CONNECTION);

/// The matrix: the answer to `verb` in `state`.
fn expected(state: State, verb: Verb) -> Outcome {
    use State::*;
    match (verb, state) {
        (Verb::Associate, Unassociated) => OK,
        (Verb::Associate, _) => Completes(NtStatus::INVALID_PARAMETER),
        (Verb::Disassociate, Unassociated) => INVALID_CONNECTION,
        (Verb::Disassociate, _) => OK,
        // An idle endpoint, or a finished one used again (as Windows allows).
        (Verb::Listen, Idle | Disconnected | PeerReset) => Pends,
        // Nobody listens on the port the test connects to.
        (Verb::Connect, Idle | Disconnected | PeerReset) => {
            Completes(NtStatus::REMOTE_NOT_LISTENING)
        }
        (Verb::Listen | Verb::Connect, _) => INVALID_CONNECTION,
        (Verb::Send, Connected | PeerClosed) => OK,
        (Verb::Send, Disconnected | PeerReset) => Completes(NtStatus::FILE_CLOSED),
        (Verb::Send, _) => INVALID_CONNECTION,
        // No data comes: the receive waits, or returns the end of an aborted connection.
        (Verb::Receive, Connected | Disconnecting) => Pends,
        (Verb::Receive, Disconnected | PeerReset) => Completes(NtStatus::FILE_CLOSED),
        // The end of the data: success with 0 bytes.
        (Verb::Receive, PeerClosed) => OK,
        (Verb::Receive, _) => INVALID_CONNECTION,
        (Verb::Release | Verb::Abort | Verb::Wait, Unassociated) => INVALID_CONNECTION,
        (Verb::Release | Verb::Abort | Verb::Wait, _) => OK,
        (Verb::QueryAddress, Unassociated) => INVALID_CONNECTION,
        (Verb::QueryAddress, _) => OK,
    }
}

/// What becomes of the request the state had pending (its listen or connect) after `verb`.
fn expected_pending(state: State, verb: Verb) -> Outcome {
    match (state, verb) {
        (State::Listening | State::Connecting, Verb::Disassociate) => {
            Completes(NtStatus::CANCELLED)
        }
        (State::Listening | State::Connecting, Verb::Release | Verb::Abort | Verb::Wait) => {
            Completes(NtStatus::CANCELLED)
        }
        _ => Pends,
    }
}

/// An endpoint in a state, and everything that keeps it there.
struct Setup {
    endpoint: Handle,
    /// Other handles to close at the end (address files, the peer).
    others: Vec<Handle>,
    /// The request the state has pending (a listen or a connect).
    pending: Option<PendingRequest>,
}

/// A port nobody listens on.
const DEAD_PORT: u16 = 9;
/// The listening port of the states that need a peer.
const PORT: u16 = 4100;

fn enter(t: &Loaded, state: State) -> Setup {
    let open_associated = |local: SocketAddrV4| {
        let address = t.open_address(local, 0).expect("address file");
        let endpoint = t.open_connection().expect("endpoint");
        assert_eq!(t.associate(endpoint, address), NtStatus::SUCCESS);
        (address, endpoint)
    };
    match state {
        State::Unassociated => Setup {
            endpoint: t.open_connection().expect("endpoint"),
            others: Vec::new(),
            pending: None,
        },
        State::Idle => {
            let (address, endpoint) = open_associated(any(0));
            Setup {
                endpoint,
                others: vec![address],
                pending: None,
            }
        }
        State::Listening => {
            let (address, endpoint) = open_associated(local(PORT));
            let listening = start_listen(t, endpoint);
            Setup {
                endpoint,
                others: vec![address],
                pending: Some(listening),
            }
        }
        State::Connecting => {
            let (address, endpoint) = open_associated(any(0));
            // 127.0.0.2 is not the loopback interface's address: the SYNs go nowhere, and the
            // attempt lasts 21 s.
            let remote = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 80);
            let connecting = start_connect(t, endpoint, remote);
            Setup {
                endpoint,
                others: vec![address],
                pending: Some(connecting),
            }
        }
        State::Connected | State::Disconnecting | State::Disconnected => {
            let pair = connected_pair(t, local(PORT));
            match state {
                State::Disconnecting => assert_eq!(
                    disconnect(t, pair.client, TDI_DISCONNECT_RELEASE).status,
                    NtStatus::SUCCESS
                ),
                State::Disconnected => assert_eq!(
                    disconnect(t, pair.client, TDI_DISCONNECT_ABORT).status,
                    NtStatus::SUCCESS
                ),
                _ => {}
            }
            Setup {
                endpoint: pair.client,
                others: vec![pair.client_address, pair.server_address, pair.server],
                pending: None,
            }
        }
        State::PeerClosed => {
            let pair = connected_pair(t, local(PORT));
            assert_eq!(
                disconnect(t, pair.client, TDI_DISCONNECT_RELEASE).status,
                NtStatus::SUCCESS
            );
            let (end, data) = receive(t, pair.server, 16);
            assert_eq!((end.status, data.len()), (NtStatus::SUCCESS, 0), "FIN");
            Setup {
                endpoint: pair.server,
                others: vec![pair.client_address, pair.client, pair.server_address],
                pending: None,
            }
        }
        State::PeerReset => {
            let pair = connected_pair(t, local(PORT));
            assert_eq!(
                disconnect(t, pair.server, TDI_DISCONNECT_ABORT).status,
                NtStatus::SUCCESS
            );
            assert_eq!(receive(t, pair.client, 16).0.status, NtStatus::FILE_CLOSED);
            Setup {
                endpoint: pair.client,
                others: vec![pair.client_address, pair.server_address, pair.server],
                pending: None,
            }
        }
    }
}

/// A TDI_REQUEST_KERNEL with `flags` and no connection information or timeout.
fn no_parameters(flags: u32) -> IoStackParameters {
    use std::ptr::null_mut;
    wire::kernel_request(flags, null_mut(), null_mut(), null_mut())
}

/// The request buffers a cell's request may point to, kept alive until it completes.
struct Buffers {
    data: Vec<u8>,
}

fn issue(t: &Loaded, setup: &Setup, verb: Verb, buffers: &mut Buffers) -> PendingRequest {
    let endpoint = setup.endpoint;
    match verb {
        Verb::Associate => {
            let address = t.open_address(any(0), 0).expect("second address file");
            let request = t.start(
                endpoint,
                TDI_ASSOCIATE_ADDRESS,
                wire::associate(address.as_raw()),
                None,
            );
            request.wait();
            t.close(address);
            request
        }
        Verb::Disassociate => t.start(endpoint, TDI_DISASSOCIATE_ADDRESS, no_parameters(0), None),
        Verb::Listen => start_listen(t, endpoint),
        Verb::Connect => start_connect(t, endpoint, local(DEAD_PORT)),
        Verb::Send => t.start(
            endpoint,
            TDI_SEND,
            wire::send(1, 0),
            Some(&mut buffers.data[..1]),
        ),
        Verb::Receive => t.start(
            endpoint,
            TDI_RECEIVE,
            wire::receive(16, TDI_RECEIVE_NORMAL),
            Some(&mut buffers.data[..]),
        ),
        Verb::Release | Verb::Abort | Verb::Wait => {
            let flags = match verb {
                Verb::Release => TDI_DISCONNECT_RELEASE,
                Verb::Abort => TDI_DISCONNECT_ABORT,
                _ => TDI_DISCONNECT_WAIT,
            };
            t.start(endpoint, TDI_DISCONNECT, no_parameters(flags), None)
        }
        Verb::QueryAddress => t.start(
            endpoint,
            TDI_QUERY_INFORMATION,
            wire::query_information(TDI_QUERY_ADDRESS_INFO),
            Some(&mut buffers.data[..]),
        ),
    }
}

/// A request's outcome once the core has served the requests before it: a synchronous
/// request sent after it has been through the same queue.
fn outcome(t: &Loaded, request: &PendingRequest, probe: Handle) -> Outcome {
    // A query on the probe endpoint goes through the same queues behind `request`: once it is
    // answered, `request` has been applied and, if it finished, completed (one DPC later).
    let _ = t.query_address(probe);
    for _ in 0..200 {
        if request.is_complete() {
            return Completes(request.status().status);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Pends
}

fn cell(state: State, verb: Verb) -> Result<(), String> {
    let t = loaded();
    let setup = enter(&t, state);
    let probe = t.open_connection().expect("probe endpoint");
    if let Some(pending) = &setup.pending {
        assert_eq!(outcome(&t, pending, probe), Pends, "{state:?}: entered");
    }
    let mut buffers = Buffers {
        data: vec![0x5a; 64],
    };
    let request = issue(&t, &setup, verb, &mut buffers);
    let got = outcome(&t, &request, probe);
    let got_pending = setup
        .pending
        .as_ref()
        .map(|pending| outcome(&t, pending, probe));
    let mut errors = String::new();
    if got != expected(state, verb) {
        errors += &format!(
            "{verb:?} in {state:?}: got {got:?}, expected {:?}\n",
            expected(state, verb)
        );
    }
    if let Some(got_pending) = got_pending
        && got_pending != expected_pending(state, verb)
    {
        errors += &format!(
            "{verb:?} in {state:?}: the state's pending request {got_pending:?}, expected {:?}\n",
            expected_pending(state, verb)
        );
    }
    // Closing completes whatever still waits (STATUS_CANCELLED): nothing is left pending.
    t.close(setup.endpoint);
    for other in setup.others {
        t.close(other);
    }
    t.close(probe);
    for pending in setup.pending.iter().chain([&request]) {
        let status = pending.wait().status;
        if status == NtStatus::PENDING {
            errors += &format!("{verb:?} in {state:?}: a request never completed\n");
        }
    }
    t.unload();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn row(state: State) {
    let errors: String = VERBS
        .iter()
        .filter_map(|&verb| cell(state, verb).err())
        .collect();
    assert!(errors.is_empty(), "\n{errors}");
}

#[test]
fn unassociated() {
    row(State::Unassociated);
}

#[test]
fn idle() {
    row(State::Idle);
}

#[test]
fn listening() {
    row(State::Listening);
}

#[test]
fn connecting() {
    row(State::Connecting);
}

#[test]
fn connected() {
    row(State::Connected);
}

#[test]
fn disconnecting() {
    row(State::Disconnecting);
}

#[test]
fn disconnected() {
    row(State::Disconnected);
}

#[test]
fn peer_closed() {
    row(State::PeerClosed);
}

#[test]
fn peer_reset() {
    row(State::PeerReset);
}

fn disassociate(t: &Loaded, endpoint: Handle) -> NtStatus {
    t.request(endpoint, TDI_DISASSOCIATE_ADDRESS, no_parameters(0), None)
        .status
}

#[test]
fn disassociate_cancels_a_pending_listen_and_a_later_client_does_not_complete_it() {
    // The hole of issue 16: DISASSOCIATE succeeded and left the listen pending, and the next
    // client completed it, a live connection on an endpoint without an address.
    let t = loaded();
    let address = t.open_address(local(PORT), 0).expect("address file");
    let endpoint = t.open_connection().expect("endpoint");
    assert_eq!(t.associate(endpoint, address), NtStatus::SUCCESS);
    let listening = start_listen(&t, endpoint);
    assert_eq!(disassociate(&t, endpoint), NtStatus::SUCCESS);
    assert_eq!(listening.wait().status, NtStatus::CANCELLED);

    // A client connects: the address still listens, its connection waits in the backlog.
    let client_address = t.open_address(any(0), 0).expect("client address");
    let client = t.open_connection().expect("client");
    assert_eq!(t.associate(client, client_address), NtStatus::SUCCESS);
    assert_eq!(
        start_connect(&t, client, local(PORT)).wait().status,
        NtStatus::SUCCESS
    );
    assert_eq!(
        t.query_address(endpoint),
        Err(NtStatus::INVALID_CONNECTION),
        "the endpoint has no address"
    );
    assert_eq!(
        send(&t, endpoint, b"x").status,
        NtStatus::INVALID_CONNECTION
    );

    // Associated again, the endpoint takes the waiting connection with a new listen.
    assert_eq!(t.associate(endpoint, address), NtStatus::SUCCESS);
    let listening = start_listen(&t, endpoint);
    assert_eq!(listening.wait().status, NtStatus::SUCCESS);
    assert_eq!(
        listening.returned_peer().map(|peer| *peer.ip()),
        Some(Ipv4Addr::LOCALHOST)
    );
    assert_eq!(send(&t, client, b"hello").status.0, 0);
    assert_eq!(receive(&t, endpoint, 16).1, b"hello");
    for handle in [address, endpoint, client_address, client] {
        t.close(handle);
    }
    t.unload();
}

#[test]
fn disassociate_cancels_a_pending_connect_and_the_endpoint_connects_again() {
    let t = loaded();
    let address = t.open_address(any(0), 0).expect("address file");
    let endpoint = t.open_connection().expect("endpoint");
    assert_eq!(t.associate(endpoint, address), NtStatus::SUCCESS);
    let nowhere = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 80);
    let connecting = start_connect(&t, endpoint, nowhere);
    assert_eq!(disassociate(&t, endpoint), NtStatus::SUCCESS);
    assert_eq!(connecting.wait().status, NtStatus::CANCELLED);
    assert_eq!(
        start_connect(&t, endpoint, local(PORT)).wait().status,
        NtStatus::INVALID_CONNECTION,
        "no address, no connect"
    );

    let server_address = t.open_address(local(PORT), 0).expect("server address");
    let server = t.open_connection().expect("server");
    assert_eq!(t.associate(server, server_address), NtStatus::SUCCESS);
    let listening = start_listen(&t, server);
    assert_eq!(t.associate(endpoint, address), NtStatus::SUCCESS);
    assert_eq!(
        start_connect(&t, endpoint, local(PORT)).wait().status,
        NtStatus::SUCCESS
    );
    assert_eq!(listening.wait().status, NtStatus::SUCCESS);
    for handle in [address, endpoint, server_address, server] {
        t.close(handle);
    }
    t.unload();
}

#[test]
fn disassociate_gives_a_connection_up_gracefully() {
    // AFD disassociates every endpoint before closing it, established ones included, after
    // msafd's graceful TDI_DISCONNECT: the peer sees the end of the data, not a reset.
    let t = loaded();
    let pair = connected_pair(&t, local(PORT));
    assert_eq!(send(&t, pair.client, b"last words").status.0, 0);
    assert_eq!(
        disconnect(&t, pair.client, TDI_DISCONNECT_RELEASE).status,
        NtStatus::SUCCESS
    );
    assert_eq!(disassociate(&t, pair.client), NtStatus::SUCCESS);
    assert_eq!(receive(&t, pair.server, 64).1, b"last words");
    let (end, data) = receive(&t, pair.server, 64);
    assert_eq!((end.status, data.len()), (NtStatus::SUCCESS, 0), "FIN");
    close_pair(&t, pair);
    t.unload();
}

#[test]
fn a_cancelled_listen_or_connect_leaves_the_endpoint_idle_and_usable() {
    let t = loaded();
    let server_address = t.open_address(local(PORT), 0).expect("server address");
    let server = t.open_connection().expect("server");
    assert_eq!(t.associate(server, server_address), NtStatus::SUCCESS);
    let listening = start_listen(&t, server);
    let probe = t.open_connection().expect("probe");
    assert_eq!(outcome(&t, &listening, probe), Pends);
    assert!(t.kernel.cancel_irp(listening.irp));
    assert_eq!(listening.wait().status, NtStatus::CANCELLED);

    let client_address = t.open_address(any(0), 0).expect("client address");
    let client = t.open_connection().expect("client");
    assert_eq!(t.associate(client, client_address), NtStatus::SUCCESS);
    let nowhere = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 80);
    let connecting = start_connect(&t, client, nowhere);
    assert_eq!(outcome(&t, &connecting, probe), Pends);
    assert!(t.kernel.cancel_irp(connecting.irp));
    assert_eq!(connecting.wait().status, NtStatus::CANCELLED);

    // Both are idle again: a new listen and a new connect meet.
    let listening = start_listen(&t, server);
    assert_eq!(
        start_connect(&t, client, local(PORT)).wait().status,
        NtStatus::SUCCESS
    );
    assert_eq!(listening.wait().status, NtStatus::SUCCESS);

    // A cancelled receive leaves the connection as it was.
    let mut room = vec![0u8; 16];
    let receiving = t.start(
        server,
        TDI_RECEIVE,
        wire::receive(16, TDI_RECEIVE_NORMAL),
        Some(&mut room),
    );
    assert_eq!(outcome(&t, &receiving, probe), Pends);
    assert!(t.kernel.cancel_irp(receiving.irp));
    assert_eq!(receiving.wait().status, NtStatus::CANCELLED);
    assert_eq!(send(&t, client, b"after").status, NtStatus::SUCCESS);
    assert_eq!(receive(&t, server, 16).1, b"after");
    for handle in [server_address, server, client_address, client, probe] {
        t.close(handle);
    }
    t.unload();
}

/// A finished connection's endpoints serve new ones, still associated, as on Windows: the
/// server's endpoint listens again for new clients, and the client's connects again, each
/// time to another listener (the same 4-tuple would meet the old connection's TIME-WAIT).
#[test]
fn finished_endpoints_take_new_connections() {
    let t = loaded();
    let pair = connected_pair(&t, local(4200));
    // The client aborts: both endpoints are Disconnected.
    assert_eq!(
        disconnect(&t, pair.client, TDI_DISCONNECT_ABORT).status,
        NtStatus::SUCCESS
    );
    let (status, _) = receive(&t, pair.server, 16);
    assert_eq!(status.status, NtStatus::FILE_CLOSED);
    let mut others = Vec::new();
    for round in 0..3u16 {
        // The server's endpoint takes a new client.
        let listening = start_listen(&t, pair.server);
        let client_address = t.open_address(any(0), 0).expect("client address");
        let client = t.open_connection().expect("client endpoint");
        assert_eq!(t.associate(client, client_address), NtStatus::SUCCESS);
        assert_eq!(
            start_connect(&t, client, local(4200)).wait().status,
            NtStatus::SUCCESS
        );
        assert_eq!(listening.wait().status, NtStatus::SUCCESS, "round {round}");
        // The client's endpoint connects to a new server.
        let server_address = t
            .open_address(local(4300 + round), 0)
            .expect("server address");
        let server = t.open_connection().expect("server endpoint");
        assert_eq!(t.associate(server, server_address), NtStatus::SUCCESS);
        let accepting = start_listen(&t, server);
        let connecting = start_connect(&t, pair.client, local(4300 + round));
        assert_eq!(connecting.wait().status, NtStatus::SUCCESS, "round {round}");
        assert_eq!(accepting.wait().status, NtStatus::SUCCESS, "round {round}");
        for (from, to) in [(client, pair.server), (pair.client, server)] {
            let message = [round as u8; 100];
            assert_eq!(send(&t, from, &message).status, NtStatus::SUCCESS);
            let (status, data) = receive(&t, to, 100);
            assert_eq!((status.status, data), (NtStatus::SUCCESS, message.to_vec()));
            // A graceful end, the reused endpoint closing first.
            assert_eq!(
                disconnect(&t, to, TDI_DISCONNECT_RELEASE).status,
                NtStatus::SUCCESS
            );
            let (status, data) = receive(&t, from, 16);
            assert_eq!((status.status, data.len()), (NtStatus::SUCCESS, 0));
            assert_eq!(
                disconnect(&t, from, TDI_DISCONNECT_RELEASE).status,
                NtStatus::SUCCESS
            );
        }
        others.extend([client_address, client, server_address, server]);
    }
    for handle in others {
        t.close(handle);
    }
    close_pair(&t, pair);
    t.unload();
}
