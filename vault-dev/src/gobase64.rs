//! Base64 the way Vault's Go code sees it.
//!
//! Vault decodes with Go's `base64.StdEncoding.DecodeString`, and its error text
//! (`illegal base64 data at input byte N`) reaches clients verbatim, e.g. in batch
//! results. Go's decoder also differs from the `base64` crate in details that change
//! which inputs are accepted: it skips `\r`/`\n` and ignores non-zero trailing bits.
//! So decoding is done here by hand, mirroring Go's algorithm; encoding uses the crate.

use base64::Engine;

/// Encode with the standard alphabet and padding (what Go's `StdEncoding` produces).
pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Go's `CorruptInputError`: the offset of the first offending byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal base64 data at input byte {0}")]
pub struct CorruptInput(pub usize);

fn value_of(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn is_newline(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

/// Decode like Go's `base64.StdEncoding.DecodeString`, with the same error offsets.
pub fn decode(text: &str) -> Result<Vec<u8>, CorruptInput> {
    let src = text.as_bytes();
    let mut out = Vec::with_capacity(src.len() / 4 * 3 + 3);
    let mut si = 0usize;
    loop {
        let mut quantum = [0u8; 4];
        let mut filled = 0usize;
        let mut final_quantum = false;
        while filled < 4 {
            if si == src.len() {
                if filled == 0 {
                    return Ok(out);
                }
                // Padding is mandatory, so a short final quantum is corrupt.
                return Err(CorruptInput(si - filled));
            }
            let c = src[si];
            si += 1;
            if let Some(v) = value_of(c) {
                quantum[filled] = v;
                filled += 1;
                continue;
            }
            if is_newline(c) {
                continue;
            }
            if c != b'=' {
                return Err(CorruptInput(si - 1));
            }
            // Padding: only valid after two or three symbols.
            match filled {
                0 | 1 => return Err(CorruptInput(si - 1)),
                2 => {
                    while si < src.len() && is_newline(src[si]) {
                        si += 1;
                    }
                    if si == src.len() {
                        return Err(CorruptInput(src.len()));
                    }
                    if src[si] != b'=' {
                        return Err(CorruptInput(si - 1));
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < src.len() && is_newline(src[si]) {
                si += 1;
            }
            if si < src.len() {
                // Anything after the padding is garbage.
                return Err(CorruptInput(si));
            }
            final_quantum = true;
            break;
        }
        let v = (u32::from(quantum[0]) << 18)
            | (u32::from(quantum[1]) << 12)
            | (u32::from(quantum[2]) << 6)
            | u32::from(quantum[3]);
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..filled - 1]);
        if final_quantum {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(decode(&encode(&data)).unwrap(), data);
        }
    }

    #[test]
    fn error_offsets_match_go() {
        assert_eq!(decode("%%%"), Err(CorruptInput(0)));
        assert_eq!(decode("!!"), Err(CorruptInput(0)));
        assert_eq!(decode("AAA"), Err(CorruptInput(0)));
        assert_eq!(decode("AAAAA"), Err(CorruptInput(4)));
        assert_eq!(decode("AA=A"), Err(CorruptInput(2)));
        assert_eq!(decode("AA=="), Ok(vec![0]));
        assert_eq!(decode("AAA=AAAA"), Err(CorruptInput(4)));
        assert_eq!(decode("A==="), Err(CorruptInput(1)));
        // Go ignores newlines and non-zero trailing bits.
        assert_eq!(decode("AA\n=="), Ok(vec![0]));
        assert_eq!(decode("AB=="), Ok(vec![0]));
    }
}
