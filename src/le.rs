//! Little-endian fields of the fixed-layout records the pre-init keeps on
//! flash (the wear log, the boot counter). A field read past the end of
//! the bytes is 0 and a write past it is dropped: the record's length and
//! CRC-32 are checked by its decoder, never these.

/// Writes `v` at `at`.
pub fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(at..at + v.len()) {
        d.copy_from_slice(v);
    }
}

pub fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

pub fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

pub fn le_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

pub fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_past_the_end_read_zero_and_are_not_written() {
        let mut b = [0u8; 6];
        put(&mut b, 0, &0x0102_0304u32.to_le_bytes());
        put(&mut b, 4, &[9, 9, 9]);
        assert_eq!(b, [4, 3, 2, 1, 0, 0]);
        assert_eq!(le_u32(&b, 0), 0x0102_0304);
        assert_eq!(le_u16(&b, 1), 0x0203);
        assert_eq!(le_u64(&b, 0), 0, "only 6 bytes");
        assert_eq!(le_u32(&b, 4), 0);
        assert_eq!(byte(&b, 3), 1);
        assert_eq!(byte(&b, 6), 0);
    }
}
