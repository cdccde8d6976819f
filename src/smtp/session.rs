//! The SMTP server session: a sans-I/O state machine.
