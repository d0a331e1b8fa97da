//! durable
extern crate self as durable;
pub mod proto;
pub mod sidecar;
