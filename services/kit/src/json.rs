//! JSON values to and from `google.protobuf.Struct` and `Value`, for fields that keep a
//! source's data as it came.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::{Map, Number, Value as Json};

/// A protobuf value of a JSON value (numbers become doubles, as in proto3 JSON).
pub fn to_value(json: Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(to_struct(map)),
    };
    Value { kind: Some(kind) }
}

/// A protobuf struct of a JSON object.
pub fn to_struct(map: Map<String, Json>) -> Struct {
    Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

/// The JSON value of a protobuf value; whole doubles come back as integers.
pub fn from_value(value: Value) -> Json {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::NumberValue(n)) => number(n),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::ListValue(list)) => Json::Array(list.values.into_iter().map(from_value).collect()),
        Some(Kind::StructValue(s)) => Json::Object(from_struct(s)),
    }
}

/// The JSON object of a protobuf struct.
pub fn from_struct(s: Struct) -> Map<String, Json> {
    s.fields.into_iter().map(|(k, v)| (k, from_value(v))).collect()
}

/// A JSON number of a double: an integer when it is whole and exact, null when not finite.
pub fn number(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        Json::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_struct() {
        let doc = json!({"a": 1, "b": 2.5, "c": "x", "d": [true, null], "e": {"f": -3}});
        let Json::Object(map) = doc.clone() else { unreachable!() };
        assert_eq!(Json::Object(from_struct(to_struct(map))), doc);
        assert_eq!(number(f64::NAN), Json::Null);
    }
}
