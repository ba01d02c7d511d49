//! The IP helper's wire structures (`tcpioctl.h`, `ipinfo.h`, `tcpinfo.h`, `llinfo.h` of the
//! DDK and of ReactOS's `sdk/include/reactos`), as zerocopy types. All are arrays of `ULONG`s
//! (plus bytes), so they are the same on x86 and x64; the assertions below check it for the
//! architecture being built. Addresses (`IPAddr`) are in network order in memory, hence the
//! `[u8; 4]` fields; ports in the TCP and UDP rows are `ULONG`s holding the network-order
//! 16-bit port in their low two bytes, as `MIB_TCPROW` documents.
#![forbid(unsafe_code)]

use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `IFEntry` up to `if_descr` (92 bytes); `if_descrlen` bytes of description follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IFEntry {
    pub if_index: u32,
    /// 24 software loopback, 6 Ethernet (IANA ifType).
    pub if_type: u32,
    pub if_mtu: u32,
    /// Bits per second.
    pub if_speed: u32,
    pub if_physaddrlen: u32,
    pub if_physaddr: [u8; 8],
    /// 1 up, 2 down.
    pub if_adminstatus: u32,
    /// ReactOS/Windows: 0 non-operational, 1 unreachable, 2 disconnected, 3 connecting,
    /// 4 connected, 5 operational (`IF_OPER_STATUS_*` of iphlpapi).
    pub if_operstatus: u32,
    pub if_lastchange: u32,
    pub if_inoctets: u32,
    pub if_inucastpkts: u32,
    pub if_innucastpkts: u32,
    pub if_indiscards: u32,
    pub if_inerrors: u32,
    pub if_inunknownprotos: u32,
    pub if_outoctets: u32,
    pub if_outucastpkts: u32,
    pub if_outnucastpkts: u32,
    pub if_outdiscards: u32,
    pub if_outerrors: u32,
    pub if_outqlen: u32,
    pub if_descrlen: u32,
}

/// `IPSNMPInfo` (92 bytes): the `ip` group of RFC 1213 plus the table sizes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IPSNMPInfo {
    /// 1 forwarding, 2 not forwarding (a host).
    pub ipsi_forwarding: u32,
    pub ipsi_defaultttl: u32,
    pub ipsi_inreceives: u32,
    pub ipsi_inhdrerrors: u32,
    pub ipsi_inaddrerrors: u32,
    pub ipsi_forwdatagrams: u32,
    pub ipsi_inunknownprotos: u32,
    pub ipsi_indiscards: u32,
    pub ipsi_indelivers: u32,
    pub ipsi_outrequests: u32,
    pub ipsi_routingdiscards: u32,
    pub ipsi_outdiscards: u32,
    pub ipsi_outnoroutes: u32,
    pub ipsi_reasmtimeout: u32,
    pub ipsi_reasmreqds: u32,
    pub ipsi_reasmoks: u32,
    pub ipsi_reasmfails: u32,
    pub ipsi_fragoks: u32,
    pub ipsi_fragfails: u32,
    pub ipsi_fragcreates: u32,
    pub ipsi_numif: u32,
    pub ipsi_numaddr: u32,
    pub ipsi_numroutes: u32,
}

/// `IPAddrEntry` (24 bytes): one address of an interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IPAddrEntry {
    pub iae_addr: [u8; 4],
    pub iae_index: u32,
    pub iae_mask: [u8; 4],
    /// The low bit of the broadcast address (1: all ones), as Windows reports it.
    pub iae_bcastaddr: u32,
    pub iae_reasmsize: u32,
    pub iae_context: u16,
    pub iae_pad: u16,
}

/// `IPRouteEntry` (52 bytes): one route, `MIB_IPFORWARDROW`'s fields in RFC 1213 order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IPRouteEntry {
    pub ire_dest: [u8; 4],
    pub ire_index: u32,
    pub ire_metric1: u32,
    pub ire_metric2: u32,
    pub ire_metric3: u32,
    pub ire_metric4: u32,
    pub ire_nexthop: [u8; 4],
    /// 2 invalid (delete), 3 direct, 4 indirect.
    pub ire_type: u32,
    /// 2 local, 3 network management (static).
    pub ire_proto: u32,
    pub ire_age: u32,
    pub ire_mask: [u8; 4],
    pub ire_metric5: u32,
    pub ire_context: u32,
}

/// `IPNetToMediaEntry` (24 bytes, `MIB_IPNETROW`): one ARP cache entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IPNetToMediaEntry {
    pub inme_index: u32,
    pub inme_physaddrlen: u32,
    pub inme_physaddr: [u8; 8],
    pub inme_addr: [u8; 4],
    /// 2 invalid (delete), 3 dynamic, 4 static.
    pub inme_type: u32,
}

/// `AddrXlatInfo` (8 bytes): `IF_MIB_STATS_ID` on an AT entity.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct AddrXlatInfo {
    pub axi_count: u32,
    pub axi_index: u32,
}

/// `IPInterfaceInfo` up to `iii_addr` (16 bytes): `IP_INTFC_INFO_ID`; `iii_addrlength` bytes
/// of physical address follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IPInterfaceInfo {
    /// `IP_INTFC_FLAG_P2P` (1) for point-to-point links; 0 here.
    pub iii_flags: u32,
    pub iii_mtu: u32,
    pub iii_speed: u32,
    pub iii_addrlength: u32,
}

