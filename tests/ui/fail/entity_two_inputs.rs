use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Counter {
    value: i64,
}

#[durable::entity]
impl Counter {
    pub fn add(&mut self, a: i64, b: i64) {
        self.value += a + b;
    }
}

fn main() {}
