//! Device I/O control requests as the `control` target and the `ingress` target's IOCTL step
//! send them: one of the driver's IOCTL codes (or any code), on a control channel or one of
//! the world's files, with the fuzz bytes as input and an output buffer of a given size.
//!
//! Encoding (missing bytes read as 0): `code:u8 file:u8 output:u16le len:u16le input`.
//! `code % 9`: the seven IOCTLs the driver serves, one of them sent as
//! `IRP_MJ_DEVICE_CONTROL` with a METHOD changed, or a code from the input.
//! `file % 8`: a control channel on `\Device\Ip`, or the world's file of that index.

use crate::world::{Warm, World, file};
use tcpip::info::adapters::IOCTL_IP_INTERFACE_INFO;
use tcpip::nt::types::*;

/// One request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ioctl {
    pub code: u8,
    pub file: u8,
    pub output: u16,
    pub input: Vec<u8>,
}

/// The IOCTL codes the driver serves.
const CODES: [u32; 7] = [
    IOCTL_TCP_QUERY_INFORMATION_EX,
    IOCTL_TCP_SET_INFORMATION_EX,
    IOCTL_SET_IP_ADDRESS,
    IOCTL_DELETE_IP_ADDRESS,
    IOCTL_IP_INTERFACE_INFO,
    IOCTL_ICMP_ECHO_REQUEST,
    IOCTL_QUERY_IP_HW_ADDRESS,
];

/// Offset of `Timeout` in `ICMP_ECHO_REQUEST`.
const ECHO_TIMEOUT: usize = 4;

impl Ioctl {
    /// Reads one request from `bytes` (advancing it).
    pub fn decode(bytes: &mut &[u8]) -> Ioctl {
        let mut byte = || match bytes.split_first() {
            Some((&b, rest)) => {
                *bytes = rest;
                b
            }
            None => 0,
        };
        let code = byte();
        let file = byte();
        let output = u16::from_le_bytes([byte(), byte()]);
        let len = usize::from(u16::from_le_bytes([byte(), byte()])) % 2048;
        let (input, rest) = bytes.split_at(len.min(bytes.len()));
        *bytes = rest;
        Ioctl {
            code,
            file,
            output,
            input: input.to_vec(),
        }
    }

    /// The bytes [`decode`](Self::decode) reads back as this request.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.code, self.file]);
        out.extend_from_slice(&self.output.to_le_bytes());
        out.extend_from_slice(&(self.input.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.input);
    }

    /// Sends the request and waits for it.
    pub fn apply(&self, world: &mut World) {
        let code = match usize::from(self.code % 9) {
            index @ 0..7 => CODES[index],
            7 => CODES[usize::from(self.code / 9) % CODES.len()] ^ u32::from(self.code % 3 + 1),
            _ => u32::from_le_bytes(
                self.input
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or_default(),
            ),
        };
        let mut input = self.input.clone();
        // Echo requests wait for their timeout: at most 2 s of virtual time here (the decoder
        // has its own target for the field).
        if code == IOCTL_ICMP_ECHO_REQUEST
            && let Some(timeout) = input.get_mut(ECHO_TIMEOUT..ECHO_TIMEOUT + 4)
        {
            let value = u32::from_le_bytes(timeout.try_into().unwrap_or_default()) % 2000;
            timeout.copy_from_slice(&value.to_le_bytes());
        }
        let on = match self.file % 8 {
            0 => None,
            n => Some(usize::from(n - 1) % file::COUNT),
        };
        world.ioctl(on, code, &input, usize::from(self.output) % 8192);
    }
}

/// Runs a sequence of requests against the world (`crate::session`) and checks the verdict.
pub fn run(data: &[u8]) {
    crate::session::run(Warm::Ioctls, |world| {
        let mut rest = data;
        let mut count = 0;
        while !rest.is_empty() && count < 16 {
            Ioctl::decode(&mut rest).apply(world);
            count += 1;
        }
    });
}
