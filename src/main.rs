//! The `orderflow` command line.

mod archive;
mod config;
mod cost;
mod deadlines;
mod functions;
mod load;
mod ops;
mod parked;
mod pipeline;
mod refused;
mod replay;
mod serve;
mod settings;
mod telemetry;
mod topics;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{Config, Flags};
use orderflow_store_dynamodb::DynamoStore;
use settings::Settings;

// A faster allocator for a server that allocates per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Event-sourced order processing: orders, inventory and fulfillment.
///
/// Settings come from flags, then environment variables, then the `Values`
/// of ./local.settings.json, in that order.
#[derive(Parser)]
#[command(name = "orderflow", version, about, long_about)]
struct Cli {
    /// Log as JSON lines (one object per event, with its spans), for log
    /// collectors [setting OrderflowLogFormat=json]
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the whole pipeline in one process: the HTTP API on --listen and
    /// the change-feed consumers (snapshots, downstream topics, fulfillment),
    /// on the embedded store in --data-dir. Stops cleanly on Ctrl-C/SIGTERM.
    Serve {
        #[command(flatten)]
        flags: Flags,
    },
    /// Drive a running `serve` with a workload and report throughput,
    /// latency percentiles, errors and snapshot lag.
    Load {
        /// The server to load
        #[arg(long, default_value = "http://127.0.0.1:7071", value_name = "URL")]
        target: String,
        /// Requests in flight at once (closed loop: each worker waits for its answer)
        #[arg(long, short, default_value_t = 32)]
        concurrency: usize,
        /// Open loop: start this many requests per second on a fixed schedule
        /// (at most --concurrency in flight); latency counts from each
        /// request's scheduled start
        #[arg(long, value_name = "PER_SECOND")]
        rate: Option<u32>,
        /// How long to run, such as 30s or 2m
        #[arg(long, short, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// `place` places orders only; `lifecycle` takes orders through payment and delivery;
        /// `ingest` produces stock events to Kafka (KafkaBrokerList) and times their application
        #[arg(long, value_enum, default_value = "place")]
        workload: load::Workload,
        /// Seed of the random choices, to repeat a run
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many distinct SKUs orders draw from
        #[arg(long, default_value_t = 200)]
        skus: usize,
        /// Print the result as one JSON object (no progress bar)
        #[arg(long)]
        json: bool,
        /// Messages to produce, for the ingest workload
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
    },
    /// Create the Cosmos DB database and its containers (events, snapshots,
    /// leases) with their partition keys and indexing policies; idempotent
    /// [settings CosmosDBConnection, CosmosDatabase]
    Init,
    /// The Azure Functions custom handler: serves the host's invocation
    /// protocol on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT (the host starts
    /// it, as host.json says; app settings come from the environment).
    Functions,
    /// An AWS Lambda function (custom runtime): the HTTP API behind API
    /// Gateway or a function URL, or ingestion from a Kafka event source.
    /// Named `bootstrap`, the binary runs this with the function's handler
    /// setting (`_HANDLER`: http, kafka, deadlines, or change-feed steps on
    /// the events table's DynamoDB Stream: publish-events,
    /// project-snapshots, fulfillment — several of them comma-separated run
    /// on each batch of one event source mapping).
    Lambda {
        #[arg(value_enum, value_delimiter = ',', required = true)]
        handler: Vec<LambdaHandler>,
    },
    /// Rebuild what is derived from the event store.
    Replay {
        #[command(subcommand)]
        command: ReplayCommands,
    },
    /// The configuration in effect.
    Config {
        #[command(subcommand)]
        command: ConfigCommands,
    },
    /// What an order costs on the configured Cosmos DB account, measured
    /// (request units per operation, document sizes), and the monthly cost
    /// of the small / medium / large profiles, every price a flag
    /// [settings CosmosDBConnection or CosmosDBConnection__accountEndpoint]
    Cost {
        /// Whole orders to run through every step
        #[arg(long, default_value_t = 200)]
        orders: u64,
        /// The database to measure in: one of its own (created with the
        /// account key; with an identity, one that exists)
        #[arg(long, default_value = "orderflow-cost")]
        database: String,
        /// Price the months with the request units the account charged
        /// (`measured`), or with the measured operations at Microsoft's
        /// published per-KB rates (`planning`: what to plan with before
        /// measuring a real account; the emulator's RU are a model)
        #[arg(long, value_enum, default_value = "measured")]
        ru_from: cost::RuFrom,
        /// Print one JSON object (no progress bar)
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        prices: cost::Prices,
    },
    /// Streams a change-feed consumer could not handle: their events wait,
    /// in order, while every other stream goes on.
    Parked {
        #[command(subcommand)]
        command: ParkedCommands,
    },
    /// Reactions of the fulfillment policy that their target stream refused.
    Refused {
        #[command(subcommand)]
        command: RefusedCommands,
    },
    /// Deadlines of orders (payment, backorder, delivery) waiting for their
    /// time.
    Deadlines {
        #[command(subcommand)]
        command: DeadlineCommands,
    },
    /// Move the events of orders delivered or cancelled before a time out of
    /// the hot store into the archive, where reads still find them (as
    /// `serve` does on a schedule) [store settings as for serve]
    Archive {
        /// An RFC 3339 time, or how long ago (such as 90d)
        #[arg(long, value_name = "TIME|DURATION", value_parser = archive::parse_cutoff)]
        closed_before: chrono::DateTime<chrono::Utc>,
        /// Where the embedded store lives [setting OrderflowDataDir; default ./.orderflow]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// No progress bar
        #[arg(long)]
        quiet: bool,
    },
    /// Tools for development.
    Dev {
        #[command(subcommand)]
        command: DevCommands,
    },
    /// Work with topics: Kafka when KafkaBrokerList is set, else the
    /// embedded topic log.
    Topics {
        #[command(subcommand)]
        command: TopicCommands,
    },
}

