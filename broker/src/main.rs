//! The `strand` binary: parse settings, start the node, serve Kafka until SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use strand_broker::config::Settings;
use strand_broker::{handlers, metrics, server, Broker, Config};
use tokio::net::TcpListener;

// Garbage array lengths in requests make the Kafka decoders reserve absurd capacities;
// this allocator turns those into cheap reservations instead of aborting the process.
#[global_allocator]
static ALLOC: strand_protocol::alloc::HugeAllocationGuard =
    strand_protocol::alloc::HugeAllocationGuard;

fn main() -> ExitCode {
    strand_protocol::alloc::keep_large_buffers();
    let settings = Settings::from_args();
    if settings.supported_apis {
        print!("{}", handlers::supported_apis_table());
        return ExitCode::SUCCESS;
    }
    let config = match Config::resolve(settings) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("strand: {e}");
            return ExitCode::from(2);
        }
    };
    // openraft warns whenever the proposer of an entry no longer waits for its answer. On a
    // leader that is every append: the state machine answers it first (raft's AppliedReply)
    // and the proposer has gone when openraft's answer follows. openraft 0.9's membership
    // calls need its own responder, so the warning is silenced here instead.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log))
        .add_directive(
            "openraft::raft::responder=error"
                .parse()
                .expect("a valid directive"),
        );
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strand: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strand: {e:#}");
            // Without waiting for the runtime's blocking reads, which a failed disk may
            // hold up.
            runtime.shutdown_background();
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen for Kafka clients on {}: is another broker running there? Pass \
             --listen to use another address",
            config.listen
        )
    })?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot serve metrics on {addr}: pass --metrics-listen (or \"off\")")
        })?),
        None => None,
    };
    let broker = Broker::start(config.clone()).await?;
    if let Some(listener) = metrics_listener {
        tokio::spawn(metrics::serve(broker.clone(), listener));
    }
    tracing::info!(
        node = config.node_id,
        kafka = %config.listen,
        advertised = %format!("{}:{}", config.advertised_host, config.advertised_port),
        data = %config.data_dir.display(),
        "strand is ready"
    );
    if config.unsafe_mode != strand_broker::unsafe_modes::UnsafeMode::Off {
        tracing::warn!(mode = ?config.unsafe_mode, "UNSAFE MODE: this node breaks a guarantee on purpose, for the Jepsen self-check");
    }
    let mut storage_failure = broker.node.store().failure();
    tokio::select! {
        _ = server::run(broker.clone(), listener, shutdown_signal()) => {}
        failed = storage_failure.wait_for(Option::is_some) => {
            let error = failed.ok().and_then(|f| f.clone()).unwrap_or_default();
            let free = match broker.node.store().available_bytes() {
                Ok(bytes) => format!("{:.1} MiB free there now", bytes as f64 / 1048576.0),
                Err(e) => format!("free space unknown: {e}"),
            };
            // No orderly shutdown: the Raft groups whose writes failed have stopped, and
            // nothing more can be written. Everything acknowledged is on disk already.
            anyhow::bail!(
                "the disk refused a write ({error}). This node stops so that the other \
                 replicas take over its partitions, as a Kafka broker does when its last log \
                 directory fails. Free space on (or repair) the disk holding {} ({free}), \
                 then start the node again: it keeps every record it acknowledged",
                config.data_dir.display()
            );
        }
    }
    tracing::info!("shutting down");
    broker.node.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
