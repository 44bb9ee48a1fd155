//! CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, initial value and
//! final XOR 0xFFFFFFFF): the checksum of every record the pre-init reads
//! and writes, of GPT headers, squashfs superblocks and image ranges.
//!
//! One byte a step through a 1 KiB table built at compile time. crc32fast
//! (the tests' reference: each record module's tests compute their expected
//! CRCs with it, and `tests` below compares the two on every length and
//! alignment) processes 16 bytes a step through a 16 KiB table, which was
//! the largest single item of the binary (issue 14's size budget). What we
//! hash is small (records of 32 to 64 KiB, headers, the upgrade's
//! background image check), so the byte-wise loop costs no boot time
//! worth 15 KiB of every device's flash.

/// The table of the byte-wise algorithm: the CRC of each byte value.
const TABLE: [u32; 256] = table();

// Evaluated at compile time only: an index out of range would be a build
// error, never a panic at run time.
#[allow(clippy::indexing_slicing)]
const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// A running CRC-32, fed in pieces (the API of `crc32fast::Hasher`).
#[derive(Clone, Copy)]
pub struct Hasher(u32);

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher::new()
    }
}

impl Hasher {
    pub const fn new() -> Hasher {
        Hasher(!0)
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &b in data {
            // The index is a u8: always inside the 256 entries.
            let i = usize::from((c as u8) ^ b);
            c = TABLE.get(i).copied().unwrap_or(0) ^ (c >> 8);
        }
        self.0 = c;
    }

    pub fn finalize(self) -> u32 {
        !self.0
    }
}

/// The CRC-32 of `data`.
pub fn hash(data: &[u8]) -> u32 {
    let mut h = Hasher::new();
    h.update(data);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_value() {
        // The catalogue's check value of CRC-32/ISO-HDLC.
        assert_eq!(hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(hash(b""), 0);
    }

    #[test]
    fn agrees_with_crc32fast_on_every_length_and_split() {
        let data: Vec<u8> = (0..4099u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..300).chain([1023, 1024, 1025, 4096, 4099]) {
            for start in 0..4 {
                let Some(d) = data.get(start..start + len) else {
                    continue;
                };
                assert_eq!(hash(d), crc32fast::hash(d), "len {len} at {start}");
            }
        }
        for split in [0, 1, 7, 16, 100, 4099] {
            let (a, b) = data.split_at(split);
            let mut h = Hasher::new();
            h.update(a);
            h.update(b);
            let mut r = crc32fast::Hasher::new();
            r.update(a);
            r.update(b);
            assert_eq!(h.finalize(), r.finalize(), "split at {split}");
        }
    }
}
