//! The name templates (names/): any template text, topic and headers. Oracles: no
//! panic; a template prints as it was written; a rendered name always passes
//! `check_name`; a name that depends on a header is never shown in the error.
//!
//! Input: the template on the first line, the topic on the second, then one header per
//! line as `name=value` (`name` alone: no value), value bytes as they are.

#![no_main]

use kafka_transit_names::{check_name, Record, RenderError, Template};
use libfuzzer_sys::fuzz_target;

struct Headers<'a> {
    topic: String,
    headers: Vec<(String, Option<&'a [u8]>)>,
}

impl Record for Headers<'_> {
    fn topic(&self) -> &str {
        &self.topic
    }
    fn header(&self, name: &str) -> Option<Option<&[u8]>> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, value)| *value)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    // Templates come from TOML or JSON text, topics and header names from the host
    // (text by then); header values are bytes.
    let template = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let topic = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let headers = lines
        .map(|line| match line.iter().position(|&b| b == b'=') {
            Some(at) => (
                String::from_utf8_lossy(&line[..at]).into_owned(),
                Some(&line[at + 1..]),
            ),
            None => (String::from_utf8_lossy(line).into_owned(), None),
        })
        .collect();
    let record = Headers { topic, headers };

    let Ok(parsed) = Template::parse(&template) else {
        return;
    };
    assert_eq!(parsed.to_string(), template, "a template prints as written");
    assert_eq!(Template::parse(parsed.as_str()).as_ref(), Ok(&parsed));
    match parsed.render(&record) {
        Ok(name) => assert_eq!(
            check_name(&name),
            Ok(()),
            "template {template:?} rendered {name:?}, which is no valid name"
        ),
        Err(RenderError::InvalidName {
            name,
            reason,
            from_record: true,
        }) => {
            // The message must not depend on the name at all.
            let shown = |name: String| {
                RenderError::InvalidName {
                    name,
                    reason,
                    from_record: true,
                }
                .to_string()
            };
            assert_eq!(
                shown(name),
                shown(String::new()),
                "the header's name is shown"
            );
        }
        Err(_) => {}
    }
});
