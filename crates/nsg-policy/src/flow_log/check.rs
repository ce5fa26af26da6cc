//! What the strict format checkers share: an error list with JSON paths, and typed access to
//! objects with an exact set of keys.

use super::names::is_uuid;
use super::parse_record_time;
use nsg_model::ResourceId;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

#[derive(Default)]
pub(super) struct Checker {
    pub(super) errors: Vec<String>,
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `s` as a u64 written in canonical decimal.
pub(super) fn canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl Checker {
    pub(super) fn finish(self) -> Result<(), Vec<String>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }

    pub(super) fn error(&mut self, path: &str, message: impl AsRef<str>) {
        self.errors.push(format!("{path}: {}", message.as_ref()));
    }

    /// `v` as an object with exactly `keys`.
    pub(super) fn object<'a>(
        &mut self,
        path: &str,
        v: &'a Value,
        keys: &[&str],
    ) -> Option<&'a Map<String, Value>> {
        self.object_with_optional(path, v, keys, &[])
    }

    /// `v` as an object with all of `keys`, perhaps some of `optional`, and nothing else.
    pub(super) fn object_with_optional<'a>(
        &mut self,
        path: &str,
        v: &'a Value,
        keys: &[&str],
        optional: &[&str],
    ) -> Option<&'a Map<String, Value>> {
        let Some(map) = v.as_object() else {
            self.error(path, format!("expected an object, found {}", kind_of(v)));
            return None;
        };
        for key in keys {
            if !map.contains_key(*key) {
                self.error(path, format!("missing key \"{key}\""));
            }
        }
        for key in map.keys() {
            if !keys.contains(&key.as_str()) && !optional.contains(&key.as_str()) {
                self.error(path, format!("unexpected key \"{key}\""));
            }
        }
        Some(map)
    }

    /// `map["flowTuples"]`, a non-empty array of strings, each checked with `check_tuple`.
    pub(super) fn flow_tuples(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        check_tuple: fn(&mut Checker, &str, &str),
    ) {
        let Some(tuples) = self.array(path, map, "flowTuples") else {
            return;
        };
        for (i, tuple) in tuples.iter().enumerate() {
            let p = format!("{path}.flowTuples[{i}]");
            match tuple.as_str() {
                Some(t) => check_tuple(self, &p, t),
                None => self.error(&p, format!("expected a string, found {}", kind_of(tuple))),
            }
        }
    }

    /// `map["time"]` as a record time (`example` shows the form in the error).
    pub(super) fn record_time(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        example: &str,
    ) -> Option<RecordTime> {
        let text = self.string(path, map, "time")?;
        let parsed = parse_record_time(text);
        if parsed.is_none() {
            self.error(
                &format!("{path}.time"),
                format!("\"{text}\" is not a UTC time like {example}"),
            );
        }
        parsed
    }

    /// `map[key]`, reported unless it is a UUID.
    pub(super) fn uuid(&mut self, path: &str, map: &Map<String, Value>, key: &str) {
        if let Some(id) = self.string(path, map, key) {
            if !is_uuid(id) {
                self.error(&format!("{path}.{key}"), format!("\"{id}\" is not a UUID"));
            }
        }
    }

    /// Each `(key, value)` of `expected` holds exactly that string.
    pub(super) fn constants(
        &mut self,
        path: &str,
        map: &Map<String, Value>,
        expected: &[(&str, &str)],
    ) {
        for &(key, expected) in expected {
            if let Some(found) = self.string(path, map, key) {
                if found != expected {
                    self.error(
                        &format!("{path}.{key}"),
                        format!("expected \"{expected}\", found \"{found}\""),
                    );
                }
            }
        }
    }

    /// `map[key]` if it is an upper-case resource id of the kind `is_kind` accepts (`kind`
    /// names it in the error); each fault is reported.
    pub(super) fn upper_case_id<'a>(
        &mut self,
        path: &str,
        map: &'a Map<String, Value>,
        key: &str,
        is_kind: impl Fn(&ResourceId) -> bool,
        kind: &str,
    ) -> Option<&'a str> {
        let id = self.string(path, map, key)?;
        let at = format!("{path}.{key}");
        let mut ok = true;
        if id.to_uppercase() != id {
            self.error(&at, format!("\"{id}\" is not upper case"));
            ok = false;
        }
        if !ResourceId::parse(id).is_ok_and(|parsed| is_kind(&parsed)) {
            self.error(&at, format!("\"{id}\" is not {kind}"));
            ok = false;
        }
        ok.then_some(id)
    }

    /// Whether `mac` is written as flow logs write MACs (12 upper-case hex digits); reported if not.
    pub(super) fn mac(&mut self, path: &str, mac: &str) -> bool {
        let ok = mac.len() == 12
            && mac
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        if !ok {
            self.error(path, format!("\"{mac}\" is not 12 upper-case hex digits"));
        }
        ok
    }

    pub(super) fn string<'a>(
        &mut self,
        path: &str,
        map: &'a Map<String, Value>,
        key: &str,
    ) -> Option<&'a str> {
        let v = map.get(key)?; // missing keys are reported by `object`
        match v.as_str() {
            Some(s) => Some(s),
            None => {
                self.error(
                    &format!("{path}.{key}"),
                    format!("expected a string, found {}", kind_of(v)),
                );
                None
            }
        }
    }

    /// `map[key]` as a non-empty array.
    pub(super) fn array<'a>(
        &mut self,
        path: &str,
        map: &'a Map<String, Value>,
        key: &str,
    ) -> Option<&'a [Value]> {
        let v = map.get(key)?;
        let path = format!("{path}.{key}");
        match v.as_array() {
            Some(items) if items.is_empty() => {
                self.error(&path, "is empty");
                None
            }
            Some(items) => Some(items),
            None => {
                self.error(&path, format!("expected an array, found {}", kind_of(v)));
                None
            }
        }
    }
}

