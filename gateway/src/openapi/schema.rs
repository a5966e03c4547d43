//! JSON schemas of the OpenAPI document: message, enum and well-known types from the
//! descriptors, the error schema, and the protos' comments as descriptions.

use std::collections::{BTreeMap, HashMap};

use prost_reflect::{DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json, json};

use super::MAX_QUERY_DEPTH;
use super::constraints::Constraints;
use crate::request::{is_query_leaf, is_query_message};
use crate::rules::{Binding, BodyRule};

pub(super) struct Generator {
    pub(super) comments: Comments,
    pub(super) constraints: Constraints,
    pub(super) schemas: BTreeMap<String, Json>,
    pub(super) pending: Vec<String>,
}

impl Generator {
    pub(super) fn reference(&mut self, full_name: &str) -> Json {
        if !self.schemas.contains_key(full_name) {
            self.pending.push(full_name.to_string());
        }
        json!({ "$ref": format!("#/components/schemas/{full_name}") })
    }

    pub(super) fn response_schema(&mut self, binding: &Binding) -> Json {
        match &binding.response_body {
            Some(field) => self.field_schema(field),
            None => self.message_reference(&binding.rpc.output()),
        }
    }

    pub(super) fn message_reference(&mut self, message: &MessageDescriptor) -> Json {
        well_known(message.full_name()).unwrap_or_else(|| self.reference(message.full_name()))
    }

    pub(super) fn request_body(&mut self, binding: &Binding) -> Option<Json> {
        let schema = match &binding.body {
            BodyRule::None => return None,
            BodyRule::Field(field) => self.field_schema(field),
            BodyRule::Whole => {
                let bound: Vec<FieldDescriptor> = binding
                    .path_fields
                    .iter()
                    .filter(|p| p.len() == 1)
                    .map(|p| p[0].clone())
                    .collect();
                if bound.is_empty() {
                    self.message_reference(&binding.rpc.input())
                } else {
                    // The path's fields are not read from the body.
                    self.message_schema(&binding.rpc.input(), &bound)
                }
            }
        };
        let required = match &binding.body {
            BodyRule::Field(field) => self.constraints.required(field),
            _ => binding
                .rpc
                .input()
                .fields()
                .any(|f| self.constraints.required(&f) && !binding.binds_by_path(&f)),
        };
        Some(json!({ "required": required, "content": { "application/json": { "schema": schema } } }))
    }

    pub(super) fn query_parameters(
        &mut self,
        binding: &Binding,
        message: &MessageDescriptor,
        prefix: &str,
        parents: &[FieldDescriptor],
        depth: usize,
        out: &mut Vec<Json>,
    ) {
        for field in message.fields() {
            if depth == 0 && binding.binds_top_level(&field) {
                continue;
            }
            let mut path = parents.to_vec();
            path.push(field.clone());
            if binding.path_fields.contains(&path) {
                continue;
            }
            let name = format!("{prefix}{}", field.json_name());
            if field.is_map() {
                continue; // `name[key]=value` works, but OpenAPI 3.0 cannot describe it as a form parameter.
            }
            if is_query_leaf(&field) {
                let mut schema = self.field_schema(&field);
                schema.as_object_mut().map(|s| s.remove("description"));
                let mut parameter = json!({ "name": name, "in": "query", "schema": schema });
                if let Some(doc) = self.comments.get(field.parent_file().name(), field.path()) {
                    parameter["description"] = Json::String(doc);
                }
                if field.is_list() {
                    parameter["style"] = json!("form");
                    parameter["explode"] = json!(true);
                }
                // A nested field is required only if its parent is sent: not stated here.
                if depth == 0 && self.constraints.required(&field) {
                    parameter["required"] = Json::Bool(true);
                }
                out.push(parameter);
            } else if let Kind::Message(inner) = field.kind()
                && !field.is_list()
                && depth + 1 < MAX_QUERY_DEPTH
                && !parents.iter().any(|p| p.kind().as_message() == Some(&inner))
            {
                self.query_parameters(binding, &inner, &format!("{name}."), &path, depth + 1, out);
            }
        }
    }

    pub(super) fn field_schema(&mut self, field: &FieldDescriptor) -> Json {
        let mut schema = if field.is_map() {
            let entry = field.kind().as_message().cloned().expect("a map field has an entry");
            json!({ "type": "object", "additionalProperties": self.kind_schema(&entry.map_entry_value_field().kind()) })
        } else if field.is_list() {
            json!({ "type": "array", "items": self.kind_schema(&field.kind()) })
        } else {
            match field.kind() {
                // A required enum is not its zero (unspecified) value.
                Kind::Enum(e) if self.constraints.required(field) && e.full_name() != "google.protobuf.NullValue" => {
                    let names: Vec<String> = e
                        .values()
                        .filter(|v| v.number() != 0)
                        .map(|v| v.name().to_string())
                        .collect();
                    json!({ "type": "string", "enum": names })
                }
                kind => self.kind_schema(&kind),
            }
        };
        self.constraints.apply(field, &mut schema);
        let doc = self.comments.get(field.parent_file().name(), field.path());
        let output_only =
            self.constraints.output_only(field) || doc.as_deref().is_some_and(|d| d.contains("Output only"));
        if doc.is_some() || output_only {
            if schema.get("$ref").is_some() {
                schema = json!({ "allOf": [schema] });
            }
            if let Some(doc) = doc {
                schema["description"] = Json::String(doc);
            }
            if output_only {
                schema["readOnly"] = Json::Bool(true);
            }
        }
        schema
    }

