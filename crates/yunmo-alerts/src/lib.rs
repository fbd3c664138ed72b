//! Built-in alerts: the conditions the server's rules find true are turned into alerts that fire and
//! resolve ([`Book`], with a bounded history), and each change is delivered to the configured webhooks in
//! Alertmanager's webhook format ([`webhook`]), retried with backoff on a task of its own so that nothing
//! waits for a receiver.

pub mod book;
pub mod webhook;

pub use book::{Alert, Book, Condition, Severity, Status};
