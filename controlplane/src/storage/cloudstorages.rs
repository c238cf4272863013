//! Bucket storages of a project: S3, GCS and Azure Blob (Label Studio's `/api/storages/s3`,
//! `/api/storages/gcs`, `/api/storages/azure` and their `/api/storages/export/…` twins), one
//! table (`cloud_storage`, a `provider` column) and one set of functions for all three (ADR
//! 0026, ADR 0028). Managed by whoever holds `storage.manage` in the project; another
//! organization's storages, and another provider's, are not found. Credentials are sealed at
//! rest (ADR 0016) and never leave the server: views say only whether they are set. What a sync
//! does with a bucket is in `crate::cloud`.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    Db, access,
    audit::{Prepared, audit},
    format_micros, now_micros,
    storages::{self, Direction},
    with_read, with_tx,
};
use crate::{
    authz::{Actor, Permission},
    body,
    cloud::{CloudType, Endpoint, Provider, ServerIdentity},
    error::{ApiError, ApiResult, ErrorCode},
    secrets::Sealer,
};

/// Purpose labels of the sealed credentials (a sealed value opens only for its own column).
const KEY_ID_PURPOSE: &str = "s3.aws_access_key_id";
const SECRET_PURPOSE: &str = "s3.aws_secret_access_key";
const TOKEN_PURPOSE: &str = "s3.aws_session_token";
const GOOGLE_PURPOSE: &str = "gcs.google_application_credentials";
const ACCOUNT_KEY_PURPOSE: &str = "azure.account_key";
const CLIENT_SECRET_PURPOSE: &str = "azure.client_secret";

/// The table.
const TABLE: &str = "cloud_storage";

/// A stored bucket storage (credentials sealed).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CloudStorageRow {
    /// Id (unique across providers).
    pub id: i64,
    /// Organization.
    pub organization_id: i64,
    /// Project.
    pub project_id: i64,
    /// `s3`, `gcs` or `azure`.
    pub provider: String,
    /// `s3s` or `azure_spi` for those types of the provider; empty for the plain type.
    pub variant: String,
    /// `import` or `export`.
    pub direction: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Bucket name (Azure: container).
    pub bucket: String,
    /// Key prefix (a folder; empty: the whole bucket).
    pub prefix: String,
    /// Regular expression over keys (empty: all).
    pub regex_filter: String,
    /// Each object a task (true) or JSON/JSONL objects of tasks (false).
    pub use_blob_urls: bool,
    /// Media: redirect to a presigned URL (true) or stream through the storage proxy.
    pub presign: bool,
    /// Presigned URL lifetime in minutes.
    pub presign_ttl: i64,
    /// List objects below the prefix's sub-folders too.
    pub recursive_scan: bool,
    /// S3 region.
    pub region_name: String,
    /// Endpoint override (empty: the provider's public service).
    pub endpoint: String,
    /// Sealed S3 access key id (empty: none).
    pub aws_access_key_id: String,
    /// Sealed S3 secret access key (empty: none).
    pub aws_secret_access_key: String,
    /// Sealed S3 session token (empty: none).
    pub aws_session_token: String,
    /// GCS project id (informational: bucket names are global).
    pub google_project_id: String,
    /// Sealed GCS service-account key (empty: none).
    pub google_application_credentials: String,
    /// Azure storage account.
    pub account_name: String,
    /// Sealed Azure account key (empty: none).
    pub account_key: String,
    /// Export: delete the objects of deleted annotations at the next sync.
    pub can_delete_objects: bool,
    /// S3: IAM role assumed for temporary credentials (empty: none).
    pub role_arn: String,
    /// S3: external id sent when assuming the role (empty: none).
    pub external_id: String,
    /// Azure service principal: tenant.
    pub tenant_id: String,
    /// Azure service principal: application (client) id.
    pub client_id: String,
    /// Sealed Azure service principal client secret (empty: none).
    pub client_secret: String,
    /// Sync state.
    pub status: String,
    /// Why the last sync failed.
    pub traceback: Option<String>,
    /// JSON counters of the last sync.
    pub meta: String,
    /// End of the last sync (micros).
    pub last_sync: Option<i64>,
    /// Tasks (import) or objects (export) the last sync added or wrote.
    pub last_sync_count: Option<i64>,
    /// Job of the last sync.
    pub last_sync_job: Option<String>,
    /// Created (micros).
    pub created_at: i64,
    /// Updated (micros).
    pub updated_at: i64,
}

const COLUMNS: &str = "s.id, s.organization_id, s.project_id, s.provider, s.variant, s.direction, s.title, s.description, \
    s.bucket, s.prefix, s.regex_filter, s.use_blob_urls, s.presign, s.presign_ttl, s.recursive_scan, s.region_name, \
    s.endpoint, s.aws_access_key_id, s.aws_secret_access_key, s.aws_session_token, s.google_project_id, \
    s.google_application_credentials, s.account_name, s.account_key, s.can_delete_objects, \
    s.role_arn, s.external_id, s.tenant_id, s.client_id, s.client_secret, s.status, s.traceback, s.meta, s.last_sync, s.last_sync_count, s.last_sync_job, s.created_at, s.updated_at";

/// What every bucket storage view shows besides its connection.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CloudSyncFields {
    /// Key prefix (a folder).
    pub prefix: Option<String>,
    /// Only objects whose key matches this regular expression.
    pub regex_filter: Option<String>,
    /// Each object becomes a task whose data is its media URL (`true`), or JSON/JSONL objects
    /// hold tasks.
    pub use_blob_urls: bool,
    /// Media are answered with a presigned URL of the bucket (`true`) or streamed by the
    /// storage proxy.
    pub presign: bool,
    /// Lifetime of presigned URLs, minutes.
    pub presign_ttl: i64,
    /// Objects in sub-folders of the prefix are listed too.
    pub recursive_scan: bool,
    /// Export storages: delete the objects of deleted annotations at the next sync.
    pub can_delete_objects: bool,
    /// `initialized`, `queued`, `in_progress`, `completed` or `failed`.
    pub status: String,
    /// Why the last sync failed.
    pub traceback: Option<String>,
    /// Counters of the last sync (`listed`, `new`, `changed`, `unchanged`, `missing`, …).
    pub meta: Value,
    /// ISO time the last sync ended.
    pub last_sync: Option<String>,
    /// Tasks (import) or objects (export) the last sync added or wrote.
    pub last_sync_count: Option<i64>,
    /// The job of the last sync (`GET /api/jobs/{id}`).
    pub last_sync_job: Option<String>,
    /// Always true.
    pub synchronizable: bool,
    /// ISO creation time.
    pub created_at: String,
    /// ISO update time.
    pub updated_at: String,
}

