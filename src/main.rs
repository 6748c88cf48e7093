//! `stowage`: the command-line front end. Parsing, calling the engine, printing; no image
//! logic lives here.

mod args;
mod cli;
mod commands;
mod format;
mod generate;
mod image;
mod interrupt;
mod progress;
mod registry;
mod table;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Copy(args) => commands::copy(&cli.global, args),
        cli::Command::Inspect(args) => commands::inspect(args),
        cli::Command::Image(args) => image::run(&cli.global, args),
        cli::Command::Delete(args) => commands::delete(&cli.global, args),
        cli::Command::Info(args) => commands::info(args),
        cli::Command::Images(args) => commands::images(&cli.global, args),
        cli::Command::Login(args) => registry::login(&cli.global, args),
        cli::Command::Logout(args) => registry::logout(&cli.global, args),
        cli::Command::ListTags(args) => registry::list_tags(args),
        cli::Command::Sync(args) => registry::sync(&cli.global, args),
        cli::Command::GenerateSigstoreKey(args) => commands::generate_sigstore_key(args),
        cli::Command::Completion(args) => generate::completion(args),
        cli::Command::Man(args) => generate::man(&cli.global, args),
    };
    if let Some(sig) = interrupt::received() {
        // One line: what was stopped and what the destination keeps.
        let line = match &result {
            Ok(_) => "the command had completed when the signal arrived".to_string(),
            Err(e) => match e
                .chain()
                .find_map(|c| c.downcast_ref::<stowage_engine::Error>())
            {
                Some(c @ stowage_engine::Error::Cancelled { .. }) => c.to_string(),
                _ => render_error(e),
            },
        };
        let name = if sig == 2 {
            "SIGINT"
        } else if sig == 15 {
            "SIGTERM"
        } else {
            "a signal"
        };
        if line.starts_with("interrupted") {
            eprintln!("stowage: {line}");
        } else {
            eprintln!("stowage: interrupted ({name}): {line}");
        }
        return ExitCode::from((128 + sig) as u8);
    }
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
