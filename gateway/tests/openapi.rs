//! The OpenAPI document states what the services enforce, covers the hand-written routes, and
//! a custom verb's path is the verb's alone.

mod support;

use serde_json::{Value, json};
use support::*;

/// The allowed methods of a path, from a 405's `Allow`.
async fn allowed(gateway: &Gateway, method: reqwest::Method, path: &str) -> (u16, String) {
    let response = gateway
        .client
        .request(method, gateway.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (response.status().as_u16(), allow)
}

#[tokio::test]
async fn a_custom_verbs_path_lists_the_verbs_methods_only() {
    let (_upstream, gateway) = spawn().await;
    // `runs/r1:cancel` is not also `{name=runs/*}` (GET, DELETE).
    for method in [reqwest::Method::OPTIONS, reqwest::Method::GET, reqwest::Method::DELETE] {
        assert_eq!(
            allowed(&gateway, method.clone(), "/api/v1/runs/r1:cancel").await,
            (405, "POST".to_string()),
            "{method}"
        );
    }
    assert_eq!(
        allowed(&gateway, reqwest::Method::POST, "/api/v1/tracks/t1:summary").await,
        (405, "GET".to_string())
    );
    // The resource's own path keeps its methods.
    let (status, allow) = allowed(&gateway, reqwest::Method::OPTIONS, "/api/v1/runs/r1").await;
    assert_eq!(status, 405);
    let mut methods: Vec<&str> = allow.split(", ").collect();
    methods.sort_unstable();
    assert_eq!(methods, ["DELETE", "GET"]);
}

fn parameter<'a>(operation: &'a Value, name: &str) -> &'a Value {
    operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no parameter {name} in {operation}"))
}

#[tokio::test]
async fn the_document_states_required_fields_minimums_and_patterns() {
    let (_upstream, gateway) = spawn().await;
    let (status, doc) = gateway.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    let paths = &doc["paths"];
    let schemas = &doc["components"]["schemas"];

    // Minimums: a negative page size is refused, so the document says so.
    let page_size = parameter(&paths["/api/v1/runs"]["get"], "pageSize");
    assert_eq!(page_size["schema"]["minimum"], 0, "{page_size}");
    // Required query parameters and body fields.
    let create_device = &paths["/api/v1/devices"]["post"];
    let device_id = parameter(create_device, "deviceId");
    assert_eq!(device_id["required"], true, "{device_id}");
    assert_eq!(device_id["schema"]["pattern"], "^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$");
    let reading = &schemas["outpost.telemetry.v1.Reading"];
    assert_eq!(reading["required"], json!(["device", "sensor", "time"]), "{reading}");
    assert_eq!(reading["additionalProperties"], false);
    let write = &schemas["outpost.telemetry.v1.WriteReadingsRequest"]["properties"]["readings"];
    assert_eq!(write["maxItems"], 10_000, "{write}");
    // A required enum is not its unspecified value.
    let review = &paths["/api/v1/images/{image}:review"]["post"];
    assert_eq!(review["requestBody"]["required"], true);
    let decision = &review["requestBody"]["content"]["application/json"]["schema"]["properties"]["decision"];
    assert!(
        !decision.to_string().contains("REVIEW_STATE_UNSPECIFIED")
            && decision.to_string().contains("REVIEW_STATE_ACCEPTED"),
        "{decision}"
    );
    // Ranges.
    let device = &schemas["outpost.telemetry.v1.Device"]["properties"];
    assert_eq!(
        (&device["latitude"]["minimum"], &device["latitude"]["maximum"]),
        (&json!(-90), &json!(90))
    );

    // Each segment of a resource name has its part of the name's pattern.
    let pattern = |path: &str, method: &str, name: &str| {
        parameter(&paths[path][method], name)["schema"]["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: {name} has no pattern"))
            .to_string()
    };
    assert_eq!(pattern("/api/v1/objects/{object}", "get", "object"), "^[0-9a-f]{64}$");
    assert_eq!(pattern("/api/v1/images/{image}", "delete", "image"), "^[0-9a-f]{32}$");
    assert_eq!(
        pattern("/api/v1/runs/{run}:cancel", "post", "run"),
        "^[A-Za-z0-9_-]{1,64}$"
    );
    assert_eq!(
        pattern("/api/v1/devices/{device}/sensors/{sensor}/readings", "get", "device"),
        "^(-|[A-Za-z0-9_][A-Za-z0-9._-]{0,127})$"
    );

    // The id pattern says what `outpost_kit::ids` accepts (ids it states are valid ids).
    let id = regex::Regex::new(&pattern("/api/v1/devices/{device}", "get", "device")).unwrap();
    for (text, stated) in [
        ("box-1".to_string(), true),
        ("_x.y-z".to_string(), true),
        ("x".repeat(128), true),
        ("x".repeat(129), false),
        ("a b".to_string(), false),
        ("a/b".to_string(), false),
        ("".to_string(), false),
    ] {
        assert_eq!(id.is_match(&text), stated, "{text:?}");
        assert_eq!(outpost_kit::ids::is_valid_id(&text), stated, "{text:?}");
    }
}

#[tokio::test]
async fn the_document_covers_the_hand_written_routes_and_each_is_served() {
    let (_upstream, gateway) = spawn().await;
    let (_, doc) = gateway.get("/api/openapi.json").await;
    let mut seen = Vec::new();
    for route in outpost_gateway::sources::openapi() {
        let method = route.method.as_str().to_ascii_lowercase();
        let documented = &doc["paths"][&route.path][&method];
        assert_eq!(
            documented["operationId"], route.operation["operationId"],
            "{} {}",
            route.method, route.path
        );
        assert!(documented["responses"]["default"].is_object(), "{documented}");
        // Served: whatever the (unreachable) services answer, it is not the fallback's 404.
        let path = route
            .path
            .replace("{sensor}", "temperature")
            .replace("{id}", &"0".repeat(32));
        let response = gateway
            .client
            .request(route.method.clone(), gateway.url(&path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            !(status == 404 && body.contains("no route")) && status != 405,
            "{} {path}: {status} {body}",
            route.method
        );
        seen.push(route.path.clone());
    }
    for path in [
        "/add_rawdata/",
        "/get_current_value/{sensor}",
        "/temperature",
        "/image_upload",
        "/accept_pic/{id}",
    ] {
        assert!(seen.iter().any(|p| p == path), "{path} not declared: {seen:?}");
    }
    for path in ["/healthz", "/readyz", "/version", "/metrics"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
}
