//! brook: a self-hosted MQTT broker for sensor data.
//!
//! The path of a message through the crate: `listener` accepts a connection
//! and starts a `session` actor; its packets are framed and checked by
//! `protocol`; publishes go to a `router::topic` actor, which fans them out
//! to the subscribers' delivery queues (`router::queue`); `actions` turn
//! publishes into stored data, and stored data into analyses, publishes and
//! HTTP and email deliveries; `store` is the SQLite file; `http` serves the
//! admin and device APIs. `device` holds who may log in and who is
//! connected; `bridge` links brook to other brokers, as a client of theirs.
//!
//! The modules form layers, bottom-up (a module uses only lower ones;
//! `tests/layers.rs` checks it): `metrics`, `protocol`, `config` → `store` →
//! `device`, `router` → `actions` → `broker` → `session`, `bridge` → `http`,
//! `listener`, `sys` → `server`, `cli`.

// What the `brook` binary, the fuzz targets and the tests use is public;
// everything else is the crate's own (and the compiler reports what of it
// is unused).
pub(crate) mod actions;
pub(crate) mod bridge;
pub(crate) mod broker;
pub mod cli;
pub mod config;
pub(crate) mod device;
pub mod fuzzing;
pub(crate) mod http;
pub(crate) mod listener;
pub(crate) mod metrics;
pub(crate) mod protocol;
pub(crate) mod router;
pub mod server;
pub(crate) mod session;
pub(crate) mod store;
pub(crate) mod sys;

pub use actions::file::check_command as check_actions;
