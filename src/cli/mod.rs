//! brook's command line: the clap definitions of every command, and the
//! client side of the management commands (`device`, `token`, `data`).
//!
//! Management commands do not open the database: they call the running
//! server's admin API over HTTP (`Authorization: Bearer ADMIN_TOKEN`), so that
//! a revoked token or a deleted device takes effect at once on live
//! connections. Results go to stdout, errors to stderr as one `brook: ...`
//! line, and the exit code is 0 on success and 1 on any failure.

//!
//! `args.rs` holds the clap definitions, `commands.rs` what each management
//! command does, `client.rs` the admin API client, `table.rs` the output.

mod args;
mod client;
mod commands;
mod table;
#[cfg(test)]
mod tests;

pub use args::*;
pub use commands::run_management;
