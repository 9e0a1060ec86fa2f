//! `hongbao`: one binary for every role of the campaign backend. See `hongbao --help` and the
//! README; DESIGN.md §4 is the contract for the subcommands and flags.

mod synthetic;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hongbao_domain::Campaign;

#[derive(Parser)]
#[command(name = "hongbao", version, about = "Festival red-packet campaign backend")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deterministic synthetic users: registrations, preferences and roles.
    Gen {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        users: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Profile data files made by `gen`.
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
}

#[derive(Subcommand)]
enum ProfilesCommand {
    /// Loads `DIR/profiles.bin` as `serve` does and reports its size and load time.
    Inspect {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Loads a campaign file, resolving `secret_env` names from the process environment.
pub fn load_campaign(path: &Path) -> Result<Campaign> {
    Ok(Campaign::load(path, &|name| std::env::var(name).ok())?)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Gen { config, users, out, seed } => {
            let campaign = load_campaign(&config)?;
            let report = synthetic::generate(&campaign, users, seed, &out).context("generate users")?;
            synthetic::print_report(&mut std::io::stdout().lock(), &report, &out)?;
        }
        Command::Profiles { command: ProfilesCommand::Inspect { config, dir } } => {
            let campaign = load_campaign(&config)?;
            let started = std::time::Instant::now();
            let table = synthetic::load_profiles(&dir, &campaign)?;
            let elapsed = started.elapsed();
            let users = table.len().max(1);
            println!(
                "loaded {} users in {:.3} s: {} resident bytes, {:.1} bytes per user (seed {})",
                table.len(),
                elapsed.as_secs_f64(),
                table.resident_bytes(),
                table.resident_bytes() as f64 / users as f64,
                table.header().seed,
            );
        }
    }
    Ok(())
}
