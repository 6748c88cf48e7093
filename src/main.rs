//! `stowage`: the command-line front end. Parsing, calling the engine, printing; no image
//! logic lives here.

mod args;
mod cli;
mod commands;
mod format;
mod generate;
mod image;
mod interrupt;
mod logging;
mod progress;
mod registry;
mod table;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(logging::level(cli.global.log_level, cli.global.verbose));
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
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Exit code of an image error (not found, invalid, corrupted, refused by policy).
pub(crate) const EXIT_IMAGE: u8 = 3;
/// Exit code of a storage error (store missing, permission denied, full, configuration).
pub(crate) const EXIT_STORAGE: u8 = 4;
/// Exit code of a registry error (network, TLS, authentication, the registry's own errors).
pub(crate) const EXIT_REGISTRY: u8 = 5;

/// The exit code of a failed command: by the class of the first engine error in the chain
/// (`docs/cli.md`, "Exit codes"), 1 for anything else.
fn exit_code(e: &anyhow::Error) -> u8 {
    class_exit_code(
        e.chain()
            .find_map(|c| c.downcast_ref::<stowage_engine::Error>())
            .and_then(|e| e.class()),
    )
}

/// The exit code of an error class; 1 for an error of none.
pub(crate) fn class_exit_code(class: Option<stowage_engine::error::ErrorClass>) -> u8 {
    use stowage_engine::error::ErrorClass;
    match class {
        Some(ErrorClass::Image) => EXIT_IMAGE,
        Some(ErrorClass::Storage) => EXIT_STORAGE,
        Some(ErrorClass::Registry) => EXIT_REGISTRY,
        None => 1,
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
