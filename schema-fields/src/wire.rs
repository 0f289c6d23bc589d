//! Confluent's wire format: magic byte `0`, the schema id as a 4-byte big-endian
//! integer, then the encoded record. Protobuf records put the message indexes (which
//! message of the schema file the record is, as a path of indexes) between the id and
//! the message: a zigzag varint count, then each index as a zigzag varint; `[0]` (the
//! file's first message) is written as the single byte `0`.

use crate::Error;

pub const MAGIC: u8 = 0;

/// The schema id and the rest of a framed value.
pub fn unframe(value: &[u8]) -> Result<(u32, &[u8]), Error> {
    match value {
        [MAGIC, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [MAGIC, ..] | [] => Err(Error::Frame(format!(
            "{} bytes, shorter than the 5-byte header",
            value.len()
        ))),
        [magic, ..] => Err(Error::Frame(format!("magic byte is {magic}, not 0"))),
    }
}

/// Writes the header and `body` (for Protobuf, `body` starts with the message indexes).
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a Protobuf body into its message indexes and the message.
pub fn message_indexes(body: &[u8]) -> Result<(Vec<i64>, &[u8]), Error> {
    let mut rest = body;
    let count = read_zigzag(&mut rest)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if count < 0 || count as u64 > rest.len() as u64 {
        return Err(Error::Decode("message index count out of range".into()));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let index = read_zigzag(&mut rest)?;
        if index < 0 {
            return Err(Error::Decode("negative message index".into()));
        }
        indexes.push(index);
    }
    Ok((indexes, rest))
}

fn read_zigzag(input: &mut &[u8]) -> Result<i64, Error> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some((&byte, rest)) = input.split_first() else {
            return Err(Error::Decode(
                "truncated varint in the message indexes".into(),
            ));
        };
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(Error::Decode(
        "varint longer than 10 bytes in the message indexes".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_unframes() {
        let framed = frame(258, b"body");
        assert_eq!(framed, b"\0\0\0\x01\x02body");
        assert_eq!(unframe(&framed).unwrap(), (258, &b"body"[..]));
        assert!(matches!(unframe(b"\0\0\0"), Err(Error::Frame(_))));
        assert!(matches!(unframe(b"{\"a\":1}"), Err(Error::Frame(_))));
        assert!(matches!(unframe(b""), Err(Error::Frame(_))));
    }

    #[test]
    fn message_indexes_decode() {
        assert_eq!(message_indexes(b"\0msg").unwrap(), (vec![0], &b"msg"[..]));
        // count 2 (zigzag 4), indexes 1 (2) and 0 (0)
        assert_eq!(
            message_indexes(b"\x04\x02\x00m").unwrap(),
            (vec![1, 0], &b"m"[..])
        );
        assert!(message_indexes(b"\x04\x02").is_err());
        assert!(message_indexes(b"\x03").is_err());
        assert!(message_indexes(b"").is_err());
    }
}
