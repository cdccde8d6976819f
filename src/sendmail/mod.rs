//! The pure parts of the `sendmail` command (`postling send`): what a local program's
//! command line and message mean, before anything touches the spool.
//!
//! - [`options`]: sendmail's option soup (`-t -i -oi -fADDR -F NAME -bs -bp -q30m …`)
//!   → an [`options::Invocation`]; harmless options other MTAs accept are ignored.
//! - [`addresses`]: RFC 5322 §3.4 address lists (`To:`/`Cc:`/`Bcc:` values and
//!   command-line recipients) → addr-specs.
//! - [`message`]: a message read from stdin → the CRLF text stored in the queue, with
//!   the header recipients for `-t`, `Bcc:` removed and missing `From:`, `Date:`,
//!   `Message-ID:` added.
//!
//! Nothing here reads stdin, the clock, the password file or the spool: the caller
//! passes them in, so every rule is a table test.

pub mod addresses;
pub mod message;
pub mod options;
