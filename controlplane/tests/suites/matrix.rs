//! The authorization matrix: every endpoint of the route table × every role × every target
//! (own project, another project of the same workspace, another workspace, another
//! organization), asserting allowed / 403 / 404 as the permission table declares. The
//! expectation is computed from `authz::ENDPOINTS` and the membership facts of the fixture; the
//! outcome comes from real requests against a real database.

use std::collections::HashMap;

use http::StatusCode;
use serde_json::{Value, json};
use verity_controlplane::authz::{
    self, Access, ENDPOINTS, Endpoint, Permission, ProjectMembership, Role, Scope,
};

use crate::common::{TEXT_CONFIG, TestApp, choice};

/// What a call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Past authorization (any answer but 401, 403 `forbidden` or 404 `not_found`).
    Allowed,
    /// 403 `forbidden`.
    Forbidden,
    /// 404 `not_found`: the target is invisible.
    Hidden,
    /// 401.
    Unauthenticated,
    /// A 5xx: never expected, always a mismatch.
    ServerError,
}

/// The target a call is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// No target (organization-wide or self-service endpoints).
    None,
    /// P1: a project the caller reaches (member of it, or manager of its workspace).
    OwnProject,
    /// P2: another project in the same workspace.
    SameWorkspace,
    /// P3: a project in another workspace.
    OtherWorkspace,
    /// Another organization's object.
    OtherOrg,
    /// The caller's organization (organization-scoped endpoints with an id).
    OwnOrg,
    /// W1: the workspace the manager belongs to.
    OwnWorkspace,
    /// W2: a workspace nobody but the owner belongs to.
    ForeignWorkspace,
}

const ROLES: [Role; 5] = [
    Role::Annotator,
    Role::Reviewer,
    Role::Manager,
    Role::Admin,
    Role::Owner,
];

/// The objects of one project.
#[derive(Debug, Clone, Copy, Default)]
struct Objects {
    project: i64,
    task: i64,
    annotation: i64,
    /// The owner's draft of the task (drafts are private: anyone else finds none).
    draft: i64,
    prediction: i64,
    snapshot: i64,
    pause: i64,
    /// A webhook of the project.
    webhook: i64,
    /// An ML backend of the project (interactive).
    ml: i64,
    /// An import of the project run as a job.
    import: i64,
    /// An uploaded task file of the project (a task was made of it) and its stored name.
    file_upload: i64,
    upload_file: &'static str,
    /// A local-files storage of the project.
    storage: i64,
    /// A local-files export storage of the project.
    export_storage: i64,
    /// A GCS storage of the project (import) and one for export.
    gcs_storage: i64,
    gcs_export_storage: i64,
    /// An Azure storage of the project (import) and one for export.
    azure_storage: i64,
    azure_export_storage: i64,
    /// An S3 storage of the project (import).
    s3_storage: i64,
    /// An S3 export storage of the project.
    s3_export_storage: i64,
    /// `s3s` (S3 by IAM role) storages of the project, import and export.
    s3s_storage: i64,
    s3s_export_storage: i64,
    /// `azure_spi` (Azure by service principal) storages of the project, import and export.
    azure_spi_storage: i64,
    azure_spi_export_storage: i64,
    /// The user the pause is for.
    paused_user: i64,
    /// An annotation by the paused user (the owner may review it).
    others_annotation: i64,
    /// The owner's review of that annotation.
    review: i64,
    /// A data-manager view of the project (the owner's).
    view: i64,
    /// The owner's comment on the owner's annotation.
    comment: i64,
}

/// Two organizations: A with one user per role, two workspaces and three projects; B with one
/// project. Built through the API as A's and B's owners.
struct Fixture {
    tokens: HashMap<Role, String>,
    users: HashMap<Role, i64>,
    org_a: i64,
    org_b: i64,
    b_annotator: i64,
    w1: i64,
    w2: i64,
    wb: i64,
    p: [Objects; 4],
    invitation_a: i64,
    invitation_b: i64,
    job_a: String,
    job_b: String,
    /// A stand-in model server for new ML backends.
    ml_url: String,
}

/// A failed background job of `org` (what the job endpoints act on).
async fn failed_job(app: &TestApp, org: i64) -> String {
    use verity_controlplane::jobs::{Jobs, NewJob, sql::SqlQueue};
    let jobs = Jobs::Sql(SqlQueue::new(app.db.clone()));
    let id = jobs
        .enqueue(&NewJob {
            organization: Some(org),
            max_attempts: 1,
            ..NewJob::new("low", "fixture", json!({}))
        })
        .await
        .expect("enqueue");
    // Straight into the failed registry (leasing could pick another fixture's requeued job).
    // Ended now: a worker's maintenance (the snapshot fixture runs one) purges failed jobs
    // older than the registry's retention.
    let now = verity_controlplane::storage::now_micros();
    app.sql(&format!(
        "update jobs set state = 'failed', attempts = 1, ended_at = {now}, error = 'fixture' where id = '{id}'"
    ))
    .await
    .expect("fail the fixture job");
    id
}