/// An S3 storage as the API shows it (Label Studio's fields; credentials are never returned).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct S3StorageView {
    /// Id.
    pub id: i64,
    /// `s3`, or `s3s` for a storage of the IAM-role type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Project.
    pub project: i64,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Bucket.
    pub bucket: String,
    /// Region.
    pub region_name: Option<String>,
    /// S3-compatible endpoint.
    pub s3_endpoint: Option<String>,
    /// Whether requests are signed: an access key id and secret are stored (they are never
    /// returned), or a role is assumed.
    pub has_credentials: bool,
    /// Whether a session token is stored.
    pub has_session_token: bool,
    /// IAM role whose temporary credentials sign requests (ADR 0054).
    pub role_arn: Option<String>,
    /// External id sent when assuming the role (not a secret, as AWS says).
    pub external_id: Option<String>,
    /// Prefix, filters, sync state.
    #[serde(flatten)]
    pub sync: CloudSyncFields,
}

/// A Google Cloud Storage storage as the API shows it (the service-account key is never
/// returned).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GcsStorageView {
    /// Id.
    pub id: i64,
    /// Always `gcs`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Project.
    pub project: i64,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Bucket.
    pub bucket: String,
    /// Google Cloud project id.
    pub google_project_id: Option<String>,
    /// Endpoint override (a GCS-compatible service); absent: `https://storage.googleapis.com`.
    pub gcs_endpoint: Option<String>,
    /// Whether a service-account key is stored (it is never returned).
    pub has_credentials: bool,
    /// Prefix, filters, sync state.
    #[serde(flatten)]
    pub sync: CloudSyncFields,
}

/// An Azure Blob storage as the API shows it (the account key is never returned).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AzureStorageView {
    /// Id.
    pub id: i64,
    /// `azure`, or `azure_spi` for a storage of the service-principal type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Project.
    pub project: i64,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Container.
    pub container: String,
    /// Storage account.
    pub account_name: String,
    /// Account URL override (e.g. an emulator's `http://host:10000/<account>`); absent:
    /// `https://<account_name>.blob.core.windows.net`.
    pub azure_endpoint: Option<String>,
    /// Whether an account key or a service principal's client secret is stored (neither is
    /// ever returned).
    pub has_credentials: bool,
    /// Service principal: Entra ID tenant.
    pub tenant_id: Option<String>,
    /// Service principal: application (client) id.
    pub client_id: Option<String>,
    /// Whether a service principal's client secret is stored.
    pub has_client_secret: bool,
    /// Prefix, filters, sync state.
    #[serde(flatten)]
    pub sync: CloudSyncFields,
}

/// A view of a stored bucket storage, one type per provider (its `s3s` and `azure_spi` types
/// shown as the plain type's view with their own `type`).
pub trait CloudView: Serialize + Sized {
    /// The provider whose storages this view shows.
    const PROVIDER: Provider;
    /// The view of a row of that provider.
    fn of(row: &CloudStorageRow) -> Self;
}

impl CloudView for S3StorageView {
    const PROVIDER: Provider = Provider::S3;
    fn of(row: &CloudStorageRow) -> Self {
        Self {
            id: row.id,
            kind: row.cloud_type().name(),
            project: row.project_id,
            title: row.title.clone(),
            description: row.description.clone(),
            bucket: row.bucket.clone(),
            region_name: non_empty(&row.region_name),
            s3_endpoint: non_empty(&row.endpoint),
            has_credentials: (!row.aws_access_key_id.is_empty()
                && !row.aws_secret_access_key.is_empty())
                || !row.role_arn.is_empty(),
            has_session_token: !row.aws_session_token.is_empty(),
            role_arn: non_empty(&row.role_arn),
            external_id: non_empty(&row.external_id),
            sync: row.sync_fields(),
        }
    }
}

impl CloudView for GcsStorageView {
    const PROVIDER: Provider = Provider::Gcs;
    fn of(row: &CloudStorageRow) -> Self {
        Self {
            id: row.id,
            kind: row.cloud_type().name(),
            project: row.project_id,
            title: row.title.clone(),
            description: row.description.clone(),
            bucket: row.bucket.clone(),
            google_project_id: non_empty(&row.google_project_id),
            gcs_endpoint: non_empty(&row.endpoint),
            has_credentials: !row.google_application_credentials.is_empty(),
            sync: row.sync_fields(),
        }
    }
}

