//! The OpenAPI 3.0 document of the transcoded API, generated from the same descriptors and
//! route table as the transcoding itself, with the protos' comments as descriptions.
//!
//! A path variable that covers several segments (`{name=runs/*}`) is written with one parameter
//! per wildcard (`/api/v1/runs/{run}`), so every parameter is one path segment as OpenAPI wants;
//! its description says which request field it fills.

use std::collections::{BTreeMap, HashSet};

use http::Method;
use prost_reflect::DescriptorPool;
use serde_json::{Map, Value as Json, json};

use crate::rules::{Binding, BodyRule, RouteTable};
use crate::template::Segment;

mod constraints;
mod route;
mod schema;

pub use route::{Route, schemas};

use constraints::{Constraints, segment_patterns};
use schema::{Comments, Generator, error_schema};

/// How deep nested request messages are flattened into query parameters.
const MAX_QUERY_DEPTH: usize = 4;

/// The OpenAPI document: the transcoded routes of `table`, and the hand-written `routes`.
pub fn document(pool: &DescriptorPool, table: &RouteTable, routes: &[Route]) -> Json {
    let mut generator = Generator {
        comments: Comments::new(pool),
        constraints: Constraints::new(pool),
        schemas: BTreeMap::new(),
        pending: Vec::new(),
    };
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut operation_ids: HashSet<String> = HashSet::new();
    let mut tags: BTreeMap<String, Json> = BTreeMap::new();

    // Declaration order (not match order) reads best.
    let mut bindings: Vec<&Binding> = table.bindings().iter().collect();
    bindings.sort_by_key(|b| (b.rpc.parent_service().full_name().to_string(), b.rpc.index()));
    for binding in bindings {
        let (path, mut parameters) = openapi_path(binding, &generator.comments, &generator.constraints);
        let method = binding.method.as_str().to_ascii_lowercase();
        let item = paths.entry(path.clone()).or_default();
        if item.contains_key(&method) {
            tracing::warn!(
                path,
                method,
                rpc = binding.rpc.full_name(),
                "two RPCs on one OpenAPI path; keeping the first"
            );
            continue;
        }
        let service = binding.rpc.parent_service();
        tags.entry(service.name().to_string()).or_insert_with(|| {
            let mut tag = json!({ "name": service.name() });
            if let Some(doc) = generator.comments.get(service.parent_file().name(), service.path()) {
                tag["description"] = Json::String(doc);
            }
            tag
        });

        let mut operation_id = binding.rpc.name().to_string();
        if operation_ids.contains(&operation_id) {
            operation_id = format!("{}_{}", service.name(), binding.rpc.name());
        }
        let mut n = 2;
        while operation_ids.contains(&operation_id) {
            operation_id = format!("{}_{n}", binding.rpc.name());
            n += 1;
        }
        operation_ids.insert(operation_id.clone());

        if !matches!(binding.body, BodyRule::Whole) {
            let mut query = Vec::new();
            generator.query_parameters(binding, &binding.rpc.input(), "", &[], 0, &mut query);
            parameters.extend(query);
        }

        let mut operation = json!({
            "operationId": operation_id,
            "tags": [service.name()],
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": generator.response_schema(binding)}},
                },
                "default": {
                    "description": "An error: the HTTP status matches the gRPC code.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        });
        let doc = generator
            .comments
            .get(binding.rpc.parent_file().name(), binding.rpc.path());
        if let Some(doc) = &doc {
            let summary = doc.split(['.', '\n']).next().unwrap_or_default().trim();
            operation["summary"] = Json::String(summary.to_string());
            operation["description"] = Json::String(doc.clone());
        }
        if let Some(body) = generator.request_body(binding) {
            operation["requestBody"] = body;
        }
        if binding.method != Method::GET && binding.method != Method::HEAD {
            operation["security"] = json!([{ "bearerAuth": [] }]);
        }
        item.insert(method, operation);
    }

    // Schemas of everything referenced, transitively.
    while let Some(name) = generator.pending.pop() {
        if generator.schemas.contains_key(&name) {
            continue;
        }
        let schema = if let Some(message) = pool.get_message_by_name(&name) {
            generator.message_schema(&message, &[])
        } else if let Some(enumeration) = pool.get_enum_by_name(&name) {
            generator.enum_schema(&enumeration)
        } else {
            json!({ "type": "object" })
        };
        generator.schemas.insert(name, schema);
    }
    let mut schemas: Map<String, Json> = generator.schemas.into_iter().collect();
    schemas.insert("Error".into(), error_schema());

    for route in routes {
        let method = route.method.as_str().to_ascii_lowercase();
        let item = paths.entry(route.path.clone()).or_default();
        if item.contains_key(&method) {
            tracing::warn!(
                path = route.path,
                method,
                "a hand-written route on a transcoded one; keeping the first"
            );
            continue;
        }
        if let Some(tag) = route.operation["tags"][0].as_str() {
            tags.entry(tag.to_string()).or_insert_with(|| json!({ "name": tag }));
        }
        item.insert(method, route.operation.clone());
    }
    let paths: Map<String, Json> = paths.into_iter().map(|(k, v)| (k, Json::Object(v))).collect();

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Outpost API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Field observations (camera, sensors, rover) over HTTP/JSON, transcoded to the \
                Outpost gRPC services from their google.api.http annotations. Messages are proto3 JSON: \
                lowerCamelCase names, enums by name, 64-bit integers as strings, times as RFC 3339. \
                Write requests need `Authorization: Bearer <token>` when the gateway has a token configured.",
        },
        "servers": [{ "url": "/" }],
        "tags": tags.into_values().collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearerAuth": { "type": "http", "scheme": "bearer" } },
        },
    })
}

