//! The standard gRPC health service (`grpc.health.v1.Health`) on the sidecar's port, for load
//! balancers and orchestrators (a Kubernetes `grpc` probe, `grpc_health_probe`). It answers
//! without the bearer token (it tells nothing but serving or not) for the whole server (`""`)
//! and for `TaskHubSidecarService`: `SERVING` while the sidecar can serve calls, `NOT_SERVING`
//! once its storage failed or, for a replica, while it cannot reach PostgreSQL.

use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::Core;
use crate::proto::task_hub_sidecar_service_server::SERVICE_NAME;

/// How often the status is looked at again.
const POLL: Duration = Duration::from_millis(500);

/// Keeps `reporter` up to date with `core`'s readiness; runs until dropped.
pub(crate) async fn report(reporter: HealthReporter, core: Core) {
    let mut last = None;
    loop {
        let problem = core.unready();
        if last.as_ref() != Some(&problem) {
            let status = match &problem {
                None => ServingStatus::Serving,
                Some(why) => {
                    tracing::warn!(reason = %why, "health: not serving");
                    ServingStatus::NotServing
                }
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(SERVICE_NAME, status).await;
            last = Some(problem);
        }
        tokio::time::sleep(POLL).await;
    }
}
