//! The connection endpoint's state machine (issue 16): the states a TCP_CONTEXT goes through,
//! the TDI requests that act on it, and the one answer each request gets in each state.
//!
//! [`rule`] is the whole matrix, written as one exhaustive `match` with no wildcard, so a new
//! state or request does not compile until every cell is decided. Each request handler of
//! `core::state` asks it first and only does the work of a [`Rule::Serve`] cell; the cells
//! that answer at once change nothing. Pure, any IRQL.
//!
//! Closing the file (IRP_MJ_CLEANUP/CLOSE) is served in every state the same way: every
//! pending request completes with `STATUS_CANCELLED`, a live connection is given up (FIN, or
//! RST with unread data), the association is dropped. Cancelling a pending request returns the
//! endpoint to the state it had before that request (`Core::cancel`).
#![forbid(unsafe_code)]

use crate::core::connection::{Connection, Phase};
use crate::nt::NtStatus;
use crate::tdi::Disconnect;

/// Where a connection endpoint is, as TDI sees it. Derived from the endpoint's fields by
/// [`Connection::state`], the only place that reads them together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Open, not associated with an address file.
    Unassociated,
    /// Associated, nothing pending: ready for TDI_LISTEN or TDI_CONNECT.
    Idle,
    /// A TDI_LISTEN is pending on the address's listener. (TDI_QUERY_ACCEPT is not supported,
    /// so a listen completes with the connection established: there is no "accept pending".)
    Listening,
    /// A TDI_CONNECT is pending.
    Connecting,
    /// Established, both directions open (or the peer's FIN seen, data still readable).
    Connected,
    /// TDI_DISCONNECT RELEASE was done: no more sends, the FIN follows the queued data.
    Disconnecting,
    /// The connection is over (peer's FIN and ours, reset, local abort, timeout), still
    /// associated. Only receives (which return the end) and disassociation remain useful.
    Disconnected,
}

/// The TDI requests that act on an endpoint's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Associate,
    Disassociate,
    Listen,
    Connect,
    Send,
    Receive,
    Disconnect(Disconnect),
    /// TDI_QUERY_INFORMATION with TDI_QUERY_ADDRESS_INFO on the connection file.
    QueryAddress,
}

/// The answer of one cell of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The handler does the request's work for this state.
    Serve,
    /// The request completes at once with this status; nothing changes.
    Answer(NtStatus),
}

