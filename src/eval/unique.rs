//! Duplicate object keys in a JSON document. `serde_json` keeps the last
//! of two equal keys; a request that says `"agent": "quarantined", "agent":
//! "payroll-bot"` must not be read as either. [`duplicate_key`] walks the
//! document once without building it and names the first key that repeats,
//! at any depth, as a path (`args.items[2].name`). Pure.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The path of the first key that appears twice in one object of `body`,
/// or `None` (also when `body` is not JSON: parsing reports that).
pub fn duplicate_key(body: &[u8]) -> Option<String> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Node {
        at: None,
        found: &found,
    }
    .deserialize(&mut de);
    found.into_inner()
}

/// One step of the path from the root.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

struct Seg<'a> {
    parent: Option<&'a Seg<'a>>,
    step: Step<'a>,
}

fn render(seg: &Seg<'_>, out: &mut String) {
    if let Some(p) = seg.parent {
        render(p, out);
    }
    match seg.step {
        Step::Key(k) => {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(k);
        }
        Step::Index(i) => {
            out.push('[');
            out.push_str(&i.to_string());
            out.push(']');
        }
    }
}

/// A value at a path; deserializing it records the first duplicate.
struct Node<'a, 'f> {
    at: Option<&'a Seg<'a>>,
    found: &'f RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let seg = Seg {
                parent: self.at,
                step: Step::Index(i),
            };
            let node = Node {
                at: Some(&seg),
                found: self.found,
            };
            if seq.next_element_seed(node)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let seg = Seg {
                parent: self.at,
                step: Step::Key(&key),
            };
            if seen.contains(&key) {
                let mut path = String::new();
                render(&seg, &mut path);
                *self.found.borrow_mut() = Some(path);
                let _ = map.next_value::<IgnoredAny>();
                return Err(serde::de::Error::custom(StopMsg));
            }
            map.next_value_seed(Node {
                at: Some(&seg),
                found: self.found,
            })?;
            seen.insert(key);
        }
        Ok(())
    }
}

struct StopMsg;

impl fmt::Display for StopMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("duplicate key")
    }
}

#[cfg(test)]
mod tests {
    use super::duplicate_key;

    #[test]
    fn finds_the_first_repeated_key_at_any_depth() {
        assert_eq!(duplicate_key(br#"{"a": 1, "b": 2}"#), None);
        assert_eq!(
            duplicate_key(br#"{"agent": "q", "agent": "p"}"#).as_deref(),
            Some("agent")
        );
        assert_eq!(
            duplicate_key(br#"{"args": {"to": "x", "amount": 1, "to": "y"}}"#).as_deref(),
            Some("args.to")
        );
        assert_eq!(
            duplicate_key(br#"{"args": {"items": [{}, {"n": 1}, {"n": 1, "n": 2}]}}"#).as_deref(),
            Some("args.items[2].n")
        );
        // The same key in two objects is no duplicate; escapes are decoded.
        assert_eq!(duplicate_key(br#"[{"a": 1}, {"a": 2}]"#), None);
        assert_eq!(
            duplicate_key(br#"{"a": 1, "\u0061": 2}"#).as_deref(),
            Some("a")
        );
        assert_eq!(duplicate_key(b"not json"), None);
    }
}
