use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Counter {
    value: i64,
}

#[durable::entity]
impl Counter {
    pub fn take(self) -> i64 {
        self.value
    }
}

fn main() {}
