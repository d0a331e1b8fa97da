//! Aggregator (entity): many independent signals, from the client and from orchestrations,
//! folded into one entity's state, then read back.
//!
//! Run it with `cargo run --example aggregator`.

use std::collections::BTreeMap;
use std::time::Duration;

use durable::prelude::*;
use serde::{Deserialize, Serialize};

/// One reading of a sensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reading {
    sensor: String,
    value: f64,
}

/// Running totals per sensor.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    count: u64,
    sum: f64,
    by_sensor: BTreeMap<String, f64>,
}

#[durable::entity]
impl Stats {
    /// Folds one reading in.
    pub fn record(&mut self, reading: Reading) {
        self.count += 1;
        self.sum += reading.value;
        *self.by_sensor.entry(reading.sensor).or_default() += reading.value;
    }

    /// The totals so far.
    pub fn summary(&self) -> String {
        format!(
            "{} readings, sum {:.1}, per sensor {:?}",
            self.count, self.sum, self.by_sensor
        )
    }
}

/// An orchestration that reports its readings to the aggregator with signals.
#[durable::orchestrator]
async fn report(
    ctx: OrchestrationContext,
    (key, sensor, n): (String, String, u32),
) -> durable::Result<()> {
    let stats = Stats::id(key)?;
    for i in 0..n {
        let reading = Reading {
            sensor: sensor.clone(),
            value: f64::from(i),
        };
        ctx.signal_entity(&stats, Stats::record, reading);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();
    let key = format!("day-{}", std::process::id());
    let stats = Stats::id(key.clone())?;

    // 100 signals from the client and 2 x 50 from orchestrations, all to one entity.
    for i in 0..100 {
        let reading = Reading {
            sensor: "thermometer".into(),
            value: 1.0 + f64::from(i % 3),
        };
        client.signal_entity(&stats, Stats::record, reading).await?;
    }
    for sensor in ["north", "south"] {
        let id = client
            .schedule_new_orchestration(report, (key.clone(), sensor.to_string(), 50))
            .await?;
        client
            .wait_for_orchestration_completion(&id, Duration::from_secs(30))
            .await?;
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let summary = loop {
        let current = client.get_entity::<Stats>(&stats).await?;
        if let Some(current) = current.filter(|s| s.state.count == 200) {
            break current.state;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "signals still pending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "Aggregated {} readings: sum {:.1}",
        summary.count, summary.sum
    );
    println!("Per sensor: {:?}", summary.by_sensor);

    runtime.shutdown().await;
    Ok(())
}