async fn create(app: &TestApp, path: &str, token: &str, body: Value) -> Value {
    let reply = app.post(path, token, body).await;
    assert!(
        reply.status.is_success(),
        "fixture: POST {path} answered {}: {}",
        reply.status,
        reply.text
    );
    reply.body
}

async fn objects(app: &TestApp, token: &str, project: i64, paused_user: i64) -> Objects {
    let task = app.mk_tasks(token, project, 2).await[0];
    let annotation = create(
        app,
        &format!("/api/tasks/{task}/annotations"),
        token,
        json!({"result": choice("pos")}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    // An annotation by someone else, and the owner's review of it.
    let others_annotation = create(
        app,
        &format!("/api/tasks/{task}/annotations"),
        token,
        json!({"result": choice("neg"), "completed_by": paused_user}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let view = create(
        app,
        "/api/dm/views",
        token,
        json!({"project": project, "data": {"title": "Tab"}}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let draft = create(
        app,
        &format!("/api/tasks/{task}/drafts"),
        token,
        json!({"result": choice("pos")}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let comment = create(
        app,
        "/api/comments",
        token,
        json!({"annotation": annotation, "text": "fixture"}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let review = create(
        app,
        "/api/annotation-reviews",
        token,
        json!({"annotation": others_annotation, "accepted": true}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let prediction = create(
        app,
        "/api/predictions",
        token,
        json!({"task": task, "result": choice("neg")}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    // A worker of the exports' queue writes the snapshot (a job), then stops; it leaves the
    // other queues' fixture jobs alone.
    let worker = {
        use verity_controlplane::jobs::{Jobs, sql::SqlQueue, worker};
        let jobs = Jobs::Sql(SqlQueue::new(app.db.clone()));
        let handlers =
            verity_controlplane::server::handlers(&app.db, &jobs, &app.config).expect("handlers");
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let config = worker::WorkerConfig {
            queues: vec![verity_controlplane::exports::QUEUE],
            idle_poll: std::time::Duration::from_millis(10),
            ..worker::WorkerConfig::default()
        };
        tokio::spawn(worker::run(jobs, handlers, config, None, stop_rx));
        stop
    };
    let snapshot = create(
        app,
        &format!("/api/projects/{project}/exports"),
        token,
        json!({"title": "s"}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    // Wait for the snapshot, so downloads and conversions are about authorization only.
    for _ in 0..200 {
        let s = app
            .get(
                &format!("/api/projects/{project}/exports/{snapshot}"),
                token,
            )
            .await
            .expect(StatusCode::OK);
        if s["status"] == json!("completed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(worker);
    let pause = create(
        app,
        &format!("/api/projects/{project}/members/{paused_user}/pauses"),
        token,
        json!({"reason": "MANUAL", "verbose_reason": "fixture"}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let webhook = create(
        app,
        "/api/webhooks",
        token,
        json!({"project": project, "url": "https://hooks.example.com/matrix"}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let ml = create(
        app,
        "/api/ml",
        token,
        json!({"project": project, "url": crate::common::stub_ml_backend().await, "is_interactive": true}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let import = create(
        app,
        &format!("/api/projects/{project}/import?async=true"),
        token,
        json!([{"text": "queued"}]),
    )
    .await["import"]
        .as_i64()
        .expect("id");
    let uploaded = {
        let boundary = "matrixBoundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.json\"\r\n\r\n[{{\"text\": \"uploaded\"}}]\r\n--{boundary}--\r\n"
        );
        app.post_raw(
            &format!("/api/projects/{project}/import"),
            token,
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        )
        .await
        .expect(StatusCode::CREATED)
    };
    let file_upload = uploaded["file_upload_ids"][0].as_i64().expect("upload id");
    let upload_file: &'static str = {
        let list = app
            .get(&format!("/api/projects/{project}/file-uploads"), token)
            .await
            .expect(StatusCode::OK);
        let url = list[0]["file"].as_str().expect("file").to_string();
        let name = url.rsplit('/').next().expect("name").to_string();
        Box::leak(name.into_boxed_str())
    };
    let storage = create(
        app,
        "/api/storages/localfiles",
        token,
        json!({"project": project, "path": ".", "use_blob_urls": true}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    let export_storage = create(
        app,
        "/api/storages/export/localfiles",
        token,
        json!({"project": project, "path": "."}),
    )
    .await["id"]
        .as_i64()
        .expect("id");
    // Connecting a bucket needs one that answers; the matrix is about authorization, so the
    // rows are written directly.
    let row = |provider: &'static str, variant: &'static str, direction: &'static str| async move {
        let sql = "insert into cloud_storage (organization_id, project_id, provider, direction, bucket, account_name, created_at, updated_at, variant) \
                   select organization_id, id, $3, $1, 'matrix', 'matrix', 0, 0, $4 from project where id = $2 returning id";
        match &app.db {
            verity_controlplane::storage::Db::Postgres(pool) => sqlx::query_scalar::<_, i64>(sql)
                .bind(direction)
                .bind(project)
                .bind(provider)
                .bind(variant)
                .fetch_one(pool)
                .await
                .expect("insert"),
            verity_controlplane::storage::Db::Sqlite { write, .. } => {
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(direction)
                    .bind(project)
                    .bind(provider)
                    .bind(variant)
                    .fetch_one(write)
                    .await
                    .expect("insert")
            }
        }
    };
    let s3_row = |provider: &'static str, direction: &'static str| row(provider, "", direction);
    let s3_storage = s3_row("s3", "import").await;
    let s3_export_storage = s3_row("s3", "export").await;
    let gcs_storage = s3_row("gcs", "import").await;
    let gcs_export_storage = s3_row("gcs", "export").await;
    let azure_storage = s3_row("azure", "import").await;
    let azure_export_storage = s3_row("azure", "export").await;
    let s3s_storage = row("s3", "s3s", "import").await;
    let s3s_export_storage = row("s3", "s3s", "export").await;
    let azure_spi_storage = row("azure", "azure_spi", "import").await;
    let azure_spi_export_storage = row("azure", "azure_spi", "export").await;
    Objects {
        project,
        storage,
        export_storage,
        s3_storage,
        s3_export_storage,
        gcs_storage,
        gcs_export_storage,
        azure_storage,
        azure_export_storage,
        s3s_storage,
        s3s_export_storage,
        azure_spi_storage,
        azure_spi_export_storage,
        webhook,
        ml,
        import,
        file_upload,
        upload_file,
        task,
        annotation,
        prediction,
        snapshot,
        pause,
        paused_user,
        others_annotation,
        review,
        view,
        comment,
        draft,
    }
}

async fn fixture(app: &TestApp, n: usize) -> Fixture {
    let mut tokens = HashMap::new();
    let mut users = HashMap::new();
    for role in ROLES {
        let token = app
            .user(&format!("{}{n}@a.test", role.as_str()), role)
            .await;
        users.insert(role, app.user_id(&token).await);
        tokens.insert(role, token);
    }
    let owner = tokens[&Role::Owner].clone();
    let (org_b, b_owner) = app.other_org("B", &format!("owner{n}@b.test")).await;
    let b_annotator_token = app
        .user_in(org_b, &format!("annotator{n}@b.test"), Role::Annotator)
        .await;
    let b_annotator = app.user_id(&b_annotator_token).await;
    let ws = |title: &'static str, token: String| async move {
        create(app, "/api/workspaces", &token, json!({"title": title})).await["id"]
            .as_i64()
            .expect("id")
    };
    let w1 = ws("W1", owner.clone()).await;
    let w2 = ws("W2", owner.clone()).await;
    let wb = ws("WB", b_owner.clone()).await;
    create(
        app,
        &format!("/api/workspaces/{w1}/memberships"),
        &owner,
        json!({"user": users[&Role::Manager]}),
    )
    .await;
    let project = |workspace: i64, token: String| async move {
        create(
            app,
            "/api/projects",
            &token,
            json!({"title": "Same name everywhere", "label_config": TEXT_CONFIG, "workspace": workspace}),
        )
        .await["id"]
            .as_i64()
            .expect("id")
    };
    let p1 = project(w1, owner.clone()).await;
    let p2 = project(w1, owner.clone()).await;
    let p3 = project(w2, owner.clone()).await;
    let p4 = project(wb, b_owner.clone()).await;
    for role in [Role::Annotator, Role::Reviewer] {
        create(
            app,
            &format!("/api/projects/{p1}/members"),
            &owner,
            json!({"user": users[&role]}),
        )
        .await;
    }
    // Pauses target the admin (a pause never holds back a manager or above) so they do not
    // change what annotators may do.
    let admin = users[&Role::Admin];
    let p = [
        objects(app, &owner, p1, admin).await,
        objects(app, &owner, p2, admin).await,
        objects(app, &owner, p3, admin).await,
        objects(app, &b_owner, p4, b_annotator).await,
    ];
    let invitation = |token: String| async move {
        create(
            app,
            "/api/invitations",
            &token,
            json!({"role": "annotator"}),
        )
        .await["id"]
            .as_i64()
            .expect("id")
    };
    let invitation_a = invitation(owner.clone()).await;
    let invitation_b = invitation(b_owner.clone()).await;
    let job_a = failed_job(app, app.org).await;
    let job_b = failed_job(app, org_b).await;
    Fixture {
        tokens,
        users,
        org_a: app.org,
        org_b,
        b_annotator,
        w1,
        w2,
        wb,
        p,
        invitation_a,
        invitation_b,
        job_a,
        job_b,
        ml_url: crate::common::stub_ml_backend().await,
    }
}

/// The targets an endpoint is tried against.
fn targets(e: &Endpoint) -> Vec<Target> {
    let Some(permission) = e.access.required(false) else {
        return vec![Target::None];
    };
    match permission.scope() {
        Scope::Project => vec![
            Target::OwnProject,
            Target::SameWorkspace,
            Target::OtherWorkspace,
            Target::OtherOrg,
        ],
        Scope::Workspace => vec![
            Target::OwnWorkspace,
            Target::ForeignWorkspace,
            Target::OtherOrg,
        ],
        Scope::Organization if e.path.contains("{id}") => vec![Target::OwnOrg, Target::OtherOrg],
        Scope::Organization => vec![Target::None],
    }
}

/// The request for an endpoint aimed at a target: the path with ids filled in, and a body that
/// passes validation where the call is allowed (the matrix is about authorization).
fn request(e: &Endpoint, target: Target, f: &Fixture, role: Role) -> (String, Option<Value>) {
    let obj = match target {
        Target::SameWorkspace => f.p[1],
        Target::OtherWorkspace => f.p[2],
        Target::OtherOrg => f.p[3],
        _ => f.p[0],
    };
    let other_org = target == Target::OtherOrg;
    let workspace = match target {
        Target::ForeignWorkspace => f.w2,
        Target::OtherOrg => f.wb,
        _ => f.w1,
    };
    let ws_project = match target {
        Target::ForeignWorkspace => f.p[2].project,
        Target::OtherOrg => f.p[3].project,
        _ => f.p[0].project,
    };
    let member = if other_org {
        f.b_annotator
    } else {
        f.users[&Role::Annotator]
    };
    let id = if e.path.starts_with("/api/tasks/") {
        obj.task
    } else if e.path.starts_with("/api/annotations/") {
        obj.annotation
    } else if e.path.starts_with("/api/annotation-reviews/") {
        obj.review
    } else if e.path.starts_with("/api/predictions/") {
        obj.prediction
    } else if e.path.starts_with("/api/dm/views/") {
        obj.view
    } else if e.path.starts_with("/api/comments/") {
        obj.comment
    } else if e.path.starts_with("/api/drafts/") {
        obj.draft
    } else if e.path.starts_with("/api/webhooks/") {
        obj.webhook
    } else if e.path.starts_with("/api/ml/") {
        obj.ml
    } else if e.path.starts_with("/api/import/file-upload/") {
        obj.file_upload
    } else if e.path.starts_with("/api/storages/localfiles/") {
        obj.storage
    } else if e.path.starts_with("/api/storages/export/localfiles/") {
        obj.export_storage
    } else if e.path.starts_with("/api/storages/s3/") {
        obj.s3_storage
    } else if e.path.starts_with("/api/storages/export/s3/") {
        obj.s3_export_storage
    } else if e.path.starts_with("/api/storages/gcs/") {
        obj.gcs_storage
    } else if e.path.starts_with("/api/storages/export/gcs/") {
        obj.gcs_export_storage
    } else if e.path.starts_with("/api/storages/azure/") {
        obj.azure_storage
    } else if e.path.starts_with("/api/storages/export/azure/") {
        obj.azure_export_storage
    } else if e.path.starts_with("/api/storages/s3s/") {
        obj.s3s_storage
    } else if e.path.starts_with("/api/storages/export/s3s/") {
        obj.s3s_export_storage
    } else if e.path.starts_with("/api/storages/azure_spi/") {
        obj.azure_spi_storage
    } else if e.path.starts_with("/api/storages/export/azure_spi/") {
        obj.azure_spi_export_storage
    } else if e.path.starts_with("/api/workspaces/") {
        workspace
    } else if e.path.starts_with("/api/organizations/") {
        if other_org { f.org_b } else { f.org_a }
    } else if e.path.starts_with("/api/users/") {
        // Someone else: editing oneself needs no permission.
        match (other_org, role) {
            (true, _) => f.b_annotator,
            (false, Role::Annotator) => f.users[&Role::Reviewer],
            (false, _) => f.users[&Role::Annotator],
        }
    } else if e.path.starts_with("/api/invitations/") {
        if other_org {
            f.invitation_b
        } else {
            f.invitation_a
        }
    } else {
        obj.project
    };
    // A user's own statistics: the fixture's objects are the owner's, so the owner's statistics
    // are what "the author" reads (`authz::OWN_STATS`).
    let own_stats = matches!(e.access, Access::AuthorOr { .. }) && e.path.contains("stats");
    let user_pk = if e.path.contains("/pauses") {
        obj.paused_user
    } else if own_stats {
        f.users[&Role::Owner]
    } else {
        member
    };
    let id = if e.path.starts_with("/api/jobs/") {
        if other_org {
            f.job_b.clone()
        } else {
            f.job_a.clone()
        }
    } else {
        id.to_string()
    };
    let mut path = e
        .path
        .replace("{id}", &id)
        .replace("{export_pk}", &obj.snapshot.to_string())
        .replace("{user_pk}", &user_pk.to_string())
        .replace("{pause_pk}", &obj.pause.to_string())
        .replace("{import_pk}", &obj.import.to_string())
        .replace("{task_pk}", &obj.task.to_string())
        .replace("{annotation_pk}", &obj.annotation.to_string())
        .replace("{slug}", "acme")
        .replace("{project}", &obj.project.to_string())
        .replace("{file}", obj.upload_file)
        .replace("{key}", "k")
        .replace("{kpi_key}", "annotations_submitted");
    let admin = f.users[&Role::Admin];
    let body = match (e.method, e.path) {
        ("GET", "/api/tasks")
        | ("GET", "/api/predictions")
        | ("GET", "/api/webhooks")
        | ("GET", "/api/storages/localfiles")
        | ("GET", "/api/storages/export/localfiles")
        | ("GET", "/api/storages/s3")
        | ("GET", "/api/storages/export/s3")
        | ("GET", "/api/storages/gcs")
        | ("GET", "/api/storages/export/gcs")
        | ("GET", "/api/storages/azure")
        | ("GET", "/api/storages/export/azure")
        | ("GET", "/api/storages/s3s")
        | ("GET", "/api/storages/export/s3s")
        | ("GET", "/api/storages/azure_spi")
        | ("GET", "/api/storages/export/azure_spi")
        | ("GET", "/api/storages")
        | ("GET", "/api/storages/export")
        | ("GET", "/api/ml")
        | ("GET", "/api/dm/views")
        | ("GET", "/api/dm/columns")
        | ("GET", "/api/dm/actions")
        | ("DELETE", "/api/dm/views/reset") => {
            path.push_str(&format!("?project={}", obj.project));
            None
        }
        ("GET", "/api/annotation-reviews") => {
            path.push_str(&format!("?annotation__task__project={}", obj.project));
            None
        }
        ("GET", "/api/comments") | ("GET", "/api/comments/export") => {
            path.push_str(&format!("?projects={}", obj.project));
            None
        }
        ("POST", "/api/annotation-reviews") => {
            Some(json!({"annotation": obj.others_annotation, "accepted": true}))
        }
        ("PATCH", "/api/annotation-reviews/{id}") => Some(json!({"accepted": true})),
        ("POST", "/api/comments") => Some(json!({"annotation": obj.annotation, "text": "matrix"})),
        ("PATCH", "/api/comments/{id}") => Some(json!({"is_resolved": true})),
        ("GET", "/api/projects/{id}/stats/reliability") => {
            path.push_str("?from_name=sentiment");
            None
        }
        ("GET", "/api/analytics/kpis/{kpi_key}") => {
            path.push_str("?tz=UTC");
            None
        }
        ("POST", "/api/dm/actions") => {
            path.push_str(&format!("?project={}&id=delete_tasks", obj.project));
            Some(json!({"selectedItems": {"all": false, "included": [obj.task]}}))
        }
        ("POST", "/api/dm/views") => {
            Some(json!({"project": obj.project, "data": {"title": "Mine"}}))
        }
        ("POST", "/api/dm/views/order") => Some(json!({"project": obj.project, "ids": []})),
        ("PATCH", "/api/dm/views/{id}") => Some(json!({"data": {"title": "Renamed"}})),
        ("POST", "/api/webhooks") => {
            Some(json!({"project": obj.project, "url": "https://hooks.example.com/new"}))
        }
        ("PATCH", "/api/webhooks/{id}") => Some(json!({"is_active": false})),
        ("POST", "/api/storages/localfiles")
        | ("POST", "/api/storages/localfiles/validate")
        | ("POST", "/api/storages/export/localfiles")
        | ("POST", "/api/storages/export/localfiles/validate") => {
            Some(json!({"project": obj.project, "path": "."}))
        }
        ("PATCH", "/api/storages/localfiles/{id}")
        | ("PATCH", "/api/storages/export/localfiles/{id}")
        | ("PATCH", "/api/storages/s3/{id}")
        | ("PATCH", "/api/storages/export/s3/{id}")
        | ("PATCH", "/api/storages/gcs/{id}")
        | ("PATCH", "/api/storages/export/gcs/{id}")
        | ("PATCH", "/api/storages/azure/{id}")
        | ("PATCH", "/api/storages/export/azure/{id}")
        | ("PATCH", "/api/storages/s3s/{id}")
        | ("PATCH", "/api/storages/export/s3s/{id}")
        | ("PATCH", "/api/storages/azure_spi/{id}")
        | ("PATCH", "/api/storages/export/azure_spi/{id}") => Some(json!({"title": "renamed"})),
        // Past authorization the bucket is checked: a private endpoint is refused (400).
        ("POST", "/api/storages/s3")
        | ("POST", "/api/storages/s3/validate")
        | ("POST", "/api/storages/export/s3")
        | ("POST", "/api/storages/export/s3/validate") => Some(
            json!({"project": obj.project, "bucket": "matrix", "s3_endpoint": "http://127.0.0.1:9"}),
        ),
        ("POST", "/api/storages/gcs")
        | ("POST", "/api/storages/gcs/validate")
        | ("POST", "/api/storages/export/gcs")
        | ("POST", "/api/storages/export/gcs/validate") => Some(
            json!({"project": obj.project, "bucket": "matrix", "gcs_endpoint": "http://127.0.0.1:9"}),
        ),
        ("POST", "/api/storages/azure")
        | ("POST", "/api/storages/azure/validate")
        | ("POST", "/api/storages/export/azure")
        | ("POST", "/api/storages/export/azure/validate") => Some(
            json!({"project": obj.project, "container": "matrix", "account_name": "matrix", "azure_endpoint": "http://127.0.0.1:9"}),
        ),
        // No server identity to assume the role with: a 400 on role_arn past authorization.
        ("POST", "/api/storages/s3s")
        | ("POST", "/api/storages/s3s/validate")
        | ("POST", "/api/storages/export/s3s")
        | ("POST", "/api/storages/export/s3s/validate") => Some(
            json!({"project": obj.project, "bucket": "matrix", "s3_endpoint": "http://127.0.0.1:9",
                "role_arn": "arn:aws:iam::123456789012:role/matrix"}),
        ),
        ("POST", "/api/storages/azure_spi")
        | ("POST", "/api/storages/azure_spi/validate")
        | ("POST", "/api/storages/export/azure_spi")
        | ("POST", "/api/storages/export/azure_spi/validate") => Some(
            json!({"project": obj.project, "container": "matrix", "account_name": "matrix",
                "azure_endpoint": "http://127.0.0.1:9", "tenant_id": "8d3c1f2a-5b6e-4c7d-9e0f-1a2b3c4d5e6f",
                "client_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "client_secret": "matrix"}),
        ),
        ("POST", "/api/ml") => Some(json!({"project": obj.project, "url": f.ml_url})),
        ("PATCH", "/api/ml/{id}") => Some(json!({"title": "renamed"})),
        ("POST", "/api/ml/{id}/interactive-annotating") => {
            Some(json!({"task": obj.task, "context": {"result": []}}))
        }
        ("POST", "/api/tasks") => Some(json!({"project": obj.project, "data": {"text": "x"}})),
        ("PATCH", "/api/tasks/{id}") => Some(json!({"data": {"text": "changed"}})),
        ("POST", "/api/tasks/{id}/annotations") => Some(json!({"result": choice("pos")})),
        ("POST", "/api/tasks/{id}/drafts")
        | ("POST", "/api/tasks/{id}/annotations/{annotation_pk}/drafts") => {
            Some(json!({"result": choice("pos")}))
        }
        ("PATCH", "/api/drafts/{id}") => Some(json!({"result": choice("neg")})),
        ("PATCH", "/api/annotations/{id}") => Some(json!({"result": choice("neg")})),
        ("POST", "/api/annotations/bulk") => {
            Some(json!({"project": obj.project, "tasks": [obj.task], "result": choice("pos")}))
        }
        ("POST", "/api/annotations/bulk-delete") => {
            Some(json!({"project": obj.project, "ids": [obj.annotation]}))
        }
        ("POST", "/api/predictions") => Some(json!({"task": obj.task, "result": choice("pos")})),
        ("PATCH", "/api/predictions/{id}") => Some(json!({"score": 0.5})),
        ("POST", "/api/projects/{id}/import") => Some(json!([{"text": "imported"}])),
        ("POST", "/api/projects/{id}/import/predictions") => {
            Some(json!([{"task": obj.task, "result": choice("pos")}]))
        }
        ("POST", "/api/projects/{id}/exports/{export_pk}/convert") => {
            Some(json!({"export_type": "CSV"}))
        }
        ("POST", "/api/projects") => Some(json!({"title": "New", "label_config": TEXT_CONFIG})),
        ("PATCH", "/api/projects/{id}") => Some(json!({"title": "Renamed"})),
        ("POST", "/api/projects/validate") | ("POST", "/api/projects/{id}/validate") => {
            Some(json!({"label_config": TEXT_CONFIG}))
        }
        // The owner may annotate in every project of A: a valid assignee wherever allowed.
        ("POST", "/api/projects/{id}/tasks/{task_pk}/assignees")
        | ("PATCH", "/api/projects/{id}/tasks/{task_pk}/assignees") => {
            Some(json!({"type": "AN", "users": [f.users[&Role::Owner]]}))
        }
        ("DELETE", "/api/projects/{id}/tasks/{task_pk}/assignees") => {
            path.push_str("?type=AN");
            None
        }
        ("POST", "/api/projects/{id}/tasks/assignees") => Some(json!({
            "type": "AN", "users": [f.users[&Role::Owner]], "selectedItems": {"all": true}
        })),
        ("POST", "/api/projects/{id}/review-routing-rules/bulk") => Some(json!({"rules": []})),
        ("POST", "/api/projects/{id}/members") => Some(json!({"user": member})),
        ("DELETE", "/api/projects/{id}/members") => {
            path.push_str(&format!("?user={member}"));
            None
        }
        ("POST", "/api/projects/{id}/members/bulk")
        | ("DELETE", "/api/projects/{id}/members/bulk") => Some(json!({"users": [member]})),
        ("POST", "/api/projects/roles") => {
            Some(json!({"project": obj.project, "user": member, "role": "annotator"}))
        }
        ("GET", "/api/projects/{id}/stats/finished") => {
            path.push_str(&format!("?user_pk={user_pk}"));
            None
        }
        ("GET", "/api/projects/{id}/stats/agreement_annotators")
        | ("GET", "/api/projects/{id}/stats/agreement-groundtruth")
        | ("GET", "/api/projects/{id}/user-stats/review_score") => {
            path.push_str(&format!("?ids={member}"));
            None
        }
        ("POST", "/api/projects/{id}/members/{user_pk}/pauses") => {
            Some(json!({"reason": "MANUAL", "verbose_reason": "matrix"}))
        }
        ("POST", "/api/workspaces") => Some(json!({"title": "New"})),
        ("PATCH", "/api/workspaces/{id}") => Some(json!({"description": "changed"})),
        ("POST", "/api/workspaces/{id}/memberships") => Some(json!({"user": admin})),
        ("DELETE", "/api/workspaces/{id}/memberships") => {
            path.push_str(&format!("?user_id={admin}"));
            None
        }
        ("POST", "/api/workspaces/{id}/memberships/bulk")
        | ("DELETE", "/api/workspaces/{id}/memberships/bulk") => Some(json!({"users": [admin]})),
        ("POST", "/api/workspaces/{id}/projects") => Some(json!({"project": ws_project})),
        ("DELETE", "/api/workspaces/{id}/projects") => {
            path.push_str(&format!("?project={ws_project}"));
            None
        }
        ("PATCH", "/api/organizations/{id}") => Some(json!({"title": "Org A"})),
        ("PATCH", "/api/organizations/{id}/memberships") => {
            Some(json!({"user_id": member, "role": "annotator"}))
        }
        ("POST", "/api/organizations/{id}/memberships/bulk") => {
            Some(json!({"user_ids": [member], "role": "annotator"}))
        }
        ("POST", "/api/users") => {
            Some(json!({"email": format!("made-by-{}@a.test", role.as_str()), "role": "annotator"}))
        }
        ("PATCH", "/api/users/{id}") => Some(json!({"first_name": "Renamed"})),
        ("POST", "/api/invitations") => Some(json!({"role": "annotator"})),
        ("POST", "/api/scim/settings") => Some(json!({"roles_groups": [["Reviewer", "QA"]]})),
        ("PATCH", "/api/current-user") => Some(json!({"first_name": "Me"})),
        (_, p) if p.starts_with("/api/admin/") => Some(json!({"title": "x"})),
        ("GET", _) | ("DELETE", _) => None,
        _ => Some(json!({})),
    };
    (path, body)
}

/// The membership facts of the fixture: annotator and reviewer are members of P1, the
/// manager belongs to W1 (P1 and P2), the owner created every project of A.
fn expected(e: &Endpoint, target: Target, role: Role) -> Outcome {
    let permission: Permission = match e.access {
        Access::Public | Access::SignedIn => return Outcome::Allowed,
        Access::InstanceAdmin => return Outcome::Unauthenticated,
        // The fixture's objects are the owner's: the owner is their author.
        access @ (Access::Needs(_) | Access::AuthorOr { .. }) => {
            access.required(role == Role::Owner).expect("a permission")
        }
    };
    if target == Target::OtherOrg {
        return Outcome::Hidden;
    }
    let held = match permission.scope() {
        Scope::Organization => Some(role),
        Scope::Workspace => authz::workspace_role(
            role,
            role == Role::Manager && target == Target::OwnWorkspace,
        ),
        Scope::Project => authz::project_role(
            role,
            ProjectMembership {
                creator: role == Role::Owner,
                workspace_member: role == Role::Manager
                    && matches!(target, Target::OwnProject | Target::SameWorkspace),
                project_member: matches!(role, Role::Annotator | Role::Reviewer)
                    && target == Target::OwnProject,
                project_role: None,
            },
        ),
    };
    // Blind labeling (ADR 0014): an annotator may see the project, but the fixture's annotation
    // is the owner's, which an annotator cannot read; it answers like a missing one.
    // The same for its history, and for the review of another member's annotation.
    if e.method == "GET"
        && matches!(
            e.path,
            "/api/annotations/{id}"
                | "/api/annotations/{id}/history"
                | "/api/annotation-reviews/{id}"
        )
        && held == Some(Role::Annotator)
    {
        return Outcome::Hidden;
    }
    // Comments follow their annotation (ADR 0038): the fixture's is the owner's, hidden from a
    // blind annotator whatever the comment endpoint.
    if ((e.path.starts_with("/api/comments/") && e.path != "/api/comments/export")
        || (e.method == "POST" && e.path == "/api/comments"))
        && held == Some(Role::Annotator)
    {
        return Outcome::Hidden;
    }
    // Converting an annotation to a draft is its author's; the fixture's is the owner's, which a
    // blind annotator cannot see at all.
    if e.method == "POST"
        && e.path == "/api/annotations/{id}/convert-to-draft"
        && held == Some(Role::Annotator)
    {
        return Outcome::Hidden;
    }
    // Drafts are private (ADR 0044): the fixture's is the owner's, not found for anyone else.
    if e.path.starts_with("/api/drafts/") && role != Role::Owner {
        return Outcome::Hidden;
    }
    // Drafts of an annotation follow the annotation: the owner's, hidden from a blind annotator.
    if e.path.contains("/annotations/{annotation_pk}/drafts") && held == Some(Role::Annotator) {
        return Outcome::Hidden;
    }
    match held {
        Some(r) if r >= permission.minimum_role() => Outcome::Allowed,
        _ => Outcome::Forbidden,
    }
}

fn classify(status: StatusCode, body: &Value) -> Outcome {
    let code = body["code"].as_str().unwrap_or_default();
    match status {
        s if s.is_server_error() => Outcome::ServerError,
        StatusCode::UNAUTHORIZED => Outcome::Unauthenticated,
        StatusCode::FORBIDDEN if code == "forbidden" => Outcome::Forbidden,
        StatusCode::NOT_FOUND if code == "not_found" => Outcome::Hidden,
        // Creating a prediction for a task id that is not the caller's answers like a task id
        // that does not exist (Label Studio's 400): equally hidden.
        StatusCode::BAD_REQUEST
            if body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("does not exist")) =>
        {
            Outcome::Hidden
        }
        _ => Outcome::Allowed,
    }
}

#[test]
fn server_errors_are_never_an_outcome_a_permission_allows() {
    assert_eq!(
        classify(StatusCode::INTERNAL_SERVER_ERROR, &Value::Null),
        Outcome::ServerError
    );
    assert_eq!(
        classify(StatusCode::SERVICE_UNAVAILABLE, &Value::Null),
        Outcome::ServerError
    );
    assert_eq!(
        classify(StatusCode::CONFLICT, &Value::Null),
        Outcome::Allowed
    );
}

/// Runs the whole matrix; returns every mismatch.
pub(crate) async fn run(app: &TestApp) {
    let mut mismatches = Vec::new();
    let mut n = 0usize;
    let mut shared: Option<Fixture> = None;
    let mut calls = 0usize;
    // `VERITY_MATRIX_ONLY=<path prefix>,<path prefix>…` runs the rows of some endpoints only (a
    // quick check of new routes; the full matrix takes minutes).
    let only = std::env::var("VERITY_MATRIX_ONLY").unwrap_or_default();
    let prefixes: Vec<&str> = only.split(',').map(str::trim).collect();
    for e in ENDPOINTS {
        if matches!(e.path, "/health" | "/livez" | "/readyz" | "/metrics") {
            continue;
        }
        if !prefixes.iter().any(|p| e.path.starts_with(p)) {
            continue;
        }
        // Reads share one fixture; a change gets a fresh one, and a deletion one per role, so
        // one role's allowed change never decides another role's outcome.
        let destructive = e.method == "DELETE";
        let mut per_endpoint: Option<Fixture> = None;
        for role in ROLES {
            let fresh;
            let f: &Fixture = if e.method == "GET" {
                if shared.is_none() {
                    n += 1;
                    shared = Some(fixture(app, n).await);
                }
                shared.as_ref().expect("shared fixture")
            } else if destructive {
                n += 1;
                fresh = fixture(app, n).await;
                &fresh
            } else {
                if per_endpoint.is_none() {
                    n += 1;
                    per_endpoint = Some(fixture(app, n).await);
                }
                per_endpoint.as_ref().expect("endpoint fixture")
            };
            for target in targets(e) {
                let (path, body) = request(e, target, f, role);
                let reply = app.call(e.method, &path, &f.tokens[&role], body).await;
                calls += 1;
                let got = classify(reply.status, &reply.body);
                let want = expected(e, target, role);
                if got != want {
                    mismatches.push(format!(
                        "{} {} as {} on {target:?}: expected {want:?}, got {} {}",
                        e.method,
                        e.path,
                        role.as_str(),
                        reply.status,
                        reply.text.chars().take(200).collect::<String>()
                    ));
                }
            }
        }
    }
    assert!(
        calls > 300 || !only.is_empty(),
        "the matrix made only {calls} calls"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {calls} calls disagree with the permission table:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
