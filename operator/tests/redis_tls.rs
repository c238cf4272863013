//! The tenant Redis as the operator configures it, run for real: `redis-server` with the
//! operator's `redis.conf` and the certificates it issues. Proves that Redis refuses plaintext,
//! clients without a certificate and certificates of another tenant, that every component has
//! its own ACL user (the default user is off, the operator may only read queue statistics), and
//! that the autoscaler's probe reads depth, running jobs and the oldest job's age through TLS.
//!
//! Needs `redis-server` and `redis-cli` on PATH (`e2e/test-all` installs them).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use verity_operator::autoscale::probe::{self, Endpoint, ProbeError};
use verity_operator::org::build::{self, Material};
use verity_operator::org::certs::{self, Policy};

struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn material(org: &str, ns: &str) -> Material {
    let policy = Policy {
        validity_days: 90,
        renew_before_days: 30,
    };
    certs::material(org, ns, &BTreeMap::new(), policy, OffsetDateTime::now_utc())
        .expect("certificates")
        .0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts redis-server with the operator's configuration, its paths moved into a temp dir.
fn start(m: &Material) -> Redis {
    let dir = std::env::temp_dir().join(format!(
        "verity-redis-tls-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(dir.join("tls")).expect("temp dir");
    std::fs::write(dir.join("users.acl"), build::redis_acl(m)).expect("write acl");
    for (file, pem) in [
        ("ca.crt", &m.ca_cert),
        ("tls.crt", &m.server_cert),
        ("tls.key", &m.server_key),
    ] {
        std::fs::write(dir.join("tls").join(file), pem).expect("write pem");
    }
    let port = free_port();
    let conf = build::redis_conf()
        .replace(
            "/etc/redis/tls/",
            &format!("{}/", dir.join("tls").display()),
        )
        .replace("tls-port 6379", &format!("tls-port {port}"))
        .replace("dir /data", &format!("dir {}", dir.display()))
        .replace(
            "/etc/redis/acl/users.acl",
            &dir.join("users.acl").display().to_string(),
        );
    assert!(
        conf.contains("port 0\n") && conf.contains("tls-auth-clients yes"),
        "{conf}"
    );
    let conf_path = dir.join("redis.conf");
    std::fs::write(&conf_path, format!("{conf}bind 127.0.0.1\nsave \"\"\n")).expect("write conf");
    let child = Command::new("redis-server")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (e2e/test-all installs it)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Redis { child, port, dir }
}

fn endpoint(r: &Redis, m: &Material, ns: &str) -> Endpoint {
    Endpoint {
        addr: format!("127.0.0.1:{}", r.port),
        server_name: format!("redis.{ns}.svc"),
        ca_pem: m.ca_cert.clone(),
        cert_pem: m.operator.cert.clone(),
        key_pem: m.operator.key.clone(),
        username: "operator".into(),
        password: m.operator.password.clone(),
    }
}

/// Runs redis-cli over TLS as the app (its client certificate and ACL user).
fn cli(r: &Redis, m: &Material, args: &[&str]) -> String {
    let out = cli_as(r, m, "app", args);
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs redis-cli over TLS as one of the tenant's ACL users, with that user's certificate.
fn cli_as(r: &Redis, m: &Material, user: &str, args: &[&str]) -> std::process::Output {
    let u = m.redis_user(user).expect("a known user");
    let tls = r.dir.join(format!("client-{user}"));
    std::fs::create_dir_all(&tls).expect("client dir");
    for (file, pem) in [
        ("ca.crt", &m.ca_cert),
        ("tls.crt", &u.cert),
        ("tls.key", &u.key),
    ] {
        std::fs::write(tls.join(file), pem).expect("write pem");
    }
    let p = |f: &str| tls.join(f).display().to_string();
    Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &r.port.to_string(),
            "--tls",
            "--sni",
            "redis.tenant-acme.svc",
        ])
        .args([
            "--cacert",
            &p("ca.crt"),
            "--cert",
            &p("tls.crt"),
            "--key",
            &p("tls.key"),
        ])
        .args(["--user", user, "--pass", &u.password, "--no-auth-warning"])
        .args(args)
        .output()
        .expect("redis-cli must be installed")
}

/// What redis-cli printed, stdout and stderr together.
fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn redis_refuses_plaintext_and_foreign_or_missing_client_certificates() {
    let ns = "tenant-acme";
    let m = material("acme", ns);
    let r = start(&m);
    assert_eq!(
        cli(&r, &m, &["PING"]),
        "PONG",
        "the tenant's client certificate works"
    );

    // Plaintext: there is no plaintext port (port 0), and the TLS port does not speak RESP in clear.
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"*1\r\n$4\r\nPING\r\n").expect("write");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&buf[..n]).contains("PONG"),
        "plaintext must not be served"
    );

    let rt = rt();
    // Another tenant's client certificate (another CA) is refused.
    let other = material("globex", ns);
    let mut foreign = endpoint(&r, &m, ns);
    foreign.cert_pem = other.operator.cert.clone();
    foreign.key_pem = other.operator.key.clone();
    let e = rt.block_on(probe::probe(&foreign, &["default"], Duration::from_secs(5)));
    assert!(
        matches!(e, Err(ProbeError::Tls { .. } | ProbeError::Protocol(_))),
        "{e:?}"
    );

    // Without a client certificate: redis-cli with only the CA is refused.
    let tls = r.dir.join("ca-only.crt");
    std::fs::write(&tls, &m.ca_cert).expect("write ca");
    let out = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &r.port.to_string(),
            "--tls",
            "--cacert",
        ])
        .arg(&tls)
        .args(["--sni", "redis.tenant-acme.svc", "PING"])
        .output()
        .expect("redis-cli");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("PONG"),
        "a client without a certificate must be refused: {said}"
    );

    // Nothing listening: a connection error (the autoscaler reports "cannot connect").
    let mut closed = endpoint(&r, &m, ns);
    closed.addr = format!("127.0.0.1:{}", free_port());
    let e = rt.block_on(probe::probe(&closed, &["default"], Duration::from_secs(5)));
    assert!(matches!(e, Err(ProbeError::Connect { .. })), "{e:?}");

    // The server certificate is checked against the tenant's name and CA.
    let mut wrong_name = endpoint(&r, &m, ns);
    wrong_name.server_name = "redis.tenant-globex.svc".into();
    let e = rt.block_on(probe::probe(
        &wrong_name,
        &["default"],
        Duration::from_secs(5),
    ));
    assert!(matches!(e, Err(ProbeError::Tls { .. })), "{e:?}");
    let mut wrong_ca = endpoint(&r, &m, ns);
    wrong_ca.ca_pem = other.ca_cert.clone();
    let e = rt.block_on(probe::probe(
        &wrong_ca,
        &["default"],
        Duration::from_secs(5),
    ));
    assert!(matches!(e, Err(ProbeError::Tls { .. })), "{e:?}");
}

