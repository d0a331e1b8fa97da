//! Human interaction with a durable timeout: a purchase order over 1000 needs a manager's
//! approval, which must arrive within a deadline or the order is canceled.
//!
//! ```text
//! cargo run --example human_interaction -- --timeout 20 --approver RUST-CI
//! ```
//!
//! The program asks on stdin: press Enter to approve. Without an answer before the timeout
//! the orchestration cancels the order. State is durable: kill the program while it waits,
//! rerun it with the same `--instance-id`, and the orchestration continues where it was.

use std::time::Duration;

use clap::Parser;
use durable::prelude::*;
use serde::{Deserialize, Serialize};

/// A purchase order (a custom business object: any serde type works).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    cost: f64,
    product: String,
    quantity: u32,
}

/// The approval event's payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Approval {
    approver: String,
}

/// Input of the orchestration: the order and how long to wait for approval.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Request {
    order: Order,
    timeout_seconds: u64,
}

/// Notifies an approver (here: prints the request).
#[durable::activity]
async fn send_approval_request(_ctx: ActivityContext, order: Order) {
    println!(
        "*** Sending approval request for order: {} x {} (${:.2})",
        order.quantity, order.product, order.cost
    );
}

/// Places the approved order.
#[durable::activity]
async fn place_order(_ctx: ActivityContext, order: Order) -> String {
    println!("*** Placing order: {} x {}", order.quantity, order.product);
    format!("Order placed: {}x {}", order.quantity, order.product)
}

/// Orders under 1000 are auto-approved; others wait for `approval_received` or time out.
#[durable::orchestrator]
async fn purchase_order_workflow(
    ctx: OrchestrationContext,
    request: Request,
) -> durable::Result<String> {
    let order = request.order;
    if order.cost < 1000.0 {
        return Ok("Auto-approved".to_owned());
    }

    ctx.call_activity(send_approval_request, order.clone())
        .await?;

    let approval: Task<Approval> = ctx.wait_for_external_event("approval_received");
    let timeout = ctx.create_timer(Duration::from_secs(request.timeout_seconds));
    let winner = durable::when_any([approval.handle(), timeout.handle()]).await;
    if winner == 1 {
        return Ok("Canceled: no approval before the timeout".to_owned());
    }

    ctx.call_activity(place_order, order).await?;
    let approval = approval.await?;
    Ok(format!("Approved by '{}'", approval.approver))
}

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "Purchase order approval with a durable timeout")]
struct Args {
    /// Seconds to wait for the approval before canceling.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Who approves the order.
    #[arg(long, default_value = "Me")]
    approver: String,
    /// Order cost; 1000 or more needs approval.
    #[arg(long, default_value_t = 2000.0)]
    cost: f64,
    /// Instance id; rerun with the same id to continue an orchestration after a restart.
    #[arg(long)]
    instance_id: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = durable::run().await?;
    let client = runtime.client();

    let request = Request {
        order: Order {
            cost: args.cost,
            product: "MyProduct".to_owned(),
            quantity: 1,
        },
        timeout_seconds: args.timeout,
    };
    let id = args
        .instance_id
        .clone()
        .unwrap_or_else(|| format!("purchase-order-{}", uuid_like()));
    match client.get_orchestration_state(&id).await? {
        Some(state) if !state.runtime_status.is_terminal() => {
            println!("Orchestration {id} is already running; continuing from its durable state");
        }
        Some(state) => {
            println!(
                "Orchestration {id} already finished: {}",
                state.serialized_output.as_deref().unwrap_or("null")
            );
            runtime.shutdown().await;
            return Ok(());
        }
        None => {
            let options = durable::client::ScheduleOptions::new().instance_id(id.clone());
            client
                .schedule_new_orchestration_with(purchase_order_workflow, request, options)
                .await?;
            println!("Orchestration scheduled with ID: {id}");
        }
    }

    // A newline on stdin approves the order; end of input without a newline does not.
    let approver = args.approver.clone();
    let approve_client = client.clone();
    let approve_id = id.clone();
    // A plain thread, not `spawn_blocking`: the program must be able to exit while it waits.
    let (line_tx, line_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let answered = std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0);
        let _ = line_tx.send(answered);
    });
    println!("Press [ENTER] to approve the order...");
    tokio::spawn(async move {
        if line_rx.await == Ok(true) {
            let approval = Approval { approver };
            if let Err(e) = approve_client
                .raise_orchestration_event(&approve_id, "approval_received", &approval)
                .await
            {
                eprintln!("could not send the approval: {e}");
            }
        }
    });

    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(args.timeout + 60))
        .await?;
    let outcome: String = state.output()?;
    println!("Orchestration completed! Result: {outcome}");

    runtime.shutdown().await;
    Ok(())
}

/// A short unique suffix for instance ids.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos, std::process::id())
}
