//! SMTP AUTH (RFC 4954) for the submission listeners, and `postling passwd`.
//!
//! How the session uses it, one `AUTH` command at a time:
//! 1. [`sasl::Exchange::start`] with the command's mechanism and initial response; send
//!    `334 …` for each [`sasl::Step::Challenge`] and feed the client's lines to
//!    [`sasl::Exchange::handle_line`] until another step comes back.
//! 2. On [`sasl::Step::Done`], [`users::Users::verify`] the user name and password.
//! 3. On failure, [`throttle::SessionThrottle::on_failure`] says how long to wait before
//!    `535 5.7.8`, or to send `421 4.7.0` and close.
//!
//! Invariants of the whole module:
//! - Nothing here touches a socket or the clock; the users file is read only by
//!   [`users::Users::load`], and the terminal only by [`passwd`].
//! - No step's outcome or timing depends on whether a user name exists, up to the cost
//!   of the stored hashes (see `users.rs`).
//! - Passwords are held in [`secret::Secret`]s, wiped when dropped, never printed.
//! - Nothing panics on peer or file data.

pub mod base64;
pub mod passwd;
pub mod sasl;
pub mod secret;
pub mod sha_crypt;
pub mod throttle;
pub mod users;

pub use sasl::{Exchange, Step};
pub use secret::Secret;
pub use sha_crypt::Hash;
pub use throttle::{Action, AddressMemory, Policy, SessionThrottle};
pub use users::Users;
