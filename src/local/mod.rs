//! Local recipients: aliases, system users and Maildirs.

pub mod aliases;
pub mod directory;
pub mod expand;
pub mod maildir;