/// The OpenAPI path of a binding, with its path parameters.
fn openapi_path(binding: &Binding, comments: &Comments, constraints: &Constraints) -> (String, Vec<Json>) {
    let template = &binding.template;
    let mut path = String::new();
    let mut parameters = Vec::new();
    let mut used: HashSet<String> = HashSet::new();
    let mut unique = |base: String| {
        let mut name = base.clone();
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}{n}");
            n += 1;
        }
        name
    };
    for (i, segment) in template.segments.iter().enumerate() {
        path.push('/');
        let variable = template.variables.iter().position(|v| (v.start..v.end).contains(&i));
        match segment {
            Segment::Literal(literal) => path.push_str(literal),
            Segment::Wildcard | Segment::DeepWildcard => {
                let previous = match i.checked_sub(1).map(|j| &template.segments[j]) {
                    Some(Segment::Literal(l)) if variable.is_some_and(|v| template.variables[v].start < i) => {
                        Some(singular(l))
                    }
                    _ => None,
                };
                let base = match (previous, variable) {
                    (Some(name), _) => name,
                    (None, Some(v)) => template.variables[v].field_path.join("_"),
                    (None, None) => "segment".to_string(),
                };
                let name = unique(base);
                path.push('{');
                path.push_str(&name);
                path.push('}');

                let mut description = match variable {
                    Some(v) => {
                        let var = &template.variables[v];
                        let pattern = pattern_text(template, var.start, var.end);
                        let mut text = format!("Part of `{}` = `{pattern}`.", var.field());
                        let leaf = binding.path_fields[v].last().expect("a path field");
                        // The field's comment, unless it only repeats the pattern.
                        if let Some(doc) = comments.get(leaf.parent_file().name(), leaf.path())
                            && doc.trim_end_matches('.').replace('`', "") != pattern
                        {
                            text = format!("{text} {doc}");
                        }
                        text
                    }
                    None => "Any one segment.".to_string(),
                };
                if *segment == Segment::DeepWildcard {
                    description.push_str(" May contain `/`.");
                }
                // The segment's part of the field's pattern (`^runs/[a-z]+$` → `^[a-z]+$`).
                let mut schema = json!({ "type": "string" });
                if let Some(v) = variable
                    && *segment == Segment::Wildcard
                {
                    let var = &template.variables[v];
                    let leaf = binding.path_fields[v].last().expect("a path field");
                    if let Some(parts) = constraints
                        .pattern(leaf)
                        .and_then(|p| segment_patterns(&p, var.end - var.start))
                    {
                        schema["pattern"] = Json::String(format!("^{}$", parts[i - var.start]));
                    }
                }
                parameters.push(json!({
                    "name": name,
                    "in": "path",
                    "required": true,
                    "description": description,
                    "schema": schema,
                }));
            }
        }
    }
    if let Some(verb) = &template.verb {
        path.push(':');
        path.push_str(verb);
    }
    (path, parameters)
}