#[derive(Subcommand)]
enum ReplayCommands {
    /// Project every stream's snapshot again from its events, stream by
    /// stream over all history (after deleting snapshots, or to repair
    /// them). Safe while `serve` runs; an interrupted replay resumes where it
    /// stopped.
    Snapshots {
        /// Where the embedded store lives [setting OrderflowDataDir; default ./.orderflow]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// No progress display
        #[arg(long)]
        quiet: bool,
    },
    /// Publish again, to the downstream topics, the events committed since
    /// --from (after a topic was lost or a consumer must catch up).
    /// Consumers recognise a republished event by its CloudEvent id.
    Topics {
        /// RFC 3339 time, such as 2026-11-25T08:00:00Z
        #[arg(long, value_parser = parse_time)]
        from: chrono::DateTime<chrono::Utc>,
        /// Where the embedded store lives [setting OrderflowDataDir; default ./.orderflow]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// No progress display
        #[arg(long)]
        quiet: bool,
    },
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{e} (expected RFC 3339, such as 2026-11-25T08:00:00Z)"))
}

#[derive(Subcommand)]
enum ParkedCommands {
    /// List them: the consumer, the stream, the event it stopped at, how far
    /// the stream's events are held back, and why [store settings as for serve]
    List {
        /// Where the embedded store lives [setting OrderflowDataDir; default ./.orderflow]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Handle them again (once what failed is fixed), here and now: each
    /// stream's held-back events in order; a stream that gets through is
    /// unparked, one that fails again stays parked with the new reason.
    /// Fails when one stays parked [store settings as for serve]
    Retry {
        /// Only this stream (such as Order-42)
        stream: Option<String>,
        /// Only this consumer's (project-snapshots, publish-events, fulfillment)
        #[arg(long)]
        consumer: Option<String>,
        /// Where the embedded store lives [setting OrderflowDataDir; default ./.orderflow]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RefusedCommands {
    /// List them, newest first: the event, the command, the stream that
    /// refused it and why [store settings as for serve]
    List {
        /// Where the embedded store lives [setting OrderflowDataDir; default ./.orderflow]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// At most this many
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DeadlineCommands {
    /// List them, the earliest due first, with how long the overdue ones
    /// have waited [store settings as for serve]
    List {
        /// Where the embedded store lives [setting OrderflowDataDir; default ./.orderflow]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// At most this many
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Pass every deadline due now, once, as `serve` does every second (for
    /// a store no `serve` runs on) [store settings as for serve]
    Pass {
        /// Where the embedded store lives [setting OrderflowDataDir; default ./.orderflow]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommands {
    /// Print every setting's effective value and where it comes from (flag,
    /// environment, local.settings.json, default); secrets are masked.
    /// Takes serve's flags, to show what they would change.
    Show {
        #[command(flatten)]
        flags: Flags,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LambdaHandler {
    /// The HTTP API, behind API Gateway or a function URL
    Http,
    /// Ingestion from an MSK or self-managed Kafka event source
    Kafka,
    /// Passes due deadlines, on an EventBridge schedule
    Deadlines,
    /// Publishes the events downstream, from the events table's DynamoDB Stream
    PublishEvents,
    /// Projects the read models, from the events table's DynamoDB Stream
    ProjectSnapshots,
    /// Runs the fulfillment process manager, from the events table's DynamoDB Stream
    Fulfillment,
}

#[derive(Subcommand)]
enum DevCommands {
    /// Serve an in-memory Cosmos DB (the SDK's emulator) over HTTP, so that
    /// `serve` can use the real Cosmos wire protocol on one machine. Data
    /// lives in memory only. Needs a build with `--features cosmos-emulator`.
    CosmosEmulator {
        /// Address to listen on; port 0 picks a free one
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum TopicCommands {
    /// Print a topic's CloudEvents as JSON lines (orderflow.orders,
    /// orderflow.inventory, orderflow.deadletter).
    Read {
        /// The topic to read
        topic: String,
        /// Where the embedded store lives [setting OrderflowDataDir; default ./.orderflow]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Start at the first record (the default unless --follow)
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many records
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Keep waiting for new records
        #[arg(long, short)]
        follow: bool,
    },
    /// Produce CloudEvents to a Kafka topic: one structured CloudEvent (JSON)
    /// per line of standard input, sent in binary content mode keyed by its
    /// subject — as a payments, warehouse or stock system would. Prints how
    /// many were acknowledged [setting KafkaBrokerList]
    Produce {
        /// The topic: payments, warehouse or stock (the names KafkaTopic*
        /// settings give them apply)
        topic: String,
    },
    /// Create every topic orderflow uses on the Kafka cluster (idempotent;
    /// `serve` does it too) [settings KafkaBrokerList, KafkaPartitions]
    Create,
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(arguments());
    let json_logs =
        cli.log_json || std::env::var("OrderflowLogFormat").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    // Outside the async runtime: the OTLP exporter's HTTP client blocks, on
    // a thread of its own.
    let telemetry = telemetry::Telemetry::init(json_logs);
    // Blocking threads run the embedded store's reads, which share 8 pooled
    // connections: more threads only wait for one (and each keeps its own
    // allocator heap: 40 of them cost ~100 MB of resident memory under load).
    let runtime = match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(16).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    // Everything that matters is durable by now; do not wait on clients
    // (Kafka's) whose destructors talk to a broker that may be gone.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    telemetry.shutdown();
    code
}

/// The command line; as a Lambda custom runtime's `bootstrap`, the Lambda
/// handler named by the function's `_HANDLER` setting.
fn arguments() -> Vec<std::ffi::OsString> {
    let mut arguments: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let program = arguments.first().map(PathBuf::from);
    if program.is_some_and(|p| p.file_name().is_some_and(|name| name == "bootstrap")) && arguments.len() == 1 {
        let handler = std::env::var("_HANDLER").unwrap_or_else(|_| "http".into());
        arguments.extend(["lambda".into(), handler.into()]);
    }
    arguments
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&std::env::current_dir().context("cannot read the working directory")?)?;
    match cli.command {
        Commands::Serve { flags } => serve::serve(Config::resolve(flags, &settings)?).await,
        Commands::Load { target, concurrency, rate, duration, workload, seed, skus, json, messages } => {
            if concurrency == 0 {
                anyhow::bail!("--concurrency must be at least 1");
            }
            if rate == Some(0) {
                anyhow::bail!("--rate must be at least 1 request per second");
            }
            let kafka = Config::resolve(Flags::default(), &settings)?.kafka;
            let options =
                load::LoadOptions { target, concurrency, duration, workload, seed, skus, json, kafka, messages, rate };
            load::run(options).await
        }
        Commands::Topics { command: TopicCommands::Read { topic, data_dir, from_beginning, count, follow } } => {
            let config = Config::resolve(Flags { data_dir, ..Flags::default() }, &settings)?;
            topics::read(&config, topics::ReadOptions { topic, from_beginning, count, follow }).await
        }
        Commands::Init => {
            let config = Config::resolve(Flags::default(), &settings)?;
            if let Some(dynamodb) = &config.dynamodb {
                let aws = orderflow_store_dynamodb::standard_config().await;
                let store = DynamoStore::new(&aws, &dynamodb.table_prefix, config.key_retention);
                let created = orderflow_store_dynamodb::init(store.client(), &dynamodb.table_prefix).await?;
                let (prefix, at) = (&dynamodb.table_prefix, store.endpoint());
                println!("tables {prefix}* ready at {at} (created {} of them)", created.len());
                return Ok(());
            }
            let Some(cosmos) = &config.cosmos else {
                anyhow::bail!(
                    "neither CosmosDBConnection nor DynamoDBTablePrefix is set: the embedded store needs no init"
                );
            };
            let client = orderflow_store_cosmos::client(&cosmos.account, &cosmos.region).await?;
            orderflow_store_cosmos::init(&client, &cosmos.database).await?;
            println!("database {} ready at {}", cosmos.database, cosmos.account.endpoint());
            Ok(())
        }
        Commands::Config { command: ConfigCommands::Show { flags } } => {
            let given = flags.given();
            let config = Config::resolve(flags, &settings)?;
            for (setting, value, from) in config.show(&given, &settings) {
                println!("{setting:<24} {value:<56} {from}");
            }
            Ok(())
        }
        Commands::Replay { command: ReplayCommands::Snapshots { data_dir, quiet } } => {
            replay::snapshots(Config::resolve(Flags { data_dir, ..Flags::default() }, &settings)?, quiet).await
        }
        Commands::Replay { command: ReplayCommands::Topics { from, data_dir, quiet } } => {
            replay::topics(Config::resolve(Flags { data_dir, ..Flags::default() }, &settings)?, from, quiet).await
        }
        Commands::Cost { orders, database, ru_from, json, prices } => {
            if orders == 0 {
                anyhow::bail!("--orders must be at least 1");
            }
            let config = Config::resolve(Flags::default(), &settings)?;
            cost::run(&config, orders, &database, &prices, ru_from, json).await
        }
        Commands::Parked { command: ParkedCommands::List { data_dir, json } } => {
            parked::list(&Config::resolve(Flags { data_dir, ..Flags::default() }, &settings)?, json).await
        }
        Commands::Parked { command: ParkedCommands::Retry { stream, consumer, data_dir } } => {
            let config = Config::resolve(Flags { data_dir, ..Flags::default() }, &settings)?;
            parked::retry_parked(&config, stream, consumer).await
        }
        Commands::Archive { closed_before, data_dir, quiet } => {
            archive::run(&Config::resolve(Flags { data_dir, ..Flags::default() }, &settings)?, closed_before, quiet)
                .await
        }
        Commands::Refused { command: RefusedCommands::List { data_dir, limit, json } } => {
            refused::list(&Config::resolve(Flags { data_dir, ..Flags::default() }, &settings)?, limit, json).await
        }
        Commands::Deadlines { command: DeadlineCommands::List { data_dir, limit, json } } => {
            deadlines::list(&Config::resolve(Flags { data_dir, ..Flags::default() }, &settings)?, limit, json).await
        }
        Commands::Deadlines { command: DeadlineCommands::Pass { data_dir } } => {
            deadlines::pass(&Config::resolve(Flags { data_dir, ..Flags::default() }, &settings)?).await
        }
        Commands::Functions => functions::run(Config::resolve(Flags::default(), &settings)?).await,
        Commands::Lambda { handler } => lambda(handler, Config::resolve(Flags::default(), &settings)?).await,
        Commands::Dev { command: DevCommands::CosmosEmulator { listen } } => dev_cosmos_emulator(listen).await,
        Commands::Topics { command: TopicCommands::Produce { topic } } => {
            topics::produce(&Config::resolve(Flags::default(), &settings)?, &topic).await
        }
        Commands::Topics { command: TopicCommands::Create } => {
            let config = Config::resolve(Flags::default(), &settings)?;
            topics::create(&config).await
        }
    }
}

async fn lambda(handlers: Vec<LambdaHandler>, config: Config) -> anyhow::Result<()> {
    let pipeline = pipeline::Pipeline::open(&config).await?;
    let ran = match handlers[..] {
        [LambdaHandler::Http] => {
            orderflow_lambda::run_http(orderflow_api::router(pipeline.app(&config), &config.api)).await
        }
        [LambdaHandler::Kafka] => orderflow_lambda::run_kafka(pipeline.ingestor.clone()).await,
        [LambdaHandler::Deadlines] => {
            orderflow_lambda::run_deadlines(std::sync::Arc::new(pipeline.time_driven())).await
        }
        _ => orderflow_lambda::run_stream(change_feed_steps(&pipeline, &handlers)?).await,
    };
    pipeline.flush().await;
    ran.map_err(|error| anyhow::anyhow!("the Lambda runtime stopped: {error}"))
}

/// The change-feed steps `handlers` name, each behind the parked streams.
fn change_feed_steps(
    pipeline: &pipeline::Pipeline,
    handlers: &[LambdaHandler],
) -> anyhow::Result<std::sync::Arc<[orderflow_pipeline::consumers::Parked]>> {
    let consumers = pipeline.consumers();
    let step = |handler: &LambdaHandler| {
        let name =
            clap::ValueEnum::to_possible_value(handler).map(|value| value.get_name().to_string()).unwrap_or_default();
        let Some(step) = consumers.iter().find(|consumer| consumer.name() == name) else {
            anyhow::bail!("{name} is not a change-feed step: only those run together on one function");
        };
        Ok(orderflow_pipeline::consumers::Parked::new(step.clone(), pipeline.stores.parking.clone()))
    };
    handlers.iter().map(step).collect()
}

#[cfg(feature = "cosmos-emulator")]
async fn dev_cosmos_emulator(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr().context("cannot read the listening address")?;
    // The first line on stdout says how to reach it (tests read it).
    println!("Cosmos DB emulator on http://{address}/ — CosmosDBConnection=AccountEndpoint=http://{address}/;AccountKey=ZW11bGF0b3I=;");
    orderflow_store_cosmos::emulator::serve(listener).await?;
    Ok(())
}

#[cfg(not(feature = "cosmos-emulator"))]
async fn dev_cosmos_emulator(_listen: std::net::SocketAddr) -> anyhow::Result<()> {
    anyhow::bail!("this build has no Cosmos DB emulator: build with `cargo run --features cosmos-emulator -- dev cosmos-emulator`")
}
