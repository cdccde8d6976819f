//! The envelope file: who sent a message, to whom, and each recipient's delivery state.
//! A line-oriented text format (so an administrator can read it), versioned, and parsed
//! strictly: anything unexpected is an error and the file goes to `corrupt/`.

use std::net::IpAddr;

use super::id::QueueId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not tried yet.
    Pending,
    /// Tried, will be retried at `next_attempt`.
    Deferred,
    /// Permanently failed (bounced or to be bounced).
    Failed,
    Delivered,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Deferred => "deferred",
            Status::Failed => "failed",
            Status::Delivered => "delivered",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// `local@domain` as accepted (no brackets).
    pub address: String,
    pub status: Status,
    /// Every try, connection failures included.
    pub attempts: u32,
    /// The remote reply or a local reason; one line.
    pub last_reply: Option<String>,
    /// Unix seconds; `None` = as soon as possible.
    pub next_attempt: Option<u64>,
}

impl Recipient {
    pub fn new(address: String) -> Recipient {
        Recipient {
            address,
            status: Status::Pending,
            attempts: 0,
            last_reply: None,
            next_attempt: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub id: QueueId,
    /// Unix seconds.
    pub arrival: u64,
    /// `""` for the null reverse path `<>`.
    pub sender: String,
    pub recipients: Vec<Recipient>,
    /// Size of the message file in bytes (Received header included).
    pub size: u64,
    /// `BODY=8BITMIME` was declared.
    pub eight_bit: bool,
    /// Client address; `None` for local submission.
    pub client_ip: Option<IpAddr>,
    /// HELO/EHLO name as given.
    pub helo: String,
    /// SASL user name, when the client authenticated.
    pub auth_user: Option<String>,
}

/// Serialise an envelope to its file form.
pub fn encode(env: &Envelope) -> Vec<u8> {
    let _ = env;
    todo!()
}

/// Parse an envelope file. `Err` names what is wrong (for the `corrupt/` log line).
pub fn decode(bytes: &[u8]) -> Result<Envelope, String> {
    let _ = bytes;
    todo!()
}
