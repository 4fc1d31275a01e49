//! Exchange routing.
