//! Builder tests: a committed snapshot of every object for a fixed Organization (set
//! `VERITY_UPDATE_SNAPSHOTS=1` to rewrite it after an intended change), plus the invariants
//! that must hold for any spec.

use serde_json::{Value, json};
use verity_crds::Organization;

use super::build::{self, Material};
use crate::resources::{Desired, Kind};

const OPERATOR_NS: &str = "verity-system";

fn org(extra: Value) -> Organization {
    let mut v = json!({
        "apiVersion": "verity.dev/v1alpha1", "kind": "Organization",
        "metadata": {"name": "acme", "uid": "00000000-0000-0000-0000-000000000001", "generation": 1},
        "spec": {
            "namespace": "tenant-acme", "ownerEmail": "owner@acme.test",
            "database": {"secretRef": {"name": "acme-db"}, "endpoint": {"cidr": "10.20.0.0/16", "ports": [5432]}},
        },
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            spec.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).unwrap()
}

fn material() -> Material {
    Material {
        session_key: "session".into(),
        admin_token: "token".into(),
        owner_token: "owner-token".into(),
        ca_cert: "CA-CERT".into(),
        ca_key: "CA-KEY".into(),
        ca_not_after: "2036-01-01T00:00:00Z".into(),
        server_cert: "SERVER-CERT".into(),
        server_key: "SERVER-KEY".into(),
        app: build::RedisUser {
            cert: "APP-CERT".into(),
            key: "APP-KEY".into(),
            password: "app-password".into(),
        },
        worker: build::RedisUser {
            cert: "WORKER-CERT".into(),
            key: "WORKER-KEY".into(),
            password: "worker-password".into(),
        },
        operator: build::RedisUser {
            cert: "OPERATOR-CERT".into(),
            key: "OPERATOR-KEY".into(),
            password: "operator-password".into(),
        },
        not_after: "2026-04-01T00:00:00Z".into(),
    }
}

fn find<'a>(objs: &'a [Desired], kind: Kind, name: &str) -> &'a Value {
    &objs
        .iter()
        .find(|d| d.kind == kind && d.name() == name)
        .unwrap_or_else(|| panic!("no {kind:?}/{name}"))
        .body
}

#[test]
fn snapshot_of_the_default_stack() {
    let objs = build::build(&org(json!({})), &material(), OPERATOR_NS);
    let yaml: String = objs
        .iter()
        .map(|d| format!("---\n{}", serde_yaml::to_string(&d.body).unwrap()))
        .collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/organization-default.yaml");
    if std::env::var("VERITY_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &yaml).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == yaml,
        "builder output differs from {}; review and run with VERITY_UPDATE_SNAPSHOTS=1",
        path.display()
    );
}

#[test]
fn every_object_is_labelled_and_owned() {
    let objs = build::build(
        &org(json!({"deletionPolicy": "Delete"})),
        &material(),
        OPERATOR_NS,
    );
    assert!(objs.len() > 25, "{}", objs.len());
    for d in &objs {
        let m = &d.body["metadata"];
        assert_eq!(
            m["labels"]["app.kubernetes.io/managed-by"],
            "verity-operator",
            "{}",
            d.name()
        );
        assert_eq!(
            m["labels"]["verity.dev/organization"],
            "acme",
            "{}",
            d.name()
        );
        assert_eq!(
            m["ownerReferences"][0]["uid"],
            "00000000-0000-0000-0000-000000000001",
            "{}",
            d.name()
        );
        assert_eq!(m["ownerReferences"][0]["controller"], true);
        if d.kind != Kind::Namespace {
            assert_eq!(m["namespace"], "tenant-acme", "{}", d.name());
        }
    }
}

#[test]
fn retain_keeps_namespace_and_secrets_free_of_owner_references() {
    let objs = build::build(&org(json!({})), &material(), OPERATOR_NS);
    let ns = find(&objs, Kind::Namespace, "tenant-acme");
    assert!(ns["metadata"].get("ownerReferences").is_none());
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for s in objs.iter().filter(|d| d.kind == Kind::Secret) {
        assert!(
            s.body["metadata"].get("ownerReferences").is_none(),
            "{}",
            s.name()
        );
    }
    assert!(
        find(&objs, Kind::Deployment, "app")["metadata"]["ownerReferences"].is_array(),
        "workloads are still collected"
    );
}

