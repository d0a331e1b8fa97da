//! Accepted orchestrator forms, typed handles, imports that stay allowed, and the escape hatch.
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use durable::{OrchestrationContext, Orchestrator, Result, allow_nondeterminism};

#[durable::activity]
async fn hello(city: String) -> String {
    format!("Hello {city}!")
}

#[durable::activity]
async fn step(n: u32) -> u32 {
    n + 1
}

#[durable::orchestrator]
async fn child(_ctx: OrchestrationContext, n: u32) -> Result<u32> {
    Ok(n * 2)
}

#[durable::orchestrator]
async fn no_input(ctx: OrchestrationContext) -> durable::Result<()> {
    ctx.create_timer(Duration::from_secs(1)).await?;
    Ok(())
}

mod helpers {
    // Our own functions named like forbidden ones are fine when written with our prefix.
    pub(crate) fn sleep() {}
}

/// A parent orchestration.
#[durable::orchestrator(name = "Parent")]
pub async fn parent(
    ctx: OrchestrationContext,
    counts: HashMap<String, u32>,
) -> std::result::Result<BTreeMap<String, u32>, durable::Error> {
    // A `HashMap` input is fine; iterate it in a stable order.
    let mut sorted: BTreeMap<String, u32> = counts.into_iter().collect();
    let greeting = ctx.call_activity(hello, "Tokyo").await?;
    // Integer literals take the input's type.
    let doubled = ctx.call_sub_orchestrator(child, 21).await?;
    let steps: Vec<_> = (0..3).map(|i| ctx.call_activity(step, i)).collect();
    let _stepped: Vec<u32> = durable::when_all(steps).await?;
    let city = String::from("Kyoto");
    let _by_reference = ctx.call_activity(hello, &city).await?;
    ctx.create_timer(Duration::from_secs(5)).await?;
    let approved: bool = ctx.wait_for_external_event("approval").await?;
    let _now = ctx.current_utc_datetime();
    let _id = ctx.new_guid();
    helpers::sleep();
    sorted.insert(greeting, doubled + u32::from(approved));

    // Reviewed exceptions.
    #[durable::allow_nondeterminism]
    let started = std::time::Instant::now();
    #[allow_nondeterminism]
    {
        let _home = std::env::var("HOME");
    }
    #[allow_nondeterminism]
    println!("{:?}", started.elapsed());
    let _wall = #[allow_nondeterminism]
    std::time::SystemTime::now();
    match doubled {
        #[allow_nondeterminism]
        0 => std::thread::sleep(Duration::from_millis(1)),
        _ => {}
    }
    Ok(sorted)
}

fn types<O: Orchestrator<Input = I, Output = T>, I, T>(_: O) {}

fn main() {
    types::<_, u32, u32>(child);
    types::<_, (), ()>(no_input);
    types::<_, HashMap<String, u32>, BTreeMap<String, u32>>(parent);
    assert_eq!(parent::NAME, "Parent");
    let registry = durable::Registry::from_inventory().unwrap();
    let names: Vec<&str> = registry.orchestrator_names().collect();
    assert_eq!(names, ["Parent", "child", "no_input"]);
}
