//! The `ballast` command line. Library errors become `anyhow` reports here and nowhere else.

mod cli;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use ballast::config::PrometheusSettings;
use ballast::export;
use ballast::sim::{PolicySet, SimOptions, SimulationFile, Trace};
use ballast::sources::bullmq::{BullmqSource, ConnectOptions};
use clap::Parser;
use cli::{
    Cli, Command, DoctorArgs, KubeArgs, OutputFormat, PluginCommand, PluginLimitArgs, RedisArgs, RegistryArgs, RunArgs,
    SimulateArgs, TraceArgs,
};

fn main() -> anyhow::Result<()> {
    // kube's TLS needs a process-wide crypto provider; a second install (none here) would be harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    cli.log_format.init_logging();
    let runtime = || tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio");
    match cli.command {
        Command::Behavior { input } => behavior(&input),
        Command::Exporter { redis, listen, interval } => runtime()?.block_on(exporter(redis, listen, interval)),
        Command::Queues { redis, json } => runtime()?.block_on(queues(redis, json)),
        Command::Doctor(args) => runtime()?.block_on(doctor(*args)),
        Command::Run(args) => runtime()?.block_on(run(*args)),
        Command::Crd => {
            print!("{}", ballast::controller::crd::crd_yaml()?);
            Ok(())
        }
        Command::Status { kube, namespace, output } => runtime()?.block_on(status(kube, namespace, output)),
        Command::Explain { kube, policy, namespace, output } => {
            runtime()?.block_on(explain(kube, &policy, namespace.as_deref(), output))
        }
        Command::Simulate(args) => simulate(args),
        Command::Trace(args) => runtime()?.block_on(trace(*args)),
        Command::Demo { scorecard: true, seeds, policies, .. } => demo_scorecard(&seeds, policies.as_deref()),
        Command::Demo { out, seed, .. } => demo(&out, seed),
        Command::Plugin(command) => plugin(command),
        Command::CompilePlugin { memory_bytes, cpu_seconds } => {
            // The parent reads standard error as the refusal's reason: the message alone, no report decoration.
            if let Err(why) =
                ballast::runtime::serve_compile(ballast::runtime::compile_engine, memory_bytes, cpu_seconds)
            {
                eprintln!("{why}");
                std::process::exit(2);
            }
            Ok(())
        }
    }
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
    }
}

fn behavior(input: &str) -> anyhow::Result<()> {
    let text = read_input(input)?;
    let output =
        ballast::clamps::cli::evaluate_json(&text).with_context(|| format!("ballast behavior --input {input}"))?;
    println!("{output}");
    Ok(())
}

async fn exporter(redis: RedisArgs, listen: SocketAddr, interval: Duration) -> anyhow::Result<()> {
    // Lazy: the exporter starts and serves /healthz even while Redis is down, and reports it in its metrics.
    let source = BullmqSource::new(&redis.redis, redis.options()?)?;
    let listener = export::bind(listen).await?;
    tracing::info!("serving BullMQ queue metrics from {} on http://{listen}/metrics", source.url());
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    export::run_queue_exporter(source, redis.queue_refs(), listener, interval, shutdown).await?;
    Ok(())
}

async fn doctor(args: DoctorArgs) -> anyhow::Result<()> {
    use ballast::controller::doctor::{self, Level, Sources};
    let client = args.kube.client().await?;
    let redis = match &args.redis {
        Some(url) => Some(BullmqSource::new(url, ConnectOptions::default())?),
        None => None,
    };
    let prometheus = args.prometheus.source(&PrometheusSettings::default())?;
    let sources = Sources {
        redis: redis.as_ref(),
        prometheus: prometheus.as_ref(),
        lease_namespace: &args.lease_namespace,
        namespace: args.namespace.as_deref(),
    };
    let findings = doctor::diagnose(&client, &sources).await;
    print!("{}", doctor::render(&findings));
    let failed = findings.iter().filter(|f| f.level == Level::Fail).count();
    anyhow::ensure!(failed == 0, "{failed} checks failed");
    Ok(())
}