/// The answer to `verb` on an endpoint in `state`.
///
/// Statuses: the ones Windows' tcpip returns as far as documented (TDI_ASSOCIATE_ADDRESS on an
/// associated endpoint: `STATUS_INVALID_PARAMETER`; requests that need an association or a
/// connection on an endpoint without one: `STATUS_INVALID_CONNECTION`, tdistat.h's
/// TDI_NOT_ASSOCIATED / TDI_INVALID_CONNECTION; TDI_DISASSOCIATE_ADDRESS answers only SUCCESS
/// or INVALID_CONNECTION, per the DDK), and for sends on a dead connection the status msafd
/// turns into WSAECONNRESET (`CloseReason::error_status`).
///
/// TDI_DISASSOCIATE_ADDRESS is served in every associated state: it detaches the endpoint as
/// a close would, then succeeds (see `Core::disassociate`). It is never refused, because AFD
/// sends it before the CLOSE of every endpoint, established ones included, and ignores its
/// result; and it never leaves a TDI_LISTEN or TDI_CONNECT pending, which could otherwise
/// complete later with a connection on an endpoint that has no address.
pub fn rule(state: State, verb: Verb) -> Rule {
    use Rule::{Answer, Serve};
    use State::*;
    const NOT_ASSOCIATED: Rule = Answer(NtStatus::INVALID_CONNECTION);
    const WRONG_STATE: Rule = Answer(NtStatus::INVALID_CONNECTION);
    const DONE: Rule = Answer(NtStatus::SUCCESS);
    match verb {
        Verb::Associate => match state {
            Unassociated => Serve,
            Idle | Listening | Connecting | Connected | Disconnecting | Disconnected => {
                Answer(NtStatus::INVALID_PARAMETER)
            }
        },
        Verb::Disassociate => match state {
            Unassociated => NOT_ASSOCIATED,
            Idle | Listening | Connecting | Connected | Disconnecting | Disconnected => Serve,
        },
        Verb::Listen | Verb::Connect => match state {
            Unassociated => NOT_ASSOCIATED,
            // A finished connection's endpoint is used again, as on Windows: the handler
            // leaves the old connection to end on its own first (`Core::recycle`).
            Idle | Disconnected => Serve,
            Listening | Connecting | Connected | Disconnecting => WRONG_STATE,
        },
        Verb::Send => match state {
            Unassociated => NOT_ASSOCIATED,
            Connected => Serve,
            Idle | Listening | Connecting | Disconnecting => WRONG_STATE,
            // The handler fails it with the connection's close status.
            Disconnected => Serve,
        },
        Verb::Receive => match state {
            Unassociated => NOT_ASSOCIATED,
            Idle | Listening | Connecting => WRONG_STATE,
            // Data still buffered is read; then the end (0 bytes after a FIN, else an error).
            Connected | Disconnecting | Disconnected => Serve,
        },
        Verb::Disconnect(kind) => match (state, kind) {
            (Unassociated, _) => NOT_ASSOCIATED,
            // Nothing to disconnect.
            (Idle | Disconnected, _) => DONE,
            // Withdraws the pending listen or connect (it completes with STATUS_CANCELLED).
            (Listening | Connecting, _) => Serve,
            (Connected, Disconnect::Release | Disconnect::Abort) => Serve,
            (Connected | Disconnecting, Disconnect::Wait) => DONE,
            (Disconnecting, Disconnect::Release) => DONE,
            (Disconnecting, Disconnect::Abort) => Serve,
        },
        Verb::QueryAddress => match state {
            Unassociated => NOT_ASSOCIATED,
            Idle | Listening | Connecting | Connected | Disconnecting | Disconnected => Serve,
        },
    }
}

impl Connection {
    /// The endpoint's state. Any IRQL (under the core lock).
    pub fn state(&self) -> State {
        match (self.address, self.phase) {
            (None, _) => State::Unassociated,
            (Some(_), Phase::Idle) => State::Idle,
            (Some(_), Phase::Listening) => State::Listening,
            (Some(_), Phase::Connecting { .. }) => State::Connecting,
            (Some(_), Phase::Connected) => match (self.closed, self.send_shutdown) {
                (Some(_), _) => State::Disconnected,
                (None, true) => State::Disconnecting,
                (None, false) => State::Connected,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [State; 7] = [
        State::Unassociated,
        State::Idle,
        State::Listening,
        State::Connecting,
        State::Connected,
        State::Disconnecting,
        State::Disconnected,
    ];

    #[test]
    fn only_an_idle_or_finished_endpoint_listens_or_connects() {
        for state in STATES {
            for verb in [Verb::Listen, Verb::Connect] {
                let expected = match state {
                    State::Idle | State::Disconnected => Rule::Serve,
                    _ => Rule::Answer(NtStatus::INVALID_CONNECTION),
                };
                assert_eq!(rule(state, verb), expected, "{verb:?} in {state:?}");
            }
        }
    }

    #[test]
    fn every_associated_endpoint_can_be_disassociated() {
        for state in STATES {
            let expected = match state {
                State::Unassociated => Rule::Answer(NtStatus::INVALID_CONNECTION),
                _ => Rule::Serve,
            };
            assert_eq!(rule(state, Verb::Disassociate), expected, "{state:?}");
        }
    }

    #[test]
    fn a_fresh_endpoint_is_unassociated() {
        let mut connection = Connection::new(0);
        assert_eq!(connection.state(), State::Unassociated);
        connection.address = Some(3);
        assert_eq!(connection.state(), State::Idle);
        connection.phase = Phase::Connected;
        connection.send_shutdown = true;
        assert_eq!(connection.state(), State::Disconnecting);
    }
}
