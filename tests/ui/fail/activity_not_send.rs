#![allow(dead_code)]

#[durable::activity]
async fn hello(name: String) -> String {
    let shared = std::rc::Rc::new(name);
    std::future::ready(()).await;
    format!("Hello {shared}!")
}

fn main() {}
