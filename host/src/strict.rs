//! Strict field validation for the documents users write (policy files for `ballast simulate` and `ballast run
//! --config`, simulation files, `ballast behavior` input), as the API server's strict field validation refuses
//! what its schema does not declare: a misspelt field would otherwise mean its default without a word
//! (`behaviour:` would fall back to the legacy limits).
//!
//! [`deserialize`] wraps any serde deserializer so that every struct refuses keys it does not declare, at any
//! depth, naming the closest declared field. It needs no `#[serde(deny_unknown_fields)]`, so the types keep the
//! CRD schema as it is (the API server prunes unknown fields of stored objects; `deny_unknown_fields` would turn
//! into `additionalProperties: false`) and foreign types (k8s-openapi's `ObjectMeta`, `ConfigMap`) are checked too.
//! A struct declares its fields when it asks for `deserialize_struct`; free-form values (`serde_json::Value`, maps)
//! ask for maps and stay free. What a type reads through serde's buffered content (`#[serde(flatten)]`, tagged
//! and untagged enums) is checked only as far as that type checks it.
//!
//! The error is raised while the unknown key itself is read, so the YAML deserializer places it at the key's line
//! and prefixes the path of the object holding it: `spec.behavior.scaleDown.policies[0]: unknown field
//! `periodSecond` (did you mean `periodSeconds`?) at line 14 column 9`.

use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// Deserializes a `T` from `deserializer`, refusing every field that the struct it would go into does not declare.
pub(crate) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    T::deserialize(Strict(deserializer))
}

/// One YAML document as `T`, strictly ([`deserialize`]); errors carry the line and column.
pub(crate) fn from_yaml_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_yaml_ng::Error> {
    deserialize(serde_yaml_ng::Deserializer::from_str(text))
}

/// The message for an unknown field `found` where `known` are declared: the closest one as a hint, or all of them.
fn unknown_field(found: &str, known: &[&str]) -> String {
    if let Some(closest) = closest(found, known) {
        return format!("unknown field `{found}` (did you mean `{closest}`?)");
    }
    match known {
        [] => format!("unknown field `{found}` (this object has no fields)"),
        _ => {
            let known: Vec<String> = known.iter().map(|name| format!("`{name}`")).collect();
            format!("unknown field `{found}` (known fields here: {})", known.join(", "))
        }
    }
}

/// The declared name nearest to `found` in edits, ignoring case, if it is near enough to be a slip: within a third
/// of the name's length (at least one edit).
fn closest<'a>(found: &str, known: &[&'a str]) -> Option<&'a str> {
    let found_lower = found.to_ascii_lowercase();
    let allowed = (found.chars().count() / 3).max(1);
    known
        .iter()
        .map(|name| (strsim::levenshtein(&found_lower, &name.to_ascii_lowercase()), *name))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// A deserializer whose structs refuse undeclared keys.
struct Strict<D>(D);

/// Forwards `deserialize_*` methods that take only a visitor, wrapping the visitor.
macro_rules! forward_deserialize {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Checked::free(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Checked::free(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Checked::free(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Checked::free(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Checked::free(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, Checked { visitor, fields: Some(fields) })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Checked::free(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A visitor whose maps refuse keys outside `fields` (when it visits a struct), and whose nested values are read
/// strictly.
struct Checked<V> {
    visitor: V,
    fields: Option<&'static [&'static str]>,
}

impl<V> Checked<V> {
    fn free(visitor: V) -> Self {
        Checked { visitor, fields: None }
    }
}

/// Forwards `visit_*` methods of plain values.
macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
            self.visitor.$method(value)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Checked<V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        self.visitor.expecting(formatter)
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64) visit_i128(i128) visit_u8(u8)
        visit_u16(u16) visit_u32(u32) visit_u64(u64) visit_u128(u128) visit_f32(f32) visit_f64(f64)
        visit_char(char) visit_str(&str) visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(Strict(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Strict(deserializer))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(CheckedSeq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(CheckedMap { map, fields: self.fields })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(CheckedEnum(data))
    }
}

/// Deserializes a value strictly.
struct StrictSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(deserializer))
    }
}

struct CheckedSeq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for CheckedSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct CheckedMap<A> {
    map: A,
    fields: Option<&'static [&'static str]>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for CheckedMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        match self.fields {
            Some(fields) => self.map.next_key_seed(FieldSeed { seed, fields }),
            None => self.map.next_key_seed(StrictSeed(seed)),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A struct's key: refused unless it is one of `fields`.
struct FieldSeed<S> {
    seed: S,
    fields: &'static [&'static str],
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for FieldSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(FieldDeserializer { deserializer, fields: self.fields })
    }
}

struct FieldDeserializer<D> {
    deserializer: D,
    fields: &'static [&'static str],
}

