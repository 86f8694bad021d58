//! The checkout service: configuration, wiring and start-up, as a library so
//! that integration tests start the real application (`Application::build`)
//! on port 0 against their own database.

pub mod config;
pub mod demo_catalog;
pub mod startup;
pub mod telemetry;
