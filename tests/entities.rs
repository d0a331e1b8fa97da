//! Entities end to end on the embedded sidecar: struct and function entities, signals and calls
//! from orchestrations and clients, critical sections, failures, delayed signals, entities that
//! start orchestrations, queries and cleanup.

use std::time::Duration;

use durable::client::{EntityQuery, RuntimeStatus};
use durable::prelude::*;
use durable::{DurableClient, Registry, RuntimeHandle};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Default, Serialize, Deserialize)]
pub struct Counter {
    value: i64,
}

#[durable::entity]
impl Counter {
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }

    pub fn get(&self) -> i64 {
        self.value
    }

    pub fn reset(&mut self) {
        self.value = 0;
    }

    /// Fails after changing the state: the change must not be kept.
    pub fn add_then_fail(&mut self, amount: i64) -> Result<(), String> {
        self.value += amount;
        Err(format!("refusing {amount}"))
    }

    #[operation(name = "Double")]
    pub async fn double(&mut self, ctx: &EntityContext) -> durable::Result<i64> {
        self.value *= 2;
        if self.value > 1000 {
            let id = ctx.entity_id().clone();
            ctx.start_orchestration(celebrate, id.key().to_owned())?;
        }
        Ok(self.value)
    }
}

#[derive(Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
}

#[durable::entity]
impl Account {
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    pub fn withdraw(&mut self, amount: i64) -> Result<i64, String> {
        if amount > self.balance {
            return Err(format!("balance {} is below {amount}", self.balance));
        }
        self.balance -= amount;
        Ok(self.balance)
    }

    pub fn balance(&self) -> i64 {
        self.balance
    }
}

/// A function entity keeping a list of notes; it can signal itself later.
#[durable::entity(name = "Notes")]
async fn notes(ctx: EntityContext, op: Operation) -> durable::Result<Option<Vec<String>>> {
    let mut all: Vec<String> = ctx.get_state()?.unwrap_or_default();
    if op.is("add") {
        all.push(op.input()?);
        ctx.set_state(&all)?;
    } else if op.is("add_later") {
        let (text, millis): (String, u64) = op.input()?;
        let at = chrono::Utc::now() + chrono::Duration::milliseconds(millis as i64);
        ctx.signal_entity_by_name_at(ctx.entity_id(), "add", &text, at)?;
    } else if op.is("get") {
        return Ok(Some(all));
    } else if op.is("clear") {
        ctx.delete_state();
    } else {
        return Err(op.unknown("notes"));
    }
    Ok(None)
}

#[durable::activity]
async fn note_celebration(key: String) -> String {
    format!("celebrated {key}")
}

#[durable::orchestrator]
async fn celebrate(ctx: OrchestrationContext, key: String) -> durable::Result<String> {
    Ok(ctx.call_activity(note_celebration, key).await?)
}

/// Signals and calls from an orchestration.
#[durable::orchestrator]
async fn count_to(ctx: OrchestrationContext, key: String) -> durable::Result<(i64, String)> {
    let id = Counter::id(key)?;
    for n in 1..=3 {
        ctx.signal_entity(&id, Counter::add, n);
    }
    let total = ctx.call_entity(&id, Counter::get, ()).await?;
    let failure = match ctx.call_entity(&id, Counter::add_then_fail, 100).await {
        Ok(()) => "no failure".to_owned(),
        Err(e) => e.details().message,
    };
    let after = ctx.call_entity(&id, Counter::get, ()).await?;
    assert_eq!(after, total, "a failed operation keeps the state unchanged");
    Ok((total, failure))
}

/// Moves money between two accounts inside a critical section.
#[durable::orchestrator]
async fn transfer(
    ctx: OrchestrationContext,
    (from, to, amount): (String, String, i64),
) -> durable::Result<bool> {
    let from = Account::id(from)?;
    let to = Account::id(to)?;
    let _lock = ctx.lock_entities(&[from.clone(), to.clone()]).await?;
    let balance = ctx.call_entity(&from, Account::balance, ()).await?;
    if balance < amount {
        return Ok(false);
    }
    ctx.call_entity(&from, Account::withdraw, amount).await?;
    ctx.call_entity(&to, Account::deposit, amount).await?;
    Ok(true)
}

