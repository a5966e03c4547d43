//! Routes written by hand (the ops routes, the source systems' routes) declared for the
//! document, next to their handlers: each module that serves routes has an `openapi()` that
//! returns a [`Route`] per method and path, and [`crate::sources::openapi`] (or the ops module)
//! lists it.
//!
//! ```
//! use outpost_gateway::openapi::{Route, schemas};
//! use serde_json::json;
//!
//! let route = Route::get("/get_current_value/{sensor}", "HubGetCurrentValue", "The newest reading.")
//!     .tag("SensorHub")
//!     .path("sensor", "The sensor id.", schemas::id())
//!     .query("device", "The device id (default: `default`).", schemas::id())
//!     .answers(200, "The reading.", json!({ "type": "object" }));
//! assert_eq!(route.path, "/get_current_value/{sensor}");
//! ```

use http::Method;
use serde_json::{Value as Json, json};

/// One operation of a hand-written route.
#[derive(Clone, Debug)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The OpenAPI path, with `{param}` for each path parameter (axum's syntax too).
    pub path: String,
    /// The operation object.
    pub operation: Json,
}

impl Route {
    /// An operation: `id` is its unique `operationId`, `summary` one sentence.
    pub fn new(method: Method, path: &str, id: &str, summary: &str) -> Self {
        let mut operation = json!({
            "operationId": id,
            "summary": summary,
            "parameters": [],
            "responses": {
                "default": {
                    "description": "An error: the JSON error body.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        });
        if method != Method::GET && method != Method::HEAD {
            operation["security"] = json!([{ "bearerAuth": [] }]);
        }
        Self {
            method,
            path: path.to_string(),
            operation,
        }
    }

    /// A GET operation.
    pub fn get(path: &str, id: &str, summary: &str) -> Self {
        Self::new(Method::GET, path, id, summary)
    }

    /// A POST operation (a write: it needs the token when one is set).
    pub fn post(path: &str, id: &str, summary: &str) -> Self {
        Self::new(Method::POST, path, id, summary)
    }

    /// The group it is listed under (the source system's name).
    pub fn tag(mut self, tag: &str) -> Self {
        self.operation["tags"] = json!([tag]);
        self
    }

    /// A longer description.
    pub fn description(mut self, text: &str) -> Self {
        self.operation["description"] = Json::String(text.to_string());
        self
    }

    /// A path parameter (one segment).
    pub fn path(self, name: &str, description: &str, schema: Json) -> Self {
        self.parameter(
            json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema }),
        )
    }

    /// An optional query parameter.
    pub fn query(self, name: &str, description: &str, schema: Json) -> Self {
        self.parameter(json!({ "name": name, "in": "query", "description": description, "schema": schema }))
    }

    fn parameter(mut self, parameter: Json) -> Self {
        if let Some(list) = self.operation["parameters"].as_array_mut() {
            list.push(parameter);
        }
        self
    }

    /// A required request body of this content type.
    pub fn body(mut self, content_type: &str, schema: Json) -> Self {
        self.operation["requestBody"] = json!({ "required": true, "content": { content_type: { "schema": schema } } });
        self
    }

    /// A JSON answer with this status.
    pub fn answers(self, status: u16, description: &str, schema: Json) -> Self {
        self.answers_as(status, description, "application/json", schema)
    }

    /// An answer of another content type (`image/jpeg`, `application/octet-stream`…).
    pub fn answers_as(mut self, status: u16, description: &str, content_type: &str, schema: Json) -> Self {
        self.operation["responses"][status.to_string()] =
            json!({ "description": description, "content": { content_type: { "schema": schema } } });
        self
    }
}

/// Schemas the hand-written routes share.
pub mod schemas {
    use serde_json::{Value as Json, json};

    /// A device or sensor id (`outpost_kit::ids`): 1 to 128 of letters, digits, `.`, `_`, `-`.
    /// Stated here as ids that start with a letter, digit or `_`, which are always valid.
    pub fn id() -> Json {
        json!({ "type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$" })
    }

    /// One server-sent event of [`crate::sse`]: `update` events, then `end` with the final state
    /// (or `error` with the JSON error body); `data` is JSON text.
    pub fn event() -> Json {
        json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": { "type": "string", "enum": ["update", "end", "error"] },
                "data": { "type": "string" },
            },
        })
    }

    /// An object of any keys.
    pub fn object() -> Json {
        json!({ "type": "object", "additionalProperties": true })
    }

    /// Lowercase hex digits, exactly `n`.
    pub fn hex(n: usize) -> Json {
        json!({ "type": "string", "pattern": format!("^[0-9a-f]{{{n}}}$") })
    }

    /// A UTC time as RFC 3339.
    pub fn time() -> Json {
        json!({ "type": "string", "format": "date-time" })
    }
}
