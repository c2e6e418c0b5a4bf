//! The `wicket` command line.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;
use wicket::config::Config;

// The proxy allocates a little on every request (header maps, buffers);
// mimalloc's thread-local free lists make that cheaper than glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// wicket: every user of a stateful web app gets a slot of their own.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format on stderr: `text` (coloured only on a terminal) or `json`
    /// (one object per line, for log collectors).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "WICKET_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host locally with the built-in demo app as pods (no cluster).
    Demo {
        /// Host configuration (TOML); see examples/wicket.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override proxy.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override metrics.listen.
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// Override policy.file.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Run the host in Kubernetes: the drop-in replacement for k8sTicket
    /// (in-cluster config, or KUBECONFIG outside a cluster).
    Run {
        /// Host configuration (TOML); see examples/wicket.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override proxy.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override metrics.listen.
        #[arg(long)]
        metrics: Option<SocketAddr>,
    },
    /// Work with policy components.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Simulate an app under one or more policies on a traffic trace or
    /// generated traffic, in simulated time (see docs/simulate.md).
    Simulate(Box<wicket::simulate::cli::SimulateArgs>),
    /// Print the default configuration.
    Config,
    /// Run the built-in demo app (what a demo "pod" runs).
    DemoApp {
        /// Address to listen on (port 0: any free port); repeat it to serve
        /// the same app on several addresses from one process.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: Vec<SocketAddr>,
        /// Pod name to show.
        #[arg(long, default_value = "demo-app")]
        pod: String,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a component against the contract, dry-run it, and measure
    /// what it needs (time, memory) against the host's default limits.
    Check {
        /// The component (.wasm).
        file: PathBuf,
        /// The policy-config string to pass in the samples.
        #[arg(long, default_value = "")]
        config: String,
        /// Check under this memory cap (MiB) instead of a generous one.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
        memory_mib: Option<u64>,
        /// Check under this call deadline (ms) instead of a generous one.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        timeout_ms: Option<u64>,
        /// Check under this instantiation deadline (ms) instead of a generous one.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        instantiate_timeout_ms: Option<u64>,
    },
    /// Run a component on the cases of a TOML file and compare its
    /// decisions with the expected ones; exits non-zero if any case fails.
    /// `--example` prints the file format, every key explained.
    #[command(
        override_usage = "wicket policy test <FILE> <CASES>\n       wicket policy test --example"
    )]
    Test {
        /// The component (.wasm).
        #[arg(required_unless_present = "example")]
        file: Option<PathBuf>,
        /// The cases (.toml).
        #[arg(required_unless_present = "example")]
        cases: Option<PathBuf>,
        /// Print an annotated example of a cases file (every key, with what
        /// it means and its default) instead of running anything.
        #[arg(long, conflicts_with_all = ["file", "cases"])]
        example: bool,
    },
    /// Print the ConfigMaps that carry a component into a cluster (YAML for
    /// `kubectl apply --server-side -f -`): gzip-compressed, and split into
    /// parts when it does not fit one ConfigMap (docs/kubernetes.md).
    Configmap {
        /// The component (.wasm).
        file: PathBuf,
        /// The policy ConfigMap's name (apps select `<name>/<key>`).
        #[arg(long)]
        name: String,
        /// Its namespace (else kubectl's current one).
        #[arg(long)]
        namespace: Option<String>,
        /// The key (else the file's name).
        #[arg(long)]
        key: Option<String>,
        /// Annotation wicket.dev/policy-timeout-ms (call deadline).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        timeout_ms: Option<u64>,
        /// Annotation wicket.dev/policy-memory-mib (memory cap).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
        memory_mib: Option<u64>,
        /// Annotation wicket.dev/policy-instantiate-timeout-ms.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        instantiate_timeout_ms: Option<u64>,
        /// Largest chunk of one part, in bytes (a ConfigMap holds 1 MiB).
        #[arg(long, default_value_t = wicket::kube::policy_parts::DEFAULT_PART_BYTES)]
        part_bytes: usize,
    },
    /// Start a policy project: a minimal policy, its own test, a cases
    /// file, the SDK and the contract; it builds with one command.
    New {
        /// The project's name (and folder, and component).
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum)]
        lang: wicket::policy_new::Lang,
        /// The folder to create the project in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::DemoApp { .. } => "warn",
        // Faults are in the summary; RUST_LOG=warn shows each one.
        Command::Simulate(_) => "off",
        _ => "info",
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        // Colour codes are noise in a file or `kubectl logs`.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Ctrl-C, or SIGTERM (what Kubernetes sends to stop a pod).
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