impl CloudView for AzureStorageView {
    const PROVIDER: Provider = Provider::Azure;
    fn of(row: &CloudStorageRow) -> Self {
        Self {
            id: row.id,
            kind: row.cloud_type().name(),
            project: row.project_id,
            title: row.title.clone(),
            description: row.description.clone(),
            container: row.bucket.clone(),
            account_name: row.account_name.clone(),
            azure_endpoint: non_empty(&row.endpoint),
            has_credentials: !row.account_key.is_empty() || !row.client_secret.is_empty(),
            tenant_id: non_empty(&row.tenant_id),
            client_id: non_empty(&row.client_id),
            has_client_secret: !row.client_secret.is_empty(),
            sync: row.sync_fields(),
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl CloudStorageRow {
    /// The provider (rows are only ever written with a known one).
    pub fn provider(&self) -> Provider {
        Provider::from_kind(&self.provider).unwrap_or(Provider::S3)
    }

    /// The API type of this storage (`s3`, `s3s`, `gcs`, `azure`, `azure_spi`).
    pub fn cloud_type(&self) -> CloudType {
        CloudType::of(self.provider(), &self.variant)
    }

    fn sync_fields(&self) -> CloudSyncFields {
        CloudSyncFields {
            prefix: non_empty(&self.prefix),
            regex_filter: non_empty(&self.regex_filter),
            use_blob_urls: self.use_blob_urls,
            presign: self.presign,
            presign_ttl: self.presign_ttl,
            recursive_scan: self.recursive_scan,
            can_delete_objects: self.can_delete_objects,
            status: self.status.clone(),
            traceback: self.traceback.clone(),
            meta: serde_json::from_str(&self.meta).unwrap_or_else(|_| json!({})),
            last_sync: self.last_sync.map(format_micros),
            last_sync_count: self.last_sync_count,
            last_sync_job: self.last_sync_job.clone(),
            synchronizable: true,
            created_at: format_micros(self.created_at),
            updated_at: format_micros(self.updated_at),
        }
    }

    /// The view of this row as JSON, whatever its provider (for the listing of every storage).
    pub fn view_value(&self) -> Value {
        let value = match self.provider() {
            Provider::S3 => serde_json::to_value(S3StorageView::of(self)),
            Provider::Gcs => serde_json::to_value(GcsStorageView::of(self)),
            Provider::Azure => serde_json::to_value(AzureStorageView::of(self)),
        };
        value.unwrap_or_else(|_| json!({}))
    }

    /// The bucket client of this storage under its organization's outbound rules (the
    /// server's, narrowed by the organization's allow-list; ADR 0053): what the storage proxy,
    /// presigning and the exports with images read objects through.
    pub async fn client(
        &self,
        db: &Db,
        config: &crate::config::Config,
        sealer: &Sealer,
    ) -> ApiResult<crate::cloud::Bucket> {
        let policy = crate::cloud::org_policy(db, config, self.organization_id).await?;
        crate::cloud::store(&self.endpoint(sealer, config)?, policy)
    }

    /// The connection settings with the credentials opened, and the server's side of
    /// short-lived credentials from `config`.
    pub fn endpoint(&self, sealer: &Sealer, config: &crate::config::Config) -> ApiResult<Endpoint> {
        let open = |v: &str, purpose: &str| -> ApiResult<String> {
            if v.is_empty() {
                return Ok(String::new());
            }
            sealer.open(v, purpose).map_err(|e| {
                ApiError::new(
                    ErrorCode::StorageUnreachable,
                    format!("{e}; set the storage's credentials again"),
                )
            })
        };
        Ok(Endpoint {
            provider: self.provider(),
            bucket: self.bucket.clone(),
            region: self.region_name.clone(),
            endpoint: self.endpoint.clone(),
            access_key_id: open(&self.aws_access_key_id, KEY_ID_PURPOSE)?,
            secret_access_key: open(&self.aws_secret_access_key, SECRET_PURPOSE)?,
            session_token: open(&self.aws_session_token, TOKEN_PURPOSE)?,
            google_credentials: open(&self.google_application_credentials, GOOGLE_PURPOSE)?,
            account_name: self.account_name.clone(),
            account_key: open(&self.account_key, ACCOUNT_KEY_PURPOSE)?,
            role_arn: self.role_arn.clone(),
            external_id: self.external_id.clone(),
            tenant_id: self.tenant_id.clone(),
            client_id: self.client_id.clone(),
            client_secret: open(&self.client_secret, CLIENT_SECRET_PURPOSE)?,
            identity: ServerIdentity::of(config),
        })
    }
}

/// The checked fields of a create, update or validate body.
#[derive(Debug, Default)]
struct Input {
    title: Option<String>,
    description: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    regex_filter: Option<String>,
    use_blob_urls: Option<bool>,
    presign: Option<bool>,
    presign_ttl: Option<i64>,
    recursive_scan: Option<bool>,
    region_name: Option<String>,
    endpoint: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    google_project_id: Option<String>,
    google_credentials: Option<String>,
    account_name: Option<String>,
    account_key: Option<String>,
    can_delete_objects: Option<bool>,
    role_arn: Option<String>,
    external_id: Option<String>,
    tenant_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

impl Input {
    /// The fields of `provider` in a body (other providers' fields are ignored, as unknown
    /// fields are).
    fn parse(
        provider: Provider,
        body: &Map<String, Value>,
        policy: &crate::outbound::TargetPolicy,
    ) -> ApiResult<Self> {
        let bucket_field = provider.bucket_field();
        let bucket = body::opt_text(body, bucket_field, 255)?.map(|b| b.trim().to_string());
        if let Some(b) = &bucket
            && !provider.valid_bucket(b)
        {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                bucket_field,
                match provider {
                    Provider::Azure => {
                        "must be a container name: 3 to 63 lowercase letters, digits and single hyphens"
                    }
                    Provider::Gcs => {
                        "must be a bucket name: 3 to 63 lowercase letters, digits, dots, hyphens and underscores"
                    }
                    Provider::S3 => {
                        "must be a bucket name: 3 to 63 lowercase letters, digits, dots and hyphens"
                    }
                },
            ));
        }
        let prefix =
            body::opt_text(body, "prefix", 1024)?.map(|p| p.trim().trim_matches('/').to_string());
        let regex_filter = body::opt_text(body, "regex_filter", 1024)?;
        if let Some(r) = &regex_filter {
            crate::localfiles::filter(r)?;
        }
        let presign_ttl = match body.get("presign_ttl") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(n) if (1..=7 * 24 * 60).contains(&n) => Some(n),
                _ => {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        "presign_ttl",
                        "must be a whole number of minutes from 1 to 10080 (7 days, the longest presigned URLs may live)",
                    ));
                }
            },
        };
        let endpoint_field = provider.endpoint_field();
        let endpoint = body::opt_text(body, endpoint_field, 2048)?.map(|e| e.trim().to_string());
        if let Some(e) = endpoint.as_deref().filter(|e| !e.is_empty()) {
            crate::cloud::check_endpoint(provider, e, policy)?;
        }
        // An empty string clears a credential; absent keeps it.
        let secret = |key: &str| -> ApiResult<Option<String>> {
            Ok(body::opt_text(body, key, 4096)?.map(|s| s.trim().to_string()))
        };
        let mut input = Self {
            title: body::opt_text(body, "title", 2048)?,
            description: body::opt_text(body, "description", 10_000)?,
            bucket,
            prefix,
            regex_filter,
            use_blob_urls: body::opt_bool(body, "use_blob_urls")?,
            presign: body::opt_bool(body, "presign")?,
            presign_ttl,
            recursive_scan: body::opt_bool(body, "recursive_scan")?,
            endpoint,
            can_delete_objects: body::opt_bool(body, "can_delete_objects")?,
            ..Self::default()
        };
        match provider {
            Provider::S3 => {
                input.region_name =
                    body::opt_text(body, "region_name", 64)?.map(|r| r.trim().to_string());
                input.access_key_id = secret("aws_access_key_id")?;
                input.secret_access_key = secret("aws_secret_access_key")?;
                input.session_token = secret("aws_session_token")?;
                input.role_arn =
                    body::opt_text(body, "role_arn", 2048)?.map(|r| r.trim().to_string());
                if let Some(arn) = input.role_arn.as_deref().filter(|a| !a.is_empty())
                    && !valid_role_arn(arn)
                {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        "role_arn",
                        "must be an IAM role ARN: arn:<partition>:iam::<12-digit account>:role/<name>",
                    ));
                }
                input.external_id =
                    body::opt_text(body, "external_id", 1224)?.map(|r| r.trim().to_string());
                if let Some(id) = input.external_id.as_deref().filter(|i| !i.is_empty())
                    && !valid_external_id(id)
                {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        "external_id",
                        "must be 2 to 1224 letters, digits and +=,.@:/- (what AWS accepts as an external id)",
                    ));
                }
            }
            Provider::Gcs => {
                input.google_project_id =
                    body::opt_text(body, "google_project_id", 255)?.map(|r| r.trim().to_string());
                const FIELD: &str = "google_application_credentials";
                input.google_credentials = match body.get(FIELD) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.trim().is_empty() => Some(String::new()),
                    Some(Value::String(s)) if s.len() <= 64 * 1024 => {
                        Some(crate::cloud::service_account_key(s.trim()).map_err(|why| {
                            ApiError::field(ErrorCode::ValidationError, FIELD, why)
                        })?)
                    }
                    Some(v @ Value::Object(_)) => Some(
                        crate::cloud::service_account_key(&v.to_string()).map_err(|why| {
                            ApiError::field(ErrorCode::ValidationError, FIELD, why)
                        })?,
                    ),
                    Some(_) => {
                        return Err(ApiError::field(
                            ErrorCode::ValidationError,
                            FIELD,
                            "must be the service-account key file's JSON (a string of at most 64 KiB, or an object)",
                        ));
                    }
                };
            }
            Provider::Azure => {
                let name = body::opt_text(body, "account_name", 64)?.map(|r| r.trim().to_string());
                if let Some(n) = &name
                    && !((3..=24).contains(&n.len())
                        && n.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
                {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        "account_name",
                        "must be a storage account name: 3 to 24 lowercase letters and digits",
                    ));
                }
                input.account_name = name;
                input.account_key = secret("account_key")?;
                let id = |field: &'static str, domain_ok: bool| -> ApiResult<Option<String>> {
                    let value = body::opt_text(body, field, 253)?.map(|v| v.trim().to_string());
                    if let Some(v) = value.as_deref().filter(|v| !v.is_empty())
                        && !(valid_guid(v) || domain_ok && valid_domain(v))
                    {
                        return Err(ApiError::field(
                            ErrorCode::ValidationError,
                            field,
                            if domain_ok {
                                "must be the tenant's GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx) or its domain name"
                            } else {
                                "must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), as the Azure portal shows the application (client) id"
                            },
                        ));
                    }
                    Ok(value)
                };
                input.tenant_id = id("tenant_id", true)?;
                input.client_id = id("client_id", false)?;
                input.client_secret = secret("client_secret")?;
            }
        }
        Ok(input)
    }

    /// Whether the body changes how the bucket is reached.
    fn changes_connection(&self) -> bool {
        self.bucket.is_some()
            || self.prefix.is_some()
            || self.region_name.is_some()
            || self.endpoint.is_some()
            || self.access_key_id.is_some()
            || self.secret_access_key.is_some()
            || self.session_token.is_some()
            || self.google_credentials.is_some()
            || self.account_name.is_some()
            || self.account_key.is_some()
            || self.role_arn.is_some()
            || self.external_id.is_some()
            || self.tenant_id.is_some()
            || self.client_id.is_some()
            || self.client_secret.is_some()
    }

    /// The connection settings this input makes of `current` (or of nothing) for a storage of
    /// type `ty`: what the type requires is checked first, then the provider's rules.
    fn endpoint(
        &self,
        ty: CloudType,
        current: Option<&Endpoint>,
        config: &crate::config::Config,
    ) -> ApiResult<Endpoint> {
        let provider = ty.provider();
        let pick = |new: &Option<String>, old: Option<&String>| {
            new.clone().or_else(|| old.cloned()).unwrap_or_default()
        };
        let endpoint = Endpoint {
            provider,
            bucket: pick(&self.bucket, current.map(|c| &c.bucket)),
            region: pick(&self.region_name, current.map(|c| &c.region)),
            endpoint: pick(&self.endpoint, current.map(|c| &c.endpoint)),
            access_key_id: pick(&self.access_key_id, current.map(|c| &c.access_key_id)),
            secret_access_key: pick(
                &self.secret_access_key,
                current.map(|c| &c.secret_access_key),
            ),
            session_token: pick(&self.session_token, current.map(|c| &c.session_token)),
            google_credentials: pick(
                &self.google_credentials,
                current.map(|c| &c.google_credentials),
            ),
            account_name: pick(&self.account_name, current.map(|c| &c.account_name)),
            account_key: pick(&self.account_key, current.map(|c| &c.account_key)),
            role_arn: pick(&self.role_arn, current.map(|c| &c.role_arn)),
            external_id: pick(&self.external_id, current.map(|c| &c.external_id)),
            tenant_id: pick(&self.tenant_id, current.map(|c| &c.tenant_id)),
            client_id: pick(&self.client_id, current.map(|c| &c.client_id)),
            client_secret: pick(&self.client_secret, current.map(|c| &c.client_secret)),
            identity: ServerIdentity::of(config),
        };
        required_by_type(ty, &endpoint)?;
        let required = |field: &'static str| {
            ApiError::field(ErrorCode::ValidationError, field, "this field is required")
        };
        if endpoint.bucket.is_empty() {
            return Err(required(provider.bucket_field()));
        }
        if provider == Provider::Azure && endpoint.account_name.is_empty() {
            return Err(required("account_name"));
        }
        if provider == Provider::S3
            && endpoint.access_key_id.is_empty() != endpoint.secret_access_key.is_empty()
        {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                if endpoint.access_key_id.is_empty() {
                    "aws_access_key_id"
                } else {
                    "aws_secret_access_key"
                },
                "aws_access_key_id and aws_secret_access_key go together: give both, or neither for anonymous access",
            ));
        }
        if provider == Provider::S3
            && endpoint.role_arn.is_empty()
            && !endpoint.external_id.is_empty()
        {
            return Err(ApiError::field(
                ErrorCode::ValidationError,
                "external_id",
                "an external id is sent when assuming a role: give role_arn too, or clear external_id",
            ));
        }
        if provider == Provider::Azure {
            let principal = [
                ("tenant_id", &endpoint.tenant_id),
                ("client_id", &endpoint.client_id),
                ("client_secret", &endpoint.client_secret),
            ];
            if principal.iter().any(|(_, v)| !v.is_empty())
                && let Some((missing, _)) = principal.iter().find(|(_, v)| v.is_empty())
            {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    missing,
                    "a service principal needs tenant_id, client_id and client_secret together",
                ));
            }
            if !endpoint.client_secret.is_empty() && !endpoint.account_key.is_empty() {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    "client_secret",
                    "give either account_key or a service principal (tenant_id, client_id, client_secret), not both; clear the other with an empty string",
                ));
            }
        }
        Ok(endpoint)
    }
}

