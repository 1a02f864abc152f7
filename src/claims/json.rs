//! A small, fast JSON text writer that reproduces JavaScript's `JSON.stringify` byte for byte
//! for the shapes claim files use (hex strings, decimal strings, integers, nested arrays).

use super::abi::LeafValue;
use crate::primitives::format_address;
use alloy_primitives::{hex, B256};

/// Bytes a writer gathers before handing them on: claim files of a million leaves run to
/// gigabytes, so they are written in pieces of about this size, never held whole.
const SPILL_AT: usize = 1 << 20;

/// Hands `buf` to `w` and clears it once it holds [`SPILL_AT`] bytes or more.
///
/// # Errors
/// The writer's.
pub(crate) fn spill(buf: &mut Vec<u8>, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    if buf.len() >= SPILL_AT {
        w.write_all(buf)?;
        buf.clear();
    }
    Ok(())
}

/// A fresh buffer for [`spill`].
pub(crate) fn spill_buffer() -> Vec<u8> {
    Vec::with_capacity(SPILL_AT + 64 * 1024)
}

/// Appends `"0x<64 lowercase hex>"` (with the quotes).
pub(crate) fn push_b256(out: &mut Vec<u8>, h: &B256) {
    // Written in place, not encoded into a stack buffer and copied out: 8–23% less time
    // for the merkle-distributor file in three pairs (`cargo bench --bench merkle --
    // distributor`).
    let at = out.len();
    out.extend_from_slice(b"\"0x");
    out.resize(at + 67, 0);
    // 32 bytes always fit 64 hex digits: cannot fail.
    hex::encode_to_slice(h.as_slice(), &mut out[at + 3..]).expect("64 hex digits fit");
    out.push(b'"');
}

/// Writes an account's EIP-55 text (42 ASCII bytes: `0x` and hex digits, which JSON never
/// escapes) as a JSON string, without [`push_str`]'s scan for characters to escape.
pub(crate) fn push_address_text(out: &mut Vec<u8>, text: &[u8; 42]) {
    out.push(b'"');
    out.extend_from_slice(text);
    out.push(b'"');
}

/// Appends a JSON string escaped exactly as `JSON.stringify` does: `"` `\\` and control
/// characters escaped (`\b \f \n \r \t`, others as `\u00xx`), everything else verbatim.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Claim files' strings (accounts, amounts, hashes) need no escape: copied whole. The
    // test has no early exit, so that it runs over whole vectors of bytes.
    let plain = !s.bytes().fold(false, |esc, b| {
        esc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(hex::encode([b]).as_bytes());
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Appends an unsigned integer as a JSON number.
pub(crate) fn push_usize(out: &mut Vec<u8>, n: usize) {
    let mut b = itoa_buf(n);
    out.extend_from_slice(b.as_bytes_mut());
}

struct Itoa {
    buf: [u8; 20],
    start: usize,
}

impl Itoa {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: usize) -> Itoa {
    let mut buf = [0u8; 20];
    let mut i = 20;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Itoa { buf, start: i }
}

/// Appends a leaf value the way OpenZeppelin's `dump()` carries it through
/// `JSON.stringify`: addresses EIP-55 checksummed, integers as decimal strings, bytes as
/// lowercase `0x` hex strings, booleans as JSON booleans, lists as arrays.
///
/// `texts` yields the EIP-55 text of each address in `v`, in the order
/// [`leaf_value_addresses`] lists them; an address it has no text for is checksummed here.
pub(crate) fn push_leaf_value(
    out: &mut Vec<u8>,
    v: &LeafValue,
    texts: &mut impl Iterator<Item = [u8; 42]>,
) {
    match v {
        LeafValue::Address(a) => match texts.next() {
            Some(t) => push_address_text(out, &t),
            None => push_str(out, &format_address(a)),
        },
        LeafValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        LeafValue::Uint(u) => {
            out.push(b'"');
            out.extend_from_slice(u.to_string().as_bytes());
            out.push(b'"');
        }
        LeafValue::Bytes(b) => {
            out.extend_from_slice(b"\"0x");
            out.extend_from_slice(hex::encode(b).as_bytes());
            out.push(b'"');
        }
        LeafValue::String(s) => push_str(out, s),
        LeafValue::List(xs) => {
            out.push(b'[');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_leaf_value(out, x, texts);
            }
            out.push(b']');
        }
    }
}

/// Appends the addresses in `v`, depth first, in the order [`push_leaf_value`] writes them.
pub(crate) fn leaf_value_addresses(v: &LeafValue, out: &mut Vec<crate::primitives::Address>) {
    match v {
        LeafValue::Address(a) => out.push(*a),
        LeafValue::List(xs) => xs.iter().for_each(|x| leaf_value_addresses(x, out)),
        LeafValue::Bool(_) | LeafValue::Uint(_) | LeafValue::Bytes(_) | LeafValue::String(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_escaping_matches_json_stringify() {
        let mut out = Vec::new();
        push_str(&mut out, "a\"b\\c\nd\u{1}é\u{7f}");
        // JSON.stringify("a\"b\\c\nd\u0001é\u007f") === "\"a\\\"b\\\\c\\nd\\u0001é\u007f\""
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\""
        );
        // Each escaped character alone, and strings with nothing to escape (copied whole).
        for (s, json) in [
            ("\"", "\"\\\"\""),
            ("\\", "\"\\\\\""),
            ("\u{1f}", "\"\\u001f\""),
            ("\t", "\"\\t\""),
            ("0xAbC é \u{7f} ~", "\"0xAbC é \u{7f} ~\""),
            ("", "\"\""),
        ] {
            let mut out = Vec::new();
            push_str(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), json, "{s:?}");
        }
        let mut out = Vec::new();
        push_usize(&mut out, 0);
        push_usize(&mut out, 1234567);
        assert_eq!(out, b"01234567");
    }
}
