//! The transcoded API through real HTTP against a real gRPC server.

mod support;

use std::collections::BTreeSet;

use outpost_api::plotting::v1::{PlotFormat, PlotJob, PlotJobState, plot_spec};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn seed(upstream: &Upstream, name: &str, state: PlotJobState) {
    let job = PlotJob {
        name: name.to_string(),
        format: PlotFormat::Png as i32,
        state: state as i32,
        plot_size_bytes: 1234,
        create_time: Some(timestamp(1_733_054_400)),
        ..Default::default()
    };
    upstream.fake.jobs.lock().unwrap().insert(name.to_string(), job);
}

#[tokio::test]
async fn path_variables_map_to_fields_and_responses_are_proto3_json() {
    let (upstream, gateway) = spawn().await;
    seed(&upstream, "plotJobs/abc", PlotJobState::Succeeded);

    let response = gateway
        .client
        .get(gateway.url("/api/v1/plotJobs/abc"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"plotJob": {
            "name": "plotJobs/abc",
            "format": "PLOT_FORMAT_PNG",
            "state": "PLOT_JOB_STATE_SUCCEEDED",
            "error": "",
            "attempts": 0,
            "plotSizeBytes": "1234",
            "createTime": "2024-12-01T12:00:00Z",
            "width": 0,
            "height": 0,
            "pointCount": "0",
            "plotSha256": "",
        }})
    );
    let seen = upstream.fake.seen.lock().unwrap();
    assert_eq!(seen.get.last().unwrap().name, "plotJobs/abc");
    assert_eq!(seen.request_ids.last().unwrap(), "req-42");
    assert!(seen.deadlines.last().unwrap(), "the call carries a deadline");
}

#[tokio::test]
async fn percent_encoded_path_values_are_decoded() {
    let (upstream, gateway) = spawn().await;
    seed(&upstream, "plotJobs/a b", PlotJobState::Queued);
    let (status, body) = gateway.get("/api/v1/plotJobs/a%20b").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plotJob"]["name"], "plotJobs/a b");
}

#[tokio::test]
async fn query_parameters_map_to_fields() {
    let (upstream, gateway) = spawn().await;
    seed(&upstream, "plotJobs/running", PlotJobState::Running);
    seed(&upstream, "plotJobs/done", PlotJobState::Succeeded);

    let (status, body) = gateway
        .get("/api/v1/plotJobs?page_size=7&state=PLOT_JOB_STATE_RUNNING&pageToken=t%201")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plotJobs"].as_array().unwrap().len(), 1);
    assert_eq!(body["plotJobs"][0]["name"], "plotJobs/running");
    assert_eq!(body["nextPageToken"], "", "default values are answered");
    {
        let seen = upstream.fake.seen.lock().unwrap();
        let request = seen.list.last().unwrap();
        assert_eq!(request.page_size, 7);
        assert_eq!(request.state, PlotJobState::Running as i32);
        assert_eq!(request.page_token, "t 1");
    }

    // Enums by number too.
    let (status, body) = gateway.get("/api/v1/plotJobs?state=3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plotJobs"][0]["name"], "plotJobs/done");
    assert_eq!(upstream.fake.seen.lock().unwrap().list.last().unwrap().state, 3);
}

#[tokio::test]
async fn bad_query_values_are_400_naming_the_field() {
    let (upstream, gateway) = spawn().await;
    for (query, field) in [
        ("page_size=lots", "page_size"),
        ("page_size=3000000000", "page_size"),
        ("state=PLOT_JOB_STATE_MAYBE", "state"),
        ("colour=red", "colour"),
        ("page_size=1&page_size=2", "page_size"),
    ] {
        let (status, body) = gateway.get(&format!("/api/v1/plotJobs?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_ARGUMENT", "{query}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}:")), "{query}: {message}");
        assert_eq!(
            body["error"]["details"][0]["fieldViolations"][0]["field"], field,
            "{query}"
        );
    }
    assert!(
        upstream.fake.seen.lock().unwrap().list.is_empty(),
        "nothing bad reached the service"
    );

    // The service's own INVALID_ARGUMENT is a 400 too.
    let (status, body) = gateway.get("/api/v1/plotJobs?page_size=5000").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["message"], "page_size: at most 1000");
}

