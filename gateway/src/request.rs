//! Builds an RPC's request message from an HTTP request: the body (whole message or one field,
//! proto3 JSON), the query (every other field: scalars, enums by name or number, repeated as
//! repeated parameters, nested with dots, maps as `field[key]`, Timestamp as RFC 3339, Duration
//! as `3.5s`) and the path variables (which win over the body). Bad input is a 400 naming the field.

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage};
use serde_json::{Map, Value as Json, json};

use crate::error::ApiError;
use crate::rules::{Binding, BodyRule};

/// The request message of `binding` for these path values, query string and body.
pub fn build(
    binding: &Binding,
    path_values: &[String],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, ApiError> {
    let input = binding.rpc.input();
    let mut message = match &binding.body {
        BodyRule::Whole => whole_body(&input, body)?,
        BodyRule::Field(field) => {
            let mut message = DynamicMessage::new(input.clone());
            if let Some(value) = field_body(&input, field, body)? {
                message.set_field(field, value);
            }
            message
        }
        BodyRule::None => DynamicMessage::new(input.clone()),
    };
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        apply_query(binding, &mut message, query)?;
    }
    for (fields, value) in binding.path_fields.iter().zip(path_values) {
        let name = dotted(fields);
        let (leaf, parents) = fields.split_last().expect("a path variable names a field");
        let target = containing_mut(&mut message, parents);
        set_leaf(target, leaf, None, std::slice::from_ref(value), &name)?;
    }
    Ok(message)
}

fn dotted(fields: &[FieldDescriptor]) -> String {
    fields.iter().map(|f| f.name()).collect::<Vec<_>>().join(".")
}

fn parse_json(body: &[u8]) -> Result<Option<Json>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn whole_body(input: &MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, ApiError> {
    let Some(json) = parse_json(body)? else {
        return Ok(DynamicMessage::new(input.clone()));
    };
    DynamicMessage::deserialize(input.clone(), &json).map_err(|e| body_error(input, &json, "", e))
}

fn field_body(
    input: &MessageDescriptor,
    field: &FieldDescriptor,
    body: &[u8],
) -> Result<Option<prost_reflect::Value>, ApiError> {
    let Some(json) = parse_json(body)? else {
        return Ok(None);
    };
    let wrapped = json!({ field.name(): json });
    let mut message =
        DynamicMessage::deserialize(input.clone(), &wrapped).map_err(|e| body_error(input, &wrapped, "", e))?;
    Ok(message.take_field(field))
}

/// A 400 for a body that does not deserialize, naming the first field that does not.
fn body_error(desc: &MessageDescriptor, json: &Json, prefix: &str, err: serde_json::Error) -> ApiError {
    match locate(desc, json, prefix) {
        Some((field, reason)) => ApiError::invalid_field(&field, reason.unwrap_or_else(|| err.to_string())),
        None => ApiError::bad_request(format!("invalid request body: {err}")),
    }
}

/// Finds the first field of `json` that does not deserialize as `desc`, with its own error.
fn locate(desc: &MessageDescriptor, json: &Json, prefix: &str) -> Option<(String, Option<String>)> {
    let Json::Object(object) = json else {
        return None;
    };
    if is_well_known(desc) {
        return None;
    }
    for (key, value) in object {
        let path = format!("{prefix}{key}");
        let Some(field) = desc.get_field_by_json_name(key).or_else(|| desc.get_field_by_name(key)) else {
            return Some((path, Some("unknown field".into())));
        };
        let single = Json::Object(Map::from_iter([(key.clone(), value.clone())]));
        let Err(err) = DynamicMessage::deserialize(desc.clone(), &single) else {
            continue;
        };
        let nested = match (field.kind(), value) {
            (Kind::Message(inner), Json::Object(_)) if !field.is_list() && !field.is_map() => {
                locate(&inner, value, &format!("{path}."))
            }
            (Kind::Message(inner), Json::Array(items)) if field.is_list() => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| locate(&inner, item, &format!("{path}[{i}]."))),
            _ => None,
        };
        return nested.or(Some((path, Some(err.to_string()))));
    }
    None
}

fn is_well_known(desc: &MessageDescriptor) -> bool {
    desc.full_name().starts_with("google.protobuf.")
}