/// What a storage type refuses in a body besides its provider's checks: an `s3s` storage keeps
/// no keys (the server's base identity assumes its role); an `azure_spi` storage keeps no
/// account key and signs in only as a service principal (Label Studio Enterprise's
/// `auth_mode: workload_identity` and `user_delegation_key` are not offered).
fn type_rules(ty: CloudType, body: &Map<String, Value>, input: &Input) -> ApiResult<()> {
    let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
    match ty {
        CloudType::S3s => {
            for (field, value) in [
                ("aws_access_key_id", &input.access_key_id),
                ("aws_secret_access_key", &input.secret_access_key),
                ("aws_session_token", &input.session_token),
            ] {
                if given(value) {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        field,
                        "an s3s storage keeps no keys: the server's own AWS identity \
                         (VERITY_AWS_ACCESS_KEY_ID) assumes role_arn for it; leave the keys out, \
                         or create an s3 storage (/api/storages/s3) to sign with keys of its own",
                    ));
                }
            }
        }
        CloudType::AzureSpi => {
            if given(&input.account_key) {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    "account_key",
                    "an azure_spi storage signs in as a service principal (tenant_id, client_id, \
                     client_secret) and keeps no account key; leave account_key out, or create an \
                     azure storage (/api/storages/azure) to sign with the account key",
                ));
            }
            match body.get("auth_mode") {
                None | Some(Value::Null) => {}
                Some(Value::String(m)) if m == "service_principal" => {}
                Some(_) => {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        "auth_mode",
                        "only service_principal is offered (workload identity is not); leave \
                         auth_mode out or set it to service_principal",
                    ));
                }
            }
            if body
                .get("user_delegation_key")
                .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
            {
                return Err(ApiError::field(
                    ErrorCode::ValidationError,
                    "user_delegation_key",
                    "is not offered: media of azure_spi storages go through the storage proxy \
                     (presign: false); leave user_delegation_key out",
                ));
            }
        }
        CloudType::S3 | CloudType::Gcs | CloudType::Azure => {}
    }
    Ok(())
}