/// Breaks the rules of critical sections, one way per input.
#[durable::orchestrator]
async fn misuse(ctx: OrchestrationContext, how: String) -> durable::Result<String> {
    let a = Account::id("m-a")?;
    let b = Account::id("m-b")?;
    let _lock = ctx.lock_entities(std::slice::from_ref(&a)).await?;
    let result = match how.as_str() {
        "unlocked" => ctx.call_entity(&b, Account::balance, ()).await.map(|_| ()),
        "nested" => ctx
            .lock_entities(std::slice::from_ref(&b))
            .await
            .map(|_| ()),
        _ => {
            ctx.signal_entity(&a, Account::deposit, 1);
            Ok(())
        }
    };
    Ok(match result {
        Ok(()) => "allowed".into(),
        Err(e) => format!("{}: {}", e.details().error_type, e.details().message),
    })
}

/// Holds a lock and then fails: the lock must be released.
#[durable::orchestrator]
async fn lock_and_fail(ctx: OrchestrationContext, key: String) -> durable::Result<()> {
    let id = Account::id(key)?;
    let _lock = ctx.lock_entities(&[id]).await?;
    Err(durable::Error::msg("failing while holding a lock"))
}

async fn runtime() -> (RuntimeHandle, DurableClient) {
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .in_memory()
        .registry(Registry::from_inventory().expect("no duplicate names"))
        .start()
        .await
        .expect("the embedded runtime starts");
    let client = runtime.client();
    (runtime, client)
}

async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn orchestrations_signal_and_call_struct_entities() {
    let (runtime, client) = runtime().await;
    let id = client
        .schedule_new_orchestration(count_to, "c1".to_string())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(
        state.runtime_status,
        RuntimeStatus::Completed,
        "{:?}",
        state.failure_details
    );
    let (total, failure): (i64, String) = state.output().unwrap();
    assert_eq!(total, 6);
    assert!(failure.contains("refusing 100"), "{failure}");
    let counter = client
        .get_entity::<Counter>(&Counter::id("c1").unwrap())
        .await
        .unwrap()
        .expect("the counter has state");
    assert_eq!(counter.state.value, 6);
    assert!(counter.locked_by.is_none());
    runtime.shutdown().await;
}

