//! Writes the generated CRD YAML to `config/crd/` and `charts/verity-operator/crds/`, or with
//! `--stdout` prints it. The drift test in `crds/tests/crds.rs` fails when the committed files
//! differ from what this produces.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = verity_crds::crd_files()?;
    if std::env::args().any(|a| a == "--stdout") {
        for (_, yaml) in &files {
            print!("---\n{yaml}");
        }
        return Ok(());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in verity_crds::CRD_DIRS {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir)?;
        for (name, yaml) in &files {
            std::fs::write(dir.join(name), yaml)?;
        }
    }
    eprintln!(
        "wrote {} CRDs to {}",
        files.len(),
        verity_crds::CRD_DIRS.join(" and ")
    );
    Ok(())
}
