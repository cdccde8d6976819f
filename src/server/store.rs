//! The session's [`Backend`] over the real spool and local user directory.

use crate::auth::users::Users;
use crate::local::directory::Directory;
use crate::smtp::session::Backend;
use crate::spool::{Envelope, Incoming, QueueId, Spool, SpoolError};

pub struct SpoolBackend<'a> {
    /// Set when a message was queued: the daemon then starts a delivery pass.
    pub new_mail: &'a std::cell::Cell<bool>,
    pub spool: &'a Spool,
    pub directory: &'a Directory,
    pub users: Option<&'a Users>,
    /// The message being received on this connection, if any.
    pub incoming: &'a mut Option<Incoming>,
    /// Where a finished message waits for the server's group commit; `None`: commit
    /// at once (local `-bs`, or paths that never commit).
    pub group: Option<&'a mut Option<(Incoming, Envelope)>>,
}

impl Backend for SpoolBackend<'_> {
    fn local_user_exists(&self, local_part: &str) -> bool {
        self.directory.exists(local_part)
    }

    fn authenticate(&mut self, username: &str, password: &[u8]) -> bool {
        self.users.is_some_and(|u| u.verify(username, password))
    }

    fn begin_message(&mut self, now: u64) -> Result<QueueId, SpoolError> {
        let inc = self.spool.begin(now)?;
        let id = inc.id().clone();
        *self.incoming = Some(inc);
        Ok(id)
    }

    fn write_message(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        match self.incoming {
            Some(inc) => inc.write(bytes),
            None => Err(SpoolError::Io(std::io::Error::other(
                "no message in progress",
            ))),
        }
    }

    fn commit_message(&mut self, envelope: &Envelope) -> Result<(), SpoolError> {
        if let Some(slot) = self.group.as_deref_mut() {
            let Some(inc) = self.incoming.take() else {
                return Err(SpoolError::Io(std::io::Error::other(
                    "no message in progress",
                )));
            };
            *slot = Some((inc, envelope.clone()));
            return Ok(());
        }
        match self.incoming.take() {
            Some(inc) => {
                inc.commit(envelope)?;
                self.new_mail.set(true);
                Ok(())
            }
            None => Err(SpoolError::Io(std::io::Error::other(
                "no message in progress",
            ))),
        }
    }

    fn defers_commit(&self) -> bool {
        self.group.is_some()
    }

    fn abort_message(&mut self) {
        // Dropping an uncommitted Incoming removes its temporary file.
        *self.incoming = None;
    }
}
