//! Deterministic report files of any size, generated as a stream: the same
//! seed and size always give the same bytes, and a 1 GiB file never sits in
//! memory (chunks of at most [`CHUNK`] bytes are made on demand).

use sha2::{Digest, Sha256};

pub const HEADER: &[u8] = b"id,created,amount,currency,reporting_category,description\n";
/// Width of an ordinary row, newline included.
const ROW: u64 = 64;
/// Width of a row without description and newline.
const FIXED: u64 = 45;
pub const CHUNK: usize = 64 * 1024;
const CATEGORIES: [&str; 4] = ["charge", "refund", "payout", "adjust"];

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Produces the file `seed`/`size` chunk by chunk.
#[derive(Debug, Clone)]
pub struct CsvGenerator {
    seed: u64,
    size: u64,
    written: u64,
    row: u64,
}

impl CsvGenerator {
    pub fn new(seed: u64, size: u64) -> Self {
        Self {
            seed,
            size,
            written: 0,
            row: 0,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn push_row(&mut self, out: &mut Vec<u8>, width: u64) {
        self.row += 1;
        let h = splitmix(self.seed ^ self.row.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let amount = (h % 2_000_000) as i64 - 1_000_000;
        let created = 1_700_000_000 + (h >> 40) % 10_000_000;
        let category = CATEGORIES[(h % 4) as usize];
        let start = out.len();
        out.extend_from_slice(
            format!(
                "{:010},{:010},{:+011},usd,{},",
                self.row % 10_000_000_000,
                created,
                amount,
                category
            )
            .as_bytes(),
        );
        debug_assert_eq!((out.len() - start) as u64, FIXED);
        let description = width - FIXED - 1;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bits = h;
        for i in 0..description {
            if i % 16 == 0 {
                bits = splitmix(bits);
            }
            out.push(HEX[(bits >> ((i % 16) * 4) & 0xF) as usize]);
        }
        out.push(b'\n');
    }

    /// The next chunk, or `None` at the end.
    pub fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.written >= self.size {
            return None;
        }
        let mut out = Vec::with_capacity(CHUNK + ROW as usize * 2);
        if self.written == 0 {
            let take = (HEADER.len() as u64).min(self.size) as usize;
            out.extend_from_slice(&HEADER[..take]);
        }
        loop {
            let remaining = self.size - self.written - out.len() as u64;
            if remaining == 0 || out.len() >= CHUNK {
                break;
            }
            if remaining >= 2 * ROW {
                self.push_row(&mut out, ROW);
            } else if remaining > FIXED {
                // The last row absorbs the remainder, so the file ends with a newline.
                self.push_row(&mut out, remaining);
            } else {
                // Too small for a row: pad with spaces, end with a newline.
                out.extend(std::iter::repeat_n(b' ', remaining as usize - 1));
                out.push(b'\n');
            }
        }
        self.written += out.len() as u64;
        Some(out)
    }

    /// SHA-256 (hex) of the whole file, computed by generating it.
    pub fn sha256(mut self) -> String {
        let mut hasher = Sha256::new();
        while let Some(chunk) = self.next_chunk() {
            hasher.update(&chunk);
        }
        hex::encode(hasher.finalize())
    }
}

/// A stable seed for a file id.
pub fn seed_for(file_id: &str) -> u64 {
    let digest = Sha256::digest(file_id.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(seed: u64, size: u64) -> Vec<u8> {
        let mut g = CsvGenerator::new(seed, size);
        let mut all = Vec::new();
        while let Some(c) = g.next_chunk() {
            assert!(c.len() <= CHUNK + 2 * ROW as usize);
            all.extend(c);
        }
        all
    }

    #[test]
    fn exact_size_deterministic_and_newline_terminated() {
        for size in [1u64, 10, 58, 59, 100, 121, 122, 123, 1000, 65_536, 200_003] {
            let a = whole(7, size);
            assert_eq!(a.len() as u64, size, "size {size}");
            assert_eq!(a, whole(7, size));
            if size > HEADER.len() as u64 {
                assert_eq!(*a.last().unwrap(), b'\n', "size {size}");
                let text = String::from_utf8(a).unwrap();
                for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
                    assert_eq!(line.split(',').count(), 6, "{line:?}");
                }
            }
        }
        assert_ne!(whole(7, 1000), whole(8, 1000));
        assert_eq!(
            CsvGenerator::new(7, 1000).sha256(),
            hex::encode(Sha256::digest(whole(7, 1000)))
        );
    }
}
