//! Retry policies: waits on durable timers, backoff, caps, attempts, timeouts, exhaustion.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use durable::{OrchestrationContext, RetryPolicy, SubOrchestratorOptions};

fn flaky(policy: RetryPolicy) -> durable::Registry {
    registry("flaky", move |ctx: OrchestrationContext, _: ()| {
        let policy = policy.clone();
        async move {
            let r: Result<String, _> = ctx
                .call_activity_by_name_with_retry("charge", 7, policy)
                .await;
            match r {
                Ok(v) => Ok(v),
                Err(durable::TaskError::RetriesExhausted {
                    attempts, details, ..
                }) => Ok(format!("gave up after {attempts}: {}", details.message)),
                Err(e) => Ok(format!("other: {e}")),
            }
        }
    })
}

/// Drives the orchestration by failing each attempt; returns the delays between attempts
/// (seconds) and the final output.
fn fail_every_attempt(policy: RetryPolicy, max_steps: usize) -> (Vec<i64>, String) {
    let mut sim = Sim::new(flaky(policy));
    let mut r = sim.start("flaky", "null");
    let mut delays = Vec::new();
    for _ in 0..max_steps {
        let (id, kind, _) = summary(&r)[0].clone();
        match kind {
            "activity" => {
                assert_eq!(activity_inputs(&r), ["7"]);
                r = sim.episode(vec![task_failed(
                    id,
                    "Declined",
                    &format!("attempt at id {id}"),
                )]);
            }
            "timer" => {
                delays.push((sim.timer_fire_at(id) - sim.now).num_seconds());
                r = sim.fire_timer(id);
            }
            "complete" => return (delays, output(&r)),
            other => panic!("{other}"),
        }
    }
    panic!("did not finish")
}

#[test]
fn retry_delays_follow_first_interval_backoff_and_cap_table() {
    let cases = [
        (RetryPolicy::new(4, Duration::from_secs(5)), vec![5, 5, 5]),
        (
            RetryPolicy::new(4, Duration::from_secs(2)).backoff_coefficient(2.0),
            vec![2, 4, 8],
        ),
        (
            RetryPolicy::new(5, Duration::from_secs(2))
                .backoff_coefficient(3.0)
                .max_retry_interval(Duration::from_secs(10)),
            vec![2, 6, 10, 10],
        ),
    ];
    for (policy, expected) in cases {
        let (delays, out) = fail_every_attempt(policy.clone(), 50);
        assert_eq!(delays, expected, "{policy:?}");
        let attempts = expected.len() + 1;
        assert!(
            out.starts_with(&format!("\"gave up after {attempts}:")),
            "{out}"
        );
    }
}

#[test]
fn exhausted_retries_report_the_last_failure() {
    let (_, out) = fail_every_attempt(RetryPolicy::new(3, Duration::from_secs(1)), 20);
    // Attempts at ids 0, 2, 4 (timers at 1, 3).
    assert_eq!(out, "\"gave up after 3: attempt at id 4\"");
}

#[test]
fn retry_timeout_stops_before_max_attempts() {
    let policy =
        RetryPolicy::new(100, Duration::from_secs(10)).retry_timeout(Duration::from_secs(25));
    let (delays, out) = fail_every_attempt(policy, 50);
    // Start t0; failures arrive one second after each attempt, so the third retry would
    // start more than 25 s after the first attempt.
    assert_eq!(delays, vec![10, 10]);
    assert!(out.starts_with("\"gave up after 3:"), "{out}");
}

#[test]
fn success_after_a_retry_returns_the_value() {
    let mut sim = Sim::new(flaky(RetryPolicy::new(3, Duration::from_secs(30))));
    let r = sim.start("flaky", "null");
    assert_eq!(summary(&r), [(0, "activity", "charge".to_owned())]);
    let r = sim.episode(vec![task_failed(0, "Transient", "try again")]);
    assert_eq!(summary(&r)[0].1, "timer");
    assert_eq!(summary(&r)[0].0, 1);
    let r = sim.fire_timer(1);
    assert_eq!(summary(&r), [(2, "activity", "charge".to_owned())]);
    let r = sim.episode(vec![task_completed(2, "\"charged\"")]);
    assert_eq!(output(&r), "\"charged\"");
}

#[test]
fn non_retriable_failures_are_not_retried() {
    let mut sim = Sim::new(flaky(RetryPolicy::new(5, Duration::from_secs(1))));
    sim.start("flaky", "null");
    let mut failed = task_failed(0, "Fatal", "never");
    if let durable::proto::history_event::EventType::TaskFailed(f) = &mut failed {
        f.failure_details.as_mut().unwrap().is_non_retriable = true;
    }
    let r = sim.episode(vec![failed]);
    assert_eq!(output(&r), "\"gave up after 1: never\"");
}

#[test]
fn retried_call_keeps_its_id_in_call_order() {
    // The first attempt is scheduled when the call is made, before later calls.
    let registry = registry("order", |ctx: OrchestrationContext, _: ()| async move {
        let a = ctx.call_activity_by_name_with_retry::<_, u8>(
            "a",
            (),
            RetryPolicy::new(2, Duration::from_secs(1)),
        );
        let b = ctx.call_activity_by_name::<_, u8>("b", ());
        Ok(a.await? + b.await?)
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("order", "null");
    assert_eq!(
        summary(&r),
        [
            (0, "activity", "a".to_owned()),
            (1, "activity", "b".to_owned())
        ]
    );
    let r = sim.episode(vec![task_completed(1, "2"), task_completed(0, "1")]);
    assert_eq!(output(&r), "3");
}

#[test]
fn invalid_policy_fails_the_task_without_scheduling() {
    let mut sim = Sim::new(flaky(RetryPolicy::new(0, Duration::from_secs(1))));
    let r = sim.start("flaky", "null");
    assert_eq!(summary(&r), [(0, "complete", "Completed".to_owned())]);
    assert!(output(&r).contains("other: "), "{}", output(&r));
}

#[test]
fn sub_orchestration_retries_use_fresh_instance_ids() {
    let registry = registry("p", |ctx: OrchestrationContext, _: ()| async move {
        let v: u32 = ctx
            .call_sub_orchestrator_by_name(
                "child",
                1,
                SubOrchestratorOptions::new()
                    .instance_id("kid")
                    .retry(RetryPolicy::new(2, Duration::from_secs(5))),
            )
            .await?;
        Ok(v)
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("p", "null");
    assert_eq!(summary(&r), [(0, "sub", "child@kid".to_owned())]);
    let r = sim.episode(vec![sub_failed(0, "E", "x")]);
    assert_eq!(summary(&r)[0].1, "timer");
    let r = sim.fire_timer(1);
    assert_eq!(summary(&r), [(2, "sub", "child@kid:retry2".to_owned())]);
    let r = sim.episode(vec![sub_completed(2, "5")]);
    assert_eq!(output(&r), "5");
}

#[test]
fn retry_fan_out_completes() {
    let registry = registry("many", |ctx: OrchestrationContext, n: u32| async move {
        let tasks: Vec<durable::Task<u32>> = (0..n)
            .map(|i| {
                ctx.call_activity_by_name_with_retry(
                    "w",
                    i,
                    RetryPolicy::new(3, Duration::from_secs(1)),
                )
            })
            .collect();
        Ok(durable::when_all(tasks).await?.iter().sum::<u32>())
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("many", "50");
    assert_eq!(r.actions.len(), 50);
    let events = (0..50).map(|i| task_completed(i, &i.to_string())).collect();
    let r = sim.episode(events);
    assert_eq!(output(&r), (0..50).sum::<u32>().to_string());
}
