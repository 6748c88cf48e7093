//! `stowage`: the command-line front end. Parsing, calling the engine, printing; no image
//! logic lives here.

mod args;
mod cli;
mod commands;
mod image;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Copy(args) => commands::copy(&cli.global, args),
        cli::Command::Inspect(args) => commands::inspect(args),
        cli::Command::Image(args) => image::run(&cli.global, args),
        cli::Command::Delete(args) => commands::delete(&cli.global, args),
        cli::Command::GenerateSigstoreKey(args) => commands::generate_sigstore_key(args),
    };
    match result {
        Ok(code) => code,
        // The reader of our output went away (`stowage inspect … | head`): nothing to report.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {}", render_error(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, skopeo-style (`outer: inner: root`), without
/// repeating a cause the outer message already includes.
pub(crate) fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}
