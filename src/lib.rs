//! callroute: picks the caller ID for every outbound call and explains why.
//! See ARCHITECTURE.md for the map of the code.

pub mod geo;
pub mod phone;