/// What a storage type needs once the body is merged with what is stored: an `s3s` storage a
/// `role_arn`, an `azure_spi` storage its service principal.
fn required_by_type(ty: CloudType, endpoint: &Endpoint) -> ApiResult<()> {
    let needs: &[(&str, &String)] = match ty {
        CloudType::S3s => &[("role_arn", &endpoint.role_arn)],
        CloudType::AzureSpi => &[
            ("tenant_id", &endpoint.tenant_id),
            ("client_id", &endpoint.client_id),
            ("client_secret", &endpoint.client_secret),
        ],
        CloudType::S3 | CloudType::Gcs | CloudType::Azure => &[],
    };
    if let Some((field, _)) = needs.iter().find(|(_, v)| v.is_empty()) {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            field,
            match ty {
                CloudType::S3s => {
                    "this field is required: an s3s storage reaches its bucket by assuming this IAM role (arn:aws:iam::<account>:role/<name>)"
                }
                _ => {
                    "this field is required: an azure_spi storage signs in as the service principal tenant_id, client_id and client_secret name"
                }
            },
        ));
    }
    Ok(())
}

/// Whether `arn` is an IAM role ARN (`arn:aws:iam::123456789012:role/path/name`).
fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    let name_ok = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c);
    scheme == "arn"
        && partition.starts_with("aws")
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|name| !name.is_empty() && name.len() <= 512 && name.chars().all(name_ok))
}

/// Whether `id` is an external id AWS accepts (2 to 1224 of `[\w+=,.@:/-]`).
fn valid_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

