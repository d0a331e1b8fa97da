//! Timers: durable timers whose `TimerFired` events go to their instance's inbox when due,
//! scheduled start times that make a PENDING instance dispatchable, and delayed entity
//! signals that join their entity's queue. One background task sleeps
//! until the earliest one.

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use super::is_terminal;
use super::state::TimerEntry;
use crate::storage::WriteOp;
use crate::time::{from_ms, now_ms};

impl Engine {
    /// Runs the timer task until shutdown.
    pub(super) fn spawn_timer_loop(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let mut stop = self.shutdown.subscribe();
        tokio::spawn(async move {
            loop {
                let next = me.fire_due_timers();
                let sleep = match next {
                    Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
                    None => Duration::from_secs(3600),
                };
                tokio::select! {
                    _ = tokio::time::sleep(sleep) => {}
                    _ = me.timer_wake.notified() => {}
                    _ = stop.changed() => break,
                }
            }
        });
    }

    /// Fires every due timer; returns when the next one is due.
    fn fire_due_timers(&self) -> Option<i64> {
        let mut st = self.lock();
        let now = now_ms();
        let mut b = self.begin(&mut st);
        let mut any = false;
        while let Some(entry) = st.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            any = true;
            match entry.remove() {
                TimerEntry::Start(id) => st.mark_ready(&b, &id),
                TimerEntry::Fire(rec) if rec.instance_id.starts_with('@') => {
                    // A signal to an entity, delivered no earlier than asked.
                    b.ops.push(WriteOp::DeleteTimer(rec.key));
                    if let Some(ev) = rec.event {
                        st.queue_entity_op(&mut b, &rec.instance_id, ev);
                    }
                }
                TimerEntry::Fire(rec) => {
                    b.ops.push(WriteOp::DeleteTimer(rec.key));
                    let live = st.instances.get(&rec.instance_id).is_some_and(|i| {
                        !is_terminal(i.rec.status) && i.rec.execution_id == rec.execution_id
                    });
                    if let (true, Some(mut ev)) = (live, rec.event) {
                        ev.timestamp = Some(from_ms(now));
                        st.push_inbox(&mut b, &rec.instance_id, ev);
                    }
                }
            }
        }
        let next = st.timers.first_key_value().map(|(k, _)| k.0);
        if any {
            drop(self.submit(&mut st, b));
        }
        next
    }
}
