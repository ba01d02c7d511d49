//! The NDIS 5.0 protocol "Tcpip": the driver's bindings to network adapters.
//!
//! [`NdisProtocol::register`] (from `DriverEntry`, once the stack runs) registers the protocol;
//! NDIS calls [`Protocol::bind`] for each adapter named in `Services\Tcpip\Linkage\Bind` before
//! the registration returns, and again for adapters that arrive later. Each bind opens the
//! adapter ([`binding`]) and attaches it to the core as an interface of its own (the lowest
//! free index from 1, kept while it is bound), with the IP configuration of its
//! `Interfaces\{GUID}` key ([`config`]): a static address and default gateway are applied at
//! once; with DHCP the interface is up with no address until the DHCP client sets one with
//! `IOCTL_SET_IP_ADDRESS`. An unbind removes that interface only.
//!
//! [`NdisProtocol::shutdown`] (at unload) unbinds every adapter itself, then deregisters:
//! ReactOS's `NdisDeregisterProtocol` does not unbind a protocol's adapters.
#![forbid(unsafe_code)]

pub mod binding;
pub mod config;

use crate::core::stack::Stack;
use crate::link::ethernet::{Adapter, DEFAULT_FRAMES};
use crate::nt::NtStatus;
use crate::nt::log::Level;
use crate::nt::ndis::open::Open;
use crate::nt::ndis::packet::PacketId;
use crate::nt::ndis::protocol::{Protocol, Registration};
use crate::nt::ndis::receive::{Lookahead, ReceivedPacket};
use crate::nt::ndis::{NdisStatus, RESOURCES};
use crate::nt::pool::{try_push, try_vec};
use crate::nt::sync::SpinLock;
use alloc::sync::Arc;
use alloc::vec::Vec;
use binding::Binding;
use config::IpConfig;
use core::fmt;

/// Most adapters bound at once.
pub const MAX_BINDINGS: usize = 8;

/// UTF-16 text for the debug log (non-ASCII shown as `?`).
pub struct Wide<'a>(pub &'a [u16]);

impl fmt::Display for Wide<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &unit in self.0 {
            let c = u8::try_from(unit)
                .ok()
                .filter(u8::is_ascii)
                .map_or('?', char::from);
            fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

/// The protocol's state.
pub struct NdisProtocol {
    registration: Registration,
    stack: SpinLock<Option<&'static Stack>>,
    bindings: SpinLock<Vec<Arc<Binding>>>,
}

impl NdisProtocol {
    /// An unregistered protocol. PASSIVE_LEVEL.
    pub fn new() -> Result<NdisProtocol, NtStatus> {
        Ok(NdisProtocol {
            registration: Registration::default(),
            stack: SpinLock::new(None),
            bindings: SpinLock::new(try_vec(MAX_BINDINGS)?),
        })
    }

    /// Registers the protocol over `stack`; NDIS binds the known adapters before this returns.
    /// A failure leaves the driver with its loopback only. PASSIVE_LEVEL.
    pub fn register(&'static self, stack: &'static Stack) {
        *self.stack.lock() = Some(stack);
        match self.registration.register(self) {
            Ok(()) => crate::log!(Level::Notice, "NDIS protocol Tcpip registered"),
            Err(status) => crate::log!(
                Level::Error,
                "NdisRegisterProtocol failed ({status}): no network adapter, loopback only"
            ),
        }
    }

    /// Unbinds every adapter and deregisters. PASSIVE_LEVEL, at unload.
    pub fn shutdown(&'static self) {
        loop {
            let next = self.bindings.lock().first().cloned();
            let Some(binding) = next else { break };
            self.unbind(&binding);
        }
        let status = self.registration.deregister();
        if !status.is_success() {
            crate::log!(Level::Error, "NdisDeregisterProtocol failed: {status}");
        }
    }

    /// The core's interface index of the bound adapter `name` (`\Device\{GUID}`), if it is
    /// bound. Any IRQL ≤ DISPATCH_LEVEL.
    pub fn interface_of(&self, name: &[u16]) -> Option<u32> {
        self.bindings
            .lock()
            .iter()
            .find(|binding| binding.name() == name)
            .and_then(|binding| binding.interface())
    }

    /// The stack given to `register`. Any IRQL.
    fn stack(&self) -> Option<&'static Stack> {
        *self.stack.lock()
    }

