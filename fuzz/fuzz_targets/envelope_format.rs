//! The envelope parser (envelope-format/): any bytes. Oracles: no panic; whatever
//! parses re-assembles to the same bytes (versions 2 and 3 through the crate's writers,
//! and every version as docs/envelope-format.md lays it out); a parsed key name always
//! passes `check_key_name`; the parts are where the format puts them; a version 2 or 3
//! envelope rewraps to one that parses with only the wrapped key changed.

#![no_main]

use kafka_transit_envelope_format::{
    assemble, check_key_name, header_v3, parse, FORMAT_VERSION, FORMAT_VERSION_1, FORMAT_VERSION_3,
    NONCE_LEN, TAG_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = match parse(data) {
        Ok(header) => header,
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with("not a kafka-transit envelope: "));
            return;
        }
    };
    assert_eq!(
        check_key_name(header.key_name.as_bytes()),
        Ok(header.key_name),
        "a parsed key name is a transit key name"
    );
    assert!(header.wrapped_key.starts_with("vault:v"));
    assert!(header.body.len() >= NONCE_LEN + TAG_LEN);
    assert_eq!(header.nonce().len(), NONCE_LEN);
    assert_eq!(header.sealed(), &header.body[NONCE_LEN..]);
    assert!(data.ends_with(header.body));

    // As docs/envelope-format.md lays it out: version, flags (3), key name, commitment
    // (3), wrapped key, body.
    let mut written = vec![header.version];
    if header.version == FORMAT_VERSION_3 {
        written.push(header.flags.bits());
    }
    written.extend_from_slice(&(header.key_name.len() as u16).to_be_bytes());
    written.extend_from_slice(header.key_name.as_bytes());
    if let Some(commitment) = header.commitment {
        written.extend_from_slice(commitment);
    }
    let key_part = written.len();
    written.extend_from_slice(&(header.wrapped_key.len() as u16).to_be_bytes());
    written.extend_from_slice(header.wrapped_key.as_bytes());
    let header_len = written.len();
    written.extend_from_slice(header.body);
    assert_eq!(written, data, "the parts re-assemble to the same bytes");
    assert_eq!(
        header.commitment.is_some(),
        header.version == FORMAT_VERSION_3,
        "a commitment exactly in version 3"
    );
    match header.version {
        FORMAT_VERSION_3 => {
            assert_eq!(header.authenticated, &data[..key_part]);
            let commitment = header.commitment.expect("version 3 has a commitment");
            let (mut assembled, authenticated) = header_v3(
                header.flags,
                header.key_name,
                commitment,
                header.wrapped_key,
            )
            .expect("what parses can be written");
            assert_eq!(authenticated, key_part);
            assembled.extend_from_slice(header.body);
            assert_eq!(assembled, data, "the writer writes what the parser read");
            let rewrapped = header
                .rewrapped("vault:v9:AAAA")
                .expect("version 3 rewraps");
            let again = parse(&rewrapped).expect("a rewrapped envelope parses");
            assert_eq!(
                (again.flags, again.commitment, again.key_name, again.body),
                (
                    header.flags,
                    header.commitment,
                    header.key_name,
                    header.body
                )
            );
            assert_eq!(again.wrapped_key, "vault:v9:AAAA");
        }
        FORMAT_VERSION => {
            assert_eq!(header.authenticated, &data[..key_part]);
            let assembled = assemble(header.key_name, header.wrapped_key, header.body)
                .expect("what parses can be written");
            assert_eq!(assembled, data, "the writer writes what the parser read");
            let rewrapped = header
                .rewrapped("vault:v9:AAAA")
                .expect("version 2 rewraps");
            let again = parse(&rewrapped).expect("a rewrapped envelope parses");
            assert_eq!(
                (again.key_name, again.wrapped_key, again.body),
                (header.key_name, "vault:v9:AAAA", header.body)
            );
        }
        FORMAT_VERSION_1 => {
            assert_eq!(header.authenticated, &data[..header_len]);
            assert!(header.rewrapped("vault:v9:AAAA").is_err());
        }
        other => panic!("parsed an unknown version {other}"),
    }
});
