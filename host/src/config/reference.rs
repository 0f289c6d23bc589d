//! The configuration reference (docs/configuration.md) and the parser name the same
//! fields: every field `pipeline.toml` may hold is in the reference, and every field the
//! reference names is one the parser takes. The parser is asked rather than listed by
//! hand: a table given a member it does not know is refused with the members it expects
//! (`deny_unknown_fields`), so a field added to the code shows up here by itself.

use std::collections::BTreeSet;

use super::PipelineConfig;

const REFERENCE: &str = include_str!("../../../docs/configuration.md");
const PROBE: &str = "zz_probe_not_a_field";

/// Names in the reference that look like fields and are not: `vault.token` is named as
/// refused (a token is never written in the file), `pipeline.toml` is the file.
const NOT_FIELDS: &[&str] = &["vault.token", "pipeline.toml"];

/// The members the table at `path` expects, or `None` when it is no table of ours (a
/// value, or a free-form table such as `source.properties` or `policy.config`).
fn expected_members(path: &[String]) -> Option<Vec<String>> {
    let text = if path.is_empty() {
        format!("{PROBE} = 1\n")
    } else {
        format!("[{}]\n{PROBE} = 1\n", path.join("."))
    };
    let error = toml::from_str::<PipelineConfig>(&text).err()?.to_string();
    let list = error
        .split(&format!("unknown field `{PROBE}`, expected "))
        .nth(1)?;
    let list = list.lines().next().unwrap_or_default();
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// Every field the parser takes, dotted (`vault.approle.role_id_file`); a table of ours
/// is listed through its members, a free-form table as itself.
fn fields_in_code() -> BTreeSet<String> {
    let mut fields = BTreeSet::new();
    let mut tables = vec![Vec::new()];
    while let Some(table) = tables.pop() {
        for member in expected_members(&table).unwrap_or_default() {
            let mut path = table.clone();
            path.push(member);
            if expected_members(&path).is_some() {
                tables.push(path);
            } else {
                fields.insert(path.join("."));
            }
        }
    }
    fields
}

/// What the reference names: keys of the annotated TOML example under their table
/// (commented-out ones too) and every `backticked` dotted name or `[table]`; and, less
/// strictly, a bare `name` for each `[table]` named on the same line (the login tables'
/// members are listed that way), which only counts as having documented a field.
fn fields_in_reference() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut named = BTreeSet::new();
    let mut loosely = BTreeSet::new();
    let mut table = String::new();
    let mut in_example = false;
    for line in REFERENCE.lines() {
        if line.starts_with("```") {
            in_example = line == "```toml";
            continue;
        }
        if in_example {
            let line = line.trim_start_matches('#').trim();
            let line = line.split(" #").next().unwrap_or_default().trim();
            if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                table = header.to_string();
                named.insert(table.clone());
            } else if let Some((key, _)) = line.split_once('=') {
                let key = key.trim().trim_matches('"');
                if !key.is_empty() && !key.contains(' ') {
                    named.insert(format!("{table}.{key}"));
                }
            }
            continue;
        }
        let quoted: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
        let tables: Vec<&str> = quoted
            .iter()
            .filter_map(|q| q.strip_prefix('[').and_then(|q| q.strip_suffix(']')))
            .collect();
        for name in &quoted {
            if let Some(table) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
                named.insert(table.to_string());
            } else if name.contains('.') {
                if is_dotted_name(name) {
                    named.insert(name.to_string());
                }
            } else {
                loosely.extend(tables.iter().map(|t| format!("{t}.{name}")));
            }
        }
    }
    (named, loosely)
}

/// `table.field` as the reference writes a field, not a `field = "value"` example.
fn is_dotted_name(text: &str) -> bool {
    text.split('.').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

#[test]
fn every_field_in_the_code_is_in_the_reference() {
    let (named, loosely) = fields_in_reference();
    let documented: BTreeSet<_> = named.union(&loosely).collect();
    let missing: Vec<_> = fields_in_code()
        .into_iter()
        .filter(|field| !documented.contains(field))
        .collect();
    assert!(
        missing.is_empty(),
        "fields pipeline.toml takes that docs/configuration.md does not name: {missing:?}"
    );
}

#[test]
fn every_field_the_reference_names_is_in_the_code() {
    let code = fields_in_code();
    let tables: BTreeSet<&str> = code.iter().map(|f| f.split('.').next().unwrap()).collect();
    let under_code = |name: &str| {
        code.contains(name)
            || code.iter().any(|f| f.starts_with(&format!("{name}.")))
            || code.iter().any(|f| name.starts_with(&format!("{f}.")))
    };
    let (named, _) = fields_in_reference();
    let stale: Vec<_> = named
        .into_iter()
        .filter(|name| tables.contains(name.split('.').next().unwrap()))
        .filter(|name| !name.contains('*') && !NOT_FIELDS.contains(&name.as_str()))
        .filter(|name| !under_code(name))
        .collect();
    assert!(
        stale.is_empty(),
        "names in docs/configuration.md that pipeline.toml does not take: {stale:?}"
    );
}

#[test]
fn the_parser_is_asked_about_tables_and_nested_tables() {
    // The probe must find what it claims to: top-level tables, a nested table's members.
    let code = fields_in_code();
    for field in [
        "source.group_id",
        "vault.approle.role_id_file",
        "pipeline.batch_size",
    ] {
        assert!(code.contains(field), "{field} not found in {code:?}");
    }
    assert!(
        code.contains("source.properties"),
        "a free-form table is one field"
    );
    assert!(!code.iter().any(|f| f.starts_with("policy.config.")));
}