/// The message at `path` inside `message`, created as needed.
fn containing_mut<'a>(message: &'a mut DynamicMessage, path: &[FieldDescriptor]) -> &'a mut DynamicMessage {
    let mut current = message;
    for field in path {
        current = current
            .get_field_mut(field)
            .as_message_mut()
            .expect("path fields are messages");
    }
    current
}

/// Sets `field` of `target` (or one key of it, for a map) from text values.
fn set_leaf(
    target: &mut DynamicMessage,
    field: &FieldDescriptor,
    map_key: Option<&str>,
    raw: &[String],
    name: &str,
) -> Result<(), ApiError> {
    if !field.is_list() && raw.len() > 1 {
        return Err(ApiError::invalid_field(name, "given more than once"));
    }
    let json = if let Some(key) = map_key {
        let value_field = field
            .kind()
            .as_message()
            .expect("a map field has an entry")
            .map_entry_value_field();
        json!({ key: leaf_json(&value_field, &raw[0]).map_err(|r| ApiError::invalid_field(name, r))? })
    } else if field.is_list() {
        Json::Array(
            raw.iter()
                .map(|r| leaf_json(field, r))
                .collect::<Result<_, _>>()
                .map_err(|r| ApiError::invalid_field(name, r))?,
        )
    } else {
        leaf_json(field, &raw[0]).map_err(|r| ApiError::invalid_field(name, r))?
    };
    let wrapped = json!({ field.name(): json });
    let mut parsed = DynamicMessage::deserialize(target.descriptor(), &wrapped)
        .map_err(|e| ApiError::invalid_field(name, value_error(field, &raw[0], e)))?;
    let Some(value) = parsed.take_field(field) else {
        return Ok(());
    };
    match (map_key, value) {
        (Some(_), prost_reflect::Value::Map(entries)) => {
            if let Some(existing) = target.get_field_mut(field).as_map_mut() {
                existing.extend(entries);
            }
        }
        (_, value) => target.set_field(field, value),
    }
    Ok(())
}

fn value_error(field: &FieldDescriptor, raw: &str, err: serde_json::Error) -> String {
    match field.kind() {
        Kind::Enum(e) => {
            let names: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
            format!("{raw:?} is not one of {}", names.join(", "))
        }
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
            format!("{raw:?} is not an RFC 3339 time such as 2024-12-01T12:00:00Z")
        }
        Kind::Message(m) if m.full_name() == "google.protobuf.Duration" => {
            format!("{raw:?} is not a duration such as 3.5s")
        }
        _ => format!("{raw:?}: {err}"),
    }
}

/// The proto3 JSON form of one text value of a scalar, enum or well-known-type field.
fn leaf_json(field: &FieldDescriptor, raw: &str) -> Result<Json, String> {
    match field.kind() {
        Kind::Bool => parse_bool(raw),
        Kind::Enum(_) => Ok(raw
            .parse::<i32>()
            .map(Json::from)
            .unwrap_or_else(|_| Json::String(raw.to_string()))),
        Kind::Message(m) => match m.full_name() {
            "google.protobuf.BoolValue" => parse_bool(raw),
            name if is_query_message(name) => Ok(Json::String(raw.to_string())),
            name => Err(format!("a {name} cannot be given as a query parameter")),
        },
        // Numbers as strings: proto3 JSON takes "12", "1.5", "NaN" and "Infinity", and range
        // errors come from the same parser as the body's.
        _ => Ok(Json::String(raw.to_string())),
    }
}

fn parse_bool(raw: &str) -> Result<Json, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(Json::Bool(true)),
        "false" | "0" => Ok(Json::Bool(false)),
        _ => Err(format!("{raw:?} is not true or false")),
    }
}

