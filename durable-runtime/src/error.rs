//! Errors of user code and of the SDK: [`Error`], [`FailureDetails`], [`TaskError`].

use std::error::Error as StdError;
use std::fmt;

/// A boxed error that user code can return with `?`.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error: what orchestrators and activities return.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The structured description of a failure, as it travels on the wire (`TaskFailureDetails`).
///
/// Every failure of an activity, a sub-orchestration or an orchestration is recorded in history
/// as one of these, so it reads the same whichever SDK produced it.
///
/// ```
/// let details = durable::FailureDetails::new("ValueError", "cost must be positive");
/// assert_eq!(details.to_string(), "ValueError: cost must be positive");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailureDetails {
    /// The error's type name (`std::io::Error`, `builtins.ValueError`, ...).
    pub error_type: String,
    /// The error's message.
    pub message: String,
    /// A stack trace or backtrace, when the producing SDK had one.
    pub stack_trace: Option<String>,
    /// The cause of this failure, if any.
    pub inner: Option<Box<FailureDetails>>,
    /// `true` when retry policies must not retry this failure.
    pub non_retriable: bool,
}

impl FailureDetails {
    /// A failure with a type name and a message.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            message: message.into(),
            ..Self::default()
        }
    }

    /// The same failure, marked as not retriable.
    pub fn non_retriable(mut self) -> Self {
        self.non_retriable = true;
        self
    }

    /// Describes a Rust error: its type name, message and `source()` chain.
    pub fn from_std_error<E: StdError + ?Sized>(error_type: &str, error: &E) -> Self {
        Self {
            error_type: error_type.to_owned(),
            message: error.to_string(),
            stack_trace: None,
            inner: error
                .source()
                .map(|cause| Box::new(Self::from_std_error("cause", cause))),
            non_retriable: false,
        }
    }
}

impl fmt::Display for FailureDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl StdError for FailureDetails {}

/// A task of an orchestration (activity, sub-orchestration, external event payload) failed.
///
/// Awaiting a task yields `Result<T, TaskError>`, so an orchestrator can catch a failure and
/// compensate; `?` propagates it and fails the orchestration with this failure as the cause.
///
/// ```
/// # use durable::{TaskError, FailureDetails};
/// let err = TaskError::Failed {
///     name: "charge_card".into(),
///     details: FailureDetails::new("CardDeclined", "insufficient funds"),
/// };
/// assert_eq!(err.details().error_type, "CardDeclined");
/// ```
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task ran and failed; `details` is what the failing side reported.
    #[error("task `{name}` failed: {details}")]
    Failed {
        /// The activity or orchestrator name.
        name: String,
        /// The failure as recorded in history.
        details: FailureDetails,
    },
    /// The task's result did not deserialize into the expected type.
    #[error("the result of `{name}` did not match the expected type: {message}")]
    Deserialize {
        /// The activity, orchestrator or event name.
        name: String,
        /// The serde error text.
        message: String,
    },
    /// Retries of the task stopped because the retry policy's timeout elapsed or attempts ran out.
    #[error("task `{name}` failed after {attempts} attempt(s): {details}")]
    RetriesExhausted {
        /// The activity or orchestrator name.
        name: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's failure.
        details: FailureDetails,
    },
}

impl TaskError {
    /// The failure as it will be recorded in history.
    pub fn details(&self) -> FailureDetails {
        match self {
            TaskError::Failed { details, .. } | TaskError::RetriesExhausted { details, .. } => {
                details.clone()
            }
            TaskError::Deserialize { message, .. } => {
                FailureDetails::new("durable::TaskError::Deserialize", message.clone())
            }
        }
    }
}

/// The error type of orchestrators and activities: anything that is an error converts into it
/// with `?`, and it knows how to describe itself as [`FailureDetails`].
///
/// ```
/// fn parse(text: &str) -> durable::Result<u32> {
///     let n: u32 = text.parse()?;
///     if n == 0 {
///         return Err(durable::Error::msg("zero is not a valid quantity"));
///     }
///     Ok(n)
/// }
/// assert!(parse("x").is_err());
/// assert_eq!(parse("0").unwrap_err().details().message, "zero is not a valid quantity");
/// ```
pub struct Error {
    details: FailureDetails,
    source: Option<BoxError>,
}

