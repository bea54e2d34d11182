//! `sluice demo`: its flags, and the demo ([`crate::demo::run`]) run until
//! done or interrupted, with its summary printed.

use std::path::PathBuf;

use super::Exit;

/// `sluice demo`'s options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the policy repository, the daemon's state and summary.json in
    /// DIR (created; it must be empty) instead of a temporary folder.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Print the summary only.
    #[arg(long, conflicts_with = "plain")]
    pub quiet: bool,
    /// Line-by-line progress even on a terminal (what a pipe or a log gets
    /// anyway).
    #[arg(long)]
    pub plain: bool,
    /// The least time each live stage (shadow, canary, broad) lasts.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub stage_duration: std::time::Duration,
    /// How long each phase may take before the demo gives up.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: std::time::Duration,
    /// The engines' shared state: `memory` (one state in this process) or
    /// `redis://HOST:PORT[/DB]` (`rediss://` for TLS), under a prefix of
    /// the run's own.
    #[arg(long, default_value = "memory", value_name = "BACKEND")]
    pub state_backend: String,
}

pub(super) fn cmd_demo(args: &DemoArgs) -> anyhow::Result<Exit> {
    use crate::demo::{Console, ConsoleMode, Options, Progress as _};

    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    anyhow::ensure!(
        !args.stage_duration.is_zero(),
        "--stage-duration must be above zero"
    );
    anyhow::ensure!(!args.timeout.is_zero(), "--timeout must be above zero");
    let state_backend = match args.state_backend.as_str() {
        "memory" => None,
        url if url.starts_with("redis://") || url.starts_with("rediss://") => Some(url.to_string()),
        other => anyhow::bail!(
            "--state-backend must be `memory`, `redis://HOST:PORT[/DB]` or `rediss://…`, not `{other}`"
        ),
    };
    let opts = Options {
        keep: args.keep.clone(),
        stage_duration: args.stage_duration,
        timeout: args.timeout,
        state_backend,
        ..Options::default()
    };
    let mode = if args.quiet {
        ConsoleMode::Quiet
    } else if args.plain {
        ConsoleMode::Plain
    } else {
        ConsoleMode::Live
    };
    let mut console = Console::new(mode);
    let rt = super::runtime(true)?;
    let result = rt.block_on(async {
        tokio::select! {
            r = crate::demo::run(&opts, &mut console) => Some(r),
            () = crate::engine::serve::shutdown_signal() => None,
        }
    });
    console.finish();
    drop(rt);
    match result {
        None => {
            eprintln!("interrupted: everything the demo started is stopped");
            Ok(Exit::Findings)
        }
        Some(Ok(report)) => {
            println!();
            print!("{}", report.render());
            let problems = report.problems();
            if problems.is_empty() {
                println!(
                    "\nThe good change rolled out, the bad one was rolled back and reverted on main, and newco went from observe to enforce: its artifact is stable on every engine."
                );
                Ok(Exit::Ok)
            } else {
                for p in &problems {
                    eprintln!("error: {p}");
                }
                Ok(Exit::Findings)
            }
        }
        Some(Err(e)) if e.is_outcome() => {
            eprintln!("error: the demo did not go as expected: {e}");
            Ok(Exit::Findings)
        }
        Some(Err(e)) => Err(e.into()),
    }
}
