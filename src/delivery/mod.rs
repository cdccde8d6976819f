//! Delivery: the pass that takes queued messages to their next hop (local Maildir,
//! smarthost or MX), records outcomes in the spool and sends bounces.

pub mod connection;
pub mod local;
pub mod pass;
pub mod remote;
pub mod route;
pub mod schedule;
