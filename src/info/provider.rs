//! `TDI_QUERY_INFORMATION` on a control channel: what the transport says about itself.
//!
//! Windows Server 2003 answers `TDI_QUERY_PROVIDER_INFO` on a control channel of
//! `\Device\Tcp`, `\Device\Udp` and `\Device\RawIp` with one description of the whole
//! transport (ReactOS's kmtest `tcpip/tdi.c` records it): TDI version 1.0, no send limit,
//! datagrams up to 65,507 bytes (65,535 less the IP and UDP headers), and the service flags
//! below; `\Device\Ip` answers `STATUS_NOT_IMPLEMENTED`. `TDI_QUERY_PROVIDER_STATISTICS` is the
//! generic TDI statistics block; the counters the core keeps fill what they can.
#![forbid(unsafe_code)]

use crate::info::model::{Source, TcpState};
use crate::nt::NtStatus;
use crate::nt::types::{TDI_PROVIDER_INFO, TDI_PROVIDER_STATISTICS};

/// `TDI_SERVICE_*`: connection mode, orderly release, connectionless mode, error-free delivery,
/// broadcast, delayed acceptance, expedited data, no zero length, datagram connections, forced
/// access check, send-and-disconnect, accept local address, address security, pre-posted
/// receives, no push: Windows Server 2003's set.
const WINDOWS_SERVICE_FLAGS: u32 = 0x1
    | 0x2
    | 0x4
    | 0x8
    | 0x20
    | 0x80
    | 0x100
    | 0x800
    | 0x8000
    | 0x1_0000
    | 0x2_0000
    | 0x8_0000
    | 0x10_0000
    | 0x20_0000
    | 0x40_0000;

/// The largest UDP payload: 65,535 less 20 bytes of IP and 8 of UDP header.
const MAX_DATAGRAM: u32 = 65_507;

/// The provider information of a control channel. Any IRQL.
pub fn control_channel_info() -> TDI_PROVIDER_INFO {
    TDI_PROVIDER_INFO {
        Version: 0x0100,
        MaxSendSize: u32::MAX,
        MaxConnectionUserData: 0,
        MaxDatagramSize: MAX_DATAGRAM,
        ServiceFlags: WINDOWS_SERVICE_FLAGS,
        MinimumLookaheadData: 1,
        MaximumLookaheadData: 0xFFFF,
        NumberOfResources: 0,
        StartTime: 0,
    }
}

/// The provider statistics: open connections, TCP segments and UDP datagrams each way.
/// DISPATCH_LEVEL (under the core lock).
pub fn statistics(source: &dyn Source) -> Result<TDI_PROVIDER_STATISTICS, NtStatus> {
    let counters = source.counters();
    let udp = source.udp_counters();
    let mut open = 0u32;
    source.tcp_connections(&mut |row| {
        if matches!(row.state, TcpState::Established | TcpState::CloseWait) {
            open = open.saturating_add(1);
        }
        Ok(())
    })?;
    Ok(TDI_PROVIDER_STATISTICS {
        Version: 0x0100,
        OpenConnections: open,
        DatagramsSent: udp.out_datagrams as u32,
        DatagramsReceived: udp.in_datagrams as u32,
        PacketsSent: counters.tcp.out_segments as u32,
        PacketsReceived: counters.tcp.in_segments as u32,
        ..TDI_PROVIDER_STATISTICS::default()
    })
}
