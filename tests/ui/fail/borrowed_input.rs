#![allow(dead_code)]

#[durable::activity]
async fn hello(name: &str) -> String {
    format!("Hello {name}!")
}

fn main() {}