/// Whether `v` is a domain name (`contoso.onmicrosoft.com`), another way to name a tenant.
fn valid_domain(v: &str) -> bool {
    v.len() <= 253
        && v.contains('.')
        && v.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `v` is a GUID as Entra ID names tenants and applications.
fn valid_guid(v: &str) -> bool {
    let groups: Vec<&str> = v.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The audit entity of a provider's storages.
fn entity(provider: Provider) -> &'static str {
    match provider {
        Provider::S3 => "s3_storage",
        Provider::Gcs => "gcs_storage",
        Provider::Azure => "azure_storage",
    }
}

async fn authorize(db: &Db, actor: &Actor, project: i64) -> ApiResult<()> {
    access::project(db, actor, project, Permission::StorageManage)
        .await
        .map(drop)
}

fn seal(sealer: &Sealer, value: &Option<String>, purpose: &str) -> Option<String> {
    value.as_ref().map(|v| {
        if v.is_empty() {
            String::new()
        } else {
            sealer.seal(v, purpose)
        }
    })
}

/// Creates a storage of `provider` after checking that the bucket answers with the given
/// credentials (nothing is stored otherwise).
#[allow(clippy::too_many_arguments)]
pub async fn create(
    db: &Db,
    actor: &Actor,
    sealer: &Sealer,
    policy: &std::sync::Arc<crate::outbound::TargetPolicy>,
    config: &crate::config::Config,
    ty: CloudType,
    direction: Direction,
    body: &Map<String, Value>,
) -> ApiResult<CloudStorageRow> {
    let provider = ty.provider();
    let project = body::id(body, "project")?;
    authorize(db, actor, project).await?;
    let input = Input::parse(provider, body, policy)?;
    type_rules(ty, body, &input)?;
    let endpoint = input.endpoint(ty, None, config)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    crate::cloud::check(&endpoint, policy.clone(), &prefix).await?;
    let now = now_micros();
    let id: i64 = with_tx!(db, tx, {
        let id: i64 = sqlx::query_scalar(
            "insert into cloud_storage (organization_id, project_id, provider, direction, title, description, bucket, \
             prefix, regex_filter, use_blob_urls, presign, presign_ttl, recursive_scan, region_name, endpoint, \
             aws_access_key_id, aws_secret_access_key, aws_session_token, google_project_id, \
             google_application_credentials, account_name, account_key, can_delete_objects, created_at, updated_at, \
             role_arn, external_id, tenant_id, client_id, client_secret, variant) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
             $22, $23, $24, $24, $25, $26, $27, $28, $29, $30) returning id",
        )
        .bind(actor.org_id)
        .bind(project)
        .bind(provider.kind())
        .bind(direction.as_str())
        .bind(input.title.as_deref().unwrap_or(""))
        .bind(input.description.as_deref().unwrap_or(""))
        .bind(&endpoint.bucket)
        .bind(&prefix)
        .bind(input.regex_filter.as_deref().unwrap_or(""))
        .bind(input.use_blob_urls.unwrap_or(false))
        .bind(input.presign.unwrap_or(true))
        .bind(input.presign_ttl.unwrap_or(1))
        .bind(input.recursive_scan.unwrap_or(false))
        .bind(&endpoint.region)
        .bind(&endpoint.endpoint)
        .bind(seal(sealer, &input.access_key_id, KEY_ID_PURPOSE).unwrap_or_default())
        .bind(seal(sealer, &input.secret_access_key, SECRET_PURPOSE).unwrap_or_default())
        .bind(seal(sealer, &input.session_token, TOKEN_PURPOSE).unwrap_or_default())
        .bind(input.google_project_id.as_deref().unwrap_or(""))
        .bind(seal(sealer, &input.google_credentials, GOOGLE_PURPOSE).unwrap_or_default())
        .bind(&endpoint.account_name)
        .bind(seal(sealer, &input.account_key, ACCOUNT_KEY_PURPOSE).unwrap_or_default())
        .bind(input.can_delete_objects.unwrap_or(false))
        .bind(now)
        .bind(&endpoint.role_arn)
        .bind(&endpoint.external_id)
        .bind(&endpoint.tenant_id)
        .bind(&endpoint.client_id)
        .bind(seal(sealer, &input.client_secret, CLIENT_SECRET_PURPOSE).unwrap_or_default())
        .bind(ty.variant())
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "storage.create",
                entity(provider),
                id,
                json!({"project": project, "bucket": endpoint.bucket, "prefix": prefix, "direction": direction.as_str(), "type": ty.name()}),
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    load(db, actor.org_id, ty, direction, id).await
}

/// Checks a storage body without saving anything: the fields, then whether the bucket answers
/// with the credentials (Label Studio's `validate`). With an `id`, the body is a change of that
/// storage (stored credentials are used unless the body replaces them).
#[allow(clippy::too_many_arguments)]
pub async fn validate(
    db: &Db,
    actor: &Actor,
    sealer: &Sealer,
    policy: &std::sync::Arc<crate::outbound::TargetPolicy>,
    config: &crate::config::Config,
    ty: CloudType,
    direction: Direction,
    body: &Map<String, Value>,
) -> ApiResult<()> {
    let provider = ty.provider();
    let current = match body.get("id").and_then(Value::as_i64) {
        Some(id) => Some(get_row(db, actor, ty, direction, id).await?),
        None => {
            authorize(db, actor, body::id(body, "project")?).await?;
            None
        }
    };
    let input = Input::parse(provider, body, policy)?;
    type_rules(ty, body, &input)?;
    let opened = current
        .as_ref()
        .map(|c| c.endpoint(sealer, config))
        .transpose()?;
    let endpoint = input.endpoint(ty, opened.as_ref(), config)?;
    let prefix = input
        .prefix
        .clone()
        .or_else(|| current.as_ref().map(|c| c.prefix.clone()))
        .unwrap_or_default();
    crate::cloud::check(&endpoint, policy.clone(), &prefix).await
}

async fn load(
    db: &Db,
    org: i64,
    ty: CloudType,
    direction: Direction,
    id: i64,
) -> ApiResult<CloudStorageRow> {
    let row: Option<CloudStorageRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from cloud_storage s where s.id = $1 and s.organization_id = $2 \
             and s.provider = $3 and s.direction = $4 and s.variant = $5"
        ))
        .bind(id)
        .bind(org)
        .bind(ty.provider().kind())
        .bind(direction.as_str())
        .bind(ty.variant())
        .fetch_optional(conn)
        .await?
    });
    row.ok_or_else(|| ApiError::not_found("storage"))
}

async fn get_row(
    db: &Db,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    id: i64,
) -> ApiResult<CloudStorageRow> {
    let row = load(db, actor.org_id, ty, direction, id).await?;
    authorize(db, actor, row.project_id).await?;
    Ok(row)
}

/// One storage.
pub async fn get(
    db: &Db,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    id: i64,
) -> ApiResult<CloudStorageRow> {
    get_row(db, actor, ty, direction, id).await
}

/// The storages of a project of one type (`Some`) or of every type, oldest first.
pub async fn list(
    db: &Db,
    actor: &Actor,
    ty: Option<CloudType>,
    direction: Direction,
    project: i64,
) -> ApiResult<Vec<CloudStorageRow>> {
    authorize(db, actor, project).await?;
    let rows: Vec<CloudStorageRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from cloud_storage s where s.project_id = $1 and s.organization_id = $2 \
             and s.direction = $3 and ($4 = '' or (s.provider = $4 and s.variant = $5)) order by s.id"
        ))
        .bind(project)
        .bind(actor.org_id)
        .bind(direction.as_str())
        .bind(ty.map(|t| t.provider().kind()).unwrap_or(""))
        .bind(ty.map(CloudType::variant).unwrap_or(""))
        .fetch_all(conn)
        .await?
    });
    Ok(rows)
}