/// `TCPStats` (60 bytes, `MIB_TCPSTATS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TCPStats {
    /// 4: Van Jacobson's algorithm (RFC 6298's).
    pub ts_rtoalgorithm: u32,
    /// Milliseconds.
    pub ts_rtomin: u32,
    pub ts_rtomax: u32,
    /// The connection limit, `u32::MAX` (-1) for dynamic.
    pub ts_maxconn: u32,
    pub ts_activeopens: u32,
    pub ts_passiveopens: u32,
    pub ts_attemptfails: u32,
    pub ts_estabresets: u32,
    pub ts_currestab: u32,
    pub ts_insegs: u32,
    pub ts_outsegs: u32,
    pub ts_retranssegs: u32,
    pub ts_inerrs: u32,
    pub ts_outrsts: u32,
    pub ts_numconns: u32,
}

/// `TCPConnTableEntry` (20 bytes, `MIB_TCPROW`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TCPConnTableEntry {
    /// `MIB_TCP_STATE`: CLOSED 1, LISTEN 2, SYN-SENT 3, SYN-RCVD 4, ESTABLISHED 5,
    /// FIN-WAIT-1 6, FIN-WAIT-2 7, CLOSE-WAIT 8, CLOSING 9, LAST-ACK 10, TIME-WAIT 11.
    pub tct_state: u32,
    pub tct_localaddr: [u8; 4],
    pub tct_localport: [u8; 4],
    pub tct_remoteaddr: [u8; 4],
    pub tct_remoteport: [u8; 4],
}

/// `TCPIP_OWNING_MODULE_SIZE`: the `ULONGLONG`s of an owner-module row's module information.
pub const OWNING_MODULE_SIZE: usize = 16;

/// `MIB_TCPROW_OWNER_PID` (24 bytes): a `MIB_TCPROW` and the owning process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TcpRowOwnerPid {
    pub row: TCPConnTableEntry,
    pub owning_pid: u32,
}

/// `MIB_TCPROW_OWNER_MODULE` (160 bytes): the owner-PID row, the creation time
/// (`LARGE_INTEGER`, kept as bytes so the struct has no padding) and the module information,
/// which this driver does not keep (zero, as Windows leaves it for kernel-mode owners).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TcpRowOwnerModule {
    pub row: TcpRowOwnerPid,
    pub create_timestamp: [u8; 8],
    pub owning_module_info: [[u8; 8]; OWNING_MODULE_SIZE],
}

/// `MIB_UDPROW_OWNER_PID` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct UdpRowOwnerPid {
    pub row: UDPEntry,
    pub owning_pid: u32,
}

/// `MIB_UDPROW_OWNER_MODULE` (160 bytes): the owner-PID row, padding to the 8-byte aligned
/// creation time, the flags (`SpecificPortBind`), padding, and the module information.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct UdpRowOwnerModule {
    pub row: UdpRowOwnerPid,
    pub pad0: u32,
    pub create_timestamp: [u8; 8],
    pub flags: u32,
    pub pad1: u32,
    pub owning_module_info: [[u8; 8]; OWNING_MODULE_SIZE],
}

/// `UDPStats` (20 bytes, `MIB_UDPSTATS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct UDPStats {
    pub us_indatagrams: u32,
    pub us_noports: u32,
    pub us_inerrors: u32,
    pub us_outdatagrams: u32,
    pub us_numaddrs: u32,
}

/// `UDPEntry` (8 bytes, `MIB_UDPROW`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct UDPEntry {
    pub ue_localaddr: [u8; 4],
    pub ue_localport: [u8; 4],
}

/// `ICMPStats` (52 bytes, `MIBICMPSTATS`): one direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ICMPStats {
    pub icmps_msgs: u32,
    pub icmps_errors: u32,
    pub icmps_destunreachs: u32,
    pub icmps_timeexcds: u32,
    pub icmps_parmprobs: u32,
    pub icmps_srcquenchs: u32,
    pub icmps_redirects: u32,
    pub icmps_echos: u32,
    pub icmps_echoreps: u32,
    pub icmps_timestamps: u32,
    pub icmps_timestampreps: u32,
    pub icmps_addrmasks: u32,
    pub icmps_addrmaskreps: u32,
}

/// `ICMPSNMPInfo` (104 bytes, `MIBICMPINFO`): received, then sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ICMPSNMPInfo {
    pub icsi_instats: ICMPStats,
    pub icsi_outstats: ICMPStats,
}

const _: () = {
    assert!(size_of::<IFEntry>() == 92);
    assert!(size_of::<IPSNMPInfo>() == 92);
    assert!(size_of::<IPAddrEntry>() == 24);
    assert!(size_of::<IPRouteEntry>() == 52);
    assert!(size_of::<IPNetToMediaEntry>() == 24);
    assert!(size_of::<AddrXlatInfo>() == 8);
    assert!(size_of::<IPInterfaceInfo>() == 16);
    assert!(size_of::<TCPStats>() == 60);
    assert!(size_of::<TCPConnTableEntry>() == 20);
    assert!(size_of::<UDPStats>() == 20);
    assert!(size_of::<UDPEntry>() == 8);
    assert!(size_of::<TcpRowOwnerPid>() == 24);
    assert!(size_of::<TcpRowOwnerModule>() == 160);
    assert!(size_of::<UdpRowOwnerPid>() == 12);
    assert!(size_of::<UdpRowOwnerModule>() == 160);
    assert!(core::mem::offset_of!(UdpRowOwnerModule, create_timestamp) == 16);
    assert!(core::mem::offset_of!(UdpRowOwnerModule, owning_module_info) == 32);
    assert!(size_of::<ICMPStats>() == 52);
    assert!(size_of::<ICMPSNMPInfo>() == 104);
};
