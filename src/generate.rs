//! `stowage completion SHELL` and `stowage man --output DIR`: shell completions and manual
//! pages generated from the clap definition (`cli.rs`), so that they always list the flags the
//! binary has.
//!
//! 1. The clap `Command` is built from [`Cli`] (`CommandFactory`), with every global flag
//!    propagated to the subcommands.
//! 2. `completion`: clap_complete writes the script for the shell to stdout.
//! 3. `man`: one roff page per command, named by its path (`stowage-image-cmd-list.1`), for
//!    every subcommand that is not hidden, written into the output directory (created when
//!    missing), non-ASCII characters written as groff escapes; the path of each page is
//!    printed unless `--quiet`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionArgs, GlobalOpts, ManArgs};

/// The binary's name, as the completion scripts and pages call it.
const BIN: &str = "stowage";

/// `stowage completion SHELL`: the completion script on stdout.
pub fn completion(args: CompletionArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    // Into a buffer first: clap_complete panics on a write error, and a reader that goes
    // away (`… | head`) is not one (main).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, BIN, &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// `stowage man --output DIR`: every page into DIR.
pub fn man(global: &GlobalOpts, args: ManArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating the man page directory {}", args.output.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = 0usize;
    write_pages(&cmd, &args.output, global.quiet, &mut written)?;
    if !global.quiet {
        eprintln!(
            "Wrote {written} manual page(s) to {}",
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `page` with every non-ASCII character as a groff `\[uXXXX]` escape: the pages then need
/// no input encoding (groff without preconv reads them, as does `man -l`).
fn ascii_roff(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", c as u32));
        }
    }
    out.into_bytes()
}

/// The page of `cmd` and those of its visible subcommands, depth first.
fn write_pages(cmd: &clap::Command, dir: &Path, quiet: bool, written: &mut usize) -> Result<()> {
    let page = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(page.get_filename());
    let mut bytes = Vec::new();
    page.render(&mut bytes)
        .with_context(|| format!("rendering the manual page of {}", cmd.get_name()))?;
    std::fs::write(&path, ascii_roff(&bytes))
        .with_context(|| format!("writing {}", path.display()))?;
    *written += 1;
    if !quiet {
        writeln!(std::io::stdout().lock(), "{}", path.display())?;
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, quiet, written)?;
    }
    Ok(())
}
