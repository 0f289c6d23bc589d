//! Many topics through one pipeline: `source.topics` may hold regular expressions
//! (librdkafka's convention: an entry starting with `^`), and `sink.topic` and
//! `errors.dead_letter_topic` may be templates of the source topic (`"{topic}.protected"`,
//! `"{topic|strip_suffix:.raw}.protected"`, `"{topic}.dlq"`). The template language is
//! the `kafka-transit-names` crate's, shared with the policies' `key`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kafka_transit_names::{check_name, Field, Template};
use serde::{Deserialize, Deserializer};

/// A topic name, or a template of the source topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate(Template);

impl TopicTemplate {
    /// Parses a topic template. Only `{topic}` may appear: a topic chosen by a record's
    /// header, key or value would let whoever produces the record pick where it lands.
    pub fn parse(text: &str) -> Result<Self, String> {
        let template = Template::parse(text).map_err(|e| e.to_string())?;
        if let Some(field) = template.fields().find(|field| **field != Field::Topic) {
            return Err(format!(
                "\"{text}\": \"{field}\" cannot name a topic; only {{topic}} (the source topic) can"
            ));
        }
        if let Some(name) = template.literal() {
            check_name(name)
                .map_err(|reason| format!("\"{text}\" is not a topic name: {reason}"))?;
        }
        Ok(TopicTemplate(template))
    }

    /// The topic for records from `source_topic`.
    pub fn render(&self, source_topic: &str) -> Result<Cow<'_, str>, String> {
        struct Source<'a>(&'a str);
        impl kafka_transit_names::Record for Source<'_> {
            fn topic(&self) -> &str {
                self.0
            }
            fn header(&self, _: &str) -> Option<Option<&[u8]>> {
                None // refused by `parse`
            }
        }
        self.0
            .render(&Source(source_topic))
            .map_err(|e| e.to_string())
    }

    /// The topic itself, when this is not a template.
    pub fn literal(&self) -> Option<&str> {
        self.0.literal()
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TopicTemplate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TopicTemplate::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `source.topics`: names, and patterns (`^…`) that librdkafka matches against the
/// cluster's topics, picking up new ones at each metadata refresh.
#[derive(Debug, Clone)]
pub struct SourceTopics {
    names: Vec<String>,
    patterns: Vec<regex::Regex>,
}

impl SourceTopics {
    /// Checks each entry; the error is for the field `source.topics`.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        if entries.is_empty() {
            return Err(
                "list at least one topic or pattern (\"^customers\\\\..*\") to consume".into(),
            );
        }
        let mut topics = SourceTopics {
            names: Vec::new(),
            patterns: Vec::new(),
        };
        for entry in entries {
            if entry.starts_with('^') {
                // librdkafka evaluates the subscription itself; this only catches
                // what would never compile and answers "is this topic consumed?".
                // The regex crate's message prints the pattern unquoted: keep its
                // last line, the reason.
                let pattern = regex::Regex::new(entry).map_err(|e| {
                    let e = e.to_string();
                    let reason = e.lines().last().unwrap_or_default().trim();
                    format!("{entry:?} is not a valid regular expression ({reason})")
                })?;
                topics.patterns.push(pattern);
            } else {
                check_name(entry).map_err(|reason| {
                    format!("{entry:?} is not a topic name ({reason}); a pattern starts with '^'")
                })?;
                topics.names.push(entry.clone());
            }
        }
        Ok(topics)
    }

    pub fn has_patterns(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// The listed names (not the patterns).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether this subscription consumes `topic`.
    pub fn consumes(&self, topic: &str) -> bool {
        self.names.iter().any(|name| name == topic)
            || self.patterns.iter().any(|pattern| pattern.is_match(topic))
    }
}

/// Where one kind of output goes (`sink.topic` or `errors.dead_letter_topic`), rendered
/// once per source topic and then looked up. When the output lands on the source
/// cluster, a rendered topic the pipeline itself consumes is refused: it would read its
/// own output for ever.
#[derive(Debug)]
pub struct Route {
    field: &'static str,
    template: TopicTemplate,
    /// The source subscription, when this output goes to the source cluster.
    loops_back: Option<SourceTopics>,
    /// Topics reserved for something else (the exactly-once offsets topic).
    reserved: Vec<String>,
    rendered: Mutex<HashMap<String, Arc<str>>>,
}

impl Route {
    pub fn new(
        field: &'static str,
        template: TopicTemplate,
        loops_back: Option<SourceTopics>,
        reserved: Vec<String>,
    ) -> Route {
        Route {
            field,
            template,
            loops_back,
            reserved,
            rendered: Mutex::new(HashMap::new()),
        }
    }