#[test]
fn each_component_is_its_own_user_and_the_operator_only_reads() {
    let ns = "tenant-acme";
    let m = material("acme", ns);
    let r = start(&m);
    // The app and the workers use the RQ keyspace; nothing else.
    assert_eq!(cli(&r, &m, &["RPUSH", "rq:queue:default", "j1"]), "1");
    let out = cli_as(&r, &m, "worker", &["LPOP", "rq:queue:default"]);
    assert_eq!(said(&out).trim(), "j1");
    let out = cli_as(&r, &m, "app", &["SET", "sessions:1", "x"]);
    assert!(said(&out).contains("NOPERM"), "{}", said(&out));
    let out = cli_as(&r, &m, "worker", &["FLUSHALL"]);
    assert!(said(&out).contains("NOPERM"), "{}", said(&out));
    // The operator reads queue statistics and can change nothing.
    assert_eq!(
        said(&cli_as(&r, &m, "operator", &["LLEN", "rq:queue:default"])).trim(),
        "0"
    );
    let out = cli_as(&r, &m, "operator", &["RPUSH", "rq:queue:default", "x"]);
    assert!(said(&out).contains("NOPERM"), "{}", said(&out));
    // A valid certificate without a password is not enough: the default user is off.
    let mut no_user = Command::new("redis-cli");
    let tls = r.dir.join("client-app");
    no_user
        .args(["-h", "127.0.0.1", "-p", &r.port.to_string(), "--tls"])
        .args(["--sni", "redis.tenant-acme.svc", "--cacert"])
        .arg(tls.join("ca.crt"))
        .arg("--cert")
        .arg(tls.join("tls.crt"))
        .arg("--key")
        .arg(tls.join("tls.key"))
        .args(["LLEN", "rq:queue:default"]);
    let out = no_user.output().expect("redis-cli");
    assert!(said(&out).contains("NOAUTH"), "{}", said(&out));
    // One user's password does not open another user.
    let rt = rt();
    let mut wrong = endpoint(&r, &m, ns);
    wrong.password = m.app.password.clone();
    let e = rt.block_on(probe::probe(&wrong, &["default"], Duration::from_secs(5)));
    assert!(
        matches!(&e, Err(ProbeError::Redis(msg)) if msg.contains("WRONGPASS")),
        "{e:?}"
    );
}