/// After the first signal: the proxy's graceful shutdown (see
/// docs/edge.md, "Shutting down"), cut short by a second signal.
async fn drain(proxy: &wicket::proxy::Proxy, grace_ms: u64) -> anyhow::Result<()> {
    tokio::select! {
        _ = proxy.shutdown(std::time::Duration::from_millis(grace_ms)) => Ok(()),
        second = shutdown_signal() => {
            second?;
            tracing::warn!("second signal: stopping without waiting for the connections left");
            Ok(())
        }
    }
}

/// The config file (or the defaults) with the command line's overrides.
fn load_config(
    path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<Config> {
    let mut config = match path {
        Some(path) => Config::load(&path)?,
        None => Config::default(),
    };
    if let Some(l) = listen {
        config.proxy.listen = l;
    }
    if let Some(m) = metrics {
        config.metrics.listen = m;
    }
    Ok(config)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo {
            config,
            listen,
            metrics,
            policy,
        } => {
            let mut config = load_config(config, listen, metrics)?;
            if policy.is_some() {
                config.policy.file = policy;
            }
            let exe = std::env::current_exe().context("locating the wicket binary")?;
            runtime()?.block_on(async move {
                let demo = wicket::demo::start(config.clone(), exe).await?;
                let app = &config.demo.app;
                println!("wicket demo is running");
                println!("  app      http://{}/{app}/", demo.proxy_addr);
                println!("  metrics  http://{}/metrics", demo.metrics_addr);
                println!("  policy   {}", demo.source.name());
                println!(
                    "  tickets.max {}, tickets.spare {}, pods.max {}, cooldown {} s — open several browser tabs to see pods come and go",
                    config.demo.tickets_max, config.demo.tickets_spare, config.demo.pods_max, config.demo.cooldown_seconds
                );
                println!("Press Ctrl-C to stop.");
                shutdown_signal().await?;
                drain(&demo.proxy, config.proxy.shutdown_grace_ms).await?;
                drop(demo);
                tracing::info!("stopped");
                Ok(())
            })
        }
        Command::Run {
            config,
            listen,
            metrics,
        } => {
            let config = load_config(config, listen, metrics)?;
            let grace_ms = config.proxy.shutdown_grace_ms;
            runtime()?.block_on(async move {
                let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
                let mut running = wicket::run::start(config, client).await?;
                tracing::info!(
                    proxy = %running.proxy_addr, metrics = %running.metrics_addr, namespaces = ?running.namespaces,
                    "wicket is running"
                );
                shutdown_signal().await?;
                tracing::info!("shutting down");
                // Stop scaling and free the Lease for the next leader.
                running.step_down().await;
                drain(&running.proxy, grace_ms).await?;
                drop(running);
                tracing::info!("stopped");
                Ok(())
            })
        }
        Command::Policy {
            command:
                PolicyCommand::Check {
                    file,
                    config,
                    memory_mib,
                    timeout_ms,
                    instantiate_timeout_ms,
                },
        } => wicket::policy_check::run(
            &file,
            &config,
            wicket::policy::LimitOverrides {
                timeout_ms,
                memory_mib,
                instantiate_timeout_ms,
            },
        ),
        Command::Policy {
            command:
                PolicyCommand::Test {
                    file,
                    cases,
                    example,
                },
        } => {
            if example {
                print!("{}", wicket::policy_test::CASES_EXAMPLE);
                return Ok(());
            }
            // clap requires both unless --example is given.
            let (Some(file), Some(cases)) = (file, cases) else {
                anyhow::bail!("give the component and the cases file");
            };
            let summary = wicket::policy_test::run(&file, &cases)?;
            if summary.failed > 0 {
                // The cases' diffs and the summary line are printed already.
                return Err(anyhow::anyhow!(
                    "{} of {} cases failed",
                    summary.failed,
                    summary.failed + summary.passed
                ));
            }
            Ok(())
        }
        Command::Policy {
            command:
                PolicyCommand::Configmap {
                    file,
                    name,
                    namespace,
                    key,
                    timeout_ms,
                    memory_mib,
                    instantiate_timeout_ms,
                    part_bytes,
                },
        } => wicket::policy_configmap::run(
            &file,
            &wicket::policy_configmap::Options {
                name,
                namespace,
                key,
                limits: wicket::policy::LimitOverrides {
                    timeout_ms,
                    memory_mib,
                    instantiate_timeout_ms,
                },
                part_bytes,
            },
        ),
        Command::Policy {
            command: PolicyCommand::New { name, lang, dir },
        } => wicket::policy_new::run(&name, lang, &dir).map(|_| ()),
        Command::Simulate(args) => wicket::simulate::cli::run(&args),
        Command::Config => {
            print!(
                "{}",
                toml::to_string_pretty(&Config::default()).context("rendering the defaults")?
            );
            Ok(())
        }
        Command::DemoApp { listen, pod } => {
            runtime()?.block_on(wicket::demo_app::serve(listen, pod))
        }
    }
}
