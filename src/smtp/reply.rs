//! SMTP replies as data.
//!
//! Every reply the server sends is built here, so the basic code, the enhanced status
//! code (RFC 3463) and the text cannot drift apart. A reply is one or more lines; all
//! but the last use `-` after the code (RFC 5321 §4.2.1).

use std::borrow::Cow;
use std::fmt;

/// One SMTP reply: a three-digit code, an optional enhanced status code and its lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `"5.5.2"`; `None` for replies that carry none (220 greeting, 221 in some places).
    pub enhanced: Option<&'static str>,
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced code (greeting, EHLO response).
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    pub fn multiline(code: u16, lines: Vec<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The first line's text, for logs and `last_reply`.
    pub fn text(&self) -> &str {
        self.lines.first().map(|l| l.as_ref()).unwrap_or("")
    }

    /// Append the wire form (CRLF line ends) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{}\r\n", self.code).as_bytes());
            return;
        }
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(self.code.to_string().as_bytes());
            out.push(sep as u8);
            if let Some(e) = self.enhanced {
                out.extend_from_slice(e.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

impl fmt::Display for Reply {
    /// One line for logs: `550 5.1.1 text` (continuation lines joined with a space).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        for line in &self.lines {
            write!(f, " {line}")?;
        }
        Ok(())
    }
}

// The fixed replies. Functions rather than consts because `Vec` is not const.
// RFC 5321 §4.2.2 for the basic codes, RFC 3463 / RFC 5248 for the enhanced ones.

pub fn ok() -> Reply {
    Reply::new(250, "2.0.0", "Ok")
}
pub fn bye() -> Reply {
    Reply::new(221, "2.0.0", "Bye")
}
pub fn sender_ok() -> Reply {
    Reply::new(250, "2.1.0", "Ok")
}
pub fn recipient_ok() -> Reply {
    Reply::new(250, "2.1.5", "Ok")
}
pub fn start_data() -> Reply {
    Reply::plain(354, "End data with <CR><LF>.<CR><LF>")
}
pub fn queued(id: &str) -> Reply {
    Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
}
pub fn vrfy() -> Reply {
    Reply::new(
        252,
        "2.5.0",
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}
pub fn help() -> Reply {
    Reply::new(
        214,
        "2.0.0",
        "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP; see RFC 5321",
    )
}
pub fn line_too_long() -> Reply {
    Reply::new(500, "5.5.2", "Error: line too long")
}
pub fn bad_bytes() -> Reply {
    Reply::new(500, "5.5.2", "Error: NUL or invalid UTF-8 in command")
}
pub fn unknown_command() -> Reply {
    Reply::new(500, "5.5.2", "Error: command not recognized")
}
pub fn not_implemented() -> Reply {
    Reply::new(502, "5.5.1", "Error: command not implemented")
}
pub fn syntax(text: &'static str) -> Reply {
    Reply::new(501, "5.5.4", text)
}
pub fn bad_sequence(text: &'static str) -> Reply {
    Reply::new(503, "5.5.1", text)
}
pub fn bad_sender_syntax() -> Reply {
    Reply::new(501, "5.1.7", "Bad sender address syntax")
}
pub fn bad_recipient_syntax() -> Reply {
    Reply::new(501, "5.1.3", "Bad recipient address syntax")
}
pub fn unknown_parameter() -> Reply {
    Reply::new(555, "5.5.4", "Unsupported MAIL or RCPT parameter")
}
pub fn relay_denied() -> Reply {
    Reply::new(554, "5.7.1", "Relay access denied")
}
pub fn no_such_user() -> Reply {
    Reply::new(550, "5.1.1", "Recipient address rejected: user unknown")
}
pub fn too_many_recipients() -> Reply {
    Reply::new(452, "4.5.3", "Error: too many recipients")
}
pub fn no_valid_recipients() -> Reply {
    Reply::new(554, "5.5.1", "Error: no valid recipients")
}
pub fn message_too_big() -> Reply {
    Reply::new(
        552,
        "5.3.4",
        "Error: message exceeds fixed maximum message size",
    )
}
pub fn bare_cr() -> Reply {
    Reply::new(
        550,
        "5.6.0",
        "Error: message contains a bare CR (RFC 5321 §2.3.8)",
    )
}
pub fn text_line_too_long() -> Reply {
    Reply::new(
        550,
        "5.6.0",
        "Error: message line longer than 998 characters (RFC 5322 §2.1.1)",
    )
}
pub fn ready_for_tls() -> Reply {
    Reply::new(220, "2.0.0", "Ready to start TLS")
}
pub fn auth_ok() -> Reply {
    Reply::new(235, "2.7.0", "Authentication successful")
}
pub fn auth_failed() -> Reply {
    Reply::new(535, "5.7.8", "Error: authentication failed")
}
pub fn auth_cancelled() -> Reply {
    Reply::new(501, "5.7.0", "Authentication aborted")
}
pub fn auth_malformed() -> Reply {
    Reply::new(501, "5.5.2", "Error: cannot decode response")
}
pub fn auth_line_too_long() -> Reply {
    Reply::new(500, "5.5.6", "Authentication exchange line is too long")
}
pub fn unknown_mechanism() -> Reply {
    Reply::new(504, "5.5.4", "Unrecognized authentication type")
}
pub fn encryption_required() -> Reply {
    // RFC 4954 §6: 538 5.7.11 when the mechanism needs a protected channel.
    Reply::new(
        538,
        "5.7.11",
        "Encryption required for requested authentication mechanism",
    )
}
pub fn too_many_auth_failures() -> Reply {
    Reply::new(
        421,
        "4.7.0",
        "Error: too many authentication failures, closing connection",
    )
}
pub fn auth_required() -> Reply {
    Reply::new(530, "5.7.0", "Authentication required")
}
pub fn too_many_errors() -> Reply {
    Reply::new(421, "4.7.0", "Error: too many errors, closing connection")
}
pub fn too_many_connections() -> Reply {
    Reply::new(421, "4.7.0", "Error: too many connections, try again later")
}
pub fn too_many_connections_from_ip() -> Reply {
    Reply::new(
        421,
        "4.7.0",
        "Error: too many connections from your address",
    )
}
pub fn idle_timeout() -> Reply {
    Reply::new(421, "4.4.2", "Error: timeout exceeded, closing connection")
}
pub fn shutting_down() -> Reply {
    Reply::new(421, "4.3.2", "Service shutting down, closing connection")
}
pub fn local_error() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "Error: local error in processing, try again later",
    )
}
pub fn disk_full() -> Reply {
    Reply::new(
        452,
        "4.3.1",
        "Error: insufficient system storage, try again later",
    )
}
pub fn http_refused() -> Reply {
    // Cross-protocol requests (a browser made to POST to port 25) get one reply and
    // the connection is closed, as Postfix does for smtpd_forbidden_commands.
    Reply::new(
        221,
        "2.7.0",
        "Error: this is an SMTP server, not HTTP. Goodbye.",
    )
}

