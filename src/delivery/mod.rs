//! Delivery: getting queued messages to their next hop.

pub mod connection;
