//! Every accepted activity signature, the name override, and direct calls of the body.
use std::fmt;

use durable::{Activity, ActivityContext};

#[durable::activity]
async fn nothing() {}

#[durable::activity]
async fn ctx_only(ctx: ActivityContext) -> String {
    ctx.name().to_owned()
}

#[durable::activity]
async fn input_only(n: u32) -> u32 {
    n + 1
}

/// Docs and attributes are kept.
#[durable::activity]
#[allow(clippy::unused_async)]
pub async fn both(_ctx: ActivityContext, (a, b): (u32, u32)) -> u32 {
    a + b
}

#[durable::activity]
async fn std_error(text: String) -> Result<u32, std::num::ParseIntError> {
    text.parse()
}

#[durable::activity]
async fn io_result() -> std::io::Result<()> {
    Ok(())
}

#[derive(Debug)]
struct Oops;

impl fmt::Display for Oops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("oops")
    }
}

#[durable::activity]
async fn display_error() -> Result<(), Oops> {
    Err(Oops)
}

#[durable::activity]
async fn string_error() -> Result<(), String> {
    Err("no".to_owned())
}

#[durable::activity]
async fn durable_error() -> durable::Result<u8> {
    Err(durable::Error::typed("Declined", "no funds"))
}

#[durable::activity]
async fn anyhow_error() -> anyhow::Result<u8> {
    Ok(1)
}

#[durable::activity(name = "SayHello")]
async fn say_hello(name: String) -> String {
    format!("Hello {name}!")
}

mod nested {
    #[durable::activity]
    pub(crate) async fn in_module(_ctx: durable::ActivityContext, input: Vec<String>) -> usize {
        input.len()
    }
}

fn types<A: Activity<Input = I, Output = O>, I, O>(_: A) {}

fn ctx() -> ActivityContext {
    ActivityContext::new("i", "e", 1, "test")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    types::<_, (), ()>(nothing);
    types::<_, (), String>(ctx_only);
    types::<_, u32, u32>(input_only);
    types::<_, (u32, u32), u32>(both);
    types::<_, String, u32>(std_error);
    types::<_, (), ()>(io_result);
    types::<_, (), ()>(display_error);
    types::<_, (), ()>(string_error);
    types::<_, (), u8>(durable_error);
    types::<_, (), u8>(anyhow_error);
    types::<_, Vec<String>, usize>(nested::in_module);
    assert_eq!(say_hello::NAME, "SayHello");
    assert_eq!(input_only::NAME, "input_only");

    // The body is callable directly.
    nothing::body().await;
    assert_eq!(ctx_only::body(ctx()).await, "test");
    assert_eq!(input_only::body(1).await, 2);
    assert_eq!(both::body(ctx(), (1, 2)).await, 3);
    assert!(io_result::body().await.is_ok());
    assert_eq!(anyhow_error::body().await.unwrap(), 1);
    assert_eq!(say_hello::body("Tokyo".into()).await, "Hello Tokyo!");

    // Errors convert into durable::Error.
    let err = std_error::run(ctx(), "x".into()).await.unwrap_err();
    assert_eq!(err.details().error_type, "core::num::error::ParseIntError");
    let err = display_error::run(ctx(), ()).await.unwrap_err();
    assert_eq!(err.details().message, "oops");
    let err = string_error::run(ctx(), ()).await.unwrap_err();
    assert_eq!(err.details().message, "no");
    let err = durable_error::run(ctx(), ()).await.unwrap_err();
    assert_eq!(err.details().error_type, "Declined");

    let registry = durable::Registry::from_inventory().unwrap();
    let names: Vec<&str> = registry.activity_names().collect();
    assert!(names.contains(&"SayHello") && names.contains(&"in_module"), "{names:?}");
}