// Local reasons for the delivery client (smtp::client, delivery::connection): what we
// record for a recipient when the remote server said nothing we could quote. The basic
// code is ours (451/552/553, like Postfix's "local reason" DSNs); the enhanced codes are
// RFC 3463's. `peer` is `HOST[IP]:PORT`.

pub fn connect_failed(peer: &str, reason: &str) -> Reply {
    Reply::new(451, "4.4.1", format!("connect to {peer}: {reason}"))
}
pub fn lost_connection(peer: &str, doing: &str) -> Reply {
    Reply::new(
        451,
        "4.4.2",
        format!("lost connection with {peer} while {doing}"),
    )
}
pub fn conversation_timed_out(peer: &str, doing: &str) -> Reply {
    Reply::new(
        451,
        "4.4.2",
        format!("conversation with {peer} timed out while {doing}"),
    )
}
pub fn malformed_reply(peer: &str, what: &str) -> Reply {
    // RFC 3463 X.5.0: other or undefined protocol status.
    Reply::new(451, "4.5.0", format!("protocol error with {peer}: {what}"))
}
pub fn tls_not_offered(peer: &str) -> Reply {
    // X.7.4: security features not supported.
    Reply::new(
        451,
        "4.7.4",
        format!("TLS is required, but was not offered by host {peer}"),
    )
}
pub fn starttls_refused(peer: &str, said: &Reply) -> Reply {
    Reply::new(
        451,
        "4.7.4",
        format!("TLS is required, but host {peer} refused to start TLS: {said}"),
    )
}
pub fn tls_failed(peer: &str, reason: &str) -> Reply {
    // X.7.5: cryptographic failure (handshake, certificate verification).
    Reply::new(
        451,
        "4.7.5",
        format!("TLS handshake with {peer} failed: {reason}"),
    )
}
pub fn auth_impossible(peer: &str, why: &str) -> Reply {
    Reply::new(
        451,
        "4.7.0",
        format!("cannot authenticate to {peer}: {why}"),
    )
}
pub fn remote_auth_failed(peer: &str, said: &Reply) -> Reply {
    // Deferred, not bounced, whatever the server's code: a wrong smarthost password is a
    // local configuration error (Postfix's smtp_sasl_auth_soft_bounce = yes).
    Reply::new(
        451,
        "4.7.0",
        format!("SASL authentication failed; server {peer} said: {said}"),
    )
}
pub fn size_over_remote_limit(peer: &str, size: u64, limit: u64) -> Reply {
    Reply::new(
        552,
        "5.3.4",
        format!("message size {size} exceeds size limit {limit} of server {peer}"),
    )
}
pub fn smtputf8_not_offered(peer: &str) -> Reply {
    // RFC 6531 §3.2 and RFC 6533: X.6.7, non-ASCII addresses not permitted.
    Reply::new(
        553,
        "5.6.7",
        format!("SMTPUTF8 is required, but was not offered by host {peer}"),
    )
}
pub fn bad_envelope_sender() -> Reply {
    Reply::new(
        553,
        "5.1.7",
        "invalid sender address in the queued envelope",
    )
}
pub fn bad_envelope_recipient() -> Reply {
    Reply::new(
        553,
        "5.1.3",
        "invalid recipient address in the queued envelope",
    )
}
pub fn message_unreadable(reason: &str) -> Reply {
    Reply::new(
        451,
        "4.3.0",
        format!("cannot read the queued message: {reason}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_wire_form() {
        assert_eq!(ok().to_bytes(), b"250 2.0.0 Ok\r\n");
        assert_eq!(
            start_data().to_bytes(),
            b"354 End data with <CR><LF>.<CR><LF>\r\n"
        );
    }

    #[test]
    fn multiline_uses_dash_until_last() {
        let r = Reply::multiline(250, vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(r.to_bytes(), b"250-a\r\n250-b\r\n250 c\r\n");
    }

    #[test]
    fn display_is_one_line() {
        assert_eq!(
            no_such_user().to_string(),
            "550 5.1.1 Recipient address rejected: user unknown"
        );
    }
}
