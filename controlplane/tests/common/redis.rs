//! A real `redis-server` for tests, configured like a tenant's: TLS only (no plaintext port),
//! client certificates from a CA the test makes, the default user with a password nobody
//! has (see the operator's `redis_acl` for why it cannot be off) and one ACL user for Verity. Append-only file with `appendfsync always`, so a restart keeps every write.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use verity_controlplane::jobs::redis::RedisSettings;

/// PEM certificate and key.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A running TLS Redis.
pub struct TlsRedis {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub ca: String,
    pub client: Pem,
    pub password: String,
    _tmp: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn issue(ca: &rcgen::Certificate, ca_key: &KeyPair, names: Vec<String>, client: bool) -> Pem {
    let mut p = CertificateParams::new(names).expect("names");
    p.distinguished_name.push(DnType::CommonName, "verity-test");
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, ca, ca_key).expect("sign");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A CA and a client certificate from it (another tenant's, in tests that need one).
pub fn other_ca_client() -> (String, Pem) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("key");
    let ca = p.self_signed(&key).expect("ca");
    let client = issue(&ca, &key, vec!["other".into()], true);
    (ca.pem(), client)
}

impl TlsRedis {
    /// Starts redis-server (e2e/test-all installs it; a missing one fails the test).
    pub fn start() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "verity-test-ca");
        let ca_key = KeyPair::generate().expect("key");
        let ca = p.self_signed(&ca_key).expect("ca");
        let server = issue(
            &ca,
            &ca_key,
            vec!["127.0.0.1".into(), "localhost".into()],
            false,
        );
        let client = issue(&ca, &ca_key, vec!["verity".into()], true);
        let password = uuid::Uuid::new_v4().simple().to_string();
        std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write");
        std::fs::write(dir.join("server.crt"), &server.cert).expect("write");
        std::fs::write(dir.join("server.key"), &server.key).expect("write");
        std::fs::write(
            dir.join("users.acl"),
            format!(
                "user default on resetpass >{unusable} ~* &* +@all\nuser verity on >{password} ~rq:* &rq:* +@all -@admin -@dangerous\n",
                unusable = uuid::Uuid::new_v4().simple()
            ),
        )
        .expect("write acl");
        let port = free_port();
        let conf = format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {d}/server.crt\ntls-key-file {d}/server.key\n\
             tls-ca-cert-file {d}/ca.crt\ntls-auth-clients yes\naclfile {d}/users.acl\ndir {d}\n\
             appendonly yes\nappendfsync always\nsave \"\"\nlogfile {d}/redis.log\n",
            d = dir.display()
        );
        std::fs::write(dir.join("redis.conf"), conf).expect("write conf");
        let mut r = Self {
            child: None,
            port,
            dir,
            ca: ca.pem(),
            client,
            password,
            _tmp: tmp,
        };
        r.launch();
        r
    }

    /// kill -9, leaving it down (until [`TlsRedis::launch`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it (again) on its port and data directory; returns once it listens.
    pub fn launch(&mut self) {
        let child = Command::new("redis-server")
            .arg(self.dir.join("redis.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (e2e/test-all installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9, then start again on the same data directory.
    pub fn crash_and_restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Settings of the Verity user with the right client certificate.
    pub fn settings(&self) -> RedisSettings {
        RedisSettings {
            url: format!("rediss://127.0.0.1:{}/0", self.port),
            username: "verity".into(),
            password: self.password.clone(),
            ca_pem: self.ca.clone().into_bytes(),
            cert_pem: self.client.cert.clone().into_bytes(),
            key_pem: self.client.key.clone().into_bytes(),
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
