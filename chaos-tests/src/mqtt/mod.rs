//! The MQTT schedule: persistent sessions on the MQTT gateway of a
//! cluster whose nodes are SIGKILLed and restarted.
//!
//! # Layout
//! - [`history`]: the record of a run and the checker.

pub mod history;