#[test]
fn worker_pools_follow_the_reference_defaults_and_the_spec() {
    let objs = build::build(
        &org(json!({"workers": {"low": {"replicas": 7}}})),
        &material(),
        OPERATOR_NS,
    );
    for (q, n) in [("critical", 1), ("high", 1), ("default", 4), ("low", 7)] {
        let d = find(&objs, Kind::Deployment, &format!("worker-{q}"));
        assert_eq!(d["spec"]["replicas"], n, "{q}");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["work", "--queues", q])
        );
        assert_eq!(d["spec"]["selector"]["matchLabels"]["verity.dev/queue"], q);
    }
}

#[test]
fn autoscaled_pools_run_the_autoscalers_decision_within_bounds() {
    let auto =
        json!({"workers": {"default": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}}});
    let replicas = |o: &Organization| {
        build::build(o, &material(), OPERATOR_NS)
            .iter()
            .find(|d| d.kind == Kind::Deployment && d.name() == "worker-default")
            .map(|d| d.body["spec"]["replicas"].clone())
    };
    let mut o = org(auto);
    assert_eq!(
        replicas(&o),
        Some(json!(2)),
        "the minimum before any decision"
    );
    for (decided, expected) in [(5, 5), (9, 6), (0, 2)] {
        o.status = Some(
            serde_json::from_value(json!({"workers": [{"queue": "default", "replicas": decided}]}))
                .unwrap(),
        );
        assert_eq!(replicas(&o), Some(json!(expected)), "decided {decided}");
    }
    // Other pools keep their fixed sizes; a decision for a pool that is not autoscaled is ignored.
    o.status = Some(
        serde_json::from_value(json!({"workers": [{"queue": "low", "replicas": 9}]})).unwrap(),
    );
    let objs = build::build(&o, &material(), OPERATOR_NS);
    assert_eq!(
        find(&objs, Kind::Deployment, "worker-low")["spec"]["replicas"],
        1
    );
}

