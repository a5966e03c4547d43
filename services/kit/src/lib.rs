//! The shared runtime of Outpost's services: configuration, tracing and OpenTelemetry, the
//! gRPC server bootstrap (health, reflection, metrics, shutdown), the client channel factory,
//! the storage interfaces with their embedded and cluster adapters, and workers over work
//! queues.

pub mod auth;
pub mod backoff;
pub mod client;
pub mod config;
pub mod error;
pub mod group_commit;
pub mod grpc;
pub mod ids;
pub mod json;
pub mod metrics;
pub mod observability;
pub mod paging;
pub mod per_service;
pub mod rpc;
pub mod server;
pub mod storage;
pub mod testing;
pub mod time;
pub mod trace;
pub mod worker;
