//! Request fields the way Vault's `sdk/framework` handles them.
//!
//! Every endpoint declares its fields and their types (a [`Schema`]). Before the
//! handler runs, each field present in the body is converted with Go's "weak
//! decoding" rules (a JSON number is text for a string field, `"1"` is an int, `1` is
//! a bool, ...); the first failure is reported with Go's error text. Fields the
//! schema does not know are ignored and named in Vault's warning.

use serde_json::{Map, Value};

/// A field's type (`framework.TypeString`, `TypeBool`, `TypeInt`,
/// `TypeDurationSecond`, `TypeSlice` / `TypeCommaStringSlice`, `TypeMap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    Int,
    Duration,
    Slice,
    Map,
}

/// The fields an endpoint accepts.
pub type Schema = &'static [(&'static str, Kind)];

/// Go's `%T` for a JSON value decoded with `UseNumber`.
pub fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "json.Number",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn unconvertible(expected: &str, v: &Value) -> String {
    format!(
        "'' expected type '{expected}', got unconvertible type '{}'",
        go_type(v)
    )
}

/// Weak decoding into a string: numbers keep their text, booleans are `1`/`0`.
pub fn to_string(v: &Value) -> Result<String, String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(if *b { "1" } else { "0" }.into()),
        _ => Err(unconvertible("string", v)),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Weak decoding into a bool: text (numbers included) as `strconv.ParseBool`.
pub fn to_bool(v: &Value) -> Result<bool, String> {
    let text = match v {
        Value::Null => return Ok(false),
        Value::Bool(b) => return Ok(*b),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(unconvertible("bool", v)),
    };
    if text.is_empty() {
        return Ok(false);
    }
    parse_go_bool(&text)
        .ok_or_else(|| "'' cannot parse value as 'bool': strconv.ParseBool: invalid syntax".into())
}

/// `strconv.ParseInt(s, base, 64)` (base 0: Go literal prefixes); the error is
/// `NumError.Err`'s text.
fn parse_go_int(s: &str, base_zero: bool) -> Result<i64, &'static str> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if !base_zero {
        (10, digits)
    } else if let Some(d) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, d)
    } else if let Some(d) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        (8, d)
    } else if let Some(d) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        (2, d)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err("invalid syntax");
    }
    let magnitude = u128::from_str_radix(digits, radix).map_err(|_| "value out of range")?;
    let value = if neg {
        -(magnitude as i128)
    } else {
        magnitude as i128
    };
    i64::try_from(value).map_err(|_| "value out of range")
}

/// Weak decoding into an int: numbers must be integers, text is parsed, booleans
/// are 1/0.
pub fn to_int(v: &Value) -> Result<i64, String> {
    let result = match v {
        Value::Null => return Ok(0),
        Value::Bool(b) => return Ok(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(i),
            None if n.is_u64() => Err("value out of range"),
            None => Err("invalid syntax"),
        },
        Value::String(s) if s.is_empty() => Ok(0),
        Value::String(s) => parse_go_int(s, true),
        _ => return Err(unconvertible("int", v)),
    };
    result.map_err(|e| format!("'' cannot parse value as 'int': strconv.ParseInt: {e}"))
}

/// `parseutil.ParseDurationSecond` then `TypeDurationSecond`'s checks: whole seconds,
/// not negative. `None` for a JSON null (the field counts as absent).
pub fn to_duration_secs(v: &Value) -> Result<Option<u64>, String> {
    let text = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("could not parse duration from input".into()),
    };
    let nanos: i128 = if text.is_empty() {
        0
    } else if let Ok(secs) = text.parse::<i64>() {
        i128::from(secs) * 1_000_000_000
    } else if let Some(days) = text.strip_suffix('d') {
        let days: i64 = days
            .parse()
            .map_err(|_| format!("strconv.ParseInt: parsing {days:?}: invalid syntax"))?;
        i128::from(days) * 86_400 * 1_000_000_000
    } else {
        parse_go_duration(&text)?
    };
    let secs = nanos / 1_000_000_000;
    if secs < 0 {
        return Err(format!("cannot provide negative value '{secs}'"));
    }
    Ok(Some(u64::try_from(secs).unwrap_or(u64::MAX)))
}