#[tokio::test]
async fn clients_signal_read_query_and_clean() {
    let (runtime, client) = runtime().await;
    let id = Counter::id("from-client").unwrap();
    for n in 0..10 {
        client.signal_entity(&id, Counter::add, n).await.unwrap();
    }
    let value = eventually("the ten signals", || async {
        let state = client.get_entity::<Counter>(&id).await.unwrap()?;
        (state.state.value == 45).then_some(state.state.value)
    })
    .await;
    assert_eq!(value, 45);
    // Operation names are case-insensitive; `Double` is the overridden name.
    client
        .signal_entity_by_name(&id, "DOUBLE", &())
        .await
        .unwrap();
    eventually("the doubling", || async {
        let state = client.get_entity::<Counter>(&id).await.unwrap()?;
        (state.state.value == 90).then_some(())
    })
    .await;

    let other = Counter::id("other").unwrap();
    client.signal_entity(&other, Counter::add, 1).await.unwrap();
    eventually("the second counter", || async {
        client
            .get_entity::<Counter>(&other)
            .await
            .unwrap()
            .map(|_| ())
    })
    .await;
    let page = client
        .query_entities(
            &EntityQuery::new()
                .name("Counter")
                .include_state(true)
                .page_size(1),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id.as_str(), "@counter@from-client");
    assert_eq!(page.items[0].state::<Counter>().unwrap().value, 90);
    let token = page.continuation_token.expect("a second page");
    let next = client
        .query_entities(&EntityQuery::new().name("counter").continuation_token(token))
        .await
        .unwrap();
    assert_eq!(next.items.len(), 1);
    assert_eq!(next.items[0].id, other);
    assert!(
        next.items[0].serialized_state.is_none(),
        "state only when asked for"
    );
    assert!(next.continuation_token.is_none());

    // Deleting the state removes the entity.
    client
        .signal_entity_by_name(&other, "delete", &())
        .await
        .unwrap();
    eventually("the deletion", || async {
        client
            .get_entity::<Counter>(&other)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let cleaned = client.clean_entity_storage(true, true).await.unwrap();
    assert_eq!(cleaned.orphaned_locks_released, 0);
    runtime.shutdown().await;
}

#[tokio::test]
async fn function_entities_keep_state_and_signal_themselves_later() {
    let (runtime, client) = runtime().await;
    let id = EntityId::new("notes", "n1").unwrap();
    client
        .signal_entity_by_name(&id, "add", &"first")
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    client
        .signal_entity_by_name(&id, "add_later", &("later", 300u64))
        .await
        .unwrap();
    let written = eventually("the delayed note", || async {
        let state = client.get_entity::<Vec<String>>(&id).await.unwrap()?;
        (state.state.len() == 2).then_some(state.state)
    })
    .await;
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "delivered no earlier than asked"
    );
    assert_eq!(written, ["first", "later"]);
    // A delayed signal from the client.
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(200);
    client
        .signal_entity_by_name_at(&id, "clear", &(), at)
        .await
        .unwrap();
    assert!(
        client
            .get_entity::<Vec<String>>(&id)
            .await
            .unwrap()
            .is_some()
    );
    eventually("the delayed clear", || async {
        client
            .get_entity::<Vec<String>>(&id)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    runtime.shutdown().await;
}

#[tokio::test]
async fn concurrent_transfers_never_lose_money() {
    let (runtime, client) = runtime().await;
    let names = ["alice", "bob", "carol"];
    for name in names {
        client
            .signal_entity(&Account::id(name).unwrap(), Account::deposit, 100)
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    for i in 0..12 {
        let from = names[i % 3].to_string();
        let to = names[(i + 1) % 3].to_string();
        ids.push(
            client
                .schedule_new_orchestration(transfer, (from, to, 30 + i as i64))
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        let state = client
            .wait_for_orchestration_completion(id, WAIT)
            .await
            .unwrap();
        assert_eq!(
            state.runtime_status,
            RuntimeStatus::Completed,
            "{:?}",
            state.failure_details
        );
    }
    let mut total = 0;
    for name in names {
        let account = client
            .get_entity::<Account>(&Account::id(name).unwrap())
            .await
            .unwrap()
            .expect("the account exists");
        assert!(account.state.balance >= 0);
        assert!(account.locked_by.is_none(), "every lock was released");
        total += account.state.balance;
    }
    assert_eq!(total, 300);
    runtime.shutdown().await;
}

#[tokio::test]
async fn critical_section_misuse_is_a_clear_error_and_failures_release_locks() {
    let (runtime, client) = runtime().await;
    for (how, expected) in [
        ("unlocked", "is not locked by this critical section"),
        ("nested", "critical sections do not nest"),
    ] {
        let id = client
            .schedule_new_orchestration(misuse, how.to_string())
            .await
            .unwrap();
        let state = client
            .wait_for_orchestration_completion(&id, WAIT)
            .await
            .unwrap();
        let output: String = state.output().unwrap();
        assert!(output.starts_with("durable::EntityLockMisuse"), "{output}");
        assert!(output.contains(expected), "{output}");
    }
    let id = client
        .schedule_new_orchestration(misuse, "signal".to_string())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Failed);
    let failure = state.failure_details.unwrap();
    assert!(
        failure.message.contains("must not be signalled"),
        "{failure:?}"
    );

    let id = client
        .schedule_new_orchestration(lock_and_fail, "held".to_string())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Failed);
    // The lock died with the orchestration: another critical section gets it.
    let again = client
        .schedule_new_orchestration(transfer, ("held".to_string(), "m-b".to_string(), 1))
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&again, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed);
    assert!(
        !state.output::<bool>().unwrap(),
        "nothing to transfer from an empty account"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn entities_start_orchestrations() {
    let (runtime, client) = runtime().await;
    let id = Counter::id("big").unwrap();
    client.signal_entity(&id, Counter::add, 600).await.unwrap();
    client
        .signal_entity(&id, Counter::double, ())
        .await
        .unwrap();
    let started = eventually("the celebration", || async {
        let page = client
            .query_orchestrations(&durable::client::OrchestrationQuery::new())
            .await
            .unwrap();
        page.items
            .into_iter()
            .find(|s| s.name == "celebrate" && s.runtime_status == RuntimeStatus::Completed)
    })
    .await;
    let output: String = client
        .get_orchestration_state(&started.instance_id)
        .await
        .unwrap()
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(output, "celebrated big");
    runtime.shutdown().await;
}

#[test]
fn struct_entity_methods_stay_callable() {
    let mut counter = Counter::default();
    counter.add(4);
    counter.reset();
    counter.add(2);
    assert_eq!(counter.get(), 2);
    assert_eq!(Counter::add.name(), "add");
    assert_eq!(Counter::double.name(), "double");
    assert_eq!(<Counter as durable::Entity>::NAME, "counter");
    assert_eq!(<notes as durable::Entity>::NAME, "notes");
}
