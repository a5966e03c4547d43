//! The shared runtime of Outpost's services: configuration, tracing and OpenTelemetry, the
//! gRPC server bootstrap (health, reflection, metrics, shutdown), the client channel factory,
//! and the storage interfaces with their embedded and cluster adapters.

pub mod config;
pub mod storage;
