//! The `bottle` binary: parses arguments, runs the command, prints one clear
//! error line on failure. Exit codes: 2 bad configuration or usage, 1 runtime
//! failure, otherwise the agent's own exit code.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = bottle::cli::Cli::parse();
    let code = match bottle::cli::main(cli).await {
        Ok(code) => code,
        Err(f) => {
            eprintln!("bottle: error: {}", f.message);
            f.code
        }
    };
    std::process::exit(code);
}