async fn trace(args: TraceArgs) -> anyhow::Result<()> {
    use ballast::sim::history::{self, HistoryQueue, HistoryRequest};
    let source = args.prometheus.source(&PrometheusSettings::default())?.ok_or_else(|| {
        anyhow::anyhow!("ballast trace reads Prometheus: give --prometheus URL (or BALLAST_PROMETHEUS_URL)")
    })?;
    let queues = args.queues.iter().map(|arg| HistoryQueue::parse(arg)).collect();
    let request = HistoryRequest { queues, from: args.from, to: args.to, step: args.step };
    let history = history::read(&source, &request).await?;
    for note in &history.notes {
        eprintln!("note: {note}");
    }
    for (queue, jobs) in &history.jobs {
        eprintln!("{queue}: {jobs} jobs added in the span");
    }
    if args.out.as_os_str() == "-" {
        print!("{}", history.csv);
    } else {
        std::fs::write(&args.out, &history.csv).with_context(|| format!("writing {}", args.out.display()))?;
    }
    if let Some(path) = &args.simulation {
        std::fs::write(path, &history.simulation).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn queues(redis: RedisArgs, json: bool) -> anyhow::Result<()> {
    use ballast::sources::bullmq::{counts_json, counts_table};
    let source = BullmqSource::connect(&redis.redis, redis.options()?).await?;
    let queues = redis.queue_refs();
    let states = source.counts(&queues).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&counts_json(&queues, &redis.prefix, &states))?);
    } else {
        print!("{}", counts_table(&queues, &states));
        for error in states.iter().filter_map(|state| state.as_ref().err()) {
            eprintln!("{error}");
        }
    }
    let failures = states.iter().filter(|state| state.is_err()).count();
    anyhow::ensure!(failures == 0, "{failures} of {} queues could not be read", queues.len());
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    use ballast::controller::reconcile::PolicySource;
    let config = args.config()?;
    let client = args.kube.client().await?;
    let plugin_files = ballast::policy::plugins::PluginFiles::within(&args.plugin_dirs).map_err(anyhow::Error::msg)?;
    let policies = match &args.config {
        Some(path) => PolicySource::Fixed(ballast::policy::documents::read_documents(path)?),
        None => PolicySource::Cluster,
    };
    let host = ballast::controller::host::Host {
        client,
        prometheus: args.prometheus.source(&config.prometheus)?,
        config,
        policies,
        redis_url: args.redis,
        metrics_listen: args.metrics_listen,
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        identity: args.identity,
        plugin_files,
    };
    Ok(host.run(ballast::controller::host::shutdown_signal()).await?)
}

async fn status(kube: KubeArgs, namespace: Option<String>, output: OutputFormat) -> anyhow::Result<()> {
    use ballast::controller::report;
    let policies = cli::list_policies(&kube, namespace.as_deref()).await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    match output {
        OutputFormat::Text => print!("{}", report::status_table(&policies, now)),
        structured => {
            let rows: Vec<report::StatusRow> = policies.iter().map(|p| report::StatusRow::of(p, now)).collect();
            print_structured(&serde_json::json!({ "items": rows }), structured)?;
        }
    }
    Ok(())
}

async fn explain(kube: KubeArgs, policy: &str, namespace: Option<&str>, output: OutputFormat) -> anyhow::Result<()> {
    use ballast::controller::report;
    let (namespace, name) = report::parse_policy_name(policy, namespace)?;
    let policies = cli::list_policies(&kube, Some(&namespace)).await?;
    let found = policies.iter().find(|p| report::is_named(p, &namespace, &name));
    let found = found.with_context(|| format!("no ScalingPolicy {namespace}/{name}"))?;
    match output {
        OutputFormat::Text => print!("{}", report::explain(found)),
        structured => print_structured(&report::explain_document(found), structured)?,
    }
    Ok(())
}