    /// The field this route comes from.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The topic for outputs of a record from `source_topic`. The error names the
    /// field and says what to change.
    pub fn topic_for(&self, source_topic: &str) -> Result<Arc<str>, String> {
        if let Some(topic) = self.rendered.lock().expect("route cache").get(source_topic) {
            return Ok(topic.clone());
        }
        let topic = self.template.render(source_topic).map_err(|e| {
            format!(
                "{} = \"{}\" gives no topic for source topic \"{source_topic}\": {e}",
                self.field, self.template
            )
        })?;
        self.admits(&topic).map_err(|why| {
            format!(
                "{} = \"{}\" sends records of \"{source_topic}\" to \"{topic}\", {why}",
                self.field, self.template
            )
        })?;
        let topic: Arc<str> = topic.into();
        self.rendered
            .lock()
            .expect("route cache")
            .insert(source_topic.to_string(), topic.clone());
        Ok(topic)
    }

    /// Whether outputs may go to `topic` when a policy names it (`output-record.topic`)
    /// instead of the template: the same checks as a rendered topic.
    pub fn check_output_topic(&self, topic: &str) -> Result<(), String> {
        check_name(topic).map_err(|reason| {
            format!("the policy named an output topic that is not a topic name: {reason}")
        })?;
        self.admits(topic)
            .map_err(|why| format!("the policy sent an output to \"{topic}\", {why}"))
    }

    /// Why outputs must not go to `topic`, if they must not.
    fn admits(&self, topic: &str) -> Result<(), String> {
        if self.loops_back.as_ref().is_some_and(|s| s.consumes(topic)) {
            return Err(
                "which source.topics also consumes on the same cluster: the pipeline would \
                 consume its own output; change the template or narrow source.topics"
                    .into(),
            );
        }
        if self.reserved.iter().any(|r| r == topic) {
            return Err("which is pipeline.offsets_topic; change one of them".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(entries: &[&str]) -> SourceTopics {
        SourceTopics::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn templates_name_topics_from_the_source_topic_only() {
        let t = TopicTemplate::parse("{topic|strip_suffix:.raw}.protected").unwrap();
        assert_eq!(t.render("customers.raw").unwrap(), "customers.protected");
        assert_eq!(t.render("orders").unwrap(), "orders.protected");
        assert!(TopicTemplate::parse("{header:tenant}.out")
            .unwrap_err()
            .contains("cannot name a topic"));
        assert!(TopicTemplate::parse("bad topic")
            .unwrap_err()
            .contains("not a topic name"));
        assert_eq!(
            TopicTemplate::parse("fixed").unwrap().literal(),
            Some("fixed")
        );
    }

    #[test]
    fn patterns_and_names() {
        let s = topics(&["orders", "^customers\\..*"]);
        assert!(s.has_patterns());
        assert!(s.consumes("orders") && s.consumes("customers.eu"));
        assert!(!s.consumes("customers") && !s.consumes("orders.protected"));
        let error = SourceTopics::parse(&["^(".into()]).unwrap_err();
        assert!(error.contains("not a valid regular expression"), "{error}");
        let error = SourceTopics::parse(&["a/b".into()]).unwrap_err();
        assert!(error.contains("a pattern starts with '^'"), "{error}");
        assert!(SourceTopics::parse(&[]).is_err());
    }

    #[test]
    fn a_route_refuses_to_feed_the_pipeline_its_own_output() {
        let route = Route::new(
            "sink.topic",
            TopicTemplate::parse("{topic}.protected").unwrap(),
            Some(topics(&["^customers.*"])),
            vec!["kafka-transit.offsets".into()],
        );
        let error = route.topic_for("customers").unwrap_err();
        assert!(error.contains("consume its own output"), "{error}");
        assert!(
            error.starts_with("sink.topic = \"{topic}.protected\""),
            "{error}"
        );

        let route = Route::new(
            "sink.topic",
            TopicTemplate::parse("{topic}.protected").unwrap(),
            Some(topics(&["^.*\\.raw$"])),
            vec!["offsets.protected".into()],
        );
        assert_eq!(&*route.topic_for("a.raw").unwrap(), "a.raw.protected");
        // Looked up, not rendered again.
        assert!(Arc::ptr_eq(
            &route.topic_for("a.raw").unwrap(),
            &route.topic_for("a.raw").unwrap()
        ));
        let error = route.topic_for("offsets").unwrap_err();
        assert!(error.contains("pipeline.offsets_topic"), "{error}");
    }

    #[test]
    fn a_topic_a_policy_names_gets_the_same_checks_as_a_rendered_one() {
        let route = Route::new(
            "sink.topic",
            TopicTemplate::parse("{topic}.protected").unwrap(),
            Some(topics(&["^customers.*"])),
            vec!["kafka-transit.offsets".into()],
        );
        assert_eq!(route.check_output_topic("orders.protected"), Ok(()));
        let error = route.check_output_topic("customers.eu").unwrap_err();
        assert!(error.contains("consume its own output"), "{error}");
        let error = route
            .check_output_topic("kafka-transit.offsets")
            .unwrap_err();
        assert!(error.contains("pipeline.offsets_topic"), "{error}");
        let error = route.check_output_topic("a/b").unwrap_err();
        assert!(error.contains("not a topic name"), "{error}");
        assert!(route.check_output_topic("").is_err());
    }
}
