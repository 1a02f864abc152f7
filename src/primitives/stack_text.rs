//! [`StackText`]: short ASCII text made on the stack, for the numbers the outputs write by
//! the million (amounts, decimal values) without a formatter or a heap allocation.

use std::fmt;

/// At most `N` bytes of ASCII text, kept on the stack ([`Amount::digits`], 1 to 78
/// digits; [`DecimalText::text`], at most 33 bytes).
///
/// [`Amount::digits`]: super::Amount::digits
/// [`DecimalText::text`]: super::DecimalText::text
#[derive(Clone, Copy)]
pub struct StackText<const N: usize> {
    buf: [u8; N],
    len: u8,
}

impl<const N: usize> StackText<N> {
    /// Empty text.
    pub(crate) fn new() -> Self {
        const { assert!(N <= u8::MAX as usize, "the length is kept in a u8") };
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends `bytes` (ASCII).
    ///
    /// # Panics
    /// Past `N` bytes in all: the callers' texts are bounded below `N`.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let (at, end) = (usize::from(self.len), usize::from(self.len) + bytes.len());
        self.buf[at..end].copy_from_slice(bytes);
        self.len = end as u8;
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("ASCII text")
    }

    /// The text, as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl<const N: usize> fmt::Write for StackText<N> {
    /// Appends `s`; an error past `N` bytes.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if usize::from(self.len) + s.len() > N {
            return Err(fmt::Error);
        }
        self.push(s.as_bytes());
        Ok(())
    }
}
