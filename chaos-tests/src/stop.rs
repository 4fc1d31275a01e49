//! A shared flag that tells the workload's tasks to finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
