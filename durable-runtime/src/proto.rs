//! The Durable Task wire protocol, generated from `proto/orchestrator_service.proto`.
//!
//! Message names are top-level (the proto has no `package` line), so the gRPC service is
//! `TaskHubSidecarService` and every method path is `/TaskHubSidecarService/<Method>`.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

tonic::include_proto!("_");
