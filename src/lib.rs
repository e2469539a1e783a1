//! callroute: picks the caller ID for every outbound call and explains why.
//! See ARCHITECTURE.md for the map of the code.

pub mod admin;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod explain;
pub mod geo;
pub mod hours;
pub mod lead;
pub mod metrics;
pub mod phone;
pub mod reload;
pub mod rules;
pub mod store;
pub mod synthflow;
pub mod systemd;
pub mod usage;