#[tokio::test]
async fn post_body_maps_to_the_body_field() {
    let (upstream, gateway) = spawn().await;
    let response = gateway
        .client
        .post(gateway.url("/api/v1/plotJobs"))
        .bearer_auth(TOKEN)
        .json(&json!({
            "spec": {"track": {"track": "tracks/perseverance", "xField": "sol", "y_field": "yaw", "startSol": 10}},
            "format": "PLOT_FORMAT_SVG",
        }))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plotJob"]["name"], "plotJobs/new1");
    assert_eq!(body["plotJob"]["state"], "PLOT_JOB_STATE_QUEUED");
    assert_eq!(body["plotJob"]["format"], "PLOT_FORMAT_SVG");
    assert_eq!(body["plotJob"]["spec"]["track"]["startSol"], 10);
    assert_eq!(body["plotJob"]["spec"]["track"]["endSol"], 0, "defaults are answered");

    let seen = upstream.fake.seen.lock().unwrap();
    let job = seen.create.last().unwrap().plot_job.clone().unwrap();
    assert_eq!(job.format, PlotFormat::Svg as i32);
    let Some(plot_spec::Kind::Track(track)) = job.spec.unwrap().kind else {
        panic!("no track spec")
    };
    assert_eq!(
        (track.track.as_str(), track.x_field.as_str(), track.y_field.as_str()),
        ("tracks/perseverance", "sol", "yaw")
    );
    assert_eq!((track.start_sol, track.end_sol), (10, 0));
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field() {
    let (upstream, gateway) = spawn().await;
    let post = |body: &'static str| {
        gateway
            .client
            .post(gateway.url("/api/v1/plotJobs"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (status, body) = json_of(post("{\"spec\": ").await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{body}"
    );

    let (status, body) = json_of(post(r#"{"format": "PLOT_FORMAT_GIF"}"#).await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("plot_job.format:"),
        "{body}"
    );

    let (status, body) = json_of(post(r#"{"spec": {"track": {"startSol": "many"}}}"#).await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("plot_job.spec.track.startSol:"),
        "{body}"
    );
    assert!(upstream.fake.seen.lock().unwrap().create.is_empty());

    // The service's error for a missing field comes back as it said it.
    let (status, body) = json_of(post("{}").await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["message"], "plot_job.spec: required");
}

#[tokio::test]
async fn grpc_errors_and_gateway_errors_are_json() {
    let (_upstream, gateway) = spawn().await;

    let (status, body) = gateway.get("/api/v1/plotJobs/missing").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"code": "NOT_FOUND", "message": "plotJobs/missing not found", "details": null}})
    );

    let (status, body) = gateway.get("/api/v1/plotJobs/bad").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{body}"
    );

    // No route.
    let (status, body) = gateway.get("/api/v1/nothing/here").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{body}"
    );
    let (status, body) = gateway.get("/no/such/page").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{body}"
    );

    // A known path with another method.
    let response = gateway
        .client
        .put(gateway.url("/api/v1/plotJobs/abc"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_string();
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("METHOD_NOT_ALLOWED")),
        "{body}"
    );
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
    // And on one of the gateway's own routes.
    let response = gateway
        .client
        .post(gateway.url("/healthz"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("METHOD_NOT_ALLOWED")),
        "{body}"
    );

    // An unreachable service.
    let (status, body) = gateway.get("/api/v1/runs/r1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("UNAVAILABLE")),
        "{body}"
    );
}

