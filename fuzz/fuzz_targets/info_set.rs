//! `info::set::decode`: the value of an `IOCTL_TCP_SET_INFORMATION_EX` for the object it names
//! (routes, ARP entries, socket options).
//!
//! The first byte picks an object id the decoder knows (or takes 20 raw bytes as the id), so
//! that most inputs reach a value decoder. Invariants: a route's prefix is the mask's, an ARP
//! entry's address is a unicast host address and its MAC a unicast one, a TTL option is not 0,
//! and only routes and ARP entries are configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpip::info::set::{NeighborChange, Setting, SocketOption, decode};
use tcpip::nt::types::*;
use zerocopy::FromBytes;

const KNOWN: [(u32, u32, u32); 8] = [
    (CL_NL_ENTITY, INFO_TYPE_PROVIDER, 0x101),
    (AT_ENTITY, INFO_TYPE_PROVIDER, 0x101),
    (CO_TL_ENTITY, INFO_TYPE_CONNECTION, TCP_SOCKET_NODELAY),
    (CO_TL_ENTITY, INFO_TYPE_ADDRESS_OBJECT, 1),
    (CL_TL_ENTITY, INFO_TYPE_ADDRESS_OBJECT, 1),
    (CL_TL_ENTITY, INFO_TYPE_ADDRESS_OBJECT, 2),
    (CO_TL_ENTITY, INFO_TYPE_ADDRESS_OBJECT, 12),
    (CL_TL_ENTITY, INFO_TYPE_ADDRESS_OBJECT, 99),
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (id, buffer) = match KNOWN.get(usize::from(which)) {
        Some(&(entity, kind, object)) => {
            let instance = u32::from(rest.first().copied().unwrap_or(0) % 4);
            let id = TDIObjectID {
                toi_entity: TDIEntityID {
                    tei_entity: entity,
                    tei_instance: instance,
                },
                toi_class: INFO_CLASS_PROTOCOL,
                toi_type: kind,
                toi_id: object,
            };
            (id, rest.get(1..).unwrap_or_default())
        }
        None => match TDIObjectID::read_from_prefix(rest) {
            Ok((id, buffer)) => (id, buffer),
            Err(_) => return,
        },
    };
    let Ok(setting) = decode(&id, buffer) else {
        return;
    };
    assert_eq!(id.toi_class, INFO_CLASS_PROTOCOL);
    match setting {
        Setting::Route(route) => {
            assert!(route.prefix <= 32);
            let mask = u32::from_be_bytes(buffer[40..44].try_into().unwrap());
            assert_eq!(mask.count_ones(), u32::from(route.prefix));
            assert!(setting.is_configuration());
        }
        Setting::Neighbor { ip, change, .. } => {
            assert!(!ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast());
            assert!(!ip.is_loopback());
            if let NeighborChange::Dynamic(mac) | NeighborChange::Static(mac) = change {
                assert!(mac[0] & 1 == 0 && mac != [0; 6]);
            }
            assert!(setting.is_configuration());
        }
        Setting::Option { option, .. } => {
            if let SocketOption::Ttl(ttl) = option {
                assert_ne!(ttl, 0);
            }
            assert!(!setting.is_configuration());
        }
    }
});
