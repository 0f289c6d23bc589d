//! The protobuf wire format at its lowest: varints, tags, skipping a field. Shared by
//! the record walker and the descriptor decoder; every read is bounded by `end`.

/// Why bytes are not protobuf; the caller says whose bytes they were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Malformed(pub &'static str);

/// How deep messages and groups may nest: recursion on hostile input stays bounded.
pub(super) const MAX_DEPTH: usize = 64;

const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

pub(super) const VARINT: u8 = 0;
pub(super) const FIXED64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const START_GROUP: u8 = 3;
pub(super) const END_GROUP: u8 = 4;
pub(super) const FIXED32: u8 = 5;

pub(super) fn varint(buf: &[u8], pos: &mut usize, end: usize) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = match buf.get(*pos) {
            Some(&byte) if *pos < end => byte,
            _ => return Err(Malformed("truncated varint")),
        };
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Malformed("varint longer than 10 bytes"))
}

/// A tag: the field number and the wire type.
pub(super) fn tag(buf: &[u8], pos: &mut usize, end: usize) -> Result<(u32, u8), Malformed> {
    let tag = varint(buf, pos, end)?;
    let number = tag >> 3;
    if number == 0 || number > MAX_FIELD_NUMBER {
        return Err(Malformed("field number out of range"));
    }
    Ok((number as u32, (tag & 7) as u8))
}

/// A length prefix, checked to fit in what is left.
pub(super) fn length(buf: &[u8], pos: &mut usize, end: usize) -> Result<usize, Malformed> {
    let len = varint(buf, pos, end)?;
    if len > (end - *pos) as u64 {
        return Err(Malformed("length beyond the end of its message"));
    }
    Ok(len as usize)
}

fn advance(pos: &mut usize, end: usize, by: usize) -> Result<(), Malformed> {
    if by > end - *pos {
        return Err(Malformed("truncated fixed-width field"));
    }
    *pos += by;
    Ok(())
}

/// Skips the value of a field whose tag was just read; a group up to and with its
/// end tag. `depth` is how deep the field sits, groups counting as nesting.
pub(super) fn skip(
    buf: &[u8],
    pos: &mut usize,
    end: usize,
    number: u32,
    wire: u8,
    depth: usize,
) -> Result<(), Malformed> {
    match wire {
        VARINT => varint(buf, pos, end).map(drop),
        FIXED64 => advance(pos, end, 8),
        LEN => {
            let len = length(buf, pos, end)?;
            *pos += len;
            Ok(())
        }
        FIXED32 => advance(pos, end, 4),
        START_GROUP => {
            if depth >= MAX_DEPTH {
                return Err(Malformed("nested deeper than 64"));
            }
            loop {
                if *pos >= end {
                    return Err(Malformed("group without its end tag"));
                }
                let (inner, inner_wire) = tag(buf, pos, end)?;
                if inner_wire == END_GROUP {
                    return if inner == number {
                        Ok(())
                    } else {
                        Err(Malformed("end-group tag of another group"))
                    };
                }
                skip(buf, pos, end, inner, inner_wire, depth + 1)?;
            }
        }
        END_GROUP => Err(Malformed("end-group tag outside its group")),
        _ => Err(Malformed("invalid wire type")),
    }
}

pub(super) fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A field's value, for decoders that read a whole message field by field.
pub(super) enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width value or a group, skipped.
    Other,
}

/// A message's fields in order, each value read or skipped.
pub(super) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Fields<'a> {
    pub(super) fn new(buf: &'a [u8], depth: usize) -> Fields<'a> {
        Fields { buf, pos: 0, depth }
    }

    pub(super) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, Malformed> {
        let (buf, end) = (self.buf, self.buf.len());
        if self.pos >= end {
            return Ok(None);
        }
        let (number, wire) = tag(buf, &mut self.pos, end)?;
        let value = match wire {
            VARINT => Value::Varint(varint(buf, &mut self.pos, end)?),
            LEN => {
                let len = length(buf, &mut self.pos, end)?;
                let bytes = &buf[self.pos..self.pos + len];
                self.pos += len;
                Value::Bytes(bytes)
            }
            _ => {
                skip(buf, &mut self.pos, end, number, wire, self.depth)?;
                Value::Other
            }
        };
        Ok(Some((number, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            let mut pos = 0;
            assert_eq!(varint(&out, &mut pos, out.len()), Ok(value));
            assert_eq!(pos, out.len());
        }
        let eleven = [0xff; 11];
        assert!(varint(&eleven, &mut 0, 11).is_err());
        assert!(varint(&[0x80], &mut 0, 1).is_err());
    }

    #[test]
    fn skips_groups_and_bounds_them() {
        // field 1 group { field 2 varint 5 } end group 1, then field 3
        let buf = [0x0b, 0x10, 0x05, 0x0c, 0x18, 0x01];
        let mut pos = 1;
        skip(&buf, &mut pos, buf.len(), 1, START_GROUP, 0).unwrap();
        assert_eq!(pos, 4);
        // a group closed by another group's end tag
        let bad = [0x0b, 0x14];
        assert!(skip(&bad, &mut 1, 2, 1, START_GROUP, 0).is_err());
        // groups nested past the bound
        let deep: Vec<u8> = std::iter::repeat_n(0x0b, 200).collect();
        assert!(skip(&deep, &mut 1, deep.len(), 1, START_GROUP, 0).is_err());
        assert!(skip(&[0x05], &mut 0, 1, 1, LEN, 0).is_err());
        assert!(skip(&[1, 2, 3], &mut 0, 3, 1, FIXED32, 0).is_err());
    }
}