/// A record `time`: (epoch seconds, 100 ns ticks).
pub(super) type RecordTime = (u64, u32);

/// Checks `{"records":[…]}`: each record with `check_record`, which returns the key of the
/// series the record belongs to (the NSG, or the flow log and MAC) and its time when both are
/// well-formed; records of one series must not go back in time (`series` names it in errors).
pub(super) fn check_records<'v, K: Eq + Hash>(
    c: &mut Checker,
    v: &'v Value,
    series: &str,
    mut check_record: impl FnMut(&mut Checker, &str, &'v Value) -> Option<(K, RecordTime)>,
) {
    let Some(map) = c.object("document", v, &["records"]) else {
        return;
    };
    let Some(records_value) = map.get("records") else {
        return;
    };
    let Some(records) = records_value.as_array() else {
        c.error(
            "records",
            format!("expected an array, found {}", kind_of(records_value)),
        );
        return;
    };
    // series → (time, record index) of its latest record so far.
    let mut latest: HashMap<K, (RecordTime, usize)> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        let path = format!("records[{i}]");
        let Some((key, time)) = check_record(c, &path, record) else {
            continue;
        };
        if let Some(&(prev_time, prev)) = latest.get(&key) {
            if time < prev_time {
                c.error(
                    &format!("{path}.time"),
                    format!(
                        "is earlier than the time of records[{prev}], of the same {series} (records must be sorted by time per {series})"
                    ),
                );
            }
        }
        latest.insert(key, (time, i));
    }
}

/// The fields of one flow tuple being checked; faults are reported with the tuple and field.
pub(super) struct TupleFields<'a> {
    path: &'a str,
    tuple: &'a str,
    pub(super) fields: Vec<&'a str>,
}

impl<'a> TupleFields<'a> {
    /// Splits `tuple`; `None` (reported) unless it has exactly `count` fields.
    pub(super) fn split(
        c: &mut Checker,
        path: &'a str,
        tuple: &'a str,
        count: usize,
    ) -> Option<Self> {
        let fields: Vec<&str> = tuple.split(',').collect();
        if fields.len() != count {
            c.error(
                path,
                format!("\"{tuple}\" has {} fields, expected {count}", fields.len()),
            );
            return None;
        }
        Some(TupleFields {
            path,
            tuple,
            fields,
        })
    }

    /// Reports field `field` (0-based) as faulty.
    pub(super) fn bad(&self, c: &mut Checker, field: usize, what: &str) {
        c.errors.push(format!(
            "{}: \"{}\": field {} (\"{}\") {what}",
            self.path,
            self.tuple,
            field + 1,
            self.fields[field]
        ));
    }

    /// The fields both formats share: the time stamp (in `time_unit`), source and destination
    /// addresses and ports, and the direction (field 7).
    pub(super) fn check_shared(&self, c: &mut Checker, time_unit: &str) {
        if canonical_u64(self.fields[0]).is_none() {
            self.bad(c, 0, &format!("is not a time stamp in epoch {time_unit}"));
        }
        for field in [1, 2] {
            if self.fields[field].parse::<IpAddr>().is_err() {
                self.bad(c, field, "is not an IPv4 or IPv6 address");
            }
        }
        for field in [3, 4] {
            if canonical_u64(self.fields[field]).is_none_or(|p| p > u64::from(u16::MAX)) {
                self.bad(c, field, "is not a port 0-65535");
            }
        }
        if !matches!(self.fields[6], "I" | "O") {
            self.bad(c, 6, "is not a traffic flow I or O");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_numbers() {
        assert_eq!(canonical_u64("0"), Some(0));
        assert_eq!(canonical_u64("65535"), Some(65535));
        for bad in ["", "01", "+1", "-1", " 1", "1.0", "18446744073709551616"] {
            assert_eq!(canonical_u64(bad), None, "{bad:?}");
        }
    }
}
