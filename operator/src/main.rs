//! `verity-operator`: parses flags and environment, initialises logging, runs the controllers.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// Reconciles Verity's Organization, Workspace and LabelingProject resources. Without arguments
/// it runs every controller against the ambient kubeconfig ($KUBECONFIG, ~/.kube/config) or the
/// in-cluster service account.
#[derive(Parser, Debug)]
#[command(name = "verity-operator", version)]
struct Args {
    /// Address of /metrics, /livez and /readyz.
    #[arg(
        long,
        env = "VERITY_OPERATOR_HTTP_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    http_addr: SocketAddr,
    /// Run the controllers only while holding a coordination.k8s.io Lease (for more than one replica).
    #[arg(long, env = "VERITY_OPERATOR_LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    /// Namespace of the Lease (defaults to $POD_NAMESPACE, else `default`).
    #[arg(long, env = "VERITY_OPERATOR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long,
        env = "VERITY_OPERATOR_LEASE_NAME",
        default_value = "verity-operator"
    )]
    lease_name: String,
    /// Identity in the Lease (defaults to $POD_NAME, else the host name plus the process id).
    #[arg(long, env = "VERITY_OPERATOR_IDENTITY")]
    identity: Option<String>,
    /// Use this control-plane URL for every Organization instead of http://app.<namespace>.svc:8080.
    /// For tests and development (e.g. a `verity serve` on 127.0.0.1), never for production.
    #[arg(long, env = "VERITY_OPERATOR_CONTROL_PLANE_URL")]
    control_plane_url: Option<String>,
    /// Use this host:port for every Organization's Redis instead of redis.<namespace>.svc:6379 (the
    /// worker autoscaler's queue reads). The server certificate must still name
    /// redis.<namespace>.svc. For tests and development, never for production.
    #[arg(long, env = "VERITY_OPERATOR_REDIS_ADDR")]
    redis_addr: Option<String>,
    /// Seconds between the worker autoscaler's reads of the queues of autoscaled pools.
    #[arg(
        long,
        env = "VERITY_OPERATOR_QUEUE_POLL_INTERVAL",
        default_value_t = 15
    )]
    queue_poll_interval: u64,
    /// Reconciles running at once per controller (bounds API and control-plane load).
    #[arg(long, env = "VERITY_OPERATOR_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Seconds between refreshes of LabelingProject progress from the control plane.
    #[arg(long, env = "VERITY_OPERATOR_PROGRESS_INTERVAL", default_value_t = 60)]
    progress_interval: u64,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `verity_operator=debug`.
    #[arg(long, env = "VERITY_OPERATOR_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines.
    #[arg(long, env = "VERITY_OPERATOR_LOG_JSON", default_value_t = false)]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)?;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        fmt.json().init();
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let identity = args
        .identity
        .or_else(|| std::env::var("POD_NAME").ok())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "local".into());
            format!("{host}-{}", std::process::id())
        });
    let operator_namespace = std::env::var("POD_NAMESPACE")
        .ok()
        .or_else(|| args.lease_namespace.clone())
        .unwrap_or_else(|| "default".into());
    let cfg = verity_operator::run::Config {
        http_addr: args.http_addr,
        leader_elect: args.leader_elect,
        lease_namespace: args
            .lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into()),
        lease_name: args.lease_name,
        identity,
        control_plane_url: args.control_plane_url,
        concurrency: args.concurrency,
        progress_interval: Duration::from_secs(args.progress_interval.max(5)),
        queue_poll_interval: Duration::from_secs(args.queue_poll_interval.max(1)),
        redis_addr: args.redis_addr,
        operator_namespace,
    };
    verity_operator::run::run(cfg).await
}