/// JSON or YAML on standard output. Both escape control characters in strings, so nothing a plugin wrote into a
/// status can reach the terminal raw.
fn print_structured(value: &serde_json::Value, format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
        _ => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

fn demo(out: &Path, seed: u64) -> anyhow::Result<()> {
    let sets = ballast::sim::demo::policy_sets().context("loading the demo's policies")?;
    let trace = Trace::from_arg(ballast::sim::demo::TRACE)?;
    let options = SimOptions { seed, ..SimOptions::default() };
    println!("ballast demo: five model services, one simulated day with bursts ({}), seed {seed}", trace.name());
    run_and_report(&sets, &trace, options, Some(out), &PluginLimitArgs::default()).map(drop)
}

fn demo_scorecard(seeds: &[u64], policies: Option<&Path>) -> anyhow::Result<()> {
    use ballast::sim::demo::{self, SCORE_HEADER, SCORECARD, Score};
    let candidate = match policies {
        Some(path) => PolicySet::read(path, Some(&demo::simulation()?))?,
        None => demo::queue_drain()?,
    };
    let engine = ballast::sim::run::engine(ballast::sim::run::limits())?;
    println!("{SCORE_HEADER}");
    let (mut half, mut feasible) = (0, 0);
    for &(shape, days) in SCORECARD {
        for &seed in seeds {
            let score = Score::run(&engine, &candidate, shape, days * 86_400, seed)?;
            println!("{}", score.line());
            half += usize::from(score.meets_bar());
            feasible += usize::from(score.meets_feasible_bar());
        }
    }
    let runs = SCORECARD.len() * seeds.len();
    println!("{half} of {runs} runs halve the HPAs' seconds over; {feasible} of {runs} halve those above the floor");
    Ok(())
}

fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let simulation = match &args.sim {
        Some(path) => SimulationFile::read(path)?,
        None => ballast::sim::demo::simulation()?,
    };
    let paths = args.policies.iter().chain(&args.compare);
    let physics_may_differ = args.allow_different_physics;
    let mut sets =
        ballast::sim::config::read_sets(paths, &simulation, &args.pipeline, &args.label, physics_may_differ)?;
    pull_oci_plugins(&mut sets, &args.registry)?;
    let trace = Trace::from_arg(&args.trace)?;
    let duration_s = args.duration.unwrap_or_else(|| trace.length_s());
    anyhow::ensure!(duration_s > 0, "the run is empty: give --duration (e.g. --duration 1h)");
    let options = SimOptions { seed: args.seed, duration_s, step_s: args.step, sample_s: args.sample };
    let results = run_and_report(&sets, &trace, options, args.out.as_deref(), &args.plugin_limits)?;
    if let Some(path) = &args.chart {
        ballast::sim::report::chart(&results, path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Pulls the policies' OCI plugins (each reference once, cached on disk) and points them at the pulled files.
fn pull_oci_plugins(sets: &mut [PolicySet], registry: &RegistryArgs) -> anyhow::Result<()> {
    let plugins = ballast::sim::config::oci_plugins(sets);
    if plugins.is_empty() {
        return Ok(());
    }
    let store = ballast::oci::OciStore::new(Some(&ballast::authoring::local_cache_dir()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    for plugin in plugins {
        let oci = plugin.oci.clone().expect("filtered");
        let reference = ballast::oci::PinnedReference::parse(&oci.reference)?;
        let access = registry.access(reference.registry(), oci.insecure)?;
        runtime.block_on(ballast::oci::localize(plugin, &store, &access))?;
    }
    Ok(())
}

/// Runs every policy set on the same trace and seed, prints the table and writes the outputs.
fn run_and_report(
    sets: &[PolicySet],
    trace: &Trace,
    options: SimOptions,
    out: Option<&Path>,
    limits: &PluginLimitArgs,
) -> anyhow::Result<Vec<ballast::sim::RunResult>> {
    let engine = ballast::sim::run::engine(limits.limits(ballast::sim::run::limits())?)?;
    let results = ballast::sim::run_sets(&engine, sets, trace, options)?;
    print!("{}", ballast::sim::report::table(&results));
    if let Some(dir) = out {
        for path in ballast::sim::report::write_outputs(&results, dir)? {
            println!("wrote {}", path.display());
        }
    }
    Ok(results)
}

fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    use ballast::authoring::{build, cases, check, pack, scaffold};
    // Compiled components are cached on disk by sha256: in an edit-build-test loop only changed bytes compile (a
    // Python component takes some 15 s), and `check` says when its component came from the cache.
    let cache_dir = ballast::authoring::private_compile_cache();
    let engine = |limits: &PluginLimitArgs| -> anyhow::Result<_> {
        let base = ballast::runtime::RuntimeLimits { cache_dir: cache_dir.clone(), ..Default::default() };
        Ok(ballast::runtime::PolicyEngine::new(limits.limits(base)?)?)
    };
    let read = |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    // A component file, or `builtin:NAME` for a plugin compiled into the host (what `plugin: {builtin: NAME}` runs).
    let component = |path: &Path| -> anyhow::Result<Vec<u8>> {
        match path.to_str().and_then(|p| p.strip_prefix("builtin:")) {
            Some(name) => ballast::runtime::builtin(name).map(<[u8]>::to_vec).with_context(|| {
                format!("no built-in plugin `{name}`: the built-ins are {}", ballast::runtime::builtin_names())
            }),
            None => read(path),
        }
    };
    match command {
        PluginCommand::New { lang, name, dir } => {
            let project = scaffold::scaffold(lang, &name, &dir)?;
            println!("{}", scaffold::created(&project, lang));
            Ok(())
        }
        PluginCommand::Build { dir, out } => {
            let built = build::build(&dir, out.as_deref()).with_context(|| format!("building {}", dir.display()))?;
            println!("{}", built.summary());
            Ok(())
        }
        PluginCommand::Check { file, config, limits } => {
            let config: serde_json::Value =
                serde_json::from_str(&config).with_context(|| format!("--config is not JSON: {config}"))?;
            let what = file.display().to_string();
            let report = check::check(&engine(&limits)?, &what, &component(&file)?, &config)?;
            print!("{}", report.render());
            anyhow::ensure!(report.passed(), "{what}: the canary decision failed");
            Ok(())
        }
        PluginCommand::Test { file, cases: cases_path, limits } => {
            let what = file.display().to_string();
            let engine = engine(&limits)?;
            let compiled = engine.load(&what, &component(&file)?)?;
            let text = std::fs::read_to_string(&cases_path)
                .with_context(|| format!("reading --cases {}", cases_path.display()))?;
            let table = cases::parse(&cases_path.display().to_string(), &text)?;
            println!(
                "running {} cases from {} on {what} (sha256 {})\n",
                table.len(),
                cases_path.display(),
                &compiled.digest[..12]
            );
            let results = cases::run(&engine, &compiled, &table);
            print!("{}", cases::render(&results));
            let failed = results.iter().filter(|r| !r.passed()).count();
            anyhow::ensure!(failed == 0, "{failed} of {} cases failed", results.len());
            Ok(())
        }
        PluginCommand::Pack(args) => {
            let what = args.file.display().to_string();
            let component = read(&args.file)?;
            // Only a plugin this host would run is worth shipping.
            let engine = engine(&PluginLimitArgs::default())?;
            let compiled = engine.load(&what, &component)?;
            match &args.oci {
                Some(target) => {
                    let (imports, exports) = engine.interface(&compiled);
                    let world =
                        ballast::oci::ComponentWorld { target: compiled.world().name().into(), imports, exports };
                    let registry = ballast::oci::registry_of(target).unwrap_or_default();
                    let access = args.registry.access(&registry, false)?;
                    let runtime =
                        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
                    let pushed = runtime.block_on(ballast::oci::push(target, &component, &world, &access))?;
                    print!("{}", pack::pushed_summary(&what, component.len(), &pushed));
                    Ok(())
                }
                None => {
                    let target = pack::PackTarget {
                        name: args.config_map.clone().expect("required without --oci"),
                        namespace: args.namespace.clone().expect("required without --oci"),
                        key: args.key.clone(),
                    };
                    let packed = pack::pack(&what, &component, &target)?;
                    print!("{}", packed.apply_note());
                    print!("{}", packed.to_yaml(&what, &target)?);
                    Ok(())
                }
            }
        }
    }
}
