//! Two macros registering the same name: `Registry::from_inventory` fails naming both places.

use durable::{ActivityContext, Registry};

#[durable::activity(name = "SendEmail")]
async fn send_welcome_email(_ctx: ActivityContext, to: String) -> String {
    to
}

mod marketing {
    #[durable::activity(name = "SendEmail")]
    pub(crate) async fn send_newsletter(to: String) -> String {
        to
    }
}

#[test]
fn duplicate_names_fail_naming_both_locations() {
    let error = Registry::from_inventory().expect_err("two activities are named SendEmail");
    assert_eq!(error.kind, "activity");
    assert_eq!(error.name, "SendEmail");
    let text = error.to_string();
    let first = line_of("async fn send_welcome_email");
    let second = line_of("pub(crate) async fn send_newsletter");
    for line in [first, second] {
        let location = format!("macros_duplicate.rs:{line}");
        assert!(text.contains(&location), "{location} missing from: {text}");
    }
    assert!(
        text.contains("#[durable::activity(name = \"...\")]"),
        "{text}"
    );
    // Keep the two functions used.
    let _ = (send_welcome_email, marketing::send_newsletter);
}

/// The 1-based line of the `#[durable::activity]` attribute above `needle` in this file.
fn line_of(needle: &str) -> usize {
    let source = include_str!("macros_duplicate.rs");
    // The attribute sits on the line before the fn: its 1-based number is the fn's 0-based index.
    source
        .lines()
        .position(|line| line.contains(needle) && !line.contains("line_of"))
        .expect("the function is in this file")
}
