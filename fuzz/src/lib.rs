//! Shared pieces of the fuzz targets of tcpip.sys: frames from the peer ([`frames`]), the
//! driver loaded in the host model with connections in several states ([`world`]), and the
//! input format of the `ingress` target ([`ingress`]).

pub mod control;
pub mod frames;
pub mod ingress;
pub mod session;
pub mod world;