    /// Attaches `binding` to the core as an interface of its own, with its IP configuration.
    /// PASSIVE_LEVEL.
    fn attach(&self, binding: &Arc<Binding>) -> Result<(), NtStatus> {
        let index = binding.attach(DEFAULT_FRAMES)?;
        let config = config::read(binding.guid());
        if let (
            Some(stack),
            IpConfig::Static {
                address,
                prefix,
                gateway,
            },
        ) = (self.stack(), config)
        {
            if let Err(status) = stack.configure_address(index, Some((address, prefix))) {
                crate::log!(
                    Level::Error,
                    "{}: address {address}/{prefix} refused: {status}",
                    Wide(binding.guid())
                );
            }
            let status = stack.set_gateway(index, gateway);
            if !status.is_success() {
                crate::log!(
                    Level::Error,
                    "{}: gateway {gateway:?} refused: {status}",
                    Wide(binding.guid())
                );
            }
        }
        crate::log!(
            Level::Notice,
            "{}: interface {index}, {config}",
            Wide(binding.guid())
        );
        Ok(())
    }
}

impl Protocol for NdisProtocol {
    type Binding = Binding;

    /// `ProtocolBindAdapter`. PASSIVE_LEVEL.
    fn bind(&'static self, name: &[u16], _registry_path: &[u16]) -> NdisStatus {
        let Some(stack) = self.stack() else {
            return NtStatus::INVALID_DEVICE_STATE;
        };
        if self.bindings.lock().len() >= MAX_BINDINGS {
            return RESOURCES;
        }
        let binding =
            match Binding::new(stack, name).and_then(|b| Arc::try_new(b).map_err(|_| RESOURCES)) {
                Ok(binding) => binding,
                Err(status) => {
                    crate::log!(Level::Error, "bind {}: {status}", Wide(name));
                    return status;
                }
            };
        if let Err(status) = binding.bind(&self.registration, Arc::as_ptr(&binding)) {
            crate::log!(Level::Error, "bind {}: {status}", Wide(name));
            return status;
        }
        if let Err(status) = try_push(&mut self.bindings.lock(), binding.clone()) {
            binding.close();
            return status;
        }
        let mac = binding.mac();
        crate::log!(
            Level::Notice,
            "bound {}: MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, MTU {}, media {}",
            Wide(name),
            mac[0],
            mac[1],
            mac[2],
            mac[3],
            mac[4],
            mac[5],
            binding.mtu(),
            if binding.connected() {
                "connected"
            } else {
                "disconnected"
            }
        );
        if let Err(status) = self.attach(&binding) {
            crate::log!(
                Level::Error,
                "bind {}: attaching to the core: {status}",
                Wide(name)
            );
            self.unbind(&binding);
            return status;
        }
        NtStatus::SUCCESS
    }

    /// `ProtocolUnbindAdapter`, and each binding at unload. PASSIVE_LEVEL.
    fn unbind(&'static self, binding: &Binding) -> NdisStatus {
        let status = binding.close();
        let removed = {
            let mut bindings = self.bindings.lock();
            let index = bindings.iter().position(|b| core::ptr::eq(&**b, binding));
            index.map(|i| bindings.remove(i))
        };
        crate::log!(Level::Notice, "unbound {}", Wide(binding.name()));
        drop(removed);
        status
    }

    /// The binding's [`Open`]. Any IRQL.
    fn open(binding: &Binding) -> &Open {
        binding.open()
    }

    /// `ProtocolSendComplete`. DISPATCH_LEVEL.
    fn send_complete(binding: &Binding, packet: PacketId, status: NdisStatus) {
        binding.send_complete(packet, status);
    }

    /// `ProtocolTransferDataComplete`. DISPATCH_LEVEL.
    fn transfer_complete(binding: &Binding, packet: PacketId, status: NdisStatus, bytes: u32) {
        binding.transfer_complete(packet, status, bytes);
    }

    /// `ProtocolReceive`. DISPATCH_LEVEL.
    fn receive(binding: &Binding, indication: &Lookahead<'_>) -> NdisStatus {
        binding.receive(indication)
    }

    /// `ProtocolReceivePacket`. DISPATCH_LEVEL.
    fn receive_packet(binding: &Binding, packet: &ReceivedPacket<'_>) {
        binding.receive_packet(packet);
    }

    /// `ProtocolStatus`. DISPATCH_LEVEL.
    fn status(binding: &Binding, status: NdisStatus) {
        binding.status(status);
    }
}
