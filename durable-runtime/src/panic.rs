//! Turning panics of user code into failure details, with location and backtrace.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Once;

use crate::error::FailureDetails;

/// The error type recorded when user code panics.
pub(crate) const PANIC_ERROR_TYPE: &str = "durable::Panic";

thread_local! {
    /// Where and with what backtrace the last panic on this thread happened; read right after
    /// `catch_unwind` on the same thread.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Chains a panic hook that remembers the panic location and backtrace (captured when
/// `RUST_BACKTRACE` asks for it), so a panicking activity reports a stack trace. The previous
/// hook still runs.
pub(crate) fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let backtrace = std::backtrace::Backtrace::capture();
            let mut trace = match info.location() {
                Some(location) => format!("panicked at {location}"),
                None => "panicked".to_owned(),
            };
            if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
                trace.push('\n');
                trace.push_str(&backtrace.to_string());
            }
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(trace));
            previous(info);
        }));
    });
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a non-string panic payload)".to_owned()
    }
}

/// Describes a caught panic; call on the thread that caught it, before any `.await`.
pub(crate) fn panic_details(what: &str, payload: &(dyn Any + Send)) -> FailureDetails {
    let mut details = FailureDetails::new(
        PANIC_ERROR_TYPE,
        format!("{what} panicked: {}", panic_message(payload)),
    );
    details.stack_trace = LAST_PANIC.with(|last| last.borrow_mut().take());
    details
}
