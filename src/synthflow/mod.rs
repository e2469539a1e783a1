//! Synthflow's REST API as callroute uses it: wire types (tolerant of the shapes the docs
//! disagree on, see shared/reference/synthflow-api.md) and an HTTP client with typed errors.
//! `simulator` is the in-repo stand-in server held to the same reference.

pub mod client;
pub mod simulator;
pub mod webhook;
pub mod wire;

pub use client::{ApiError, Client, ClientConfig};
pub use wire::{AttachedNumber, CallRecord, CallRequest, KeyValue};