#[test]
fn scripted_writes_of_the_users_survive_a_crash() {
    // Redis 7.0 replays the transactions of its append-only file as the default user; the ACL
    // must let it, or every scripted write (the job queue's) is dropped on restart.
    let ns = "tenant-acme";
    let m = material("acme", ns);
    let mut r = start(&m);
    let script = "redis.call('RPUSH', KEYS[1], 'j1'); redis.call('RPUSH', KEYS[1], 'j2'); return 1";
    assert_eq!(cli(&r, &m, &["EVAL", script, "1", "rq:queue:default"]), "1");
    // appendfsync everysec: give the fsync its second.
    std::thread::sleep(Duration::from_millis(1500));
    let _ = r.child.kill();
    let _ = r.child.wait();
    let conf = r.dir.join("redis.conf");
    r.child = Command::new("redis-server")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cli_as(&r, &m, "app", &["LLEN", "rq:queue:default"]);
        if said(&out).trim() == "2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart: {}",
            said(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The default user exists for that replay only: nobody can use it.
    let out = cli_as(&r, &m, "app", &["AUTH", "default", ""]);
    assert!(said(&out).contains("WRONGPASS"), "{}", said(&out));
}

#[test]
fn the_probe_reads_depth_running_jobs_and_the_oldest_enqueue_time() {
    let ns = "tenant-acme";
    let m = material("acme", ns);
    let r = start(&m);
    let ep = endpoint(&r, &m, ns);
    let rt = rt();
    let queues = ["critical", "default", "low"];

    let empty = rt
        .block_on(probe::probe(&ep, &queues, Duration::from_secs(5)))
        .expect("probe");
    assert_eq!(empty.len(), 3);
    assert!(
        empty
            .values()
            .all(|s| s.waiting == 0 && s.running == 0 && s.oldest_enqueued_at.is_none())
    );

    // Three jobs in `default` (the head is the oldest), one started, one job in `low` whose
    // hash has expired.
    for (id, at) in [
        ("a", "2026-01-01T10:00:00.000001Z"),
        ("b", "2026-01-01T10:05:00Z"),
        ("c", "2026-01-01T10:06:00Z"),
    ] {
        cli(
            &r,
            &m,
            &[
                "HSET",
                &format!("rq:job:{id}"),
                "enqueued_at",
                at,
                "status",
                "queued",
            ],
        );
        cli(&r, &m, &["RPUSH", "rq:queue:default", id]);
    }
    cli(&r, &m, &["ZADD", "rq:wip:default", "1767261600", "z"]);
    cli(&r, &m, &["RPUSH", "rq:queue:low", "gone"]);

    let stats = rt
        .block_on(probe::probe(&ep, &queues, Duration::from_secs(5)))
        .expect("probe");
    let d = &stats["default"];
    assert_eq!((d.waiting, d.running), (3, 1));
    assert_eq!(
        d.oldest_enqueued_at.map(|t| t.unix_timestamp()),
        Some(1_767_261_600),
        "2026-01-01T10:00:00Z"
    );
    let l = &stats["low"];
    assert_eq!((l.waiting, l.running, l.oldest_enqueued_at), (1, 0, None));
    assert_eq!(stats["critical"].waiting, 0);

    // A key of the wrong type is an error, not a zero.
    cli(&r, &m, &["SET", "rq:queue:critical", "oops"]);
    let e = rt.block_on(probe::probe(&ep, &queues, Duration::from_secs(5)));
    assert!(
        matches!(&e, Err(ProbeError::Redis(msg)) if msg.starts_with("WRONGTYPE")),
        "{e:?}"
    );
}
