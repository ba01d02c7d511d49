//! The TDI entities of `IOCTL_TCP_QUERY_INFORMATION_EX`, derived from the interfaces and address
//! files the [`Source`] reports, so the list follows bindings, addresses and sockets.
//!
//! The order is part of the contract:
//! - each interface registers `IF_ENTITY` (`IF_MIB`), `AT_ENTITY` (`AT_ARP`, or `AT_NULL` for
//!   loopback) and `CL_NL_ENTITY` (`CL_NL_IP`), with the interface index as instance, loopback
//!   (index 0) first: iphlpapi pairs the N-th IF entity with the N-th IP entity, and finds a
//!   route's IP entity as the N-th one for interface index N;
//! - then the protocol entities, one each as on Windows: `ER_ENTITY` (ICMP), `CO_TL_ENTITY`
//!   (TCP) and `CL_TL_ENTITY` (UDP), which answer the statistics and the whole connection and
//!   listener tables. Their instance is the first ARP interface's index (0 without one):
//!   ReactOS's iphlpapi reads a transport table only from a TL entity whose instance is also
//!   an `AT_ARP` entity's (`hasArp` in `ipstats_reactos.c`), so instance 0 — loopback's
//!   `AT_NULL` — would hide every connection from `netstat` there;
//! - last, one entity per address file (`CO_TL_ENTITY` for TCP, `CL_TL_ENTITY` for UDP), oldest
//!   first, with instance [`ADDRESS_ENTITY_BASE`] + the file's own number: wshtcpip takes the
//!   last TL entity listed after a bind as its socket's entity and names it in the
//!   `IOCTL_TCP_SET_INFORMATION_EX` of setsockopt, which then reaches that address file. Their
//!   instances match no AT entity, so iphlpapi does not count their rows twice.
#![forbid(unsafe_code)]

use crate::info::model::{LinkKind, Source, Transport};
use crate::nt::NtStatus;
use crate::nt::pool;
use crate::nt::types::*;
use alloc::vec::Vec;

/// The first instance of the address-file entities.
pub const ADDRESS_ENTITY_BASE: u32 = 0x1000;

/// What an entity stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    /// The interface with this index: its IF, AT or IP entity.
    Interface { index: u32, kind: LinkKind },
    /// The protocol-wide ICMP, TCP or UDP entity.
    Protocol,
    /// One address file's transport entity.
    AddressFile { transport: Transport, number: u32 },
}

/// The instance of the protocol-wide entities: the first ARP interface's index, or 0.
/// DISPATCH_LEVEL (under the core lock).
pub fn protocol_instance(source: &dyn Source) -> Result<u32, NtStatus> {
    let mut instance = None;
    source.interfaces(&mut |interface| {
        if interface.kind == LinkKind::Ethernet && instance.is_none() {
            instance = Some(interface.index);
        }
        Ok(())
    })?;
    Ok(instance.unwrap_or(0))
}

/// The entity list, as `TDIEntityID`s. DISPATCH_LEVEL (under the core lock), allocates.
pub fn list(source: &dyn Source) -> Result<Vec<TDIEntityID>, NtStatus> {
    let mut list = Vec::new();
    let add = |list: &mut Vec<TDIEntityID>, tei_entity, tei_instance| {
        pool::try_push(
            list,
            TDIEntityID {
                tei_entity,
                tei_instance,
            },
        )
    };
    source.interfaces(&mut |interface| {
        for entity in [IF_ENTITY, AT_ENTITY, CL_NL_ENTITY] {
            add(&mut list, entity, interface.index)?;
        }
        Ok(())
    })?;
    let protocols = protocol_instance(source)?;
    for entity in [ER_ENTITY, CO_TL_ENTITY, CL_TL_ENTITY] {
        add(&mut list, entity, protocols)?;
    }
    source.address_files(&mut |(transport, number)| {
        let entity = match transport {
            Transport::Tcp => CO_TL_ENTITY,
            Transport::Udp => CL_TL_ENTITY,
        };
        add(
            &mut list,
            entity,
            ADDRESS_ENTITY_BASE.saturating_add(*number),
        )
    })?;
    Ok(list)
}

/// Resolves `id` to what it stands for, or `None` if no such entity is listed.
/// DISPATCH_LEVEL (under the core lock).
pub fn resolve(source: &dyn Source, id: TDIEntityID) -> Result<Option<Entity>, NtStatus> {
    let TDIEntityID {
        tei_entity,
        tei_instance,
    } = id;
    match tei_entity {
        IF_ENTITY | AT_ENTITY | CL_NL_ENTITY => {
            let mut found = None;
            source.interfaces(&mut |interface| {
                if interface.index == tei_instance {
                    found = Some(Entity::Interface {
                        index: interface.index,
                        kind: interface.kind,
                    });
                }
                Ok(())
            })?;
            Ok(found)
        }
        ER_ENTITY | CO_TL_ENTITY | CL_TL_ENTITY if tei_instance == protocol_instance(source)? => {
            Ok(Some(Entity::Protocol))
        }
        CO_TL_ENTITY | CL_TL_ENTITY => {
            let Some(number) = tei_instance.checked_sub(ADDRESS_ENTITY_BASE) else {
                return Ok(None);
            };
            let wanted = match tei_entity {
                CO_TL_ENTITY => Transport::Tcp,
                _ => Transport::Udp,
            };
            let mut found = None;
            source.address_files(&mut |&(transport, n)| {
                if transport == wanted && n == number {
                    found = Some(Entity::AddressFile { transport, number });
                }
                Ok(())
            })?;
            Ok(found)
        }
        _ => Ok(None),
    }
}

/// The entity type `ENTITY_TYPE_ID` reports for a resolved entity. Any IRQL.
pub fn entity_type(tei_entity: u32, entity: Entity) -> u32 {
    match (tei_entity, entity) {
        (IF_ENTITY, _) => IF_MIB,
        (AT_ENTITY, Entity::Interface { kind, .. }) => match kind {
            LinkKind::Loopback => AT_NULL,
            LinkKind::Ethernet => AT_ARP,
        },
        (CL_NL_ENTITY, _) => CL_NL_IP,
        (ER_ENTITY, _) => ER_ICMP,
        (CO_TL_ENTITY, _) => CO_TL_TCP,
        _ => CL_TL_UDP,
    }
}
