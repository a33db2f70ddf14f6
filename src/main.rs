//! The `brook` command: `serve` (the default), the management commands that
//! talk to a running server's admin API, and `actions check`.

use clap::Parser;

use brook::cli::{run_management, ActionsCommand, Cli, Command};
use brook::config::Config;

fn main() {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("brook: {e}");
            std::process::exit(1);
        }
    };
    let command = cli.command_or_serve();
    let code = match &command {
        Command::Serve => {
            init_logging(&config);
            match brook::server::serve(config) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("brook: {e:#}");
                    1
                }
            }
        }
        Command::Actions(actions @ ActionsCommand::Check { .. }) => {
            brook::check_actions(&actions.dir(&config))
        }
        _ => run_management(&command, &cli, &config),
    };
    std::process::exit(code);
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| config.log.level.clone())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
