#![allow(dead_code)]

#[durable::activity]
fn hello(name: String) -> String {
    format!("Hello {name}!")
}

fn main() {}
