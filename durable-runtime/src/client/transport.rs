//! How the client and the worker reach a sidecar. Both go through one interface, the
//! `TaskHubSidecarService` trait ([`proto::SidecarService`]): the sidecar's own service
//! implements it (the embedded sidecar, called in-process: requests and responses pass as
//! values, with no HTTP/2, socket or protobuf encoding), and so does [`GrpcTransport`], which
//! forwards each call over gRPC to any sidecar.

use std::sync::Arc;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{IntoRequest, Request, Response, Status};

use super::MetadataInterceptor;
use crate::proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use crate::proto::task_hub_sidecar_service_server::TaskHubSidecarService;
use crate::proto::{self, ResponseStream};

type GrpcClient = TaskHubSidecarServiceClient<InterceptedService<Channel, MetadataInterceptor>>;

/// A connection to a sidecar, over gRPC or in-process; cheap to clone.
#[derive(Clone)]
pub(crate) struct SidecarClient(Arc<proto::SidecarService>);

impl SidecarClient {
    /// Calls over gRPC on `channel`, adding the interceptor's headers to every call.
    pub(crate) fn grpc(channel: Channel, interceptor: MetadataInterceptor) -> Self {
        let client = TaskHubSidecarServiceClient::with_interceptor(channel, interceptor)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Self(Arc::new(GrpcTransport { client }))
    }

    /// Calls `service` directly, in this process.
    pub(crate) fn in_process(service: Arc<proto::SidecarService>) -> Self {
        Self(service)
    }
}

/// The gRPC side of the interface: each call forwarded to a remote sidecar.
struct GrpcTransport {
    client: GrpcClient,
}

/// Implements every unary call of the service for [`GrpcTransport`] (forwarded over gRPC)
/// and, on [`SidecarClient`], a method of the same name that takes a message or a request, as
/// tonic's generated client does.
macro_rules! unary_calls {
    ($($method:ident($request:ty) -> $response:ty;)*) => {
        #[tonic::async_trait]
        impl TaskHubSidecarService for GrpcTransport {
            $(
                async fn $method(
                    &self,
                    request: Request<$request>,
                ) -> Result<Response<$response>, Status> {
                    self.client.clone().$method(request).await
                }
            )*

            type GetWorkItemsStream = ResponseStream<proto::WorkItem>;

            async fn get_work_items(
                &self,
                request: Request<proto::GetWorkItemsRequest>,
            ) -> Result<Response<Self::GetWorkItemsStream>, Status> {
                let response = self.client.clone().get_work_items(request).await?;
                Ok(response.map(|stream| Box::pin(stream) as ResponseStream<_>))
            }

            type StreamInstanceHistoryStream = ResponseStream<proto::HistoryChunk>;

            async fn stream_instance_history(
                &self,
                request: Request<proto::StreamInstanceHistoryRequest>,
            ) -> Result<Response<Self::StreamInstanceHistoryStream>, Status> {
                let response = self.client.clone().stream_instance_history(request).await?;
                Ok(response.map(|stream| Box::pin(stream) as ResponseStream<_>))
            }
        }

        // The SDK calls most of the service, not all of it.
        #[allow(dead_code)]
        impl SidecarClient {
            $(
                pub(crate) async fn $method(
                    &mut self,
                    request: impl IntoRequest<$request>,
                ) -> Result<Response<$response>, Status> {
                    self.0.$method(request.into_request()).await
                }
            )*

            pub(crate) async fn get_work_items(
                &mut self,
                request: impl IntoRequest<proto::GetWorkItemsRequest>,
            ) -> Result<Response<ResponseStream<proto::WorkItem>>, Status> {
                self.0.get_work_items(request.into_request()).await
            }

            pub(crate) async fn stream_instance_history(
                &mut self,
                request: impl IntoRequest<proto::StreamInstanceHistoryRequest>,
            ) -> Result<Response<ResponseStream<proto::HistoryChunk>>, Status> {
                self.0.stream_instance_history(request.into_request()).await
            }
        }
    };
}

unary_calls! {
    hello(()) -> ();
    start_instance(proto::CreateInstanceRequest) -> proto::CreateInstanceResponse;
    get_instance(proto::GetInstanceRequest) -> proto::GetInstanceResponse;
    rewind_instance(proto::RewindInstanceRequest) -> proto::RewindInstanceResponse;
    restart_instance(proto::RestartInstanceRequest) -> proto::RestartInstanceResponse;
    wait_for_instance_start(proto::GetInstanceRequest) -> proto::GetInstanceResponse;
    wait_for_instance_completion(proto::GetInstanceRequest) -> proto::GetInstanceResponse;
    raise_event(proto::RaiseEventRequest) -> proto::RaiseEventResponse;
    terminate_instance(proto::TerminateRequest) -> proto::TerminateResponse;
    suspend_instance(proto::SuspendRequest) -> proto::SuspendResponse;
    resume_instance(proto::ResumeRequest) -> proto::ResumeResponse;
    query_instances(proto::QueryInstancesRequest) -> proto::QueryInstancesResponse;
    list_instance_ids(proto::ListInstanceIdsRequest) -> proto::ListInstanceIdsResponse;
    purge_instances(proto::PurgeInstancesRequest) -> proto::PurgeInstancesResponse;
    complete_activity_task(proto::ActivityResponse) -> proto::CompleteTaskResponse;
    complete_orchestrator_task(proto::OrchestratorResponse) -> proto::CompleteTaskResponse;
    complete_entity_task(proto::EntityBatchResult) -> proto::CompleteTaskResponse;
    create_task_hub(proto::CreateTaskHubRequest) -> proto::CreateTaskHubResponse;
    delete_task_hub(proto::DeleteTaskHubRequest) -> proto::DeleteTaskHubResponse;
    signal_entity(proto::SignalEntityRequest) -> proto::SignalEntityResponse;
    get_entity(proto::GetEntityRequest) -> proto::GetEntityResponse;
    query_entities(proto::QueryEntitiesRequest) -> proto::QueryEntitiesResponse;
    clean_entity_storage(proto::CleanEntityStorageRequest) -> proto::CleanEntityStorageResponse;
    abandon_task_activity_work_item(proto::AbandonActivityTaskRequest)
        -> proto::AbandonActivityTaskResponse;
    abandon_task_orchestrator_work_item(proto::AbandonOrchestrationTaskRequest)
        -> proto::AbandonOrchestrationTaskResponse;
    abandon_task_entity_work_item(proto::AbandonEntityTaskRequest)
        -> proto::AbandonEntityTaskResponse;
    skip_graceful_orchestration_terminations(proto::SkipGracefulOrchestrationTerminationsRequest)
        -> proto::SkipGracefulOrchestrationTerminationsResponse;
}
