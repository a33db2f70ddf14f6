//! brook: a self-hosted MQTT broker for sensor data.
//!
//! The path of a message through the crate: `listener` accepts a connection
//! and starts a `session` actor; its packets are framed and checked by
//! `protocol`; publishes go to a `router::topic` actor, which fans them out
//! to the subscribers' queues (`session::subscriber`); `actions` turn
//! publishes into stored data; `store` is the SQLite file; `http` serves the
//! admin and device APIs. `device` holds who may log in and who is connected.
//! `bridge` links brook to other brokers, as a client of theirs.

pub mod actions;
pub mod bridge;
pub mod broker;
pub mod cli;
pub mod config;
pub mod device;
pub mod fuzzing;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod protocol;
pub mod router;
pub mod server;
pub mod session;
pub mod store;
pub mod sys;
