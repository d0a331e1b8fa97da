//! Our entities, orchestrations and client against an independent sidecar: the official
//! Python SDK's in-memory backend (`durabletask.testing`).

mod worker_support;

use durable::client::{EntityQuery, RuntimeStatus};
use durable::{Entity, EntityId, OrchestrationContext, Registry};
use worker_support::*;

/// An account whose withdrawals fail when the balance is too low.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    balance: i64,
}

#[durable::entity]
impl Account {
    /// Adds money.
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    /// Takes money, refusing to go below zero.
    pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> {
        if amount > self.balance {
            return Err(format!("balance {} is below {amount}", self.balance));
        }
        self.balance -= amount;
        Ok(self.balance)
    }

    /// The balance.
    pub fn balance(&self) -> i64 {
        self.balance
    }
}

/// Moves money inside a critical section; reports a refused withdrawal instead of failing.
#[durable::orchestrator]
async fn transfer(ctx: OrchestrationContext, amount: i64) -> durable::Result<String> {
    let (from, to) = (Account::id("from")?, Account::id("to")?);
    let _lock = ctx.lock_entities(&[from.clone(), to.clone()]).await?;
    match ctx.call_entity(&from, Account::withdraw, amount).await {
        Ok(left) => {
            ctx.call_entity(&to, Account::deposit, amount).await?;
            Ok(format!("moved {amount}, {left} left"))
        }
        Err(e) => Ok(format!("refused: {}", e.details().message)),
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .add_entity::<Account>()
        .and_then(|r| r.add_orchestrator::<transfer>())
        .expect("distinct names");
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_entities_run_on_the_python_backend() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let worker = start_worker(&sidecar, registry()).await;
    let client = sidecar.client().await;
    let from = Account::id("from").unwrap();
    client
        .signal_entity(&from, Account::deposit, 100)
        .await
        .unwrap();

    let id = client
        .schedule_new_orchestration(transfer, 60)
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    assert_eq!(state.output::<String>().unwrap(), "moved 60, 40 left");

    let id = client
        .schedule_new_orchestration(transfer, 60)
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(
        state.output::<String>().unwrap(),
        "refused: balance 40 is below 60",
        "the failed operation kept the state"
    );

    let to = client
        .get_entity::<Account>(&Account::id("to").unwrap())
        .await
        .unwrap()
        .expect("the target account exists");
    assert_eq!(to.state.balance, 60);
    let page = client
        .query_entities(&EntityQuery::new().name("account").include_state(true))
        .await
        .unwrap();
    let balances: Vec<(String, i64)> = page
        .items
        .iter()
        .map(|e| (e.id.key().to_owned(), e.state::<Account>().unwrap().balance))
        .collect();
    assert_eq!(balances, [("from".to_owned(), 40), ("to".to_owned(), 60)]);
    assert!(
        client
            .get_entity::<Account>(&EntityId::new("account", "nobody").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    worker.shutdown().await;
    sidecar.stop().await;
}
