//! postling: a small, synchronous, single-binary mail transfer agent.
//!
//! Data flows one way: socket → server (mio loop) → `smtp::Session` → spool →
//! delivery. The protocol cores (`smtp`) never touch a socket, a file or the clock.

pub mod auth;
pub mod bounce;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod dns;
pub mod exit;
pub mod lint;
pub mod local;
pub mod sendmail;
pub mod server;
pub mod smtp;
pub mod spool;
pub mod submit;
pub mod time;