#[tokio::test]
async fn writes_need_the_token_reads_do_not() {
    let (upstream, gateway) = spawn().await;
    seed(&upstream, "plotJobs/keep", PlotJobState::Succeeded);
    let body = json!({"spec": {"track": {"track": "tracks/p", "xField": "sol", "yField": "yaw"}}});

    let response = gateway
        .client
        .post(gateway.url("/api/v1/plotJobs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, error) = json_of(response).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{error}"
    );

    let response = gateway
        .client
        .post(gateway.url("/api/v1/plotJobs"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let response = gateway
        .client
        .delete(gateway.url("/api/v1/plotJobs/keep"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        upstream.fake.seen.lock().unwrap().create.is_empty() && upstream.fake.seen.lock().unwrap().delete.is_empty()
    );

    // Reads stay open.
    let (status, _) = gateway.get("/api/v1/plotJobs/keep").await;
    assert_eq!(status, 200);

    let response = gateway
        .client
        .post(gateway.url("/api/v1/plotJobs"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = gateway
        .client
        .delete(gateway.url("/api/v1/plotJobs/keep"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(
        upstream.fake.seen.lock().unwrap().delete.last().unwrap().name,
        "plotJobs/keep"
    );
}

#[tokio::test]
async fn oversized_bodies_are_413_json() {
    let (upstream, gateway) = spawn().await;
    let big = json!({"spec": {"title": "x".repeat(MAX_BODY as usize * 2)}});

    // Announced by Content-Length.
    let response = gateway
        .client
        .post(gateway.url("/api/v1/plotJobs"))
        .bearer_auth(TOKEN)
        .json(&big)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{body}"
    );

    // Chunked, so only reading finds out.
    let addr = gateway.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let payload = serde_json::to_vec(&big).unwrap();
    let mut request = format!(
        "POST /api/v1/plotJobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in payload.chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"PAYLOAD_TOO_LARGE\""), "{answer}");
    assert!(upstream.fake.seen.lock().unwrap().create.is_empty());
}

/// `{name=plotJobs/*}` → `plotJobs/*`, `{name}` → `*`: the template with every variable
/// replaced by what it matches.
fn flatten_template(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        let inner = &rest[open + 1..close];
        out.push_str(inner.split_once('=').map_or("*", |(_, pattern)| pattern));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// An OpenAPI path with every `{param}` replaced by `*`.
fn flatten_openapi(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        out.push('*');
        rest = &rest[rest[open..].find('}').unwrap() + open + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn openapi_documents_every_annotated_rpc() {
    use outpost_api::google::api::{HttpRule, http_rule::Pattern};
    use prost_reflect::{DescriptorPool, Value};

    // The expected operations, straight from the descriptors.
    let pool = DescriptorPool::decode(outpost_api::FILE_DESCRIPTOR_SET).unwrap();
    let extension = pool.get_extension_by_name("google.api.http").unwrap();
    let mut expected = BTreeSet::new();
    for service in pool.services() {
        for method in service.methods() {
            let options = method.options();
            if !options.has_extension(&extension) {
                continue;
            }
            let Value::Message(rule) = options.get_extension(&extension).into_owned() else {
                panic!()
            };
            let rule: HttpRule = rule.transcode_to().unwrap();
            let (verb, template) = match rule.pattern.unwrap() {
                Pattern::Get(t) => ("get", t),
                Pattern::Post(t) => ("post", t),
                Pattern::Put(t) => ("put", t),
                Pattern::Delete(t) => ("delete", t),
                Pattern::Patch(t) => ("patch", t),
                Pattern::Custom(c) => panic!("custom {c:?} not expected"),
            };
            expected.insert((verb.to_string(), flatten_template(&template), method.name().to_string()));
        }
    }
    assert!(
        expected.contains(&("post".into(), "/api/v1/runs/*:cancel".into(), "CancelRun".into())),
        "the expectation is read from the contracts: {expected:?}"
    );

    let (_upstream, gateway) = spawn().await;
    let (status, doc) = gateway.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (verb, operation) in item.as_object().unwrap() {
            if let Some(id) = operation["operationId"].as_str() {
                documented.insert((verb.clone(), flatten_openapi(path), id.to_string()));
            }
            // Every path parameter is declared.
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            let in_path: BTreeSet<&str> = path
                .split('{')
                .skip(1)
                .map(|part| &part[..part.find('}').unwrap()])
                .collect();
            assert_eq!(declared, in_path, "{verb} {path}");
        }
    }
    let missing: Vec<_> = expected.difference(&documented).collect();
    assert!(missing.is_empty(), "not documented: {missing:?}");

    // Responses refer to schemas that exist.
    let operation = &doc["paths"]["/api/v1/plotJobs/{plotJob}"]["get"];
    let reference = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap();
    let name = reference.strip_prefix("#/components/schemas/").unwrap();
    assert_eq!(name, "outpost.plotting.v1.GetPlotJobResponse");
    assert!(doc["components"]["schemas"][name]["properties"]["plotJob"].is_object());
    assert_eq!(
        doc["components"]["schemas"]["Error"]["properties"]["error"]["required"],
        json!(["code", "message"])
    );
}
