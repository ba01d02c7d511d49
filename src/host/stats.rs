//! The driver's protocol counters, read from a loaded driver the way the IP helper will read
//! them through `IOCTL_TCP_QUERY_INFORMATION_EX` once that query is served.

use super::driver::Driver;
use crate::core::fragment::FragmentStats;
use crate::core::icmp::IcmpStats;
use crate::core::lookaside::LookasideStats;
use crate::core::passes::PassStats;
use crate::core::raw::RawStats;
use crate::core::stack::InlineStats;
use crate::core::udp::UdpStats;
use crate::driver::Tcpip;
use crate::nt::entry;
use core::ptr::NonNull;

/// The UDP layer's counters of a loaded driver (`None` if it is not loaded). PASSIVE_LEVEL.
pub fn udp_stats(driver: &Driver) -> Option<UdpStats> {
    let object = NonNull::new(driver.object())?;
    let tcpip = entry::loaded_state::<Tcpip>(object)?;
    Some(tcpip.stack().udp_stats())
}

/// The raw IP layer's counters of a loaded driver (`None` if it is not loaded). PASSIVE_LEVEL.
pub fn raw_stats(driver: &Driver) -> Option<RawStats> {
    let object = NonNull::new(driver.object())?;
    let tcpip = entry::loaded_state::<Tcpip>(object)?;
    Some(tcpip.stack().raw_stats())
}

/// The fragmentation counters of a loaded driver and the bytes its reassembly holds (`None`
/// if it is not loaded). PASSIVE_LEVEL.
pub fn fragment_stats(driver: &Driver) -> Option<(FragmentStats, usize)> {
    let object = NonNull::new(driver.object())?;
    let tcpip = entry::loaded_state::<Tcpip>(object)?;
    Some(tcpip.stack().fragment_stats())
}

/// The ICMP layer's counters of a loaded driver (`None` if it is not loaded). PASSIVE_LEVEL.
pub fn icmp_stats(driver: &Driver) -> Option<IcmpStats> {
    let object = NonNull::new(driver.object())?;
    let tcpip = entry::loaded_state::<Tcpip>(object)?;
    Some(tcpip.stack().icmp_stats())
}

/// The dispatch fast path's counters of a loaded driver (`None` if it is not loaded). Any IRQL.
pub fn inline_stats(driver: &Driver) -> Option<InlineStats> {
    let object = NonNull::new(driver.object())?;
    let tcpip = entry::loaded_state::<Tcpip>(object)?;
    Some(tcpip.stack().inline_stats())
}

/// How long the core passes of a loaded driver held the core, in processor time (`None` if it
/// is not loaded); with `reset`, the count starts over afterwards. Any IRQL.
pub fn pass_stats(driver: &Driver, reset: bool) -> Option<PassStats> {
    let object = NonNull::new(driver.object())?;
    let tcpip = entry::loaded_state::<Tcpip>(object)?;
    let stats = tcpip.stack().pass_stats();
    if reset {
        tcpip.stack().reset_pass_stats();
    }
    Some(stats)
}

/// The socket ring lookaside's counters of a loaded driver and what it holds (`None` if it is
/// not loaded). PASSIVE_LEVEL.
pub fn lookaside_stats(driver: &Driver) -> Option<LookasideStats> {
    let object = NonNull::new(driver.object())?;
    let tcpip = entry::loaded_state::<Tcpip>(object)?;
    Some(tcpip.stack().lookaside_stats())
}

/// Frees every ring block a loaded driver's lookaside holds, so that its pool can be compared
/// block for block with an earlier moment (`false` if it is not loaded). PASSIVE_LEVEL.
pub fn flush_lookaside(driver: &Driver) -> bool {
    let Some(object) = NonNull::new(driver.object()) else {
        return false;
    };
    let Some(tcpip) = entry::loaded_state::<Tcpip>(object) else {
        return false;
    };
    tcpip.stack().flush_lookaside();
    true
}