#[test]
fn only_the_operators_pods_may_reach_the_app_and_redis_from_outside() {
    let objs = build::build(&org(json!({})), &material(), OPERATOR_NS);
    let p = find(&objs, Kind::NetworkPolicy, "allow-operator");
    assert_eq!(
        p["spec"]["podSelector"]["matchExpressions"][0]["values"],
        json!(["app", "redis"])
    );
    let from = &p["spec"]["ingress"][0]["from"][0];
    assert_eq!(
        from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        OPERATOR_NS
    );
    assert_eq!(
        from["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "verity-operator"
    );
    assert_eq!(
        p["spec"]["ingress"][0]["ports"],
        json!([{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 6379}])
    );
}

#[test]
fn pods_are_hardened_and_do_not_mount_api_tokens() {
    let objs = build::build(&org(json!({})), &material(), OPERATOR_NS);
    let mut pods = 0;
    for d in objs
        .iter()
        .filter(|d| matches!(d.kind, Kind::Deployment | Kind::StatefulSet))
    {
        let pod = &d.body["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false, "{}", d.name());
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{}", d.name());
        let containers = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(pod["initContainers"].as_array().into_iter().flatten());
        for c in containers {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", d.name());
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", d.name());
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{}", d.name());
            assert!(c["resources"]["limits"].is_object(), "{}", d.name());
        }
        pods += 1;
    }
    assert_eq!(pods, 7, "app, four worker pools, storage proxy, redis");
    let app = find(&objs, Kind::Deployment, "app");
    let c = &app["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(
        app["spec"]["template"]["spec"]["initContainers"][0]["args"],
        json!(["migrate"])
    );
}

#[test]
fn the_public_url_reaches_the_app() {
    let env_of = |o: &Organization| {
        let objs = build::build(o, &material(), OPERATOR_NS);
        let app = find(&objs, Kind::Deployment, "app");
        app["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let public = |env: &[Value]| {
        env.iter()
            .find(|e| e["name"] == "VERITY_PUBLIC_URL")
            .map(|e| e["value"].clone())
    };
    assert_eq!(public(&env_of(&org(json!({})))), None);
    let set = org(json!({"app": {"publicUrl": "https://label.acme.test"}}));
    assert_eq!(
        public(&env_of(&set)),
        Some(json!("https://label.acme.test"))
    );
}

#[test]
fn hpa_takes_over_app_replicas() {
    let without = build::build(&org(json!({})), &material(), OPERATOR_NS);
    assert!(
        !without
            .iter()
            .any(|d| d.kind == Kind::HorizontalPodAutoscaler)
    );
    assert_eq!(
        find(&without, Kind::Deployment, "app")["spec"]["replicas"],
        2
    );
    let with = build::build(
        &org(json!({"app": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}})),
        &material(),
        OPERATOR_NS,
    );
    let hpa = find(&with, Kind::HorizontalPodAutoscaler, "app");
    assert_eq!(hpa["spec"]["maxReplicas"], 6);
    assert!(
        find(&with, Kind::Deployment, "app")["spec"]
            .get("replicas")
            .is_none()
    );
}

#[test]
fn network_policies_deny_by_default_and_allow_what_is_configured() {
    let objs = build::build(&org(json!({})), &material(), OPERATOR_NS);
    let names: Vec<&str> = objs
        .iter()
        .filter(|d| d.kind == Kind::NetworkPolicy)
        .map(Desired::name)
        .collect();
    assert_eq!(
        names,
        [
            "default-deny",
            "allow-redis-clients",
            "allow-to-redis",
            "allow-dns",
            "allow-database",
            "allow-operator"
        ]
    );
    let db = find(&objs, Kind::NetworkPolicy, "allow-database");
    assert_eq!(
        db["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"],
        "10.20.0.0/16"
    );

    let objs = build::build(
        &org(
            json!({"network": {"ingressFromNamespaces": ["ingress"], "storageEndpoints": [{"cidr": "192.0.2.0/24", "ports": [443]}]}}),
        ),
        &material(),
        OPERATOR_NS,
    );
    let ing = find(&objs, Kind::NetworkPolicy, "allow-ingress");
    assert_eq!(
        ing["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "ingress"
    );
    let st = find(&objs, Kind::NetworkPolicy, "allow-storage");
    assert_eq!(st["spec"]["egress"][0]["ports"][0]["port"], 443);
}

#[test]
fn webhook_egress_is_declared_and_matches_the_private_target_guard() {
    let env_of = |objs: &[Desired], deployment: &str, name: &str| -> Option<String> {
        find(objs, Kind::Deployment, deployment)["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["name"] == name))
            .map(|e| e["value"].as_str().unwrap_or_default().to_string())
    };
    // By default nothing leaves: no egress policy, no private target allowed.
    let objs = build::build(&org(json!({})), &material(), OPERATOR_NS);
    assert!(!objs.iter().any(|d| d.kind == Kind::NetworkPolicy
        && ["allow-public-egress", "allow-outbound"].contains(&d.name())));
    assert_eq!(env_of(&objs, "app", "VERITY_ALLOW_PRIVATE_TARGETS"), None);

    let objs = build::build(
        &org(
            json!({"network": {"publicEgress": true, "outboundEndpoints": [{"cidr": "10.9.0.0/16", "ports": [8443]}]}}),
        ),
        &material(),
        OPERATOR_NS,
    );
    let public = find(&objs, Kind::NetworkPolicy, "allow-public-egress");
    assert!(
        selects(&public["spec"]["podSelector"], "worker")
            && selects(&public["spec"]["podSelector"], "app")
    );
    assert!(!selects(&public["spec"]["podSelector"], "redis"));
    let v4 = &public["spec"]["egress"][0]["to"][0]["ipBlock"];
    assert_eq!(v4["cidr"], "0.0.0.0/0");
    for private in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "127.0.0.0/8",
    ] {
        assert!(
            v4["except"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x == private)),
            "{private}"
        );
    }
    let outbound = find(&objs, Kind::NetworkPolicy, "allow-outbound");
    assert_eq!(
        outbound["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"],
        "10.9.0.0/16"
    );
    assert_eq!(outbound["spec"]["egress"][0]["ports"][0]["port"], 8443);
    // The declared endpoints pass the control plane's guard in the app and the workers.
    assert_eq!(
        env_of(&objs, "app", "VERITY_ALLOW_PRIVATE_TARGETS").as_deref(),
        Some("10.9.0.0/16")
    );
    let worker = objs
        .iter()
        .find(|d| d.kind == Kind::Deployment && d.name().starts_with("worker-"))
        .map(Desired::name)
        .expect("a worker pool");
    assert_eq!(
        env_of(&objs, worker, "VERITY_ALLOW_PRIVATE_TARGETS").as_deref(),
        Some("10.9.0.0/16")
    );
}

/// Whether a pod selector of a tenant NetworkPolicy (`{}` or `pods_of`) selects `component`.
fn selects(selector: &Value, component: &str) -> bool {
    let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) else {
        return selector.as_object().is_some_and(|o| o.is_empty());
    };
    exprs.iter().all(|e| {
        e["key"] == build::COMPONENT_LABEL
            && e["operator"] == "In"
            && e["values"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == component))
    })
}

