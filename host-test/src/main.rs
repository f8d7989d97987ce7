//! `d365`: run the Dynamics 365 connector component from the command line.

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use host_test::cli::{self, RunOutcome};
use host_test::emulator::{self, Emulator};
use host_test::host::{ConnectorHost, Route, error_json, rejection_json, trap};
use host_test::trigger::{self as webhook_host, Delivery};
use http_body_util::Full;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "d365",
    version,
    about = "Run the Microsoft Dynamics 365 connector (a WebAssembly component) under wasmtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one action and print its output JSON on stdout (errors as JSON on
    /// stderr, exit code 1). Without --connection, an embedded emulator
    /// answers in-process.
    Run {
        /// The action key, e.g. getCurrentUser (see `d365 actions`).
        action: String,
        /// The action's inputs as a JSON object.
        #[arg(long, conflicts_with = "input_file")]
        input: Option<String>,
        /// Read the inputs JSON from this file.
        #[arg(long)]
        input_file: Option<PathBuf>,
        /// Connection file: {"type": "oauth2ClientCredentials" | "oauth2AuthCode",
        /// …settings…, "state": {…}}. A refreshed token state is written back.
        #[arg(long)]
        connection: Option<PathBuf>,
        /// Read a local file into an input as base64, e.g.
        /// `--file fileContent=./report.pdf` for uploadFile (repeatable).
        #[arg(long = "file", value_name = "KEY=PATH", value_parser = cli::parse_file_arg)]
        files: Vec<(String, PathBuf)>,
        /// Write the output's fileContent, decoded, to this file (mode 0600)
        /// instead of printing it, e.g. `--save ./out.pdf` for downloadFile;
        /// the printed output then says where and how many bytes.
        #[arg(long, value_name = "PATH")]
        save: Option<PathBuf>,
    },
    /// Serve every action the connection permits as a Model Context
    /// Protocol tool, over stdio (or streamable HTTP with --http). Without
    /// --connection, an embedded emulator answers in-process.
    Mcp {
        /// Connection file, as for `run`; a refreshed token state is written back.
        #[arg(long)]
        connection: Option<PathBuf>,
        /// Serve only the actions that read (no create, update, delete,
        /// raw request, batch or custom action).
        #[arg(long)]
        read_only: bool,
        /// Serve only these action keys (on top of the connection's
        /// allowedOperations).
        #[arg(long, value_delimiter = ',', value_name = "KEY,KEY…")]
        allow: Vec<String>,
        /// Serve the streamable HTTP transport on 127.0.0.1:PORT (0 picks
        /// one; the URL is printed on stderr) instead of stdio.
        #[arg(long, value_name = "PORT")]
        http: Option<u16>,
    },
    /// Serve the Dataverse emulator on 127.0.0.1 until interrupted.
    Emulator {
        /// Port to listen on; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Generate this many extra account records (for paging and benchmarks).
        #[arg(long, default_value_t = 0)]
        records: usize,
        /// Write a ready-to-use client-credentials connection file here.
        #[arg(long)]
        connection_out: Option<PathBuf>,
        /// Answer every Nth Web API request with 429 Too Many Requests
        /// (service protection body, Retry-After).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        inject_429_every: Option<u64>,
        /// The Retry-After of injected 429s, in seconds.
        #[arg(
            long,
            value_name = "S",
            default_value_t = 1,
            requires = "inject_429_every"
        )]
        retry_after: u64,
        /// Answer every Nth Web API request with 503 Service Unavailable.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        inject_503_every: Option<u64>,
        /// Serve as an environment where Dataverse search is off: its status
        /// says notprovisioned and search queries are refused.
        #[arg(long)]
        no_search: bool,
        /// Enforce Dataverse's service protection limits per user, scaled:
        /// e.g. requests=600,window=30s,concurrent=8,execution=120s (any
        /// subset; the rest as documented: 6000 requests and 20 min of
        /// execution per 300 s, 52 at once). `--limits ""` for the
        /// documented limits as they are.
        #[arg(long, value_name = "SPEC", value_parser = parse_limits)]
        limits: Option<emulator::limits::Limits>,
        /// Elastic tables (contoso_sensordatas): a write stays unseen for
        /// this many seconds by reads without a session token at least as
        /// new, as Dataverse's session consistency allows (0: seen at once).
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        elastic_lag: u64,
    },
    /// Run concurrent workflows on one connection against the loopback
    /// emulator with scaled service protection limits, and report
    /// throughput against the limits' ceiling, 429s by limit, latencies,
    /// errors, and the duplicate and lost writes found in the store.
    Load {
        /// Concurrent workflows (each call a fresh component instance).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=512))]
        workers: u64,
        /// How long to run.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// The emulator's limits (see `d365 emulator --limits`); default
        /// requests=200,window=5s,concurrent=16,execution=10s.
        #[arg(long, value_name = "SPEC", value_parser = parse_limits)]
        limits: Option<emulator::limits::Limits>,
        /// Print the report as JSON (keys include duplicates, lost and
        /// ceilingFraction).
        #[arg(long)]
        json: bool,
        /// Instead: a soak of --calls getEntity calls, one after another
        /// (a fresh instance each), sampling the host's RSS and open
        /// descriptors every --every calls.
        #[arg(long)]
        soak: bool,
        #[arg(long, default_value_t = 1_000_000, requires = "soak")]
        calls: u64,
        #[arg(long, default_value_t = 10_000, requires = "soak")]
        every: u64,
    },
    /// Write the connector component this d365 embeds (the release build,
    /// custom sections stripped): the file to load into a platform.
    Component {
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// List the connector's actions as the component reports them.
    Actions {
        /// Print the whole catalog as JSON.
        #[arg(long, conflicts_with = "yaml")]
        json: bool,
        /// Print the whole catalog as YAML (the content of connector.yaml).
        #[arg(long)]
        yaml: bool,
    },
    /// Show one action: its description and every input with type, default,
    /// required flag and comment.
    Describe {
        /// The action key, e.g. queryEntities.
        action: String,
        /// Print the action's catalog entry (with its JSON Schemas) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign in with the authorization code flow (PKCE) and save the tokens
    /// into the connection file: prints the URL to open, receives the
    /// redirect on the loopback port of the connection's redirectUri.
    Login {
        /// An oauth2AuthCode connection file (with redirectUri).
        #[arg(long)]
        connection: PathBuf,
    },
    /// Benchmark the connector against a native Rust client and
    /// DynamicsWebApi (Node) on a loopback emulator with generated data.
    Bench {
        /// Small sizes, one round (what CI runs so the suite cannot rot).
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Run only these scenarios (numbers 1–7, comma-separated), e.g. to
        /// profile one.
        #[arg(long, value_delimiter = ',', value_name = "N,...")]
        only: Vec<u8>,
        /// Also write the report, with this machine's description, as
        /// Markdown to this file (how `host-test/benches/RESULTS.md` is made).
        #[arg(long, value_name = "FILE")]
        results: Option<PathBuf>,
    },
    /// Run every action under every injected fault (429, 503, 500, resets,
    /// cut, invalid and endless bodies, a stall, an expired token) against
    /// fresh in-process emulators, and print the matrix next to the
    /// committed table. Runs on a simulated clock (Retry-After, back-off
    /// and stalls take no real time). Exit code 1 when an outcome differs
    /// from the table or an invariant (no duplicate write, no partial
    /// fetch-all, typed errors) breaks.
    Faults {
        /// Print the observed outcomes as the table's TSV instead.
        #[arg(long)]
        tsv: bool,
    },
    /// Run one of the connector's triggers.
    Trigger {
        #[command(subcommand)]
        trigger: TriggerCommand,
    },
}

#[derive(Subcommand)]
enum TriggerCommand {
    /// The webhook trigger. With --listen: serve it on 127.0.0.1:PORT, print
    /// each accepted event as one JSON line on stdout (rejections as JSON
    /// lines on stderr) until interrupted; the listening URL is printed on
    /// stderr first. With --subscribe as well, first register the trigger
    /// in Dataverse (a service endpoint posting to the listening URL, one
    /// step per message of --input) through --connection, print
    /// {"subscribed": …} on stderr, and remove the registration again on
    /// Ctrl-C. With --request-file: run it once on that request and print
    /// the event (exit 0) or the rejection on stderr (exit 1).
    #[command(group = clap::ArgGroup::new("source").required(true).args(["listen", "request_file"]))]
    Webhook {
        /// Port to listen on (0 picks a free one).
        #[arg(long)]
        listen: Option<u16>,
        /// A JSON file {method, url, headers, body} holding one request.
        #[arg(long)]
        request_file: Option<PathBuf>,
        /// The webhookKey input: requests must carry it as ?code=…
        #[arg(long)]
        key: Option<String>,
        /// The trigger's inputs as a JSON object (entityName, messages,
        /// filteringAttributes, stage, preImageAttributes,
        /// postImageAttributes, runAsUserId; webhookKey, or --key).
        #[arg(long)]
        input: Option<String>,
        /// Register the trigger with Dataverse while listening (needs
        /// --listen and --connection); unregister on Ctrl-C.
        #[arg(long, requires_all = ["listen", "connection"])]
        subscribe: bool,
        /// The connection file subscribe and unsubscribe use (token state
        /// written back).
        #[arg(long)]
        connection: Option<PathBuf>,
        /// The URL Dataverse should post to, when not the listening URL
        /// (a tunnel or reverse proxy in front of it).
        #[arg(long, requires = "subscribe")]
        callback_url: Option<String>,
        /// Save the subscription record here (private file), for
        /// `d365 trigger unsubscribe` should this process not get to it.
        #[arg(long, requires = "subscribe")]
        subscription_out: Option<PathBuf>,
    },
    /// Remove a subscription `d365 trigger webhook --subscribe` made (the
    /// file --subscription-out saved): its steps, images and service
    /// endpoint. Rows already gone are fine.
    Unsubscribe {
        /// The connection file (token state written back).
        #[arg(long)]
        connection: PathBuf,
        /// The subscription file.
        #[arg(long)]
        subscription: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            let msg = serde_json::json!({"kind": "host", "message": format!("{e:#}")});
            eprintln!("{msg}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            action,
            input,
            input_file,
            connection,
            files,
            save,
        } => {
            let inputs = match (input, input_file) {
                (Some(i), _) => i,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?,
                (None, None) => "{}".to_string(),
            };
            let inputs = cli::attach_files(&inputs, &files)?;
            let file = connection
                .as_deref()
                .map(cli::read_connection)
                .transpose()?;
            let host = ConnectorHost::shared().map_err(trap)?;
            host_test::host::route::set_observer(Some(cli::progress_observer()));
            match cli::run_action(host, &action, &inputs, file.as_ref(), None).await? {
                RunOutcome::Ok { output, refreshed } => {
                    if let (Some(path), Some(updated)) = (&connection, refreshed) {
                        cli::write_connection(path, &updated)?;
                    }
                    let output = match &save {
                        Some(path) => cli::save_content(output, path)?,
                        None => output,
                    };
                    println!("{}", serde_json::to_string_pretty(&output)?);
                    Ok(ExitCode::SUCCESS)
                }
                RunOutcome::Err(e) => {
                    eprintln!("{}", serde_json::to_string_pretty(&e)?);
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Mcp {
            connection,
            read_only,
            allow,
            http,
        } => {
            host_test::mcp::serve(host_test::mcp::Options {
                connection,
                read_only,
                allow,
                http,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Emulator {
            port,
            records,
            connection_out,
            inject_429_every,
            retry_after,
            inject_503_every,
            no_search,
            limits,
            elastic_lag,
        } => {
            if let Some(l) = &limits {
                eprintln!("service protection limits: {l}");
            }
            let emulator = Emulator::new(emulator::Config {
                generated_records: records,
                search_enabled: !no_search,
                limits,
                elastic_read_lag_secs: elastic_lag,
                // A server answering for hours must not keep every page it sent.
                log_retention: emulator::LogRetention::RECENT,
                ..Default::default()
            });
            let mut faults = emulator::Faults::default();
            if let Some(n) = inject_429_every {
                faults = faults.with_error(
                    emulator::Trigger::Every(n),
                    emulator::Injected::Throttle {
                        retry_after_secs: retry_after,
                        limit: emulator::Limit::Requests,
                    },
                );
            }
            if let Some(n) = inject_503_every {
                faults = faults.with_error(
                    emulator::Trigger::Every(n),
                    emulator::Injected::Unavailable {
                        retry_after_secs: None,
                    },
                );
            }
            emulator.set_faults(faults);
            let server = emulator::server::serve(emulator, port).await?;
            let base = server.base_url();
            if let Some(path) = connection_out {
                cli::write_connection(&path, &cli::emulator_connection(&base))?;
            }
            println!("{base}");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = server.wait() => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Component { out } => {
            std::fs::write(&out, host_test::host::COMPONENT_WASM)?;
            eprintln!(
                "{}: {} bytes",
                out.display(),
                host_test::host::COMPONENT_WASM.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Actions { json, yaml } => {
            let catalog = ConnectorHost::shared()
                .map_err(trap)?
                .describe()
                .await
                .map_err(trap)?;
            if json {
                let v: serde_json::Value = serde_json::from_str(&catalog)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if yaml {
                print!("{}", cli::catalog_yaml(&catalog)?);
            } else {
                print!("{}", cli::catalog_table(&catalog)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Describe { action, json } => {
            let catalog = ConnectorHost::shared()
                .map_err(trap)?
                .describe()
                .await
                .map_err(trap)?;
            if json {
                let v: serde_json::Value = serde_json::from_str(&catalog)?;
                let entry = v["actions"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["key"] == action.as_str()))
                    .with_context(|| format!("no action '{action}' (see `d365 actions`)"))?;
                println!("{}", serde_json::to_string_pretty(entry)?);
            } else {
                print!("{}", cli::describe_action(&catalog, &action)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Login { connection } => login(&connection).await,
        Command::Load {
            workers,
            seconds,
            limits,
            json,
            soak,
            calls,
            every,
        } => {
            let host = ConnectorHost::shared().map_err(trap)?;
            if soak {
                let report = host_test::load::soak(host, calls, every).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    println!("call\tRSS KiB\tfds");
                    for s in &report.samples {
                        println!("{}\t{}\t{}", s.call, s.rss_kib, s.fds);
                    }
                    println!(
                        "{} calls in {:.0} s, {} errors; RSS growth from 10 % of the calls to the end {:+.1} %, descriptors {:+}",
                        report.calls,
                        report.seconds,
                        report.errors,
                        report.rss_growth * 100.0,
                        report.fd_growth
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let limits = match limits {
                Some(l) => l,
                None => host_test::load::DEFAULT_LIMITS
                    .parse()
                    .map_err(anyhow::Error::msg)?,
            };
            let config = host_test::load::LoadConfig {
                workers: workers as usize,
                seconds,
                limits,
            };
            let report = host_test::load::run(host, &config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", host_test::load::render(&report));
            }
            let clean = report.duplicates == 0 && report.lost == 0;
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench {
            quick,
            json,
            only,
            results,
        } => {
            let sizes = if quick {
                host_test::bench::Sizes::QUICK
            } else {
                host_test::bench::Sizes::FULL
            };
            if let Some(bad) = only.iter().find(|n| !(1..=7).contains(*n)) {
                anyhow::bail!("--only: scenario {bad} does not exist (1–7)");
            }
            let before = host_test::bench::machine::Machine::now();
            let report = host_test::bench::run(sizes, &only).await?;
            if let Some(path) = results {
                let after = host_test::bench::machine::Machine::now();
                std::fs::write(&path, report.markdown(&before, &after))
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("bench: wrote {}", path.display());
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report.json())?);
            } else {
                print!("{}", report.table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Faults { tsv } => faults(tsv),
        Command::Trigger {
            trigger:
                TriggerCommand::Webhook {
                    listen,
                    request_file,
                    key,
                    input,
                    subscribe,
                    connection,
                    callback_url,
                    subscription_out,
                },
        } => {
            let subscribe = subscribe.then_some(Subscribe {
                connection,
                callback_url,
                subscription_out,
            });
            webhook(listen, request_file, key, input, subscribe).await
        }
        Command::Trigger {
            trigger:
                TriggerCommand::Unsubscribe {
                    connection,
                    subscription,
                },
        } => unsubscribe(&connection, &subscription).await,
    }
}

/// `d365 faults`: the matrix runs on its own paused-clock runtime (a
/// thread of its own, outside the CLI's runtime).
fn faults(tsv: bool) -> Result<ExitCode> {
    use host_test::fault_matrix;
    let host = ConnectorHost::shared().map_err(trap)?;
    let cells = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()?;
        runtime
            .block_on(fault_matrix::run(host))
            .map_err(anyhow::Error::msg)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the fault matrix panicked"))??;
    if tsv {
        print!("{}", fault_matrix::to_tsv(&cells));
        return Ok(ExitCode::SUCCESS);
    }
    let expected =
        fault_matrix::parse_table(fault_matrix::COMMITTED_TABLE).map_err(anyhow::Error::msg)?;
    print!("{}", fault_matrix::render(&cells, &expected));
    let problems: Vec<String> = fault_matrix::mismatches(&cells, &expected)
        .into_iter()
        .chain(fault_matrix::violations(&cells))
        .collect();
    for p in &problems {
        eprintln!("{p}");
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `d365 trigger webhook --subscribe`'s options.
struct Subscribe {
    connection: Option<PathBuf>,
    callback_url: Option<String>,
    subscription_out: Option<PathBuf>,
}

/// `d365 trigger unsubscribe`.
async fn unsubscribe(connection: &std::path::Path, path: &std::path::Path) -> Result<ExitCode> {
    let file = cli::read_connection(connection)?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let subscription = host_test::host::subscription_from_json(&v)?;
    let host = ConnectorHost::shared().map_err(trap)?;
    match host
        .unsubscribe(&Route::Network, &file.connection()?, &subscription)
        .await
        .map_err(trap)?
    {
        Ok(()) => {
            println!("{}", serde_json::json!({"unsubscribed": subscription.name}));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}", serde_json::to_string_pretty(&error_json(&e))?);
            Ok(ExitCode::from(1))
        }
    }
}

/// `d365 trigger webhook`.
async fn webhook(
    listen: Option<u16>,
    request_file: Option<PathBuf>,
    key: Option<String>,
    input: Option<String>,
    subscribe: Option<Subscribe>,
) -> Result<ExitCode> {
    let mut inputs = match input {
        Some(text) => {
            match serde_json::from_str::<serde_json::Value>(&text).context("--input is not JSON")? {
                serde_json::Value::Object(map) => map,
                _ => bail!("--input must be a JSON object of the trigger's inputs"),
            }
        }
        None => serde_json::Map::new(),
    };
    if let Some(k) = key {
        inputs.insert("webhookKey".into(), k.into());
    }
    let inputs = serde_json::Value::Object(inputs).to_string();
    let host = ConnectorHost::shared().map_err(trap)?;
    if let Some(path) = request_file {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let request = webhook_host::request_from_json(&text)
            .with_context(|| format!("in {}", path.display()))?;
        return match host.webhook(&request, &inputs).await.map_err(trap)? {
            Ok(event) => {
                let v: serde_json::Value = serde_json::from_str(&event.payload)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(rejection) => {
                eprintln!(
                    "{}",
                    serde_json::to_string_pretty(&rejection_json(&rejection))?
                );
                Ok(ExitCode::from(1))
            }
        };
    }
    let port = listen.context("--listen PORT or --request-file F is required")?;
    let (listener, mut deliveries) = webhook_host::listen(host, port, inputs.clone()).await?;
    eprintln!("listening on {}", listener.url());
    let mut subscribed = None;
    if let Some(options) = subscribe {
        let path = options
            .connection
            .context("--subscribe needs --connection")?;
        let mut file = cli::read_connection(&path)?;
        let callback = options.callback_url.unwrap_or_else(|| listener.url());
        let result = host
            .subscribe(&Route::Network, &file.connection()?, &inputs, &callback)
            .await
            .map_err(trap)?;
        match result {
            Ok(mut subscription) => {
                if let Some(state) = subscription.state.take() {
                    file.state = Some(state.into());
                    cli::write_connection(&path, &file)?;
                }
                let record = host_test::host::subscription_json(&subscription);
                if let Some(out) = &options.subscription_out {
                    cli::write_private(out, serde_json::to_string_pretty(&record)?.as_bytes())
                        .with_context(|| format!("writing {}", out.display()))?;
                }
                eprintln!("{}", serde_json::json!({ "subscribed": record }));
                subscribed = Some((path, subscription));
            }
            Err(e) => {
                eprintln!("{}", serde_json::to_string_pretty(&error_json(&e))?);
                listener.shutdown();
                return Ok(ExitCode::from(1));
            }
        }
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            delivery = deliveries.recv() => match delivery {
                Some(Delivery::Event(v)) => println!("{v}"),
                Some(Delivery::Rejected(v)) => eprintln!("{v}"),
                None => break,
            },
        }
    }
    listener.shutdown();
    if let Some((path, subscription)) = subscribed {
        let file = cli::read_connection(&path)?;
        match host
            .unsubscribe(&Route::Network, &file.connection()?, &subscription)
            .await
            .map_err(trap)?
        {
            Ok(()) => eprintln!("{}", serde_json::json!({"unsubscribed": subscription.name})),
            Err(e) => {
                eprintln!("{}", serde_json::to_string_pretty(&error_json(&e))?);
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The authorization code flow with a loopback redirect listener.
async fn login(path: &std::path::Path) -> Result<ExitCode> {
    let mut file = cli::read_connection(path)?;
    if file.connection_type != "oauth2AuthCode" {
        bail!(
            "login needs an oauth2AuthCode connection, {} has {}",
            path.display(),
            file.connection_type
        );
    }
    let settings = file.settings_json();
    let host = ConnectorHost::shared().map_err(trap)?;
    let request = match host.authorize_url(&settings).await.map_err(trap)? {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}", serde_json::to_string_pretty(&error_json(&e))?);
            return Ok(ExitCode::from(1));
        }
    };
    let redirect = file
        .settings
        .get("redirectUri")
        .and_then(|v| v.as_str())
        .map(url::Url::parse)
        .transpose()?
        .context("the connection has no redirectUri")?;
    let port = redirect.port_or_known_default().unwrap_or(80);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port} for the redirect"))?;
    for w in &request.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!("Open this URL in a browser and sign in:");
    println!("{}", request.url);

    // Wait for the one redirect that carries our state.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(String, String)>>(1);
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let pairs: Vec<(String, String)> = req
                                .uri()
                                .query()
                                .map(|q| {
                                    url::form_urlencoded::parse(q.as_bytes())
                                        .into_owned()
                                        .collect()
                                })
                                .unwrap_or_default();
                            let _ = tx.send(pairs).await;
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"Signed in. You can close this window."),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let pairs = loop {
        let pairs = rx.recv().await.context("redirect listener stopped")?;
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if get("state").as_deref() == Some(request.state.as_str()) {
            break pairs;
        }
    };
    server.abort();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(error) = get("error") {
        bail!(
            "sign-in failed: {error}: {}",
            get("error_description").unwrap_or_default()
        );
    }
    let code = get("code").context("the redirect carried no code")?;
    match host
        .exchange_code(&Route::Network, &settings, &code, &request.code_verifier)
        .await
        .map_err(trap)?
    {
        Ok(state) => {
            file.state = Some(state.into());
            cli::write_connection(path, &file)?;
            eprintln!("Signed in; tokens saved to {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}", serde_json::to_string_pretty(&error_json(&e))?);
            Ok(ExitCode::from(1))
        }
    }
}

/// `--limits`: the emulator's scaled service protection limits.
fn parse_limits(text: &str) -> Result<emulator::limits::Limits, String> {
    text.parse()
}
