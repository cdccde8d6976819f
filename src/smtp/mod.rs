//! The SMTP protocol vocabulary shared by the server session and the delivery client.
//! Nothing in here touches a socket, a file or the clock.

pub mod address;
pub mod client;
pub mod command;
pub mod data;
pub mod headers;
pub mod reply;
pub mod session;

pub use reply::Reply;
