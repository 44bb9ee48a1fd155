//! JSON string escaping (RFC 8259) for the `--json` outputs of
//! overlay-status and its wear table: quotes, backslash, control characters.

use std::fmt::Write as _;

/// `v` as a JSON string, quoted.
pub fn js(v: &str) -> String {
    let mut o = String::with_capacity(v.len() + 2);
    o.push('"');
    for c in v.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}
