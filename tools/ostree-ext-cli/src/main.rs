//! `ostree-ext-cli ARGS…`: ostree-rs-ext's command line (`container image pull`, `list`,
//! `metadata`, `container encapsulate`, …), for the tests to compare stowage with.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ostree_ext::cli::run_from_iter(std::env::args_os()).await
}