/// Go's `time.ParseDuration`, in nanoseconds, with its error texts.
pub fn parse_go_duration(orig: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    const MAX: u128 = 1 << 63;
    let (neg, mut s) = match orig.as_bytes().first() {
        Some(b'-') => (true, &orig[1..]),
        Some(b'+') => (false, &orig[1..]),
        _ => (false, orig),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut value: u128 = 0;
        for d in s[..int_len].bytes() {
            value = value * 10 + u128::from(d - b'0');
            if value > MAX {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        let (mut fraction, mut scale, mut frac_len) = (0u128, 1f64, 0usize);
        if let Some(rest) = s.strip_prefix('.') {
            s = rest;
            frac_len = s.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for d in s[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                let next = fraction * 10 + u128::from(d - b'0');
                if next > MAX {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            s = &s[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let unit_name = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u128 = match unit_name {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {unit_name:?} in duration {orig:?}"
                ))
            }
        };
        value = value.checked_mul(unit).ok_or_else(invalid)?;
        if value > MAX {
            return Err(invalid());
        }
        if fraction > 0 {
            value += (fraction as f64 * (unit as f64 / scale)) as u128;
            if value > MAX {
                return Err(invalid());
            }
        }
        total += value;
        if total > MAX {
            return Err(invalid());
        }
    }
    if !neg && total > MAX - 1 {
        return Err(invalid());
    }
    Ok(if neg { -(total as i128) } else { total as i128 })
}

fn convert(kind: Kind, v: &Value) -> Result<(), String> {
    match kind {
        Kind::Str => to_string(v).map(drop),
        Kind::Bool => to_bool(v).map(drop),
        Kind::Int => to_int(v).map(drop),
        Kind::Duration => to_duration_secs(v).map(drop),
        // Weak decoding wraps any single value into a list: never an error.
        Kind::Slice => Ok(()),
        Kind::Map => match v {
            Value::Object(_) | Value::Null => Ok(()),
            other => Err(unconvertible("map[string]interface {}", other)),
        },
    }
}

/// Go's `reflect.Kind` name, used by mapstructure (a `json.Number` is a string).
pub fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "invalid",
        Value::Bool(_) => "bool",
        Value::Number(_) | Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

/// Check that every known field converts. The error is Vault's
/// `error converting input for field "F": <Go error>`; the handler adds its prefix.
/// Returns the unknown fields, sorted, for [`ignored_warning`].
pub fn validate(body: &Map<String, Value>, schema: Schema) -> Result<Vec<String>, String> {
    let mut ignored = Vec::new();
    // serde_json's map is sorted, so with several bad fields the first by name is
    // reported (Vault picks one at random).
    for (name, value) in body {
        match schema.iter().find(|(n, _)| n == name) {
            Some((_, kind)) => convert(*kind, value)
                .map_err(|e| format!("error converting input for field {name:?}: {e}"))?,
            None => ignored.push(name.clone()),
        }
    }
    Ok(ignored)
}

/// Vault's warning for fields an endpoint does not know.
pub fn ignored_warning(ignored: &[String]) -> Option<String> {
    (!ignored.is_empty()).then(|| {
        format!(
            "Endpoint ignored these unrecognized parameters: [{}]",
            ignored.join(" ")
        )
    })
}

/// Typed access to a request body that [`validate`] accepted. Conversion failures
/// (only possible without validation) read as absent.
#[derive(Clone, Copy)]
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The raw value, `None` when absent or null (Go's `d.Raw[name] != nil`).
    pub fn raw(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A string field; `None` when absent (a null reads as `""`).
    pub fn str(&self, name: &str) -> Option<String> {
        self.0.get(name).and_then(|v| to_string(v).ok())
    }

    /// A string field, or `default` when absent.
    pub fn str_or(&self, name: &str, default: &str) -> String {
        self.str(name).unwrap_or_else(|| default.to_string())
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.0.get(name).and_then(|v| to_bool(v).ok())
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.0.get(name).and_then(|v| to_int(v).ok())
    }

    /// A `TypeCommaStringSlice` field: a list, or one text split at commas; each item
    /// trimmed, empty ones dropped. `None` when absent.
    pub fn comma_list(&self, name: &str) -> Option<Vec<String>> {
        let items: Vec<String> = match self.0.get(name)? {
            Value::Array(list) => list.iter().filter_map(|v| to_string(v).ok()).collect(),
            v => to_string(v).ok()?.split(',').map(str::to_string).collect(),
        };
        Some(
            items
                .into_iter()
                .map(|i| i.trim().to_string())
                .filter(|i| !i.is_empty())
                .collect(),
        )
    }

    /// A duration field in whole seconds; `None` when absent or null.
    pub fn duration_secs(&self, name: &str) -> Option<u64> {
        self.0
            .get(name)
            .and_then(|v| to_duration_secs(v).ok().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn weak_conversions() {
        assert_eq!(to_string(&json!(5)).unwrap(), "5");
        assert_eq!(to_string(&json!(true)).unwrap(), "1");
        assert_eq!(
            to_string(&json!(["a"])).unwrap_err(),
            "'' expected type 'string', got unconvertible type '[]interface {}'"
        );
        assert!(to_bool(&json!("t")).unwrap());
        assert!(!to_bool(&json!(0)).unwrap());
        assert!(!to_bool(&json!("")).unwrap());
        assert_eq!(
            to_bool(&json!(2)).unwrap_err(),
            "'' cannot parse value as 'bool': strconv.ParseBool: invalid syntax"
        );
        assert_eq!(to_int(&json!("2")).unwrap(), 2);
        assert_eq!(to_int(&json!("0x10")).unwrap(), 16);
        assert_eq!(to_int(&json!(true)).unwrap(), 1);
        assert_eq!(
            to_int(&json!(1.5)).unwrap_err(),
            "'' cannot parse value as 'int': strconv.ParseInt: invalid syntax"
        );
        assert_eq!(
            to_int(&json!("99999999999999999999")).unwrap_err(),
            "'' cannot parse value as 'int': strconv.ParseInt: value out of range"
        );
    }

    #[test]
    fn durations_like_parseutil() {
        assert_eq!(to_duration_secs(&json!("1h")).unwrap(), Some(3600));
        assert_eq!(to_duration_secs(&json!("90")).unwrap(), Some(90));
        assert_eq!(to_duration_secs(&json!(7200)).unwrap(), Some(7200));
        assert_eq!(to_duration_secs(&json!("2d")).unwrap(), Some(172_800));
        assert_eq!(to_duration_secs(&json!("1h30m")).unwrap(), Some(5400));
        assert_eq!(to_duration_secs(&json!("1.5h")).unwrap(), Some(5400));
        assert_eq!(to_duration_secs(&json!("")).unwrap(), Some(0));
        assert_eq!(to_duration_secs(&json!(null)).unwrap(), None);
        assert_eq!(
            to_duration_secs(&json!("abc")).unwrap_err(),
            "time: invalid duration \"abc\""
        );
        assert_eq!(
            to_duration_secs(&json!("1.5")).unwrap_err(),
            "time: missing unit in duration \"1.5\""
        );
        assert_eq!(
            to_duration_secs(&json!("1e3")).unwrap_err(),
            "time: unknown unit \"e\" in duration \"1e3\""
        );
        assert_eq!(
            to_duration_secs(&json!(-1)).unwrap_err(),
            "cannot provide negative value '-1'"
        );
        assert_eq!(
            to_duration_secs(&json!(true)).unwrap_err(),
            "could not parse duration from input"
        );
    }

    #[test]
    fn validation_and_warning() {
        const SCHEMA: Schema = &[("a", Kind::Int), ("b", Kind::Bool)];
        let body = json!({ "a": "1", "z": 1, "y": 2 });
        let ignored = validate(body.as_object().unwrap(), SCHEMA).unwrap();
        assert_eq!(
            ignored_warning(&ignored).unwrap(),
            "Endpoint ignored these unrecognized parameters: [y z]"
        );
        let body = json!({ "b": "maybe" });
        assert_eq!(
            validate(body.as_object().unwrap(), SCHEMA).unwrap_err(),
            "error converting input for field \"b\": '' cannot parse value as 'bool': strconv.ParseBool: invalid syntax"
        );
    }
}