/// Changes a storage. Credentials left out of the body stay as they are; when the connection
/// changes (bucket, prefix, endpoint, region, account, credentials), the bucket must answer
/// first.
#[allow(clippy::too_many_arguments)]
pub async fn update(
    db: &Db,
    actor: &Actor,
    sealer: &Sealer,
    policy: &std::sync::Arc<crate::outbound::TargetPolicy>,
    config: &crate::config::Config,
    ty: CloudType,
    direction: Direction,
    id: i64,
    body: &Map<String, Value>,
) -> ApiResult<CloudStorageRow> {
    let provider = ty.provider();
    let current = get_row(db, actor, ty, direction, id).await?;
    if body
        .get("project")
        .is_some_and(|p| p.as_i64() != Some(current.project_id))
    {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "project",
            "a storage cannot move to another project; create a new one",
        ));
    }
    let input = Input::parse(provider, body, policy)?;
    type_rules(ty, body, &input)?;
    if input.changes_connection() {
        let opened = current.endpoint(sealer, config)?;
        let endpoint = input.endpoint(ty, Some(&opened), config)?;
        let prefix = input.prefix.clone().unwrap_or(current.prefix.clone());
        crate::cloud::check(&endpoint, policy.clone(), &prefix).await?;
    } else {
        // The connection stays, but the organization's allow-list may have changed since.
        crate::cloud::check_allowed(&current.endpoint(sealer, config)?, policy)?;
    }
    let changed: Vec<&str> = [
        ("title", input.title.is_some()),
        ("description", input.description.is_some()),
        (provider.bucket_field(), input.bucket.is_some()),
        ("prefix", input.prefix.is_some()),
        ("regex_filter", input.regex_filter.is_some()),
        ("use_blob_urls", input.use_blob_urls.is_some()),
        ("presign", input.presign.is_some()),
        ("presign_ttl", input.presign_ttl.is_some()),
        ("recursive_scan", input.recursive_scan.is_some()),
        ("region_name", input.region_name.is_some()),
        (provider.endpoint_field(), input.endpoint.is_some()),
        ("aws_access_key_id", input.access_key_id.is_some()),
        ("aws_secret_access_key", input.secret_access_key.is_some()),
        ("aws_session_token", input.session_token.is_some()),
        ("google_project_id", input.google_project_id.is_some()),
        (
            "google_application_credentials",
            input.google_credentials.is_some(),
        ),
        ("account_name", input.account_name.is_some()),
        ("account_key", input.account_key.is_some()),
        ("can_delete_objects", input.can_delete_objects.is_some()),
        ("role_arn", input.role_arn.is_some()),
        ("external_id", input.external_id.is_some()),
        ("tenant_id", input.tenant_id.is_some()),
        ("client_id", input.client_id.is_some()),
        ("client_secret", input.client_secret.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    with_tx!(db, tx, {
        sqlx::query(
            "update cloud_storage set title = coalesce($1, title), description = coalesce($2, description), \
             bucket = coalesce($3, bucket), prefix = coalesce($4, prefix), regex_filter = coalesce($5, regex_filter), \
             use_blob_urls = coalesce($6, use_blob_urls), presign = coalesce($7, presign), \
             presign_ttl = coalesce($8, presign_ttl), recursive_scan = coalesce($9, recursive_scan), \
             region_name = coalesce($10, region_name), endpoint = coalesce($11, endpoint), \
             aws_access_key_id = coalesce($12, aws_access_key_id), \
             aws_secret_access_key = coalesce($13, aws_secret_access_key), \
             aws_session_token = coalesce($14, aws_session_token), \
             google_project_id = coalesce($15, google_project_id), \
             google_application_credentials = coalesce($16, google_application_credentials), \
             account_name = coalesce($17, account_name), account_key = coalesce($18, account_key), \
             can_delete_objects = coalesce($19, can_delete_objects), updated_at = $20, \
             role_arn = coalesce($22, role_arn), external_id = coalesce($23, external_id), \
             tenant_id = coalesce($24, tenant_id), client_id = coalesce($25, client_id), \
             client_secret = coalesce($26, client_secret) where id = $21",
        )
        .bind(&input.title)
        .bind(&input.description)
        .bind(&input.bucket)
        .bind(&input.prefix)
        .bind(&input.regex_filter)
        .bind(input.use_blob_urls)
        .bind(input.presign)
        .bind(input.presign_ttl)
        .bind(input.recursive_scan)
        .bind(&input.region_name)
        .bind(&input.endpoint)
        .bind(seal(sealer, &input.access_key_id, KEY_ID_PURPOSE))
        .bind(seal(sealer, &input.secret_access_key, SECRET_PURPOSE))
        .bind(seal(sealer, &input.session_token, TOKEN_PURPOSE))
        .bind(&input.google_project_id)
        .bind(seal(sealer, &input.google_credentials, GOOGLE_PURPOSE))
        .bind(&input.account_name)
        .bind(seal(sealer, &input.account_key, ACCOUNT_KEY_PURPOSE))
        .bind(input.can_delete_objects)
        .bind(now_micros())
        .bind(id)
        .bind(&input.role_arn)
        .bind(&input.external_id)
        .bind(&input.tenant_id)
        .bind(&input.client_id)
        .bind(seal(sealer, &input.client_secret, CLIENT_SECRET_PURPOSE))
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "storage.update",
                entity(provider),
                id,
                json!({"project": current.project_id, "changed": changed}),
            )
        );
        Ok::<_, ApiError>(())
    })?;
    load(db, actor.org_id, ty, direction, id).await
}

/// Deletes a storage (its tasks stay, as in Label Studio; their media stop resolving).
pub async fn delete(
    db: &Db,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    id: i64,
) -> ApiResult<()> {
    let provider = ty.provider();
    let current = get_row(db, actor, ty, direction, id).await?;
    storages::delete_storage(
        db,
        actor,
        (TABLE, entity(provider)),
        provider.kind(),
        id,
        current.project_id,
    )
    .await
}

/// Marks a storage queued for a sync run by job `job_id` (audited); the caller enqueues the
/// job with that id afterwards.
pub async fn queue_sync(
    db: &Db,
    actor: &Actor,
    ty: CloudType,
    direction: Direction,
    id: i64,
    job_id: &str,
) -> ApiResult<CloudStorageRow> {
    let current = get_row(db, actor, ty, direction, id).await?;
    storages::mark_sync_queued(
        db,
        actor,
        (TABLE, entity(ty.provider())),
        direction,
        id,
        current.project_id,
        job_id,
    )
    .await?;
    load(db, actor.org_id, ty, direction, id).await
}

/// A storage by id, without an authorization check: for the sync job (which acts as the user
/// who started it) and for signed links (whose signature is the authority).
pub async fn by_id(db: &Db, id: i64) -> ApiResult<Option<CloudStorageRow>> {
    Ok(with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from cloud_storage s where s.id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?
    }))
}