/// Message types that can be given as one query parameter.
pub fn is_query_message(full_name: &str) -> bool {
    matches!(
        full_name,
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

/// Whether a field can be a query parameter leaf (a value, not a message to descend into).
pub fn is_query_leaf(field: &FieldDescriptor) -> bool {
    match field.kind() {
        Kind::Message(m) => field.is_map() || is_query_message(m.full_name()),
        _ => true,
    }
}

fn apply_query(binding: &Binding, message: &mut DynamicMessage, query: &str) -> Result<(), ApiError> {
    // Group the values of each parameter, in first-seen order.
    let mut params: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match params.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value.into_owned()),
            None => params.push((key.into_owned(), vec![value.into_owned()])),
        }
    }
    let input = binding.rpc.input();
    for (key, values) in &params {
        let (path, map_key) = resolve(&input, key)?;
        if binding
            .path_fields
            .iter()
            .any(|bound| bound.starts_with(&path) || path.starts_with(bound))
        {
            return Err(ApiError::invalid_field(
                key,
                "is bound by the path; it cannot be given as a query parameter",
            ));
        }
        match &binding.body {
            BodyRule::Whole => {
                return Err(ApiError::invalid_field(
                    key,
                    "query parameters are not taken: the body carries the request",
                ));
            }
            BodyRule::Field(body) if path[0] == *body => {
                return Err(ApiError::invalid_field(
                    key,
                    "is carried by the body; it cannot be given as a query parameter",
                ));
            }
            _ => {}
        }
        let (leaf, parents) = path.split_last().expect("resolve returns at least one field");
        let target = containing_mut(message, parents);
        if let Some(oneof) = leaf.containing_oneof().filter(|o| !o.is_synthetic())
            && let Some(other) = oneof.fields().find(|f| f != leaf && target.has_field(f))
        {
            return Err(ApiError::invalid_field(
                key,
                format!("{} of the same oneof is set already", other.name()),
            ));
        }
        set_leaf(target, leaf, map_key.as_deref(), values, key)?;
    }
    Ok(())
}

