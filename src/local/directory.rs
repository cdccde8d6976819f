//! Which local parts exist (RCPT check).
