//! Answers to TDI_QUERY_INFORMATION, built in a fixed buffer (no allocation at DISPATCH_LEVEL).
#![forbid(unsafe_code)]

use crate::nt::types::{TDI_CONNECTION_INFO, TDI_PROVIDER_INFO};
use crate::tdi::TransportAddress;
use zerocopy::IntoBytes;

/// `TDI_SERVICE_CONNECTION_MODE | TDI_SERVICE_ORDERLY_RELEASE |
/// TDI_SERVICE_ERROR_FREE_DELIVERY`: what this transport does, and nothing more.
const SERVICE_FLAGS: u32 = 0x1 | 0x2 | 0x8;

/// One query answer.
pub struct Answer {
    bytes: [u8; 64],
    len: usize,
}

impl Answer {
    fn from(bytes: &[u8]) -> Self {
        let len = bytes.len().min(64);
        let mut answer = Self {
            bytes: [0; 64],
            len,
        };
        for (slot, byte) in answer.bytes.iter_mut().zip(bytes) {
            *slot = *byte;
        }
        answer
    }

    /// The bytes to copy to the caller's buffer.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// TDI_QUERY_ADDRESS_INFO: a `TDI_ADDRESS_INFO` (26 bytes) with the local address.
    pub fn address(address: TransportAddress) -> Self {
        Self::from(&address.emit_address_info(0))
    }

    /// TDI_QUERY_CONNECTION_INFO: a `TDI_CONNECTION_INFO` with the buffer sizes.
    pub fn connection(send_buffer: usize, receive_buffer: usize) -> Self {
        let info = TDI_CONNECTION_INFO {
            State: 0,
            Event: 0,
            TransmittedTsdus: 0,
            ReceivedTsdus: 0,
            TransmissionErrors: 0,
            ReceiveErrors: 0,
            Throughput: 0,
            Delay: 0,
            SendBufferSize: u32::try_from(send_buffer).unwrap_or(u32::MAX),
            ReceiveBufferSize: u32::try_from(receive_buffer).unwrap_or(u32::MAX),
            Unreliable: 0,
            _pad: [0; 7],
        };
        Self::from(info.as_bytes())
    }

    /// TDI_QUERY_PROVIDER_INFO: a TDI 2.0 stream transport with orderly release.
    pub fn provider() -> Self {
        let info = TDI_PROVIDER_INFO {
            Version: 0x0200,
            MaxSendSize: 0,
            MaxConnectionUserData: 0,
            MaxDatagramSize: 0xFFFF,
            ServiceFlags: SERVICE_FLAGS,
            MinimumLookaheadData: 1,
            MaximumLookaheadData: 0xFFFF,
            NumberOfResources: 0,
            StartTime: 0,
        };
        Self::from(info.as_bytes())
    }

    /// TDI_QUERY_MAX_DATAGRAM_INFO: a `TDI_MAX_DATAGRAM_INFO` of 0xFFFF.
    pub fn max_datagram() -> Self {
        Self::from(&0xFFFFu32.to_le_bytes())
    }
}
