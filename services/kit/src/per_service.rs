//! One process may host every service (`outpost all`), yet each span must be seen as its
//! service's: exported with the resource `service.name` of the service named by its
//! [`SERVICE`] attribute (set where the span is made, or inherited from its parent in this
//! process), which is dropped on the way out. A process of one role exports the same way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::trace::{Span as _, SpanId, TraceContextExt};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

use crate::trace::SERVICE;

/// The services a process may host, by short name.
pub const SERVICES: [&str; 5] = ["gateway", "ingest", "media", "telemetry", "plotting"];

/// The resource `service.name` of the service `short` (`media` → `outpost-media`); `all`, the
/// whole mesh, is `outpost`.
pub fn service_name(short: &str) -> String {
    match short {
        "all" => "outpost".to_string(),
        short => format!("outpost-{short}"),
    }
}

/// Gives a span without a [`SERVICE`] attribute the one of its parent in this process.
#[derive(Debug, Default)]
pub struct InheritService {
    /// The service of every span started and not yet ended.
    live: Mutex<HashMap<SpanId, Value>>,
}

impl SpanProcessor for InheritService {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        let own = span.exported_data().and_then(|data| {
            data.attributes
                .into_iter()
                .find(|kv| kv.key.as_str() == SERVICE)
                .map(|kv| kv.value)
        });
        let parent = cx.span().span_context().clone();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let service = match own {
            Some(own) => own,
            None if parent.is_valid() && !parent.is_remote() => match live.get(&parent.span_id()) {
                Some(inherited) => {
                    span.set_attribute(KeyValue::new(SERVICE, inherited.clone()));
                    inherited.clone()
                }
                None => return,
            },
            None => return,
        };
        live.insert(span.span_context().span_id(), service);
    }

    fn on_end(&self, span: SpanData) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.remove(&span.span_context.span_id());
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// An exporter per service, each with its service's resource, and one with the process's
/// resource for spans of no known service. Made up front: exporters are made inside the
/// runtime, while spans are exported from the batch processor's own thread.
#[derive(Debug)]
pub struct PerService<E> {
    services: HashMap<&'static str, E>,
    process: E,
}

impl<E: SpanExporter> PerService<E> {
    /// `make` makes each exporter.
    pub fn new(mut make: impl FnMut() -> anyhow::Result<E>) -> anyhow::Result<Self> {
        let mut services = HashMap::new();
        for service in SERVICES {
            services.insert(service, make()?);
        }
        Ok(Self {
            services,
            process: make()?,
        })
    }
}

impl<E: SpanExporter> SpanExporter for PerService<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut groups: HashMap<Option<&'static str>, Vec<SpanData>> = HashMap::new();
        for mut span in batch {
            let mut service = None;
            span.attributes.retain(|kv| {
                if kv.key.as_str() != SERVICE {
                    return true;
                }
                service = SERVICES.iter().copied().find(|s| kv.value.as_str() == *s);
                false
            });
            groups.entry(service).or_default().push(span);
        }
        let mut result = Ok(());
        for (service, spans) in groups {
            let exporter = service.and_then(|s| self.services.get(s)).unwrap_or(&self.process);
            if let Err(err) = exporter.export(spans).await {
                result = Err(err);
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let mut result = self.process.shutdown_with_timeout(timeout);
        for exporter in self.services.values() {
            if let Err(err) = exporter.shutdown_with_timeout(timeout) {
                result = Err(err);
            }
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut result = self.process.force_flush();
        for exporter in self.services.values() {
            if let Err(err) = exporter.force_flush() {
                result = Err(err);
            }
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.process.set_resource(resource);
        for (service, exporter) in &mut self.services {
            let others = resource
                .iter()
                .filter(|(key, _)| key.as_str() != "service.name")
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone()));
            let own = Resource::builder_empty()
                .with_attributes(others)
                .with_service_name(service_name(service))
                .build();
            exporter.set_resource(&own);
        }
    }
}
