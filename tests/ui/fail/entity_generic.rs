use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Bag<T> {
    items: Vec<T>,
}

#[durable::entity]
impl<T> Bag<T> {
    pub fn count(&self) -> usize {
        self.items.len()
    }
}

fn main() {}