    pub(super) fn kind_schema(&mut self, kind: &Kind) -> Json {
        match kind {
            Kind::Double => json!({ "type": "number", "format": "double" }),
            Kind::Float => json!({ "type": "number", "format": "float" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX })
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX })
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$" })
            }
            Kind::Uint64 | Kind::Fixed64 => json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]{1,19}$" }),
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "format": "byte" }),
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => json!({ "nullable": true }),
            Kind::Enum(e) => self.reference(e.full_name()),
            Kind::Message(m) => self.message_reference(m),
        }
    }

    pub(super) fn message_schema(&mut self, message: &MessageDescriptor, exclude: &[FieldDescriptor]) -> Json {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            if exclude.contains(&field) {
                continue;
            }
            if self.constraints.required(&field) {
                required.push(field.json_name().to_string());
            }
            properties.insert(field.json_name().to_string(), self.field_schema(&field));
        }
        // Unknown fields are refused (400).
        let mut schema = json!({ "type": "object", "properties": properties, "additionalProperties": false });
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
        let mut description = self
            .comments
            .get(message.parent_file().name(), message.path())
            .unwrap_or_default();
        let mut exclusive = Vec::new();
        for oneof in message.oneofs().filter(|o| !o.is_synthetic()) {
            let names: Vec<String> = oneof.fields().map(|f| f.json_name().to_string()).collect();
            // Two members of one oneof are refused (400).
            for (i, a) in names.iter().enumerate() {
                for b in &names[i + 1..] {
                    exclusive.push(json!({ "required": [a, b] }));
                }
            }
            if !description.is_empty() {
                description.push_str("\n\n");
            }
            description.push_str(&format!("At most one of: {}.", names.join(", ")));
        }
        if !description.is_empty() {
            schema["description"] = Json::String(description);
        }
        if !exclusive.is_empty() {
            schema["not"] = json!({ "anyOf": exclusive });
        }
        schema
    }

    pub(super) fn enum_schema(&mut self, enumeration: &EnumDescriptor) -> Json {
        let names: Vec<String> = enumeration.values().map(|v| v.name().to_string()).collect();
        let file = enumeration.parent_file();
        let mut description = self.comments.get(file.name(), enumeration.path()).unwrap_or_default();
        for value in enumeration.values() {
            let doc = self.comments.get(file.name(), value.path()).unwrap_or_default();
            description.push_str(&format!("\n- `{}`: {}", value.name(), doc.replace('\n', " ")));
        }
        json!({
            "type": "string",
            "enum": names,
            "description": format!("{}\n\nGiven by name or number; answered by name.", description.trim()),
        })
    }
}

/// The schema of a well-known type, inline; `None` for other messages.
pub(super) fn well_known(full_name: &str) -> Option<Json> {
    let scalar = |t: &str, f: Option<&str>| {
        let mut s = json!({ "type": t, "nullable": true });
        if let Some(f) = f {
            s["format"] = json!(f);
        }
        s
    };
    Some(match full_name {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => {
            json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$", "example": "3.5s" })
        }
        "google.protobuf.Struct" => json!({ "type": "object", "additionalProperties": true }),
        "google.protobuf.Value" => json!({ "description": "Any JSON value." }),
        "google.protobuf.ListValue" => json!({ "type": "array", "items": {} }),
        "google.protobuf.Empty" => json!({ "type": "object" }),
        "google.protobuf.FieldMask" => json!({ "type": "string", "example": "name,displayName" }),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": { "@type": { "type": "string" } },
            "additionalProperties": true,
        }),
        "google.protobuf.DoubleValue" => scalar("number", Some("double")),
        "google.protobuf.FloatValue" => scalar("number", Some("float")),
        "google.protobuf.Int64Value" => scalar("string", Some("int64")),
        "google.protobuf.UInt64Value" => scalar("string", Some("uint64")),
        "google.protobuf.Int32Value" => scalar("integer", Some("int32")),
        "google.protobuf.UInt32Value" => scalar("integer", Some("int64")),
        "google.protobuf.BoolValue" => scalar("boolean", None),
        "google.protobuf.StringValue" => scalar("string", None),
        "google.protobuf.BytesValue" => scalar("string", Some("byte")),
        other if is_query_message(other) => json!({ "type": "string" }),
        _ => return None,
    })
}

pub(super) fn error_schema() -> Json {
    json!({
        "type": "object",
        "required": ["error"],
        "description": "Every error, from a service or from the gateway.",
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "The gRPC code name (or METHOD_NOT_ALLOWED, PAYLOAD_TOO_LARGE for the gateway's own).",
                        "example": "NOT_FOUND",
                    },
                    "message": { "type": "string" },
                    "details": {
                        "type": "array",
                        "nullable": true,
                        "description": "The google.rpc.Status details, each with its @type.",
                        "items": { "type": "object", "additionalProperties": true },
                    },
                },
            },
        },
    })
}

/// Leading (or trailing) comments of the descriptors, by file and source path.
pub(super) struct Comments(HashMap<(String, Vec<i32>), String>);

impl Comments {
    pub(super) fn new(pool: &DescriptorPool) -> Self {
        let mut map = HashMap::new();
        for file in pool.files() {
            let Some(info) = &file.file_descriptor_proto().source_code_info else {
                continue;
            };
            for location in &info.location {
                let text = location
                    .leading_comments
                    .as_deref()
                    .or(location.trailing_comments.as_deref());
                let Some(text) = text.map(clean_comment).filter(|t| !t.is_empty()) else {
                    continue;
                };
                map.insert((file.name().to_string(), location.path.clone()), text);
            }
        }
        Self(map)
    }

    pub(super) fn get(&self, file: &str, path: &[i32]) -> Option<String> {
        self.0.get(&(file.to_string(), path.to_vec())).cloned()
    }
}

pub(super) fn clean_comment(text: &str) -> String {
    text.lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}
