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

/// The `OrchestratorRequest.properties` key by which durable's sidecar tells a worker in its
/// own process that `past_events` holds only the history after the first N events, the ones
/// the worker applied in its previous episode of the execution on this stream (it keeps that
/// replay state). A worker that no longer holds it answers with `requires_history` and gets
/// the episode again with the whole history.
pub const HELD_EVENTS_PROPERTY: &str = "durable.heldEvents";

impl OrchestratorRequest {
    /// How many leading history events `past_events` leaves out because the worker holds
    /// them (see [`HELD_EVENTS_PROPERTY`]); `None` for a request with the whole history.
    ///
    /// ```
    /// let mut request = durable_proto::OrchestratorRequest::default();
    /// assert_eq!(request.held_events(), None);
    /// request.set_held_events(12);
    /// assert_eq!(request.held_events(), Some(12));
    /// ```
    pub fn held_events(&self) -> Option<usize> {
        match self.properties.get(HELD_EVENTS_PROPERTY)?.kind {
            Some(prost_types::value::Kind::NumberValue(n)) if n >= 0.0 => Some(n as usize),
            _ => None,
        }
    }

    /// Marks `past_events` as the history after the first `events` ones.
    pub fn set_held_events(&mut self, events: usize) {
        self.properties.insert(
            HELD_EVENTS_PROPERTY.to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::NumberValue(events as f64)),
            },
        );
    }
}
