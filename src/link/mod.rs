//! The link layer under the core: the devices smoltcp sends and receives frames through.

pub mod ethernet;
pub mod loopback;
