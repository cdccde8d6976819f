//! SMTP AUTH (RFC 4954) for submission: the pieces the session calls, none of which
//! touches a socket or the clock.
pub mod base64;
pub mod sasl;
pub mod secret;
pub mod sha_crypt;
pub mod throttle;
pub mod users;
