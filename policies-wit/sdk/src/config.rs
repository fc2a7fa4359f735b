//! Typed plugin configuration. The host hands the config as JSON text on every call; parsing it each time would
//! cost more than the rest of a decision, so the parsed value is cached per type and reused while the text is the
//! same. The cache only saves work: the result is exactly what parsing would give.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::rc::Rc;

use serde::de::DeserializeOwned;

use crate::PolicyError;

/// Parsed configs: the type, the JSON text it came from, and the value.
type Cache = Vec<(TypeId, String, Rc<dyn Any>)>;

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Vec::new()) };
}

/// Parses the config JSON into `T`; an empty text means `{}`. Errors name the field and what was wrong, and come
/// back as [`PolicyError::InvalidConfig`].
pub fn parse<T: DeserializeOwned + 'static>(text: &str) -> Result<Rc<T>, PolicyError> {
    let key = TypeId::of::<T>();
    let cached = CACHE.with_borrow(|cache| {
        cache
            .iter()
            .find(|(id, source, _)| *id == key && source == text)
            .and_then(|(_, _, value)| value.clone().downcast::<T>().ok())
    });
    if let Some(value) = cached {
        return Ok(value);
    }
    let source = if text.trim().is_empty() { "{}" } else { text };
    let value: Rc<T> =
        Rc::new(serde_json::from_str(source).map_err(|e| PolicyError::InvalidConfig(format!("config JSON: {e}")))?);
    CACHE.with_borrow_mut(|cache| {
        cache.retain(|(id, _, _)| *id != key);
        cache.push((key, text.to_owned(), value.clone()));
    });
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        target: f64,
    }

    #[test]
    fn parses_and_reparses_when_text_changes() {
        assert_eq!(parse::<Cfg>(r#"{"target": 5}"#).unwrap().target, 5.0);
        assert_eq!(parse::<Cfg>(r#"{"target": 5}"#).unwrap().target, 5.0);
        assert_eq!(parse::<Cfg>(r#"{"target": 7}"#).unwrap().target, 7.0);
    }

    /// JavaScript's and Python's parsers round correctly; so must the SDK's, or one config text would mean
    /// different targets in different plugin languages.
    #[test]
    fn numbers_parse_correctly_rounded() {
        for text in ["31.7049399083608421", "62.2632602694111696", "0.1000000000000000055511151231257827"] {
            let parsed = parse::<Cfg>(&format!(r#"{{"target": {text}}}"#)).unwrap().target;
            assert_eq!(parsed, text.parse::<f64>().unwrap(), "{text}");
        }
    }

    #[test]
    fn bad_config_names_the_field() {
        let Err(PolicyError::InvalidConfig(msg)) = parse::<Cfg>(r#"{"target": 5, "tagret": 1}"#) else {
            panic!("expected invalid-config");
        };
        assert!(msg.contains("tagret"), "{msg}");
    }
}
