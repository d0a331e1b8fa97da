//! Replay of durable timers: relative and absolute, fired and pending.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::TimeZone;
use common::*;
use durable::OrchestrationContext;

#[test]
fn relative_timer_fires_at_orchestration_time_plus_delay() {
    let registry = registry("sleep", |ctx: OrchestrationContext, secs: u64| async move {
        let before = ctx.current_utc_datetime();
        ctx.create_timer(Duration::from_secs(secs)).await?;
        Ok((ctx.current_utc_datetime() - before).num_seconds())
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("sleep", "90");
    assert_eq!(
        summary(&r),
        [(
            0,
            "timer",
            (t0() + chrono::Duration::seconds(90)).to_rfc3339()
        )]
    );
    let r = sim.fire_timer(0);
    assert_eq!(summary(&r), [(1, "complete", "Completed".to_owned())]);
    assert_eq!(output(&r), "90");
}

#[test]
fn absolute_timer_uses_the_given_time() {
    let at = chrono::Utc.with_ymd_and_hms(2024, 6, 1, 12, 30, 0).unwrap();
    let registry = registry(
        "until",
        move |ctx: OrchestrationContext, _: ()| async move {
            ctx.create_timer_at(at).await?;
            Ok("woke")
        },
    );
    let mut sim = Sim::new(registry);
    let r = sim.start("until", "null");
    assert_eq!(summary(&r), [(0, "timer", at.to_rfc3339())]);
    let r = sim.episode(vec![sim_timer(0, at)]);
    assert_eq!(output(&r), "\"woke\"");
}

fn sim_timer(
    id: i32,
    at: chrono::DateTime<chrono::Utc>,
) -> durable::proto::history_event::EventType {
    timer_fired(id, at)
}

#[test]
fn timer_with_sub_second_delay_keeps_nanoseconds() {
    let registry = registry("short", |ctx: OrchestrationContext, _: ()| async move {
        ctx.create_timer(Duration::from_millis(1500)).await?;
        Ok(())
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("short", "null");
    assert_eq!(
        sim.timer_fire_at(0),
        t0() + chrono::Duration::milliseconds(1500)
    );
    assert_eq!(r.actions.len(), 1);
    let r = sim.fire_timer(0);
    assert_eq!(output(&r), "null");
}

#[test]
fn pending_timer_is_not_rescheduled_on_replay() {
    let registry = registry("wait", |ctx: OrchestrationContext, _: ()| async move {
        ctx.create_timer(Duration::from_secs(3600)).await?;
        Ok(1)
    });
    let mut sim = Sim::new(registry);
    sim.start("wait", "null");
    // An unrelated event arrives; the timer is still pending and must not be re-sent.
    let r = sim.episode(vec![raised("noise", "1")]);
    assert!(r.actions.is_empty(), "{:?}", summary(&r));
    let r = sim.fire_timer(0);
    assert_eq!(output(&r), "1");
}

#[test]
fn timers_in_a_loop_get_consecutive_ids_and_advancing_times() {
    let registry = registry("ticks", |ctx: OrchestrationContext, n: u32| async move {
        for _ in 0..n {
            ctx.create_timer(Duration::from_secs(60)).await?;
        }
        Ok(ctx.current_utc_datetime().to_rfc3339())
    });
    let mut sim = Sim::new(registry);
    sim.start("ticks", "3");
    for id in 0..3 {
        let fire_at = sim.timer_fire_at(id);
        let r = sim.fire_timer(id);
        if id < 2 {
            assert_eq!(summary(&r)[0].0, id + 1);
            // The next timer is 60 s after the episode time, which is the previous fire time.
            assert_eq!(
                sim.timer_fire_at(id + 1),
                fire_at + chrono::Duration::seconds(60)
            );
        } else {
            assert_eq!(output(&r), format!("\"{}\"", fire_at.to_rfc3339()));
        }
    }
}

#[test]
fn timer_in_the_past_is_still_a_durable_timer() {
    let registry = registry("past", |ctx: OrchestrationContext, _: ()| async move {
        let at = ctx.current_utc_datetime() - chrono::Duration::days(1);
        ctx.create_timer_at(at).await?;
        Ok("done")
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("past", "null");
    assert_eq!(summary(&r)[0].1, "timer");
    let r = sim.fire_timer(0);
    assert_eq!(output(&r), "\"done\"");
}
