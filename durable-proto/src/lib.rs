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

/// A server-streaming response as a boxed stream (what [`SidecarService`] streams return).
pub type ResponseStream<T> = std::pin::Pin<
    Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send + 'static>,
>;

/// `TaskHubSidecarService` as a trait object: the sidecar's own service implements it, and so
/// does the SDK's gRPC client, so an in-process caller and a remote one go through the same
/// interface (values in-process, protobuf over HTTP/2 otherwise).
pub type SidecarService = dyn task_hub_sidecar_service_server::TaskHubSidecarService<
        GetWorkItemsStream = ResponseStream<WorkItem>,
        StreamInstanceHistoryStream = ResponseStream<HistoryChunk>,
    >;