/// Forwards `deserialize_*` methods that take only a visitor, checking the key the visitor gets.
macro_rules! forward_field {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.deserializer.$method(FieldVisitor { visitor, fields: self.fields })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for FieldDeserializer<D> {
    type Error = D::Error;

    forward_field! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.deserializer.deserialize_unit_struct(name, FieldVisitor { visitor, fields: self.fields })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.deserializer.deserialize_newtype_struct(name, FieldVisitor { visitor, fields: self.fields })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.deserializer.deserialize_tuple(len, FieldVisitor { visitor, fields: self.fields })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.deserializer.deserialize_tuple_struct(name, len, FieldVisitor { visitor, fields: self.fields })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.deserializer.deserialize_struct(name, fields, FieldVisitor { visitor, fields: self.fields })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.deserializer.deserialize_enum(name, variants, FieldVisitor { visitor, fields: self.fields })
    }

    fn is_human_readable(&self) -> bool {
        self.deserializer.is_human_readable()
    }
}

/// Checks a struct's key before its own visitor maps it to a field (or to "ignore").
struct FieldVisitor<V> {
    visitor: V,
    fields: &'static [&'static str],
}

impl<V> FieldVisitor<V> {
    fn check<E: de::Error>(&self, key: &str) -> Result<(), E> {
        if self.fields.contains(&key) { Ok(()) } else { Err(E::custom(unknown_field(key, self.fields))) }
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for FieldVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        self.visitor.expecting(formatter)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<V::Value, E> {
        self.check(value)?;
        self.visitor.visit_str(value)
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<V::Value, E> {
        self.check(value)?;
        self.visitor.visit_borrowed_str(value)
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<V::Value, E> {
        self.check(&value)?;
        self.visitor.visit_string(value)
    }

    // Keys that are not text (`1: x`) cannot name a field; the struct's own visitor says so.
    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64) visit_i128(i128) visit_u8(u8)
        visit_u16(u16) visit_u32(u32) visit_u64(u64) visit_u128(u128) visit_f32(f32) visit_f64(f64)
        visit_char(char) visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(map)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(data)
    }
}

struct CheckedEnum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for CheckedEnum<A> {
    type Error = A::Error;
    type Variant = CheckedVariant<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(seed)?;
        Ok((value, CheckedVariant(variant)))
    }
}

struct CheckedVariant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for CheckedVariant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.0.newtype_variant_seed(StrictSeed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Checked::free(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Checked { visitor, fields: Some(fields) })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Outer {
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        free: BTreeMap<String, serde_json::Value>,
        #[serde(default)]
        shape: Option<Shape>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Inner {
        period_seconds: u32,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "camelCase")]
    enum Shape {
        Square { side: u32 },
        Wrapped(Inner),
    }

    fn error(text: &str) -> String {
        from_yaml_str::<Outer>(text).unwrap_err().to_string()
    }

    #[test]
    fn declared_fields_and_free_form_values_pass() {
        let text = "inner: {periodSeconds: 1}\nlist: [{periodSeconds: 2}]\nfree: {anything: {goes: [here]}}\n\
                    shape: !square {side: 3}\n";
        let outer: Outer = from_yaml_str(text).unwrap();
        assert_eq!(outer.list, [Inner { period_seconds: 2 }]);
        assert_eq!(outer.free["anything"]["goes"][0], "here");
        assert_eq!(outer.shape, Some(Shape::Square { side: 3 }));
        assert_eq!(serde_yaml_ng::from_str::<Outer>(text).unwrap(), outer, "strictness changes no value");
    }

    #[test]
    fn unknown_fields_at_any_depth_name_the_path_the_line_and_the_closest_field() {
        assert_eq!(
            error("inner: {periodSeconds: 1}\nlists: []\n"),
            "unknown field `lists` (did you mean `list`?) at line 2 column 1"
        );
        assert_eq!(
            error("list:\n  - periodSeconds: 1\n  - periodSeconds: 2\n    periodSecond: 3\n"),
            "list[1]: unknown field `periodSecond` (did you mean `periodSeconds`?) at line 4 column 5"
        );
        assert_eq!(
            error("inner:\n  PeriodSeconds: 1\n"),
            "inner: unknown field `PeriodSeconds` (did you mean `periodSeconds`?) at line 2 column 3"
        );
        assert_eq!(
            error("shape: !square {side: 3, colour: red}\n"),
            "shape: unknown field `colour` (known fields here: `side`) at line 1 column 26"
        );
        let err = error("shape: !wrapped {periodSeconds: 1, extra: 2}\n");
        assert!(err.starts_with("shape: unknown field `extra` (known fields here: `periodSeconds`)"), "{err}");
        let err = error("nonsense: 1\n");
        assert!(
            err.starts_with("unknown field `nonsense` (known fields here: `inner`, `list`, `free`, `shape`)"),
            "{err}"
        );
    }

    #[test]
    fn works_over_any_deserializer() {
        let value = serde_json::json!({"inner": {"periodSecnds": 1}});
        let err = deserialize::<Outer, _>(value).unwrap_err().to_string();
        assert_eq!(err, "unknown field `periodSecnds` (did you mean `periodSeconds`?)");
    }
}
