#![allow(dead_code)]

#[durable::activity(name = "SayHello", name = "Greet")]
async fn hello(name: String) -> String {
    name
}

fn main() {}
