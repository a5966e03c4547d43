//! The generic HTTP/JSON → gRPC handler: looks the request up in the route table, builds the
//! request message, calls the upstream with a deadline and trace context, and answers the
//! response as proto3 JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::uri::PathAndQuery;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use outpost_kit::client::Traced;
use prost_reflect::{DynamicMessage, SerializeOptions};

use crate::codec::DynamicCodec;
use crate::error::ApiError;
use crate::request;
use crate::rules::{Binding, BodyRule, Lookup, RouteTable};

/// Largest upstream response the gateway decodes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Request headers passed on to the upstream as metadata.
const FORWARDED_HEADERS: &[&str] = &["x-request-id"];

/// The route label of a response, for metrics (the template, never the raw path).
#[derive(Clone, Debug)]
pub struct RouteLabel(pub String);

/// Label of requests that match no route.
pub const UNMATCHED: &str = "unmatched";

/// Everything the handler needs.
pub struct Transcoder {
    routes: RouteTable,
    /// Per RPC (full name): its client and path, made once at start.
    targets: HashMap<String, Target>,
    timeout: Duration,
    max_body: u64,
}

/// Where one RPC goes.
struct Target {
    grpc: tonic::client::Grpc<Traced>,
    path: PathAndQuery,
}

impl Transcoder {
    /// A transcoder over `routes`, calling each service's channel by its full name.
    pub fn new(
        routes: RouteTable,
        upstreams: HashMap<String, Traced>,
        timeout: Duration,
        max_body: u64,
    ) -> anyhow::Result<Self> {
        let mut targets = HashMap::new();
        for binding in routes.bindings() {
            let rpc = &binding.rpc;
            let service = rpc.parent_service();
            let Some(channel) = upstreams.get(service.full_name()) else {
                anyhow::bail!(
                    "no upstream for {} (HTTP rule of {})",
                    service.full_name(),
                    rpc.full_name()
                );
            };
            let path = PathAndQuery::try_from(format!("/{}/{}", service.full_name(), rpc.name()))?;
            let grpc = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES);
            targets.insert(rpc.full_name().to_string(), Target { grpc, path });
        }
        Ok(Self {
            routes,
            targets,
            timeout,
            max_body,
        })
    }

    /// Handles one request (the router's fallback).
    pub async fn handle(self: Arc<Self>, request: Request) -> Response {
        let (binding, values) = match self.routes.lookup(request.method(), request.uri().path()) {
            Lookup::Found(binding, values) => (binding, values),
            Lookup::WrongMethod(allowed) => {
                let allow = allowed.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
                let mut response = ApiError::method_not_allowed(format!(
                    "{} is not allowed on {:?}; use {allow}",
                    request.method(),
                    request.uri().path()
                ))
                .into_response();
                if let Ok(value) = HeaderValue::from_str(&allow) {
                    response.headers_mut().insert(ALLOW, value);
                }
                return labelled(response, UNMATCHED);
            }
            Lookup::NotFound => {
                let error =
                    ApiError::not_found(format!("no route for {} {:?}", request.method(), request.uri().path()));
                return labelled(error.into_response(), UNMATCHED);
            }
        };
        let response = match self.call(binding, &values, request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        labelled(response, binding.route())
    }

    async fn call(&self, binding: &Binding, values: &[String], request: Request) -> Result<Response, ApiError> {
        let (parts, body) = request.into_parts();
        let body = match binding.body {
            BodyRule::None => Bytes::new(),
            _ => read_body(body, self.max_body).await?,
        };
        let message = request::build(binding, values, parts.uri.query(), &body)?;

        let rpc = &binding.rpc;
        let target = self
            .targets
            .get(rpc.full_name())
            .expect("every bound RPC has a target from start");
        let (mut grpc, path) = (target.grpc.clone(), target.path.clone());
        let mut call = tonic::Request::new(message);
        call.set_timeout(self.timeout);
        for name in FORWARDED_HEADERS {
            if let Some(value) = parts.headers.get(*name).and_then(|v| v.to_str().ok())
                && let Ok(value) = value.parse()
            {
                call.metadata_mut().insert(*name, value);
            }
        }
        let output = rpc.output();
        // The channel makes the call a client span (outpost_kit::client::Traced).
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("upstream not ready: {e}")))?;
        let reply = grpc.unary(call, path, DynamicCodec::new(output)).await?;
        let json = render(binding, &reply.into_inner())?;
        Ok(([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response())
    }
}

fn labelled(mut response: Response, route: &str) -> Response {
    response.extensions_mut().insert(RouteLabel(route.to_string()));
    response
}

/// Reads a body of at most `limit` bytes (413 beyond).
pub async fn read_body(body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::payload_too_large(limit)),
        Err(err) => Err(ApiError::bad_request(format!("reading the request body: {err}"))),
    }
}

/// proto3 JSON of a response: lowerCamelCase names, enums by name, 64-bit integers as strings,
/// default values included; only the `response_body` field when the rule names one.
pub fn render(binding: &Binding, message: &DynamicMessage) -> Result<Vec<u8>, ApiError> {
    let options = SerializeOptions::new().skip_default_fields(false);
    let encode_error = |e: serde_json::Error| ApiError::internal(format!("encoding the response: {e}"));
    match &binding.response_body {
        None => {
            let mut serializer = serde_json::Serializer::new(Vec::new());
            message
                .serialize_with_options(&mut serializer, &options)
                .map_err(encode_error)?;
            Ok(serializer.into_inner())
        }
        Some(field) => {
            let whole = message
                .serialize_with_options(serde_json::value::Serializer, &options)
                .map_err(encode_error)?;
            let part = whole.get(field.json_name()).cloned().unwrap_or(serde_json::Value::Null);
            serde_json::to_vec(&part).map_err(encode_error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::Value;

    #[test]
    fn renders_proto3_json_with_defaults_and_honours_response_body() {
        let pool = crate::descriptor_pool().unwrap();
        let table = RouteTable::from_pool(&pool).unwrap();
        let mut binding = table
            .bindings()
            .iter()
            .find(|b| b.rpc.name() == "GetPlotJob")
            .unwrap()
            .clone();
        let output = binding.rpc.output();
        let job_field = output.get_field_by_name("plot_job").unwrap();
        let mut job = DynamicMessage::new(job_field.kind().as_message().unwrap().clone());
        job.set_field_by_name("name", Value::String("plotJobs/a".into()));
        job.set_field_by_name("plot_size_bytes", Value::I64(7));
        job.set_field_by_name("state", Value::EnumNumber(3));
        let mut response = DynamicMessage::new(output);
        response.set_field(&job_field, Value::Message(job));

        let whole: serde_json::Value = serde_json::from_slice(&render(&binding, &response).unwrap()).unwrap();
        assert_eq!(whole["plotJob"]["plotSizeBytes"], "7");
        assert_eq!(whole["plotJob"]["state"], "PLOT_JOB_STATE_SUCCEEDED");
        assert_eq!(whole["plotJob"]["attempts"], 0, "defaults are answered");
        assert!(whole["plotJob"].get("spec").is_none(), "unset messages are not");

        binding.response_body = Some(job_field);
        let part: serde_json::Value = serde_json::from_slice(&render(&binding, &response).unwrap()).unwrap();
        assert_eq!(part["name"], "plotJobs/a");
        assert!(part.get("plotJob").is_none());
    }
}
