//! The Durable Task wire protocol, generated from `proto/orchestrator_service.proto`.
//!
//! Message names are top-level (the proto has no `package` line), so the gRPC service is
//! `TaskHubSidecarService` and every method path is `/TaskHubSidecarService/<Method>`.
//!
//! Both halves of `durable` use these types: the SDK (`durable-runtime`, which re-exports this
//! crate as `durable::proto`) and the sidecar (`durable-sidecar`). Conversions between wire
//! types and each side's own types live with that side.
//!
//! ```
//! use durable_proto::{CreateInstanceRequest, OrchestrationStatus};
//!
//! let request = CreateInstanceRequest {
//!     instance_id: "order-1".into(),
//!     name: "process_order".into(),
//!     input: Some("{\"id\":1}".into()),
//!     ..Default::default()
//! };
//! assert_eq!(request.name, "process_order");
//! assert_eq!(OrchestrationStatus::Pending as i32, 6);
//! ```

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

tonic::include_proto!("_");