/// Resolves a query parameter name (`page_size`, `pageSize`, `spec.track.min_sol`, `labels[k]`)
/// to its field path and map key.
fn resolve(input: &MessageDescriptor, key: &str) -> Result<(Vec<FieldDescriptor>, Option<String>), ApiError> {
    let (dotted, map_key) = match key.split_once('[') {
        Some((name, rest)) => match rest.strip_suffix(']') {
            Some(k) if !k.is_empty() => (name, Some(k.to_string())),
            _ => return Err(ApiError::invalid_field(key, "is not a query parameter (bad map key)")),
        },
        None => (key, None),
    };
    let unknown = || ApiError::invalid_field(key, "unknown query parameter");
    let mut fields = Vec::new();
    let mut current = input.clone();
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))
            .ok_or_else(unknown)?;
        let last = i + 1 == parts.len();
        fields.push(field.clone());
        if last {
            if field.is_map() != map_key.is_some() {
                return Err(ApiError::invalid_field(
                    key,
                    if field.is_map() {
                        "is a map: give entries as name[key]=value"
                    } else {
                        "is not a map"
                    },
                ));
            }
            if field.is_map() {
                let entry = field.kind().as_message().cloned().expect("a map field has an entry");
                let value = entry.map_entry_value_field();
                if !is_query_leaf(&value) || value.kind().as_message().is_some() {
                    return Err(ApiError::invalid_field(
                        key,
                        "a map of messages cannot be given as a query parameter",
                    ));
                }
            } else if !is_query_leaf(&field) {
                return Err(ApiError::invalid_field(
                    key,
                    "is a message: give its fields with dots (name.field)",
                ));
            }
        } else {
            match field.kind() {
                Kind::Message(next) if !field.is_list() && !field.is_map() && !is_query_message(next.full_name()) => {
                    current = next;
                }
                _ => return Err(unknown()),
            }
        }
    }
    Ok((fields, map_key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RouteTable;
    use prost_reflect::{DescriptorPool, Value};

    fn binding(rpc: &str) -> Binding {
        let pool = DescriptorPool::decode(outpost_api::FILE_DESCRIPTOR_SET).unwrap();
        let table = RouteTable::from_pool(&pool).unwrap();
        table.bindings().iter().find(|b| b.rpc.name() == rpc).unwrap().clone()
    }

    fn field<'a>(message: &'a DynamicMessage, name: &str) -> std::borrow::Cow<'a, Value> {
        message.get_field_by_name(name).unwrap()
    }

    #[test]
    fn query_sets_scalars_enums_and_times() {
        let b = binding("ListImages");
        let m = build(
            &b,
            &[],
            Some("page_size=5&pageToken=t%20x&review_state=REVIEW_STATE_ACCEPTED&start_time=2024-12-01T12:00:00Z"),
            b"",
        )
        .unwrap();
        assert_eq!(field(&m, "page_size").as_i32(), Some(5));
        assert_eq!(field(&m, "page_token").as_str(), Some("t x"));
        assert_eq!(field(&m, "review_state").as_enum_number(), Some(2));
        let start = field(&m, "start_time");
        let start = start.as_message().unwrap();
        assert_eq!(
            start.get_field_by_name("seconds").unwrap().as_i64(),
            Some(1_733_054_400)
        );

        let m = build(&b, &[], Some("review_state=3"), b"").unwrap();
        assert_eq!(field(&m, "review_state").as_enum_number(), Some(3));
    }

    #[test]
    fn query_sets_durations_optionals_and_bools() {
        let b = binding("AggregateReadings");
        let m = build(&b, &[], Some("window=3.5s"), b"").unwrap();
        let window = field(&m, "window");
        let window = window.as_message().unwrap();
        assert_eq!(window.get_field_by_name("seconds").unwrap().as_i64(), Some(3));
        assert_eq!(window.get_field_by_name("nanos").unwrap().as_i32(), Some(500_000_000));

        let b = binding("ListWaypoints");
        let m = build(&b, &["tracks/p".into()], Some("min_sol=0"), b"").unwrap();
        assert!(
            m.has_field_by_name("min_sol"),
            "an optional field given as its default is still present"
        );
        assert!(!m.has_field_by_name("max_sol"));
        assert_eq!(field(&m, "parent").as_str(), Some("tracks/p"));
    }

    #[test]
    fn bad_query_values_name_the_field() {
        let b = binding("ListImages");
        for (query, name) in [
            ("page_size=ten", "page_size"),
            ("page_size=99999999999", "page_size"),
            ("review_state=MAYBE", "review_state"),
            ("start_time=yesterday", "start_time"),
            ("nope=1", "nope"),
            ("page_size=1&page_size=2", "page_size"),
            ("source.x=1", "source.x"),
        ] {
            let err = build(&b, &[], Some(query), b"").unwrap_err();
            assert_eq!(err.status, 400, "{query}");
            assert!(err.message.starts_with(&format!("{name}:")), "{query}: {}", err.message);
        }
        let err = build(&binding("GetRun"), &["runs/x".into()], Some("name=runs/y"), b"").unwrap_err();
        assert!(err.message.starts_with("name:"), "{}", err.message);
    }

    #[test]
    fn body_field_and_whole_body() {
        let b = binding("CreatePlotJob");
        let body = br#"{"spec": {"track": {"track": "tracks/p", "xField": "sol", "y_field": "yaw", "startSol": 3}}, "format": "PLOT_FORMAT_SVG"}"#;
        let m = build(&b, &[], None, body).unwrap();
        let job = field(&m, "plot_job");
        let job = job.as_message().unwrap();
        assert_eq!(job.get_field_by_name("format").unwrap().as_enum_number(), Some(2));

        let err = build(&b, &[], None, br#"{"spec": {"track": {"startSol": "many"}}}"#).unwrap_err();
        assert!(
            err.message.starts_with("plot_job.spec.track.startSol:"),
            "{}",
            err.message
        );
        let err = build(&b, &[], None, br#"{"colour": "red"}"#).unwrap_err();
        assert!(err.message.starts_with("plot_job.colour:"), "{}", err.message);
        let err = build(&b, &[], None, b"{not json").unwrap_err();
        assert!(err.message.contains("invalid JSON"), "{}", err.message);

        // body "*": the path wins over the body, and query parameters are refused.
        let b = binding("ReviewImage");
        let m = build(
            &b,
            &["images/a".into()],
            None,
            br#"{"name": "images/b", "decision": "REVIEW_STATE_REJECTED"}"#,
        )
        .unwrap();
        assert_eq!(field(&m, "name").as_str(), Some("images/a"));
        assert_eq!(field(&m, "decision").as_enum_number(), Some(3));
        assert!(build(&b, &["images/a".into()], Some("decision=1"), b"").is_err());
        // An empty body is an empty message.
        let m = build(&b, &["images/a".into()], None, b"").unwrap();
        assert_eq!(field(&m, "decision").as_enum_number(), Some(0));
    }
}
