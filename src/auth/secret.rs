//! Byte strings that hold a password: wiped when dropped, never printed.
//!
//! Invariants:
//! - A [`Secret`]'s bytes are overwritten with zeros when it is dropped, with volatile
//!   writes the optimiser may not remove. Its buffer never reallocates after
//!   construction (it is not growable), so no stale copy is left in freed memory by us.
//! - `Debug` shows only the length.
//!
//! This is hygiene, not a guarantee: copies made by the kernel, by TLS buffers or by a
//! hash function's internal state are beyond our reach. It narrows what a core dump or
//! a later heap overread could show.

use std::fmt;
use std::sync::atomic::{compiler_fence, Ordering};

/// Overwrite `buf` with zeros in a way the compiler cannot drop as a dead store.
pub fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    compiler_fence(Ordering::SeqCst);
}

/// A password (or a SASL message containing one).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Take ownership of `bytes`. A Vec that is exactly full becomes the secret without a
    /// copy; otherwise the bytes are copied and the whole old buffer (spare capacity
    /// included, which may hold a truncated tail) is wiped.
    pub fn new(mut bytes: Vec<u8>) -> Secret {
        if bytes.len() == bytes.capacity() {
            return Secret(bytes.into_boxed_slice());
        }
        let secret = Secret(bytes.as_slice().into());
        bytes.resize(bytes.capacity(), 0);
        wipe(&mut bytes);
        secret
    }

    /// Copy `bytes` into a new secret (the caller wipes its own copy).
    pub fn copy_from(bytes: &[u8]) -> Secret {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_bytes() {
        let s = Secret::copy_from(b"hunter2");
        assert_eq!(format!("{s:?}"), "Secret(7 bytes)");
        assert_eq!(s.expose(), b"hunter2");
    }

    #[test]
    fn wipe_zeroes() {
        let mut b = *b"hunter2";
        wipe(&mut b);
        assert_eq!(b, [0; 7]);
    }
}
