//! What the services accept in a field, read from its options: `google.api.field_behavior`
//! (`REQUIRED`, `OUTPUT_ONLY`) and `outpost.api.v1.field` (minimum, maximum, lengths, pattern,
//! item counts), written into the field's JSON schema.

use prost_reflect::{DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Value};
use serde_json::{Value as Json, json};

/// `google.api.FieldBehavior.REQUIRED`.
const REQUIRED: i32 = 2;
/// `google.api.FieldBehavior.OUTPUT_ONLY`.
const OUTPUT_ONLY: i32 = 3;

/// The two extensions, when the descriptor set has them.
pub(super) struct Constraints {
    behavior: Option<ExtensionDescriptor>,
    rules: Option<ExtensionDescriptor>,
}

impl Constraints {
    pub(super) fn new(pool: &DescriptorPool) -> Self {
        Self {
            behavior: pool.get_extension_by_name("google.api.field_behavior"),
            rules: pool.get_extension_by_name("outpost.api.v1.field"),
        }
    }

    fn behaviors(&self, field: &FieldDescriptor) -> Vec<i32> {
        let Some(extension) = &self.behavior else {
            return Vec::new();
        };
        let options = field.options();
        if !options.has_extension(extension) {
            return Vec::new();
        }
        match options.get_extension(extension).as_ref() {
            Value::List(values) => values.iter().filter_map(Value::as_enum_number).collect(),
            Value::EnumNumber(n) => vec![*n],
            _ => Vec::new(),
        }
    }

    /// Whether the field is `REQUIRED`.
    pub(super) fn required(&self, field: &FieldDescriptor) -> bool {
        self.behaviors(field).contains(&REQUIRED)
    }

    /// Whether the field is `OUTPUT_ONLY`.
    pub(super) fn output_only(&self, field: &FieldDescriptor) -> bool {
        self.behaviors(field).contains(&OUTPUT_ONLY)
    }

    fn rules(&self, field: &FieldDescriptor) -> Option<DynamicMessage> {
        let extension = self.rules.as_ref()?;
        let options = field.options();
        if !options.has_extension(extension) {
            return None;
        }
        options.get_extension(extension).as_message().cloned()
    }

    /// The field's `pattern`, if it has one.
    pub(super) fn pattern(&self, field: &FieldDescriptor) -> Option<String> {
        let rules = self.rules(field)?;
        let pattern = rules.get_field_by_name("pattern")?;
        pattern.as_str().filter(|p| !p.is_empty()).map(str::to_string)
    }

    /// Writes the field's rules into its schema: item counts on the array, the others on the
    /// value (each item of a repeated field).
    pub(super) fn apply(&self, field: &FieldDescriptor, schema: &mut Json) {
        let Some(rules) = self.rules(field) else {
            return;
        };
        let set = |name: &str| {
            rules
                .has_field_by_name(name)
                .then(|| rules.get_field_by_name(name))
                .flatten()
        };
        let number = |name: &str| set(name).and_then(|v| v.as_f64().or_else(|| v.as_u32().map(f64::from)));
        let (is_list, is_map) = (field.is_list(), field.is_map());
        let value = if is_map {
            &mut schema["additionalProperties"]
        } else if is_list {
            &mut schema["items"]
        } else {
            &mut *schema
        };
        for (rule, keyword) in [("minimum", "minimum"), ("maximum", "maximum")] {
            if let Some(limit) = number(rule) {
                value[keyword] = json_number(limit);
            }
        }
        for (rule, keyword) in [("min_length", "minLength"), ("max_length", "maxLength")] {
            if let Some(limit) = number(rule) {
                value[keyword] = json_number(limit);
            }
        }
        if let Some(pattern) = self.pattern(field) {
            value["pattern"] = Json::String(pattern);
        }
        if is_list || is_map {
            let (min, max) = if is_map {
                ("minProperties", "maxProperties")
            } else {
                ("minItems", "maxItems")
            };
            for (rule, keyword) in [("min_items", min), ("max_items", max)] {
                if let Some(limit) = number(rule) {
                    schema[keyword] = json_number(limit);
                }
            }
        }
    }
}

/// A whole number as a JSON integer, anything else as a float.
fn json_number(value: f64) -> Json {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// The pattern of each segment of a resource name's pattern: `^runs/[a-z]{1,8}$` gives
/// `["runs", "[a-z]{1,8}"]`, to be matched against `segments` path segments.
pub(super) fn segment_patterns(pattern: &str, segments: usize) -> Option<Vec<String>> {
    let inner = pattern.strip_prefix('^')?.strip_suffix('$')?;
    let parts: Vec<String> = inner.split('/').map(str::to_string).collect();
    (parts.len() == segments).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns_split_into_segments() {
        assert_eq!(
            segment_patterns("^devices/[a-z]+/sensors/[0-9]+$", 4).unwrap(),
            ["devices", "[a-z]+", "sensors", "[0-9]+"]
        );
        assert!(segment_patterns("^runs/[a-z]+$", 3).is_none());
        assert!(segment_patterns("runs/[a-z]+", 2).is_none());
    }

    #[test]
    fn numbers_stay_integers_when_whole() {
        assert_eq!(json_number(1000.0), json!(1000));
        assert_eq!(json_number(-90.0), json!(-90));
        assert_eq!(json_number(0.5), json!(0.5));
    }
}