/// Whether one direction of a flow between two tenant pods on `port` is allowed by a rule of
/// `direction` ("ingress"/"from" or "egress"/"to") of a policy selecting `own`.
fn allowed(objs: &[Desired], own: &str, peer: &str, port: i32, dir: (&str, &str)) -> bool {
    objs.iter()
        .filter(|d| d.kind == Kind::NetworkPolicy)
        .filter(|d| selects(&d.body["spec"]["podSelector"], own))
        .flat_map(|d| {
            d.body["spec"][dir.0]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .any(|rule| {
            let peers = rule[dir.1].as_array().cloned().unwrap_or_default();
            let port_ok = rule["ports"]
                .as_array()
                .is_none_or(|ps| ps.iter().any(|p| p["port"] == port));
            port_ok
                && peers.iter().any(|p| {
                    p.get("namespaceSelector").is_none()
                        && p.get("ipBlock").is_none()
                        && selects(&p["podSelector"], peer)
                })
        })
}

fn reaches(objs: &[Desired], from: &str, to: &str, port: i32) -> bool {
    allowed(objs, from, to, port, ("egress", "to"))
        && allowed(objs, to, from, port, ("ingress", "from"))
}

#[test]
fn inside_the_tenant_only_the_app_and_workers_reach_redis() {
    let objs = build::build(&org(json!({})), &material(), OPERATOR_NS);
    let redis = build::REDIS_PORT;
    assert!(reaches(&objs, "app", "redis", redis));
    assert!(reaches(&objs, "worker", "redis", redis));
    assert!(!reaches(&objs, "storage-proxy", "redis", redis));
    assert!(!reaches(&objs, "app", "redis", 22), "only the Redis port");
    for (a, b) in [
        ("worker", "app"),
        ("storage-proxy", "app"),
        ("app", "storage-proxy"),
        ("redis", "app"),
        ("app", "worker"),
    ] {
        assert!(!reaches(&objs, a, b, build::HTTP_PORT), "{a} -> {b}");
    }
    // The storage proxy gets no Redis client certificate or settings either.
    let proxy = &find(&objs, Kind::Deployment, "storage-proxy")["spec"]["template"]["spec"];
    assert!(!proxy.to_string().contains("redis"), "{proxy}");
    let worker = &find(&objs, Kind::Deployment, "worker-default")["spec"]["template"]["spec"];
    assert!(worker.to_string().contains(build::REDIS_WORKER_SECRET));
    assert!(!worker.to_string().contains(build::REDIS_CLIENT_SECRET));
    let app = &find(&objs, Kind::Deployment, "app")["spec"]["template"]["spec"];
    assert!(app.to_string().contains(build::REDIS_CLIENT_SECRET));
    assert!(!app.to_string().contains(build::REDIS_WORKER_SECRET));
}

#[test]
fn each_redis_client_has_its_own_user_and_the_default_user_is_unusable() {
    let m = material();
    let acl = build::redis_acl(&m);
    let default = acl.lines().find(|l| l.starts_with("user default")).unwrap();
    assert!(
        default.contains("resetpass #") && !default.contains("nopass"),
        "the default user needs a password nobody has: {default}"
    );
    for (user, pw) in [
        ("app", "app-password"),
        ("worker", "worker-password"),
        ("operator", "operator-password"),
    ] {
        let line = acl
            .lines()
            .find(|l| l.starts_with(&format!("user {user} on #")))
            .unwrap_or_else(|| panic!("no user {user}: {acl}"));
        assert!(!line.contains(pw), "passwords are stored hashed");
    }
    let op = acl
        .lines()
        .find(|l| l.starts_with("user operator"))
        .unwrap();
    assert!(op.contains("-@all +llen +lindex +zcard +hget"), "{op}");
    assert!(build::redis_conf().contains("aclfile /etc/redis/acl/users.acl"));
    // The operator's identity is mounted nowhere; each Secret carries its user's name.
    let objs = build::build(&org(json!({})), &material(), OPERATOR_NS);
    for d in objs.iter().filter(|d| d.kind == Kind::Deployment) {
        assert!(
            !d.body.to_string().contains(build::REDIS_OPERATOR_SECRET),
            "{}",
            d.name()
        );
    }
    let op_secret = find(&objs, Kind::Secret, build::REDIS_OPERATOR_SECRET);
    assert_eq!(op_secret["data"]["username"], "b3BlcmF0b3I=");
    let redis = &find(&objs, Kind::StatefulSet, "redis")["spec"]["template"]["spec"];
    assert!(redis.to_string().contains(build::REDIS_ACL_SECRET));
}

#[test]
fn redis_is_tls_only_and_rolls_on_new_certificates() {
    let conf = build::redis_conf();
    assert!(conf.contains("port 0\n") && conf.contains("tls-auth-clients yes"));
    let a = build::build(&org(json!({})), &material(), OPERATOR_NS);
    let mut m = material();
    m.server_cert = "RENEWED".into();
    m.app.cert = "RENEWED-CLIENT".into();
    m.worker.cert = "RENEWED-WORKER".into();
    let b = build::build(&org(json!({})), &m, OPERATOR_NS);
    let ann = |objs: &[Desired], kind, name, key: &str| {
        find(objs, kind, name)["spec"]["template"]["metadata"]["annotations"][key].clone()
    };
    assert_ne!(
        ann(
            &a,
            Kind::StatefulSet,
            "redis",
            "verity.dev/redis-server-cert"
        ),
        ann(
            &b,
            Kind::StatefulSet,
            "redis",
            "verity.dev/redis-server-cert"
        )
    );
    assert_ne!(
        ann(
            &a,
            Kind::Deployment,
            "worker-default",
            "verity.dev/redis-client-cert"
        ),
        ann(
            &b,
            Kind::Deployment,
            "worker-default",
            "verity.dev/redis-client-cert"
        )
    );
    // Same inputs, same objects: the precondition of "no change, no write".
    assert_eq!(a, build::build(&org(json!({})), &material(), OPERATOR_NS));
}

/// With `spec.database.caSecretRef`, every program that opens the database (the app and its
/// migrate init container, the workers, the storage proxy) mounts the CA and is told to verify
/// the server with it; without it none does.
#[test]
fn database_ca_reaches_every_database_client() {
    let database = json!({
        "secretRef": {"name": "acme-db"},
        "endpoint": {"cidr": "10.20.0.0/16", "ports": [5432]},
        "caSecretRef": {"name": "acme-db-ca"},
    });
    let objs = build::build(
        &org(json!({"database": database})),
        &material(),
        OPERATOR_NS,
    );
    let plain = build::build(&org(json!({})), &material(), OPERATOR_NS);
    let mut seen = 0;
    for d in objs.iter().filter(|d| d.kind == Kind::Deployment) {
        let pod = &d.body["spec"]["template"]["spec"];
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "database-ca")
            .unwrap_or_else(|| panic!("{} has no database-ca volume", d.name()));
        assert_eq!(vol["secret"]["secretName"], "acme-db-ca");
        assert_eq!(vol["secret"]["items"][0]["key"], "ca.crt");
        let containers = pod["containers"].as_array().unwrap().iter();
        for c in containers.chain(pod["initContainers"].as_array().into_iter().flatten()) {
            let env = c["env"].as_array().unwrap();
            let ca = env.iter().find(|e| e["name"] == "VERITY_DATABASE_CA");
            assert_eq!(
                ca.map(|e| &e["value"]),
                Some(&json!("/etc/verity/database-ca/ca.crt")),
                "{}/{}",
                d.name(),
                c["name"]
            );
            assert!(
                c["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["name"] == "database-ca"
                        && m["mountPath"] == "/etc/verity/database-ca"
                        && m["readOnly"] == true)
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 4,
        "app, migrate, a worker and the storage proxy: {seen}"
    );
    let text = serde_json::to_string(&plain.iter().map(|d| &d.body).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("database-ca") && !text.contains("VERITY_DATABASE_CA"));
}

/// With `spec.storage`, `serve` (and its migrate step), every worker pool and the storage proxy
/// get the same base cloud identity: any of them may open a storage that assumes a role.
#[test]
fn storage_base_identity_reaches_serve_work_and_the_storage_proxy() {
    let storage = json!({
        "awsCredentialsSecretRef": {"name": "acme-aws", "accessKeyIdKey": "id"},
        "awsStsEndpoint": "https://sts.eu-west-1.amazonaws.com",
        "azureAuthorityHost": "https://login.example.test",
    });
    let objs = build::build(&org(json!({"storage": storage})), &material(), OPERATOR_NS);
    let mut seen = Vec::new();
    for d in objs.iter().filter(|d| d.kind == Kind::Deployment) {
        let pod = &d.body["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().unwrap().iter();
        for c in containers.chain(pod["initContainers"].as_array().into_iter().flatten()) {
            let env = c["env"].as_array().unwrap();
            let var = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
            let secret = |name: &str| var(name).map(|e| e["valueFrom"]["secretKeyRef"].clone());
            let at = format!("{}/{}", d.name(), c["name"]);
            assert_eq!(
                secret("VERITY_AWS_ACCESS_KEY_ID"),
                Some(json!({"name": "acme-aws", "key": "id", "optional": false})),
                "{at}"
            );
            assert_eq!(
                secret("VERITY_AWS_SECRET_ACCESS_KEY"),
                Some(json!({"name": "acme-aws", "key": "secret-access-key", "optional": false})),
                "{at}"
            );
            // A long-lived key has no session token: the key may be absent from the Secret.
            assert_eq!(
                secret("VERITY_AWS_SESSION_TOKEN"),
                Some(json!({"name": "acme-aws", "key": "session-token", "optional": true})),
                "{at}"
            );
            assert_eq!(
                var("VERITY_AWS_STS_ENDPOINT").map(|e| e["value"].clone()),
                Some(json!("https://sts.eu-west-1.amazonaws.com")),
                "{at}"
            );
            assert_eq!(
                var("VERITY_AZURE_AUTHORITY_HOST").map(|e| e["value"].clone()),
                Some(json!("https://login.example.test")),
                "{at}"
            );
            seen.push(c["args"][0].as_str().unwrap_or_default().to_owned());
        }
    }
    for program in ["serve", "migrate", "work", "storage-proxy"] {
        assert!(seen.iter().any(|s| s == program), "{program}: {seen:?}");
    }
    // Without `spec.storage` no pod is given any of it.
    let plain = build::build(&org(json!({})), &material(), OPERATOR_NS);
    let text = serde_json::to_string(&plain.iter().map(|d| &d.body).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("VERITY_AWS_") && !text.contains("VERITY_AZURE_"));
}

/// The storage proxy streams objects from the storages and assumes roles at STS: with public
/// egress it reaches public buckets like the app and the workers, and every program that opens
/// storages (the app checks them and serves media links while the proxy has no replicas)
/// reaches the declared storage endpoints, which its private-target guard then allows.
#[test]
fn storage_egress_reaches_every_program_that_opens_storages() {
    let env_of = |objs: &[Desired], deployment: &str, name: &str| -> Option<String> {
        find(objs, Kind::Deployment, deployment)["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .and_then(|env| env.iter().find(|e| e["name"] == name))
            .map(|e| e["value"].as_str().unwrap_or_default().to_string())
    };
    let objs = build::build(
        &org(json!({"network": {"publicEgress": true}})),
        &material(),
        OPERATOR_NS,
    );
    let public = find(&objs, Kind::NetworkPolicy, "allow-public-egress");
    for c in ["app", "worker", "storage-proxy"] {
        assert!(selects(&public["spec"]["podSelector"], c), "{c}");
    }
    assert!(
        !objs
            .iter()
            .any(|d| d.kind == Kind::NetworkPolicy && d.name() == "allow-storage")
    );
    assert_eq!(
        env_of(&objs, "storage-proxy", "VERITY_ALLOW_PRIVATE_TARGETS"),
        None
    );

    let objs = build::build(
        &org(json!({"network": {
            "storageEndpoints": [{"cidr": "10.30.0.0/16", "ports": [9000]}],
            "outboundEndpoints": [{"cidr": "10.9.0.0/16", "ports": [8443]}, {"cidr": "10.30.0.0/16", "ports": [8080]}],
        }})),
        &material(),
        OPERATOR_NS,
    );
    let storage = find(&objs, Kind::NetworkPolicy, "allow-storage");
    for c in ["app", "worker", "storage-proxy"] {
        assert!(selects(&storage["spec"]["podSelector"], c), "{c}");
    }
    assert!(!selects(&storage["spec"]["podSelector"], "redis"));
    assert_eq!(
        storage["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"],
        "10.30.0.0/16"
    );
    // The guard allows exactly what the policies open to each pod (each network once).
    assert_eq!(
        env_of(&objs, "storage-proxy", "VERITY_ALLOW_PRIVATE_TARGETS").as_deref(),
        Some("10.30.0.0/16")
    );
    for d in ["app", "worker-default"] {
        assert_eq!(
            env_of(&objs, d, "VERITY_ALLOW_PRIVATE_TARGETS").as_deref(),
            Some("10.9.0.0/16,10.30.0.0/16"),
            "{d}"
        );
    }
    // Webhook endpoints are not the storage proxy's business.
    let outbound = find(&objs, Kind::NetworkPolicy, "allow-outbound");
    assert!(!selects(&outbound["spec"]["podSelector"], "storage-proxy"));
}

/// `spec.storage.gcsWorkloadIdentity`: the app, workers and storage proxy sign GCS requests with
/// the pods' Google identity, act as the named Google service account, and reach the metadata
/// server; Redis gets none of it, and without the field nothing changes.
#[test]
fn gcs_workload_identity_reaches_the_programs_that_open_storages() {
    let objs = build::build(
        &org(
            json!({"storage": {"gcsWorkloadIdentity": {"gcpServiceAccount": "verity@acme-prod.iam.gserviceaccount.com"}}}),
        ),
        &material(),
        OPERATOR_NS,
    );
    for d in objs.iter().filter(|d| d.kind == Kind::Deployment) {
        let env = &d.body["spec"]["template"]["spec"]["containers"][0]["env"];
        let on = env
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "VERITY_GCS_WORKLOAD_IDENTITY" && e["value"] == "true");
        assert!(on, "{}", d.name());
    }
    for sa in ["verity-app", "verity-worker", "verity-storage-proxy"] {
        assert_eq!(
            find(&objs, Kind::ServiceAccount, sa)["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
            "verity@acme-prod.iam.gserviceaccount.com",
            "{sa}"
        );
    }
    assert!(
        find(&objs, Kind::ServiceAccount, "verity-redis")["metadata"]["annotations"]
            .get("iam.gke.io/gcp-service-account")
            .is_none()
    );
    let md = find(&objs, Kind::NetworkPolicy, "allow-metadata");
    for c in ["app", "worker", "storage-proxy"] {
        assert!(selects(&md["spec"]["podSelector"], c), "{c}");
    }
    assert!(!selects(&md["spec"]["podSelector"], "redis"));
    assert_eq!(
        md["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"],
        "169.254.169.254/32"
    );
    assert_eq!(md["spec"]["egress"][0]["ports"][0]["port"], 80);

    let plain = build::build(&org(json!({})), &material(), OPERATOR_NS);
    let text = serde_json::to_string(&plain.iter().map(|d| &d.body).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("VERITY_GCS_WORKLOAD_IDENTITY") && !text.contains("iam.gke.io"));
    assert!(!plain.iter().any(|d| d.name() == "allow-metadata"));
}
