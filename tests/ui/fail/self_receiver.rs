#![allow(dead_code)]

struct Greeter;

impl Greeter {
    #[durable::activity]
    async fn hello(&self, name: String) -> String {
        format!("Hello {name}!")
    }
}

fn main() {}
