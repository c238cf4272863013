//! The committed CRD YAML must be exactly what the types generate (set `VERITY_UPDATE_CRDS=1` to
//! rewrite it), the samples must parse as the types, and the schema must carry the rules and
//! merge keys the API relies on.

// Helpers outside `#[test]` functions panic too: a panic is how a test reports failure.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use verity_crds::{LabelingProject, Organization, Workspace};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crds_match_the_types() {
    let files = verity_crds::crd_files().unwrap();
    let update = std::env::var("VERITY_UPDATE_CRDS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for dir in verity_crds::CRD_DIRS {
        let dir = repo().join(dir);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
        }
        for (name, yaml) in &files {
            let path = dir.join(name);
            if update {
                std::fs::write(&path, yaml).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated CRDs differ from the committed files {stale:?}; run `VERITY_UPDATE_CRDS=1 cargo test -p verity-crds --test crds` and commit"
    );
}

fn crd_json(kind: &str) -> serde_json::Value {
    let crd = verity_crds::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    serde_json::to_value(crd).unwrap()
}

fn rules(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Array(rs)) = m.get("x-kubernetes-validations") {
                    out.extend(
                        rs.iter()
                            .filter_map(|r| r["rule"].as_str().map(str::to_owned)),
                    );
                }
                m.values().for_each(|c| walk(c, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

#[test]
fn schemas_carry_cel_rules_and_condition_merge_keys() {
    let org = crd_json("Organization");
    assert_eq!(org["spec"]["scope"], "Cluster");
    let org_rules = rules(&org);
    for want in [
        "self == oldSelf",
        "self.minReplicas <= self.maxReplicas",
        "self >= 0 && self <= 200",
        "isCIDR(self)",
        "self.startsWith('https://') || self.startsWith('http://')",
    ] {
        assert!(
            org_rules.iter().any(|r| r == want),
            "Organization lacks rule {want}: {org_rules:?}"
        );
    }
    let version = &org["spec"]["versions"][0];
    let storage = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["storage"]
        ["properties"];
    for url in ["awsStsEndpoint", "azureAuthorityHost"] {
        assert_eq!(
            rules(&storage[url]),
            ["self.startsWith('https://') || self.startsWith('http://')"],
            "{url}"
        );
    }
    assert_eq!(
        storage["awsCredentialsSecretRef"]["required"],
        serde_json::json!(["name"])
    );
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let conditions =
        &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    let columns: Vec<_> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert!(
        columns.contains(&"Ready".into()) && columns.contains(&"Age".into()),
        "{columns:?}"
    );

    let lp = crd_json("LabelingProject");
    assert_eq!(lp["spec"]["scope"], "Namespaced");
    let lp_rules = rules(&lp);
    assert!(
        lp_rules.iter().any(|r| r == "self.size() > 0"),
        "{lp_rules:?}"
    );
    let ws = crd_json("Workspace");
    assert_eq!(ws["spec"]["scope"], "Namespaced");
}

#[test]
fn samples_parse_and_get_defaults() {
    let dir = repo().join("config/samples");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            if v.is_null() {
                continue;
            }
            let kind = v["kind"].as_str().unwrap().to_owned();
            match kind.as_str() {
                "Organization" => {
                    let o: Organization = serde_json::from_value(v).unwrap();
                    assert_eq!(
                        o.spec.workers.replicas("default"),
                        o.spec
                            .workers
                            .default
                            .as_ref()
                            .and_then(|q| q.replicas)
                            .unwrap_or(4)
                    );
                    assert_eq!(
                        o.spec.deletion_policy,
                        verity_crds::organization::DeletionPolicy::Retain
                    );
                }
                "Workspace" => {
                    serde_json::from_value::<Workspace>(v).unwrap();
                }
                "LabelingProject" => {
                    let p: LabelingProject = serde_json::from_value(v).unwrap();
                    assert!(!p.spec.workspace.is_empty());
                }
                _ => {}
            }
            kinds.push(kind);
        }
    }
    for want in ["Organization", "Workspace", "LabelingProject"] {
        assert!(
            kinds.iter().any(|k| k == want),
            "config/samples has no {want}: {kinds:?}"
        );
    }
}
