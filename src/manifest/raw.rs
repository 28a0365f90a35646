//! The manifest as serde_yaml reads it, before validation: a small, order-preserving value tree
//! that keeps duplicate keys and every scalar type, so each rule can say exactly what it found.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess};

#[derive(Debug, Clone, PartialEq)]
pub enum Raw<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// Borrowed from the manifest text when serde_yaml can (no escapes to undo).
    Str(Cow<'a, str>),
    Seq(Vec<Raw<'a>>),
    Map(Vec<(Raw<'a>, Raw<'a>)>),
    /// A value with a custom `!tag` (serde_yaml hands these over as enums).
    Tagged(String, Box<Raw<'a>>),
}

impl Raw<'_> {
    /// What the value is, for messages: "a number", "a list"...
    pub fn describe(&self) -> &'static str {
        match self {
            Raw::Null => "an empty value",
            Raw::Bool(_) => "true/false",
            Raw::Int(_) | Raw::Float(_) => "a number",
            Raw::Str(_) => "text",
            Raw::Seq(_) => "a list",
            Raw::Map(_) => "a mapping",
            Raw::Tagged(..) => "a tagged value",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Raw::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> de::Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Raw<'de>, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw<'de>, E> {
        Ok(Raw::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw<'de>, E> {
        Ok(Raw::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw<'de>, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw<'de>, E> {
        Ok(Raw::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw<'de>, E> {
        Ok(Raw::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw<'de>, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element::<Raw<'de>>()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some((key, value)) = map.next_entry::<Raw<'de>, Raw<'de>>()? {
            pairs.push((key, value));
        }
        Ok(Raw::Map(pairs))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Raw<'de>, A::Error> {
        let (tag, variant) = data.variant::<String>()?;
        let value = variant.newtype_variant::<Raw<'de>>()?;
        Ok(Raw::Tagged(tag, Box::new(value)))
    }
}

/// A serde_yaml failure, located (1-based) when serde_yaml knows where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Reads a YAML document with serde_yaml.
pub fn read(text: &str) -> Result<Raw<'_>, ReadError> {
    serde_yaml::from_str::<Raw>(text).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let text = err.to_string();
        // serde_yaml appends " at line X column Y"; the location is reported separately.
        let what = match text.find(" at line ") {
            Some(i) => &text[..i],
            None => &text,
        };
        let message = if what.contains("repetition limit") {
            "the aliases in this file expand too much (an alias bomb?); the file is refused \
             (write the values out instead of repeating aliases)"
                .to_string()
        } else if what.contains("recursion limit") {
            "the YAML nests too deeply (check the brackets and indentation)".to_string()
        } else {
            format!("YAML error: {what} (fix the YAML here)")
        };
        ReadError {
            line,
            column,
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_types_order_and_duplicates() {
        let raw = read("b: 1\na: [x, 2.5, ~, true]\nb: \"7\"\nc: !t v\n").unwrap();
        let Raw::Map(pairs) = raw else {
            panic!("not a map")
        };
        assert_eq!(pairs.len(), 4);
        assert_eq!(pairs[0], (Raw::Str("b".into()), Raw::Int(1)));
        assert_eq!(
            pairs[1].1,
            Raw::Seq(vec![
                Raw::Str("x".into()),
                Raw::Float(2.5),
                Raw::Null,
                Raw::Bool(true)
            ])
        );
        assert_eq!(pairs[2].1, Raw::Str("7".into()));
        assert_eq!(
            pairs[3].1,
            Raw::Tagged("t".into(), Box::new(Raw::Str("v".into())))
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = read("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(
            err.line >= 1 && err.message.starts_with("YAML error"),
            "{err:?}"
        );
    }
}