/// `runs/{run}`-style text of the segments of a variable.
fn pattern_text(template: &crate::template::PathTemplate, start: usize, end: usize) -> String {
    template.segments[start..end]
        .iter()
        .enumerate()
        .map(|(k, s)| match s {
            Segment::Literal(l) => l.clone(),
            Segment::Wildcard | Segment::DeepWildcard => {
                match k.checked_sub(1).map(|j| &template.segments[start + j]) {
                    Some(Segment::Literal(l)) => format!("{{{}}}", singular(l)),
                    _ => "*".to_string(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `runs` → `run`, `plotJobs` → `plotJob`, `entries` → `entry`.
fn singular(collection: &str) -> String {
    if let Some(stem) = collection.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = collection
        .strip_suffix('s')
        .filter(|s| !s.is_empty() && !s.ends_with(['s', 'u']))
    {
        stem.to_string()
    } else {
        format!("{collection}Id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_names() {
        assert_eq!(singular("runs"), "run");
        assert_eq!(singular("plotJobs"), "plotJob");
        assert_eq!(singular("devices"), "device");
        assert_eq!(singular("entries"), "entry");
        assert_eq!(singular("status"), "statusId");
        assert_eq!(singular("class"), "classId");
        assert_eq!(singular("data"), "dataId");
    }

    #[test]
    fn documents_paths_parameters_and_comments() {
        let pool = DescriptorPool::decode(outpost_api::FILE_DESCRIPTOR_SET).unwrap();
        let table = RouteTable::from_pool(&pool).unwrap();
        let doc = document(&pool, &table, &[]);
        let op = &doc["paths"]["/api/v1/devices/{device}/sensors/{sensor}/currentValue"]["get"];
        assert_eq!(op["operationId"], "GetCurrentValue");
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["device", "sensor"]);
        assert!(op["description"].as_str().unwrap().contains("newest time"), "{op}");

        let op = &doc["paths"]["/api/v1/runs/{run}:cancel"]["post"];
        assert_eq!(op["operationId"], "CancelRun");
        assert_eq!(op["security"], json!([{ "bearerAuth": [] }]));
        // body "*" with the path's field left out of the body schema.
        let body = &op["requestBody"]["content"]["application/json"]["schema"];
        assert!(body["properties"].get("name").is_none(), "{body}");

        let op = &doc["paths"]["/api/v1/images"]["get"];
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(params.contains(&"pageSize") && params.contains(&"reviewState") && params.contains(&"startTime"));
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["outpost.media.v1.ReviewState"]["type"], "string");
        assert_eq!(
            schemas["outpost.media.v1.Image"]["properties"]["sizeBytes"]["type"],
            "string"
        );
        assert_eq!(
            schemas["outpost.media.v1.Image"]["properties"]["sizeBytes"]["readOnly"],
            true
        );
        assert_eq!(
            schemas["outpost.media.v1.Image"]["properties"]["takenTime"]["format"],
            "date-time"
        );
        assert_eq!(
            schemas["outpost.telemetry.v1.Waypoint"]["properties"]["extra"]["type"],
            "object"
        );

        // Every $ref resolves.
        let text = doc.to_string();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(schemas.get(name).is_some(), "dangling $ref {name}");
        }
    }
}
