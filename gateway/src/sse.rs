//! Server-sent events from a gRPC server stream (such as `WatchRun` or `WatchPlotJob`): each
//! message is one `text/event-stream` event whose data is the message as JSON.
//!
//! - a message that is not final is `event: update`;
//! - the final message (the one `is_final` says ends it, such as a run that ended) is
//!   `event: end`, and the stream closes after it;
//! - a gRPC error, or the upstream stream ending before a final message, is `event: error`
//!   with the gateway's JSON error body, and the stream closes.
//!
//! A comment is sent every [`KEEP_ALIVE`] so that proxies keep a quiet stream open. Messages
//! are rendered as proto3 JSON (the same shape as the transcoded `/api/v1` routes) with
//! [`proto_json`], or any way the caller's `render` likes.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt as _};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

use crate::error::ApiError;

/// How often a comment is sent on a quiet stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The event name of a message that is not the last.
pub const UPDATE: &str = "update";
/// The event name of the final message.
pub const END: &str = "end";
/// The event name of an error (data: the JSON error body).
pub const ERROR: &str = "error";

/// The `text/event-stream` response of `stream` (see the module): each message rendered by
/// `render`, until the message `is_final` holds for.
pub fn respond<T, S, R, F>(stream: S, render: R, is_final: F) -> Response
where
    T: Send + 'static,
    S: Stream<Item = Result<T, tonic::Status>> + Send + 'static,
    R: Fn(&T) -> Result<Value, ApiError> + Send + 'static,
    F: Fn(&T) -> bool + Send + 'static,
{
    Sse::new(events(stream, render, is_final))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// The events of `stream` (see the module), as [`respond`] sends them.
pub fn events<T, S, R, F>(stream: S, render: R, is_final: F) -> impl Stream<Item = Result<Event, Infallible>> + Send
where
    T: Send + 'static,
    S: Stream<Item = Result<T, tonic::Status>> + Send + 'static,
    R: Fn(&T) -> Result<Value, ApiError> + Send + 'static,
    F: Fn(&T) -> bool + Send + 'static,
{
    let stream = Box::pin(stream);
    futures::stream::unfold(Some((stream, render, is_final)), |state| async move {
        let (mut stream, render, is_final) = state?;
        let event = match stream.next().await {
            Some(Ok(message)) => match render(&message) {
                Ok(data) if is_final(&message) => return Some((event(END, &data), None)),
                Ok(data) => event(UPDATE, &data),
                Err(error) => return Some((event(ERROR, &error.body()), None)),
            },
            Some(Err(status)) => return Some((event(ERROR, &ApiError::from(status).body()), None)),
            None => {
                let error = ApiError::unavailable("the stream ended before its final state");
                return Some((event(ERROR, &error.body()), None));
            }
        };
        Some((event, Some((stream, render, is_final))))
    })
    .map(Ok)
}

fn event(name: &str, data: &Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// A message as proto3 JSON (camelCase names, enums by name, default values included), read
/// through the services' descriptors by its full name, such as `outpost.ingest.v1.Run`.
pub fn proto_json<M: prost::Message>(full_name: &str, message: &M) -> Result<Value, ApiError> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    let pool = POOL
        .get_or_init(|| crate::descriptor_pool().ok())
        .as_ref()
        .ok_or_else(|| ApiError::internal("the services' descriptors do not decode"))?;
    let descriptor = pool
        .get_message_by_name(full_name)
        .ok_or_else(|| ApiError::internal(format!("no message {full_name} in the services' descriptors")))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| ApiError::internal(format!("re-reading a {full_name}: {e}")))?;
    let options = SerializeOptions::new().skip_default_fields(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| ApiError::internal(format!("rendering a {full_name} as JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_api::ingest::v1::{Progress, Run, RunState};

    fn run(done: i64, state: RunState) -> Run {
        Run {
            name: "runs/r1".into(),
            state: state as i32,
            progress: Some(Progress { done, total: 3 }),
            ..Default::default()
        }
    }

    fn render(run: &Run) -> Result<Value, ApiError> {
        proto_json("outpost.ingest.v1.Run", run)
    }

    fn finished(run: &Run) -> bool {
        run.state() == RunState::Succeeded
    }

    async fn body(messages: Vec<Result<Run, tonic::Status>>) -> String {
        let response = respond(futures::stream::iter(messages), render, finished);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn updates_then_the_final_state_end_the_stream() {
        let text = body(vec![
            Ok(run(1, RunState::Running)),
            Ok(run(3, RunState::Succeeded)),
            Ok(run(3, RunState::Failed)),
        ])
        .await;
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "{text}");
        assert!(events[0].starts_with("event: update\ndata: {"), "{text}");
        assert!(events[0].contains(r#""state":"RUN_STATE_RUNNING""#), "{text}");
        assert!(events[0].contains(r#""progress":{"done":"1","total":"3"}"#), "{text}");
        assert!(events[1].starts_with("event: end\ndata: {"), "{text}");
        assert!(events[1].contains(r#""state":"RUN_STATE_SUCCEEDED""#), "{text}");
    }

    #[tokio::test]
    async fn an_error_or_an_early_end_is_an_error_event() {
        let text = body(vec![
            Ok(run(1, RunState::Running)),
            Err(tonic::Status::not_found("runs/r1")),
        ])
        .await;
        assert!(
            text.contains("event: error\ndata: {\"error\":{\"code\":\"NOT_FOUND\""),
            "{text}"
        );
        let text = body(vec![Ok(run(1, RunState::Running))]).await;
        assert!(
            text.contains("event: error\ndata: {\"error\":{\"code\":\"UNAVAILABLE\""),
            "{text}"
        );
        assert!(text.contains("before its final state"), "{text}");
    }
}
