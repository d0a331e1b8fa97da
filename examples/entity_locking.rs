//! Entity locking: transfers between two account entities inside `lock_entities`, run
//! concurrently; no money is ever lost or created.
//!
//! Run it with `cargo run --example entity_locking`.

use std::time::Duration;

use durable::prelude::*;
use serde::{Deserialize, Serialize};

/// A bank account.
#[derive(Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
}

#[durable::entity]
impl Account {
    /// Adds money.
    pub fn deposit(&mut self, amount: i64) {
        self.balance += amount;
    }

    /// Takes money; refuses to go below zero.
    pub fn withdraw(&mut self, amount: i64) -> Result<(), String> {
        if amount > self.balance {
            return Err(format!("insufficient funds: {} < {amount}", self.balance));
        }
        self.balance -= amount;
        Ok(())
    }

    /// The balance.
    pub fn get_balance(&self) -> i64 {
        self.balance
    }
}

/// A transfer request.
#[derive(Debug, Serialize, Deserialize)]
pub struct Transfer {
    from: String,
    to: String,
    amount: i64,
}

/// Checks the balance and moves money while both accounts are locked: no other
/// orchestration's operation can run on them in between.
#[durable::orchestrator]
async fn transfer(ctx: OrchestrationContext, t: Transfer) -> durable::Result<String> {
    let from = Account::id(t.from.clone())?;
    let to = Account::id(t.to.clone())?;
    let lock = ctx.lock_entities(&[from.clone(), to.clone()]).await?;
    let balance = ctx.call_entity(&from, Account::get_balance, ()).await?;
    if balance < t.amount {
        return Ok(format!("skipped {} -> {}: balance {balance}", t.from, t.to));
    }
    ctx.call_entity(&from, Account::withdraw, t.amount).await?;
    ctx.call_entity(&to, Account::deposit, t.amount).await?;
    drop(lock); // also released when the orchestration ends
    Ok(format!("moved {} from {} to {}", t.amount, t.from, t.to))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();
    let run = std::process::id();
    let (a, b) = (format!("account-1-{run}"), format!("account-2-{run}"));
    for account in [&a, &b] {
        client
            .signal_entity(&Account::id(account.clone())?, Account::deposit, 500)
            .await?;
    }

    // Twenty transfers in both directions at once.
    let mut ids = Vec::new();
    for i in 0..20i64 {
        let (from, to) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let t = Transfer {
            from: from.clone(),
            to: to.clone(),
            amount: 50 + 10 * i,
        };
        ids.push(client.schedule_new_orchestration(transfer, t).await?);
    }
    let mut moved = 0;
    for id in &ids {
        let state = client
            .wait_for_orchestration_completion(id, Duration::from_secs(60))
            .await?;
        let outcome: String = state.output()?;
        if outcome.starts_with("moved") {
            moved += 1;
        }
    }
    let mut total = 0;
    for account in [&a, &b] {
        let id = Account::id(account.clone())?;
        let balance = client
            .get_entity::<Account>(&id)
            .await?
            .map_or(0, |s| s.state.balance);
        println!("{id}: {balance}");
        total += balance;
    }
    println!(
        "{moved} of {} transfers moved money; total is still {total}",
        ids.len()
    );
    anyhow::ensure!(total == 1000, "money was lost or created: {total}");

    runtime.shutdown().await;
    Ok(())
}