impl Error {
    /// An error with a message (type name `durable::Error`).
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::from_details(FailureDetails::new("durable::Error", message.to_string()))
    }

    /// An error with an explicit type name, for matching by other SDKs' retry handlers.
    pub fn typed(error_type: impl Into<String>, message: impl fmt::Display) -> Self {
        Self::from_details(FailureDetails::new(error_type, message.to_string()))
    }

    /// An error carrying the given failure details verbatim.
    pub fn from_details(details: FailureDetails) -> Self {
        Self {
            details,
            source: None,
        }
    }

    /// Wraps any displayable value (for activity errors that are not `std::error::Error`).
    pub fn from_display<E: fmt::Display>(error: E) -> Self {
        Self::from_details(FailureDetails::new(
            display_type_name::<E>(),
            error.to_string(),
        ))
    }

    /// Marks the error as not retriable: retry policies give up on it at once.
    pub fn non_retriable(mut self) -> Self {
        self.details.non_retriable = true;
        self
    }

    /// The failure as it will be recorded in history.
    pub fn details(&self) -> FailureDetails {
        self.details.clone()
    }

    /// The original error, when this was converted from one.
    pub fn source_error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    /// The original error, downcast to a concrete type (e.g. [`TaskError`]).
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.source.as_deref().and_then(|e| e.downcast_ref::<E>())
    }
}

/// The recorded error type of a displayable value: standard-library types by their short name
/// (`String`, not `alloc::string::String`), others by their full path.
fn display_type_name<E>() -> &'static str {
    let full = std::any::type_name::<E>();
    let std_path = ["alloc::", "core::", "std::"]
        .iter()
        .any(|prefix| full.trim_start_matches('&').starts_with(prefix));
    if std_path && !full.contains('<') {
        full.rsplit("::").next().unwrap_or(full)
    } else {
        full
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        let boxed: BoxError = Box::new(error);
        let details = if let Some(task) = boxed.downcast_ref::<TaskError>() {
            FailureDetails {
                error_type: "durable::TaskError".to_owned(),
                message: task.to_string(),
                stack_trace: None,
                inner: Some(Box::new(task.details())),
                non_retriable: false,
            }
        } else if let Some(details) = boxed.downcast_ref::<FailureDetails>() {
            details.clone()
        } else {
            FailureDetails::from_std_error(std::any::type_name::<E>(), boxed.as_ref())
        };
        Self {
            details,
            source: Some(boxed),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.details, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.details.message)
    }
}

impl AsRef<dyn StdError + Send + Sync> for Error {
    fn as_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        match &self.source {
            Some(source) => source.as_ref(),
            None => &self.details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_errors_keep_type_name_and_chain() {
        let err: Error = "x".parse::<u32>().map_err(Error::from).unwrap_err();
        let details = err.details();
        assert_eq!(details.error_type, "core::num::error::ParseIntError");
        assert_eq!(details.message, "invalid digit found in string");
    }

    #[test]
    fn string_errors_are_recorded_as_string() {
        assert_eq!(
            Error::from_display(String::from("out of stock"))
                .details()
                .error_type,
            "String"
        );
        assert_eq!(Error::from_display("no").details().error_type, "&str");
        assert_eq!(
            Error::from_display(std::net::Ipv4Addr::LOCALHOST)
                .details()
                .error_type,
            "Ipv4Addr"
        );
    }

    #[test]
    fn task_errors_become_the_cause() {
        let task = TaskError::Failed {
            name: "charge".into(),
            details: FailureDetails::new("Declined", "no funds"),
        };
        let err = Error::from(task.clone());
        assert_eq!(
            err.details().inner.as_deref().unwrap().error_type,
            "Declined"
        );
        assert_eq!(err.downcast_ref::<TaskError>(), Some(&task));
    }
}
