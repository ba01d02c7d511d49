//! The TDI entity model answered by `IOCTL_TCP_QUERY_INFORMATION_EX` on control channels.
//!
//! Each interface registers three entities, in this order: `IF_ENTITY` (type `IF_MIB`),
//! `AT_ENTITY` (`AT_ARP`, or `AT_NULL` for loopback) and `CL_NL_ENTITY` (`CL_NL_IP`). iphlpapi
//! pairs the N-th IF entity with the N-th CL_NL entity, so the order is part of the contract.
//! Loopback registers first and gets instance 0 of each. wshtcpip's bind notification fetches the
//! list (`ENTITY_LIST_ID`) and bind() fails if that query fails.
#![forbid(unsafe_code)]

use crate::nt::NtStatus;
use crate::nt::pool;
use crate::nt::types::*;
use alloc::vec::Vec;
use zerocopy::IntoBytes;

/// The loopback interface's entities, instance 0.
const LOOPBACK: [(TDIEntityID, u32); 3] = [
    (entity(IF_ENTITY, 0), IF_MIB),
    (entity(AT_ENTITY, 0), AT_NULL),
    (entity(CL_NL_ENTITY, 0), CL_NL_IP),
];

const fn entity(tei_entity: u32, tei_instance: u32) -> TDIEntityID {
    TDIEntityID {
        tei_entity,
        tei_instance,
    }
}

/// Answers one `TCP_REQUEST_QUERY_INFORMATION_EX` object id with the bytes to copy out.
/// Errors follow the TDI convention: an unknown entity is `TDI_INVALID_PARAMETER`
/// (`STATUS_INVALID_PARAMETER`), an unknown class, type or id of a known entity is
/// `TDI_INVALID_REQUEST` (`STATUS_INVALID_DEVICE_REQUEST`). Any IRQL ≤ DISPATCH_LEVEL.
pub fn query(id: &TDIObjectID) -> Result<Vec<u8>, NtStatus> {
    let generic = id.toi_class == INFO_CLASS_GENERIC;
    if id.toi_entity.tei_entity == GENERIC_ENTITY {
        return if generic && id.toi_type == INFO_TYPE_PROVIDER && id.toi_id == ENTITY_LIST_ID {
            copy(LOOPBACK.map(|(entity, _)| entity).as_bytes())
        } else {
            Err(NtStatus::INVALID_DEVICE_REQUEST)
        };
    }
    let Some((_, kind)) = LOOPBACK.iter().find(|(entity, _)| *entity == id.toi_entity) else {
        return Err(NtStatus::INVALID_PARAMETER);
    };
    if generic && id.toi_id == ENTITY_TYPE_ID {
        return copy(kind.as_bytes());
    }
    Err(NtStatus::INVALID_DEVICE_REQUEST)
}

fn copy(bytes: &[u8]) -> Result<Vec<u8>, NtStatus> {
    let mut answer = pool::try_vec(bytes.len())?;
    answer.extend_from_slice(bytes);
    Ok(answer)
}