/// Sync progress: the state and the counters so far.
pub async fn progress(db: &Db, id: i64, status: &str, meta: &Value) -> ApiResult<()> {
    with_tx!(db, tx, {
        sqlx::query("update cloud_storage set status = $1, meta = $2 where id = $3")
            .bind(status)
            .bind(meta.to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Ok::<_, ApiError>(())
    })
}

/// A sync ended: its count, or why it failed, and its counters.
pub async fn finish_sync(
    db: &Db,
    id: i64,
    outcome: Result<i64, String>,
    meta: &Value,
) -> ApiResult<()> {
    let (status, count, traceback) = match outcome {
        Ok(n) => ("completed", Some(n), None),
        Err(why) => ("failed", None, Some(why)),
    };
    with_tx!(db, tx, {
        sqlx::query(
            "update cloud_storage set status = $1, last_sync_count = coalesce($2, last_sync_count), \
             traceback = $3, last_sync = $4, meta = $5 where id = $6",
        )
        .bind(status)
        .bind(count)
        .bind(traceback)
        .bind(now_micros())
        .bind(meta.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        Ok::<_, ApiError>(())
    })
}

/// What earlier syncs saw of a storage's objects: key → (etag, size).
pub async fn known_objects(
    db: &Db,
    provider: Provider,
    id: i64,
) -> ApiResult<std::collections::HashMap<String, (Option<String>, Option<i64>)>> {
    let rows: Vec<(String, Option<String>, Option<i64>)> = with_read!(db, conn, {
        sqlx::query_as(
            "select object_key, etag, size from storage_object where storage_kind = $1 and storage_id = $2",
        )
        .bind(provider.kind())
        .bind(id)
        .fetch_all(conn)
        .await?
    });
    Ok(rows.into_iter().map(|(k, e, s)| (k, (e, s))).collect())
}

/// What earlier syncs saw of these keys of a storage (the ones it knows): key → (etag, size).
/// One query per few hundred keys, so a sync holds only a listing page's worth.
pub async fn known_among(
    db: &Db,
    provider: Provider,
    id: i64,
    keys: &[String],
) -> ApiResult<std::collections::HashMap<String, (Option<String>, Option<i64>)>> {
    let mut known = std::collections::HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(KNOWN_AMONG_CHUNK) {
        let list = (0..chunk.len())
            .map(|i| format!("${}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "select object_key, etag, size from storage_object \
             where storage_kind = $1 and storage_id = $2 and object_key in ({list})"
        );
        let rows: Vec<(String, Option<String>, Option<i64>)> = with_read!(db, conn, {
            let mut query = sqlx::query_as(&sql).bind(provider.kind()).bind(id);
            for key in chunk {
                query = query.bind(key);
            }
            query.fetch_all(conn).await?
        });
        known.extend(rows.into_iter().map(|(k, e, s)| (k, (e, s))));
    }
    Ok(known)
}

/// Keys looked up per query by [`known_among`] (well under either engine's bind limit).
const KNOWN_AMONG_CHUNK: usize = 500;

/// Records what a sync saw of objects that made no new task (blob objects that changed, export
/// objects written): key, etag, size. Short transactions of at most a few hundred rows.
pub async fn record_objects(
    db: &Db,
    provider: Provider,
    id: i64,
    objects: &[(String, Option<String>, Option<i64>)],
) -> ApiResult<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let now = now_micros();
    with_tx!(db, tx, {
        for (key, etag, size) in objects {
            sqlx::query(
                "insert into storage_object (storage_kind, storage_id, object_key, tasks, created_at, etag, size) \
                 values ($1, $2, $3, 0, $4, $5, $6) \
                 on conflict (storage_kind, storage_id, object_key) do update set etag = excluded.etag, size = excluded.size",
            )
            .bind(provider.kind())
            .bind(id)
            .bind(key)
            .bind(now)
            .bind(etag)
            .bind(size)
            .execute(&mut *tx)
            .await?;
        }
        Ok::<_, ApiError>(())
    })
}

/// Forgets objects (export objects deleted from the bucket).
pub async fn forget_objects(
    db: &Db,
    provider: Provider,
    id: i64,
    keys: &[String],
) -> ApiResult<()> {
    if keys.is_empty() {
        return Ok(());
    }
    with_tx!(db, tx, {
        for key in keys {
            sqlx::query(
                "delete from storage_object where storage_kind = $1 and storage_id = $2 and object_key = $3",
            )
            .bind(provider.kind())
            .bind(id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        }
        Ok::<_, ApiError>(())
    })
}

/// An import storage of `provider` of the task's project holding the object `bucket`/`key`, for
/// a caller who may see the task. `None` when no storage of the project holds it.
pub async fn covering_task_object(
    db: &Db,
    actor: &Actor,
    task: i64,
    provider: Provider,
    bucket: &str,
    key: &str,
) -> ApiResult<Option<CloudStorageRow>> {
    let access = access::project_of_task(db, actor, task, Permission::ProjectView).await?;
    covering_project_object(db, access.row.id, provider, bucket, key).await
}

/// An import storage of `provider` of project `project` holding the object `bucket`/`key` (its
/// bucket, and its prefix as a folder of the key; the oldest when several do), with no caller:
/// for the exports that read a task's image. `None` when no storage of the project holds it.
pub async fn covering_project_object(
    db: &Db,
    project: i64,
    provider: Provider,
    bucket: &str,
    key: &str,
) -> ApiResult<Option<CloudStorageRow>> {
    let rows: Vec<CloudStorageRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {COLUMNS} from cloud_storage s where s.project_id = $1 and s.direction = 'import' \
             and s.provider = $2 and s.bucket = $3 order by s.id"
        ))
        .bind(project)
        .bind(provider.kind())
        .bind(bucket)
        .fetch_all(conn)
        .await?
    });
    Ok(rows.into_iter().find(|r| r.holds(provider, bucket, key)))
}

impl CloudStorageRow {
    /// Whether this storage holds the object `bucket`/`key` of `provider`: its bucket, and its
    /// prefix as a folder of the key.
    pub fn holds(&self, provider: Provider, bucket: &str, key: &str) -> bool {
        self.provider() == provider
            && self.bucket == bucket
            && (self.prefix.is_empty()
                || key
                    .strip_prefix(self.prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/')))
    }
}

/// Rewrites the bucket URIs of task data (`s3://`, `gs://`, `azure-blob://`) that an import
/// storage of the project holds into the task's media link,
/// `/api/tasks/<id>/presign?fileuri=<base64url of the URI>`, which answers with a presigned URL
/// or a signed link of the storage proxy as the storage says (Label Studio's `resolve_uri`). One
/// query per project, none per task: the links are computed, not signed, here.
pub struct UriResolver {
    storages: Vec<CloudStorageRow>,
}

impl UriResolver {
    /// The import bucket storages of `project` (the caller has checked that the task list or
    /// task may be seen).
    pub async fn for_project(db: &Db, project: i64) -> ApiResult<Self> {
        let storages: Vec<CloudStorageRow> = with_read!(db, conn, {
            sqlx::query_as(&format!(
                "select {COLUMNS} from cloud_storage s where s.project_id = $1 and s.direction = 'import' order by s.id"
            ))
            .bind(project)
            .fetch_all(conn)
            .await?
        });
        Ok(Self { storages })
    }

    /// No import bucket storage: nothing to resolve.
    pub fn is_empty(&self) -> bool {
        self.storages.is_empty()
    }

    /// Rewrites the top-level string values of `data` of task `task` that name an object of a
    /// storage of the project; other values stay as stored.
    pub fn resolve(&self, task: i64, data: &mut Value) {
        use base64::Engine;
        if self.storages.is_empty() {
            return;
        }
        let Value::Object(fields) = data else {
            return;
        };
        for value in fields.values_mut() {
            let Value::String(uri) = value else {
                continue;
            };
            let Some((provider, bucket, key)) = crate::cloud::parse_media_url(uri) else {
                continue;
            };
            if self
                .storages
                .iter()
                .any(|s| s.holds(provider, &bucket, &key))
            {
                let encoded = base64::engine::general_purpose::URL_SAFE.encode(uri.trim());
                *value = Value::String(format!("/api/tasks/{task}/presign?fileuri={encoded}"));
            }
        }
    }
}
