//! Bucket storages (S3, Google Cloud Storage, Azure Blob): the bucket client of each provider and
//! the one sync job they share (ADR 0026, ADR 0028).
//!
//! The client is `object_store`'s, built per provider (the only provider-specific code besides
//! the URL scheme of task media), with its HTTP connections built by
//! [`crate::outbound::guarded_builder`], so a storage endpoint obeys the same outbound rules as
//! webhooks: every resolved address and redirect is checked, and private targets are refused
//! unless `allow_private_targets` allows them. The server's own cloud identity (instance
//! metadata, application default credentials, environment) is never used by accident: a
//! storage without credentials makes anonymous requests, except that a GCS storage signs with
//! the server's workload identity when the administrator turned `gcs_workload_identity` on
//! ([`crate::gce`]). Short-lived credentials (ADR 0054): an S3 storage with
//! a `role_arn` signs with temporary credentials of that role ([`crate::sts`]; the base
//! identity that assumes it is the storage's keys or the server's configured `VERITY_AWS_*`
//! keys), and an Azure storage with a service principal gets OAuth tokens from the configured
//! Entra ID authority through `object_store`.
//!
//! An import sync lists the bucket (page by page, as a stream), compares each object's key,
//! entity tag and size with what earlier syncs recorded in `storage_object`, and imports only
//! new or changed objects: with `use_blob_urls` each object becomes a task whose data is its
//! `s3://`, `gs://` or `azure-blob://` URL; otherwise each object is a JSON or JSONL file of
//! tasks, streamed to a spool file (never held in memory) and imported in batches of short
//! transactions that also record the objects, so a retried or repeated sync never imports an
//! object version twice. The bucket is never read while a database transaction is open. An
//! object deleted between the listing and the read is counted in the storage's `meta.missing`
//! and skipped. An export sync writes each annotation as `<prefix>/<annotation id>` (one
//! single-part PUT each).

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt};
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, StaticCredentialProvider,
    aws::{AmazonS3Builder, AwsCredential},
    azure::MicrosoftAzureBuilder,
    client::{HttpClient, HttpConnector},
    gcp::{GcpCredential, GoogleCloudStorageBuilder},
    path::Path as ObjectPath,
    signer::Signer,
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::{
    authz::{Actor, Permission, RequestMeta},
    domain::import::JsonSplitter,
    error::{ApiError, ApiResult, ErrorCode},
    jobs::{Jobs, NewJob, worker::Handlers},
    outbound::TargetPolicy,
    secrets::Sealer,
    storage::{
        Db, access,
        cloudstorages::{self, CloudStorageRow},
        storages,
        tasks::{self, Claim, ClaimedObject, ImportFormat, ImportSource},
        users,
    },
};

/// A bucket storage type of the API (`/api/storages/<name>`, a storage's `type`): a provider,
/// and for Label Studio Enterprise's `s3s` and `azure_spi` the one way its storages sign in
/// (ADR 0054 addendum). Stored as the provider and a `variant` (empty for the plain types);
/// everything past the API (syncs, media, exports) goes by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloudType {
    /// `s3`: S3 with static keys, anonymous, or a role assumed with them.
    S3,
    /// `s3s`: S3 reached only by assuming an IAM role with the server's base identity.
    S3s,
    /// `gcs`.
    Gcs,
    /// `azure`: an account key, or a service principal.
    Azure,
    /// `azure_spi`: Azure Blob reached only as a service principal.
    AzureSpi,
}

impl CloudType {
    /// Every type, in the order the API lists them.
    pub const ALL: [CloudType; 5] = [
        CloudType::S3,
        CloudType::S3s,
        CloudType::Gcs,
        CloudType::Azure,
        CloudType::AzureSpi,
    ];

    /// The provider whose buckets this type reaches.
    pub fn provider(self) -> Provider {
        match self {
            CloudType::S3 | CloudType::S3s => Provider::S3,
            CloudType::Gcs => Provider::Gcs,
            CloudType::Azure | CloudType::AzureSpi => Provider::Azure,
        }
    }

    /// Its name in paths and in storages' `type`.
    pub fn name(self) -> &'static str {
        match self {
            CloudType::S3s => "s3s",
            CloudType::AzureSpi => "azure_spi",
            other => other.provider().kind(),
        }
    }

    /// What the `variant` column holds for it (empty for the plain types).
    pub fn variant(self) -> &'static str {
        match self {
            CloudType::S3s | CloudType::AzureSpi => self.name(),
            _ => "",
        }
    }

    /// The type of a stored provider and variant (an unknown variant reads as the plain type).
    pub fn of(provider: Provider, variant: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|t| t.provider() == provider && t.variant() == variant)
            .unwrap_or(provider.into())
    }

    /// The type a path names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// What `/api/storages/types` calls it.
    pub fn title(self) -> &'static str {
        match self {
            CloudType::S3s => "AWS S3 (IAM role)",
            CloudType::AzureSpi => "Microsoft Azure (service principal)",
            other => other.provider().title(),
        }
    }
}

impl From<Provider> for CloudType {
    fn from(provider: Provider) -> Self {
        match provider {
            Provider::S3 => CloudType::S3,
            Provider::Gcs => CloudType::Gcs,
            Provider::Azure => CloudType::Azure,
        }
    }
}

/// A bucket service. Its `kind` names it in the API (`/api/storages/<kind>`), in links, jobs
/// and the `storage_object` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Amazon S3 and S3-compatible services.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

impl Provider {
    /// Every provider, in the order the API lists them.
    pub const ALL: [Provider; 3] = [Provider::S3, Provider::Gcs, Provider::Azure];

    /// `s3`, `gcs` or `azure`.
    pub fn kind(self) -> &'static str {
        match self {
            Provider::S3 => "s3",
            Provider::Gcs => "gcs",
            Provider::Azure => "azure",
        }
    }

    /// The provider of a kind.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.kind() == kind)
    }

    /// What `/api/storages/types` calls it.
    pub fn title(self) -> &'static str {
        match self {
            Provider::S3 => "AWS S3",
            Provider::Gcs => "Google Cloud Storage",
            Provider::Azure => "Microsoft Azure",
        }
    }

    /// The URL scheme of task media (`s3://bucket/key`, `gs://bucket/key`,
    /// `azure-blob://container/key`).
    pub fn scheme(self) -> &'static str {
        match self {
            Provider::S3 => "s3",
            Provider::Gcs => "gs",
            Provider::Azure => "azure-blob",
        }
    }

    /// The API's name of the bucket field.
    pub fn bucket_field(self) -> &'static str {
        match self {
            Provider::Azure => "container",
            _ => "bucket",
        }
    }

    /// The API's name of the endpoint override.
    pub fn endpoint_field(self) -> &'static str {
        match self {
            Provider::S3 => "s3_endpoint",
            Provider::Gcs => "gcs_endpoint",
            Provider::Azure => "azure_endpoint",
        }
    }

    /// The field a refused credential is reported on.
    fn credentials_field(self) -> &'static str {
        match self {
            Provider::S3 => "aws_secret_access_key",
            Provider::Gcs => "google_application_credentials",
            Provider::Azure => "account_key",
        }
    }

    /// The credential fields, for messages.
    fn credentials_hint(self) -> &'static str {
        match self {
            Provider::S3 => {
                "aws_access_key_id, aws_secret_access_key and aws_session_token, or role_arn"
            }
            Provider::Gcs => "google_application_credentials",
            Provider::Azure => {
                "account_name and account_key, or tenant_id, client_id and client_secret"
            }
        }
    }

    /// Job kind of a sync (import or export).
    pub fn sync_job(self) -> &'static str {
        match self {
            Provider::S3 => "storage.s3.sync",
            Provider::Gcs => "storage.gcs.sync",
            Provider::Azure => "storage.azure.sync",
        }
    }

    /// The media URL a task carries for an object.
    pub fn blob_url(self, bucket: &str, key: &str) -> String {
        format!("{}://{bucket}/{key}", self.scheme())
    }

    /// Whether `name` is a valid bucket (container) name of this provider.
    pub fn valid_bucket(self, name: &str) -> bool {
        match self {
            // Lowercase letters, digits and hyphens, 3 to 63, no two hyphens in a row.
            Provider::Azure => valid_bucket(name) && !name.contains('.') && !name.contains("--"),
            // GCS also allows underscores (and dotted names up to 222 characters).
            Provider::Gcs => {
                let ok_char = |c: char| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
                };
                (3..=222).contains(&name.len())
                    && name.chars().all(ok_char)
                    && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && name.ends_with(|c: char| c.is_ascii_alphanumeric())
                    && name.split('.').all(|part| part.len() <= 63)
            }
            Provider::S3 => valid_bucket(name),
        }
    }
}

/// Bucket and key of a media URL of any provider (`s3://`, `gs://`, `azure-blob://`).
pub fn parse_media_url(uri: &str) -> Option<(Provider, String, String)> {
    let (scheme, rest) = uri.trim().split_once("://")?;
    let provider = Provider::ALL.into_iter().find(|p| p.scheme() == scheme)?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (provider, bucket.to_string(), key.to_string()))
}

/// Objects turned into tasks per import transaction with `use_blob_urls`.
const BLOB_BATCH: usize = 500;
/// Listed objects (after the filters) compared with the database and imported at a time.
const LIST_PAGE: usize = 1000;

/// JSON objects per import transaction, and tasks after which a batch is written early.
const JSON_BATCH_OBJECTS: usize = 200;
const JSON_BATCH_TASKS: usize = 1000;

/// Objects deleted mid-sync named in a storage's `meta.missing` (the rest are counted).
const MISSING_NAMED: usize = 100;

/// Objects read (or written) at once.
const CONCURRENCY: usize = 8;

/// Largest JSON/JSONL object a sync reads (its tasks are written in one transaction).
const MAX_JSON_OBJECT: u64 = 256 * 1024 * 1024;

/// How to reach a bucket, credentials opened.
#[derive(Clone)]
pub struct Endpoint {
    /// The service.
    pub provider: Provider,
    /// Bucket (Azure: container).
    pub bucket: String,
    /// S3 region (empty: `us-east-1`).
    pub region: String,
    /// Endpoint URL (empty: the provider's public service; Azure: the account URL).
    pub endpoint: String,
    /// S3 access key id (empty: anonymous requests).
    pub access_key_id: String,
    /// S3 secret access key.
    pub secret_access_key: String,
    /// S3 session token of temporary credentials (may be empty).
    pub session_token: String,
    /// GCS service-account key (JSON; empty: anonymous requests).
    pub google_credentials: String,
    /// Azure storage account.
    pub account_name: String,
    /// Azure account key (base64; empty: anonymous requests).
    pub account_key: String,
    /// S3: the IAM role whose temporary credentials sign requests (empty: none; ADR 0054).
    pub role_arn: String,
    /// S3: the external id the role's trust policy asks for (empty: none).
    pub external_id: String,
    /// Azure service principal: the Entra ID tenant.
    pub tenant_id: String,
    /// Azure service principal: its application (client) id.
    pub client_id: String,
    /// Azure service principal: its client secret (empty: no service principal).
    pub client_secret: String,
    /// The server's own settings for short-lived credentials.
    pub identity: ServerIdentity,
}

/// The server's side of short-lived storage credentials (ADR 0054): the base AWS identity
/// that assumes storages' roles, and where STS and Microsoft Entra ID are reached.
#[derive(Clone, Default)]
pub struct ServerIdentity {
    /// Base AWS access key id (empty: none).
    pub aws_access_key_id: String,
    /// Its secret.
    pub aws_secret_access_key: String,
    /// Its session token (may be empty).
    pub aws_session_token: String,
    /// STS endpoint override.
    pub sts_endpoint: String,
    /// Entra ID authority override.
    pub azure_authority_host: String,
    /// GCS storages without a key use the server's Google identity (metadata server).
    pub gcs_workload_identity: bool,
    /// The GCE metadata host (empty: `metadata.google.internal`).
    pub gce_metadata_host: String,
}

impl ServerIdentity {
    /// The settings of a configuration.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            aws_access_key_id: config.aws_access_key_id.trim().to_string(),
            aws_secret_access_key: config.aws_secret_access_key.trim().to_string(),
            aws_session_token: config.aws_session_token.trim().to_string(),
            sts_endpoint: config.aws_sts_endpoint.trim().to_string(),
            azure_authority_host: config.azure_authority_host.trim().to_string(),
            gcs_workload_identity: config.gcs_workload_identity,
            gce_metadata_host: config.gce_metadata_host.trim().to_string(),
        }
    }
}

impl Endpoint {
    /// An endpoint of `provider` with nothing set.
    pub fn new(provider: Provider) -> Self {
        Self {
            provider,
            bucket: String::new(),
            region: String::new(),
            endpoint: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            session_token: String::new(),
            google_credentials: String::new(),
            account_name: String::new(),
            account_key: String::new(),
            role_arn: String::new(),
            external_id: String::new(),
            tenant_id: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            identity: ServerIdentity::default(),
        }
    }

    /// Whether requests are signed with credentials of the storage.
    pub fn has_credentials(&self) -> bool {
        match self.provider {
            Provider::S3 => !self.access_key_id.is_empty() || !self.role_arn.is_empty(),
            Provider::Gcs => !self.google_credentials.is_empty(),
            Provider::Azure => !self.account_key.is_empty() || !self.client_secret.is_empty(),
        }
    }

    /// The STS endpoint of role assumption: the server's setting, else the storage's S3
    /// endpoint (S3-compatible services answer STS there), else AWS's regional endpoint.
    pub fn sts_endpoint(&self) -> String {
        let custom = self.endpoint.trim().trim_end_matches('/');
        if !self.identity.sts_endpoint.is_empty() {
            self.identity.sts_endpoint.clone()
        } else if !custom.is_empty() {
            custom.to_string()
        } else {
            format!("https://sts.{}.amazonaws.com", self.region_or_default())
        }
    }

    fn region_or_default(&self) -> &str {
        if self.region.is_empty() {
            "us-east-1"
        } else {
            &self.region
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("provider", &self.provider)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("account_name", &self.account_name)
            .field("role_arn", &self.role_arn)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a valid S3 bucket name (lowercase letters, digits, dots and hyphens, 3 to
/// 63 characters, starting and ending with a letter or digit).
pub fn valid_bucket(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    (3..=63).contains(&name.len())
        && name.chars().all(ok_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Checks a GCS service-account key and answers it as `object_store` reads it: a JSON object
/// (or a string holding one) with `client_email` and a PEM `private_key`. The key's own
/// test hooks (`gcs_base_url`, `disable_oauth`) are removed: the endpoint is the storage's
/// `gcs_endpoint`, checked by the outbound rules like any other.
pub fn service_account_key(value: &str) -> Result<String, String> {
    let parsed: Value = serde_json::from_str(value).map_err(|e| {
        format!("must be the service-account key file's JSON (it does not parse: {e})")
    })?;
    let Value::Object(mut key) = parsed else {
        return Err("must be the service-account key file's JSON object".into());
    };
    if let Some(kind) = key.get("type").and_then(Value::as_str)
        && kind != "service_account"
    {
        return Err(format!(
            "must be a service-account key (\"type\": \"service_account\"), not {kind:?}"
        ));
    }
    if key
        .get("client_email")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("the key has no client_email".into());
    }
    if !key
        .get("private_key")
        .and_then(Value::as_str)
        .is_some_and(|k| k.contains("PRIVATE KEY"))
    {
        return Err("the key has no PEM private_key".into());
    }
    key.remove("gcs_base_url");
    key.remove("disable_oauth");
    key.entry("private_key_id").or_insert(json!(""));
    Ok(Value::Object(key).to_string())
}

/// Builds `object_store`'s HTTP clients with the outbound guard.
#[derive(Debug)]
struct GuardedConnector {
    policy: Arc<TargetPolicy>,
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = crate::outbound::guarded_builder(self.policy.clone())
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("verity-storage/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "bucket",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(client))
    }
}

/// A bucket client: the object store and its URL signer.
#[derive(Clone, Debug)]
pub struct Bucket {
    /// Listing, reading and writing objects.
    pub store: Arc<dyn ObjectStore>,
    /// Presigned URLs (only meaningful with credentials).
    pub signer: Arc<dyn Signer>,
    /// Whether the storage has credentials to sign with.
    pub signed: bool,
}

/// An endpoint URL checked against the outbound policy, as a field error.
pub fn check_endpoint(provider: Provider, url: &str, policy: &TargetPolicy) -> ApiResult<()> {
    policy.check_url(url).map(drop).map_err(|why| {
        let code = if why.contains("private, loopback or link-local") {
            ErrorCode::PrivateTarget
        } else if why.contains(crate::outbound::NOT_IN_ALLOW_LIST) {
            ErrorCode::EndpointNotAllowed
        } else {
            ErrorCode::ValidationError
        };
        ApiError::field(code, provider.endpoint_field(), why)
    })
}

/// The outbound rules for the storages of `org`: the server's (`allow_private_targets`),
/// narrowed by the organization's storage allow-list (ADR 0053).
pub async fn org_policy(
    db: &Db,
    config: &crate::config::Config,
    org: i64,
) -> ApiResult<Arc<TargetPolicy>> {
    let server = TargetPolicy::parse(&config.allow_private_targets).map_err(ApiError::internal)?;
    with_org_endpoints(db, &server, org).await
}

/// `server`'s outbound policy narrowed to organization `org`'s storage allow-list as it is now
/// (ADR 0053): what syncs, change writes and the proxy connect under.
pub async fn with_org_endpoints(
    db: &Db,
    server: &TargetPolicy,
    org: i64,
) -> ApiResult<Arc<TargetPolicy>> {
    let list = crate::storage::access_policy::of_org(db, org)
        .await?
        .endpoint_list();
    Ok(Arc::new(server.with_endpoints(list)))
}

/// The URL of the provider's public service an endpoint without its own URL talks to (what
/// `object_store` connects to), for the organization's allow-list.
pub fn public_service(endpoint: &Endpoint) -> String {
    match endpoint.provider {
        Provider::S3 => format!(
            "https://s3.{}.amazonaws.com",
            if endpoint.region.is_empty() {
                "us-east-1"
            } else {
                endpoint.region.as_str()
            }
        ),
        Provider::Gcs => "https://storage.googleapis.com".to_string(),
        Provider::Azure => format!("https://{}.blob.core.windows.net", endpoint.account_name),
    }
}

/// Checks an endpoint against the outbound rules and the organization's allow-list without
/// connecting (a storage whose connection does not change on update; ADR 0053).
pub fn check_allowed(endpoint: &Endpoint, policy: &TargetPolicy) -> ApiResult<()> {
    let custom = endpoint.endpoint.trim().trim_end_matches('/');
    if !custom.is_empty() {
        check_endpoint(endpoint.provider, custom, policy)
    } else if policy.endpoints().is_some() {
        check_endpoint(endpoint.provider, &public_service(endpoint), policy)
    } else {
        Ok(())
    }
}

/// The bucket client of an endpoint. Without credentials requests are anonymous (public
/// buckets); the endpoint URL is checked against the outbound policy before anything else.
pub fn store(endpoint: &Endpoint, policy: Arc<TargetPolicy>) -> ApiResult<Bucket> {
    let provider = endpoint.provider;
    let custom = endpoint.endpoint.trim().trim_end_matches('/').to_string();
    if !custom.is_empty() {
        check_endpoint(provider, &custom, &policy)?;
    } else if policy.endpoints().is_some() {
        check_endpoint(provider, &public_service(endpoint), &policy)?;
    }
    let retry = RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let options = ClientOptions::new().with_allow_http(!custom.is_empty());
    let connector = GuardedConnector {
        policy: policy.clone(),
    };
    let unusable = |e: object_store::Error| {
        let text = describe(&e);
        if endpoint.has_credentials() && provider != Provider::S3 {
            ApiError::field(
                ErrorCode::ValidationError,
                if provider == Provider::Azure && endpoint.account_key.is_empty() {
                    "client_secret"
                } else {
                    provider.credentials_field()
                },
                format!("the credentials are not usable: {text}"),
            )
        } else {
            ApiError::new(
                ErrorCode::ValidationError,
                format!("the {} settings are not usable: {text}", provider.title()),
            )
        }
    };
    let signed = endpoint.has_credentials();
    match provider {
        Provider::S3 => {
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(&endpoint.bucket)
                .with_region(if endpoint.region.is_empty() {
                    "us-east-1"
                } else {
                    endpoint.region.as_str()
                })
                .with_retry(retry)
                .with_client_options(options.clone());
            if !custom.is_empty() {
                builder = builder
                    .with_endpoint(&custom)
                    .with_virtual_hosted_style_request(false);
            }
            if !endpoint.role_arn.is_empty() {
                builder =
                    builder.with_credentials(Arc::new(assume_role(endpoint, &policy, &options)?));
            } else if signed {
                builder = builder
                    .with_access_key_id(&endpoint.access_key_id)
                    .with_secret_access_key(&endpoint.secret_access_key);
                if !endpoint.session_token.is_empty() {
                    builder = builder.with_token(&endpoint.session_token);
                }
            } else {
                builder = builder.with_skip_signature(true);
            }
            let s3 = Arc::new(
                builder
                    .with_http_connector(connector)
                    .build()
                    .map_err(unusable)?,
            );
            Ok(Bucket {
                store: s3.clone(),
                signer: s3,
                signed,
            })
        }
        Provider::Gcs => {
            let mut builder = GoogleCloudStorageBuilder::new()
                .with_bucket_name(&endpoint.bucket)
                .with_retry(retry)
                .with_client_options(options);
            if !custom.is_empty() {
                builder = builder.with_base_url(&custom);
            }
            if signed {
                builder = builder.with_service_account_key(&endpoint.google_credentials);
            } else if endpoint.identity.gcs_workload_identity {
                // The server's own identity, which the administrator lent to its storages.
                // Presigned URLs need a key to sign with, so such storages are not `signed`.
                let token = crate::gce::MetadataToken::new(&endpoint.identity.gce_metadata_host)
                    .map_err(ApiError::internal)?;
                builder = builder.with_credentials(Arc::new(token));
            } else {
                // Explicit empty credentials, so that neither the server's application default
                // credentials nor its metadata server are consulted.
                builder = builder.with_skip_signature(true).with_credentials(Arc::new(
                    StaticCredentialProvider::new(GcpCredential {
                        bearer: String::new(),
                    }),
                ));
            }
            let gcs = Arc::new(
                builder
                    .with_http_connector(connector)
                    .build()
                    .map_err(unusable)?,
            );
            Ok(Bucket {
                store: gcs.clone(),
                signer: gcs,
                signed,
            })
        }
        Provider::Azure => {
            let mut builder = MicrosoftAzureBuilder::new()
                .with_account(&endpoint.account_name)
                .with_container_name(&endpoint.bucket)
                .with_retry(retry)
                .with_client_options(options);
            if !custom.is_empty() {
                builder = builder.with_endpoint(custom.clone());
            }
            if !endpoint.account_key.is_empty() {
                builder = builder.with_access_key(&endpoint.account_key);
            } else if !endpoint.client_secret.is_empty() {
                // A service principal: object_store asks the authority for OAuth tokens (through
                // the same guarded client) and renews them before they expire.
                let authority = if endpoint.identity.azure_authority_host.is_empty() {
                    "https://login.microsoftonline.com".to_string()
                } else {
                    endpoint.identity.azure_authority_host.clone()
                };
                policy.check_url(&authority).map_err(|why| {
                    ApiError::field(
                        ErrorCode::PrivateTarget,
                        "tenant_id",
                        format!("the server's Entra ID authority {authority}: {why}"),
                    )
                })?;
                builder = builder
                    .with_client_secret_authorization(
                        &endpoint.client_id,
                        &endpoint.client_secret,
                        &endpoint.tenant_id,
                    )
                    .with_authority_host(authority);
            } else {
                builder = builder.with_skip_signature(true);
            }
            let azure = Arc::new(
                builder
                    .with_http_connector(connector)
                    .build()
                    .map_err(unusable)?,
            );
            Ok(Bucket {
                store: azure.clone(),
                signer: azure,
                signed,
            })
        }
    }
}

/// The provider of temporary credentials of an S3 storage's role: the storage's keys (or else
/// the server's) assume it at the STS endpoint, which obeys the outbound rules.
fn assume_role(
    endpoint: &Endpoint,
    policy: &Arc<TargetPolicy>,
    options: &ClientOptions,
) -> ApiResult<crate::sts::AssumeRole> {
    let base = if !endpoint.access_key_id.is_empty() {
        AwsCredential {
            key_id: endpoint.access_key_id.clone(),
            secret_key: endpoint.secret_access_key.clone(),
            token: (!endpoint.session_token.is_empty()).then(|| endpoint.session_token.clone()),
        }
    } else if !endpoint.identity.aws_access_key_id.is_empty() {
        let server = &endpoint.identity;
        AwsCredential {
            key_id: server.aws_access_key_id.clone(),
            secret_key: server.aws_secret_access_key.clone(),
            token: (!server.aws_session_token.is_empty()).then(|| server.aws_session_token.clone()),
        }
    } else {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "role_arn",
            "no identity to assume the role with: give aws_access_key_id and aws_secret_access_key of a user the role trusts, or ask the administrator to set the server's VERITY_AWS_ACCESS_KEY_ID and VERITY_AWS_SECRET_ACCESS_KEY",
        ));
    };
    let url = endpoint.sts_endpoint();
    let mut parsed = policy.check_url(&url).map_err(|why| {
        let code = if why.contains("private, loopback or link-local") {
            ErrorCode::PrivateTarget
        } else {
            ErrorCode::ValidationError
        };
        ApiError::field(code, "role_arn", format!("the STS endpoint {url}: {why}"))
    })?;
    if parsed.path().is_empty() {
        parsed.set_path("/");
    }
    let client = GuardedConnector {
        policy: policy.clone(),
    }
    .connect(options)
    .map_err(ApiError::internal)?;
    Ok(crate::sts::AssumeRole {
        url: parsed.to_string(),
        region: endpoint.region_or_default().to_string(),
        role_arn: endpoint.role_arn.clone(),
        external_id: endpoint.external_id.clone(),
        base,
        client,
    })
}

/// The message of a bucket error with its causes.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A bucket error as the API reports it: what went wrong in words a user can act on.
pub fn unreachable(
    provider: Provider,
    bucket: &str,
    action: &str,
    e: &object_store::Error,
) -> ApiError {
    let text = describe(e);
    let what = provider.bucket_field();
    // The service's answer, as object_store words it ("… status code: 404 Not Found …"); a
    // bare "404" could be part of a duration or an address.
    let status = text
        .split("status code: ")
        .nth(1)
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok());
    let why = if text.contains("private, loopback or link-local") {
        let field = if matches!(e, object_store::Error::Generic { store, .. } if *store == crate::sts::STORE)
        {
            "role_arn"
        } else {
            provider.endpoint_field()
        };
        return ApiError::field(ErrorCode::PrivateTarget, field, text);
    } else if text.contains(crate::outbound::NOT_IN_ALLOW_LIST) {
        return ApiError::field(
            ErrorCode::EndpointNotAllowed,
            provider.endpoint_field(),
            text,
        );
    } else if let object_store::Error::Generic { store, source } = e
        && *store == crate::sts::STORE
    {
        // Role assumption failed before the bucket was asked anything.
        let detail = source.to_string();
        return ApiError {
            internal: Some(text.clone()),
            ..ApiError::field(ErrorCode::StorageUnreachable, "role_arn", detail)
        };
    } else if let object_store::Error::Generic { store, source } = e
        && *store == crate::gce::STORE
    {
        // The server's workload identity got no token: the bucket was not asked.
        return ApiError {
            internal: Some(text.clone()),
            ..ApiError::new(ErrorCode::StorageUnreachable, source.to_string())
        };
    } else if provider == Provider::Azure && text.contains("Error performing token request") {
        // The service principal got no token: the blob service was not asked.
        return ApiError {
            internal: Some(text.clone()),
            ..ApiError::field(
                ErrorCode::StorageUnreachable,
                "client_secret",
                format!(
                    "Microsoft Entra ID gave the service principal no token; check tenant_id, client_id and client_secret, and that the secret has not expired: {text}"
                ),
            )
        };
    } else if text.contains("NoSuchBucket")
        || text.contains("ContainerNotFound")
        // fake-gcs-server's words for it (with a 500)
        || text.contains("no bucket named")
    {
        format!("{what} {bucket} does not exist")
    } else if text.contains("InvalidAccessKeyId")
        || text.contains("SignatureDoesNotMatch")
        || text.contains("AuthorizationFailure")
        || text.contains("AuthenticationFailed")
        || matches!(status, Some(401 | 403))
        || matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        )
    {
        format!(
            "the {what} {bucket} refused the credentials (check {}, and that they may {action})",
            provider.credentials_hint()
        )
    } else if matches!(e, object_store::Error::NotFound { .. }) || status == Some(404) {
        format!("{what} {bucket} does not exist or is not visible with these credentials")
    } else {
        format!("cannot {action} {what} {bucket}")
    };
    ApiError {
        internal: Some(text.clone()),
        ..ApiError::new(ErrorCode::StorageUnreachable, format!("{why}: {text}"))
    }
}

fn prefix_path(prefix: &str) -> Option<ObjectPath> {
    let p = prefix.trim_matches('/');
    (!p.is_empty()).then(|| ObjectPath::from(p))
}

/// Checks that the bucket answers a listing of the prefix with these credentials.
pub async fn check(endpoint: &Endpoint, policy: Arc<TargetPolicy>, prefix: &str) -> ApiResult<()> {
    let bucket = store(endpoint, policy)?;
    let mut listing = bucket.store.list(prefix_path(prefix).as_ref());
    match listing.next().await {
        None | Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(unreachable(endpoint.provider, &endpoint.bucket, "list", &e)),
    }
}

/// Enqueues the sync of a storage (queue `high`) as job `job_id`, run as `user`.
pub async fn enqueue_sync(
    jobs: &Jobs,
    provider: Provider,
    org: i64,
    storage: i64,
    user: i64,
    job_id: &str,
) -> ApiResult<String> {
    let mut job = NewJob::new(
        "high",
        provider.sync_job(),
        json!({"kind": provider.kind(), "storage": storage, "user": user}),
    );
    job.organization = Some(org);
    job.id = Some(job_id.to_string());
    job.timeout = Duration::from_secs(6 * 3600);
    job.max_attempts = 3;
    jobs.enqueue(&job).await.map_err(ApiError::internal)
}

/// What the sync job needs.
#[derive(Clone)]
struct Context {
    db: Db,
    jobs: Jobs,
    config: crate::config::Config,
    sealer: Arc<Sealer>,
    policy: Arc<TargetPolicy>,
}

/// Counters of a sync, shown as the storage's `meta`.
#[derive(Debug, Default, serde::Serialize)]
struct Counters {
    /// Objects the listing returned under the prefix.
    listed: u64,
    /// Listed objects left out by `recursive_scan` or `regex_filter`.
    filtered: u64,
    /// Objects no earlier sync saw.
    new: u64,
    /// Objects whose entity tag or size changed since they were imported.
    changed: u64,
    /// Objects imported before and unchanged.
    unchanged: u64,
    /// Objects read and imported (or recorded) by this sync.
    imported_objects: u64,
    /// Tasks this sync created.
    tasks: i64,
    /// Export: objects written / deleted.
    written: u64,
    deleted: u64,
    /// Objects that were listed but gone when read (deleted meanwhile): skipped.
    /// (The first `MISSING_NAMED` of them by name; all of them in `missing_count`.)
    missing: Vec<String>,
    missing_count: u64,
    /// Where the sync is: `listing`, `importing`, `exporting`, `done`.
    phase: &'static str,
}

impl Counters {
    fn meta(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({}))
    }
}

/// Registers the sync jobs of every provider (`storage.s3.sync`, `storage.gcs.sync`,
/// `storage.azure.sync`): one handler.
pub fn register(
    db: Db,
    jobs: Jobs,
    config: crate::config::Config,
    sealer: Arc<Sealer>,
    handlers: Handlers,
) -> Handlers {
    let policy = Arc::new(TargetPolicy::parse(&config.allow_private_targets).unwrap_or_default());
    let ctx = Context {
        db,
        jobs,
        config,
        sealer,
        policy,
    };
    let mut handlers = handlers;
    for provider in Provider::ALL {
        let ctx = ctx.clone();
        handlers = handlers.on(provider.sync_job(), move |job| {
        let ctx = ctx.clone();
        async move {
            let id = job.leased.payload["storage"]
                .as_i64()
                .ok_or("the job has no storage id")?;
            let user = job.leased.payload["user"].as_i64().unwrap_or(0);
            let last = job.leased.attempt >= job.leased.max_attempts;
            let mut counters = Counters::default();
            match sync(&ctx, id, user, &mut counters).await {
                Ok(count) => {
                    counters.phase = "done";
                    cloudstorages::finish_sync(&ctx.db, id, Ok(count), &counters.meta())
                        .await
                        .map_err(|e| e.detail)?;
                    Ok(json!({"status": "completed", "count": count, "meta": counters.meta()}))
                }
                Err(e) if e.code.status().is_client_error() || last => {
                    cloudstorages::finish_sync(
                        &ctx.db,
                        id,
                        Err(e.detail.clone()),
                        &counters.meta(),
                    )
                    .await
                    .map_err(|e| e.detail)?;
                    Ok(json!({"status": "failed", "error": e.detail}))
                }
                Err(e) => {
                    tracing::warn!(storage = id, error = %e.detail, internal = ?e.internal, "a bucket storage sync failed; it will be retried");
                    Err(e.detail)
                }
            }
        }
    });
    }
    handlers
}

/// Runs a sync as the user who asked for it, with their rights as they are now. Answers the
/// tasks created (import) or objects written (export).
async fn sync(ctx: &Context, id: i64, user: i64, counters: &mut Counters) -> ApiResult<i64> {
    let Some(row) = cloudstorages::by_id(&ctx.db, id).await? else {
        return Ok(0);
    };
    let actor = match user {
        0 => Actor::instance(row.organization_id, RequestMeta::default()),
        u => match users::actor_for_user(&ctx.db, u).await? {
            Some(a) if a.org_id == row.organization_id => a,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "the user who started the sync is no longer active in this organization",
                ));
            }
        },
    };
    // The organization's allow-list as it is now: a storage it no longer allows fails here.
    let policy = with_org_endpoints(&ctx.db, &ctx.policy, row.organization_id).await?;
    let store = store(&row.endpoint(&ctx.sealer, &ctx.config)?, policy)?.store;
    if row.direction == storages::Direction::Export.as_str() {
        counters.phase = "exporting";
        cloudstorages::progress(&ctx.db, id, "in_progress", &counters.meta()).await?;
        let written = export(ctx, &actor, &row, &store, counters).await?;
        // The bucket answers again: changes whose write pass failed for good are taken up.
        crate::exportchanges::requeue(
            &ctx.db,
            &ctx.jobs,
            &crate::storage::exportchanges::ExportTarget {
                kind: row.provider().kind().to_string(),
                id: row.id,
                organization_id: row.organization_id,
            },
        )
        .await?;
        return Ok(written);
    }
    counters.phase = "listing";
    cloudstorages::progress(&ctx.db, id, "in_progress", &counters.meta()).await?;
    import_listing(ctx, &actor, &row, &store, counters).await?;
    Ok(counters.tasks)
}

/// An object the listing found new or changed.
#[derive(Debug, Clone)]
struct Pending {
    key: String,
    etag: Option<String>,
    size: i64,
    changed: bool,
}

/// A listed object that passed `recursive_scan` and `regex_filter`.
struct Listed {
    key: String,
    etag: Option<String>,
    size: i64,
}

/// Streams the listing of the prefix page by page: every `LIST_PAGE` objects that pass the
/// filters are compared with what earlier syncs recorded of those keys, and the new and changed
/// ones are imported before the listing goes on. Memory stays bounded by a page whatever the
/// bucket holds; each batch records its objects in the transaction that imports them, so a
/// sync that dies part way and runs again skips what landed and imports the rest.
async fn import_listing(
    ctx: &Context,
    actor: &Actor,
    row: &CloudStorageRow,
    store: &Arc<dyn ObjectStore>,
    counters: &mut Counters,
) -> ApiResult<()> {
    let filter = crate::localfiles::filter(&row.regex_filter)?;
    let prefix = prefix_path(&row.prefix);
    let folder = prefix.as_ref().map(|p| format!("{p}/")).unwrap_or_default();
    let data_key = if row.use_blob_urls {
        Some(storages::data_key(&ctx.db, row.project_id).await?)
    } else {
        None
    };
    let mut listing = store.list(prefix.as_ref());
    let mut page: Vec<Listed> = Vec::with_capacity(LIST_PAGE);
    loop {
        let next = listing.next().await;
        let done = next.is_none();
        if let Some(meta) = next {
            let meta = meta.map_err(|e| unreachable(row.provider(), &row.bucket, "list", &e))?;
            counters.listed += 1;
            let key = meta.location.to_string();
            let below = key.strip_prefix(folder.as_str()).unwrap_or(&key);
            if (!row.recursive_scan && below.contains('/'))
                || filter.as_ref().is_some_and(|re| !re.is_match(&key))
            {
                counters.filtered += 1;
            } else {
                page.push(Listed {
                    key,
                    etag: meta.e_tag,
                    size: i64::try_from(meta.size).unwrap_or(i64::MAX),
                });
            }
        }
        if page.len() < LIST_PAGE && !done {
            continue;
        }
        let pending = pending_of(ctx, row, std::mem::take(&mut page), counters).await?;
        counters.phase = "importing";
        if !pending.is_empty() {
            match &data_key {
                Some(data_key) => {
                    import_blobs(ctx, actor, row, data_key, pending, counters).await?
                }
                None => import_json(ctx, actor, row, store, pending, counters).await?,
            }
        }
        cloudstorages::progress(&ctx.db, row.id, "in_progress", &counters.meta()).await?;
        if done {
            return Ok(());
        }
    }
}

/// The objects of a listing page to import: new ones and changed ones (what earlier syncs
/// recorded of these keys is read for the page alone).
async fn pending_of(
    ctx: &Context,
    row: &CloudStorageRow,
    page: Vec<Listed>,
    counters: &mut Counters,
) -> ApiResult<Vec<Pending>> {
    if page.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = page.iter().map(|l| l.key.clone()).collect();
    let known = cloudstorages::known_among(&ctx.db, row.provider(), row.id, &keys).await?;
    let mut pending = Vec::with_capacity(page.len());
    for listed in page {
        let changed = match known.get(&listed.key) {
            None => false,
            Some((etag, size)) if *etag == listed.etag && *size == Some(listed.size) => {
                counters.unchanged += 1;
                continue;
            }
            Some(_) => true,
        };
        if changed {
            counters.changed += 1;
        } else {
            counters.new += 1;
        }
        pending.push(Pending {
            key: listed.key,
            etag: listed.etag,
            size: listed.size,
            changed,
        });
    }
    Ok(pending)
}

/// `use_blob_urls`: each new object becomes a task with its media URL (`s3://`, `gs://`,
/// `azure-blob://`); a changed object
/// keeps its task (the URL is the same and media are read when shown) and only its record is
/// updated.
async fn import_blobs(
    ctx: &Context,
    actor: &Actor,
    row: &CloudStorageRow,
    data_key: &str,
    pending: Vec<Pending>,
    counters: &mut Counters,
) -> ApiResult<()> {
    let spool = spool_dir(&ctx.config)?;
    for chunk in pending.chunks(BLOB_BATCH) {
        let (changed, new): (Vec<&Pending>, Vec<&Pending>) = chunk.iter().partition(|p| p.changed);
        let records: Vec<_> = changed
            .iter()
            .map(|p| (p.key.clone(), p.etag.clone(), Some(p.size)))
            .collect();
        cloudstorages::record_objects(&ctx.db, row.provider(), row.id, &records).await?;
        counters.imported_objects += changed.len() as u64;
        if new.is_empty() {
            continue;
        }
        let file = tempfile::NamedTempFile::new_in(&spool).map_err(ApiError::internal)?;
        {
            let mut out = std::io::BufWriter::new(file.as_file());
            let tasks: Vec<Value> = new
                .iter()
                .map(|p| json!({"data": {data_key: row.provider().blob_url(&row.bucket, &p.key)}}))
                .collect();
            serde_json::to_writer(&mut out, &tasks).map_err(ApiError::internal)?;
            std::io::Write::flush(&mut out).map_err(ApiError::internal)?;
        }
        let objects: Vec<ClaimedObject> = new
            .iter()
            .map(|p| ClaimedObject {
                key: p.key.clone(),
                tasks: 1,
                source: None,
                etag: p.etag.clone(),
                size: Some(p.size),
                replaces: false,
            })
            .collect();
        let sources = [ImportSource {
            path: file.path().to_path_buf(),
            format: ImportFormat::Json,
            extension: ".json".into(),
            upload: None,
        }];
        counters.tasks += import(ctx, actor, row, &sources, &objects).await?;
        counters.imported_objects += new.len() as u64;
        cloudstorages::progress(&ctx.db, row.id, "in_progress", &counters.meta()).await?;
    }
    Ok(())
}

/// An object read to a spool file.
struct Fetched {
    pending: Pending,
    /// `None`: the object was gone when read.
    file: Option<tempfile::NamedTempFile>,
    size: i64,
    tasks: usize,
}

/// Reads one JSON/JSONL object to a spool file, counting (and checking) its tasks on the way.
async fn fetch(
    store: &Arc<dyn ObjectStore>,
    provider: Provider,
    bucket: &str,
    spool: &std::path::Path,
    pending: Pending,
) -> ApiResult<Fetched> {
    let path = ObjectPath::from(pending.key.as_str());
    let result = match store.get(&path).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => {
            return Ok(Fetched {
                pending,
                file: None,
                size: 0,
                tasks: 0,
            });
        }
        Err(e) => return Err(unreachable(provider, bucket, "read objects of", &e)),
    };
    if result.meta.size > MAX_JSON_OBJECT {
        return Err(ApiError::new(
            ErrorCode::InvalidImport,
            format!(
                "{} is larger than {MAX_JSON_OBJECT} bytes; split it, or set use_blob_urls to make each object a task",
                pending.key
            ),
        ));
    }
    let size = i64::try_from(result.meta.size).unwrap_or(i64::MAX);
    let file = tempfile::NamedTempFile::new_in(spool).map_err(ApiError::internal)?;
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(ApiError::internal)?);
    let mut splitter = JsonSplitter::new();
    let mut tasks = 0usize;
    let invalid = |key: &str, why: String| {
        ApiError::new(
            ErrorCode::InvalidImport,
            format!(
                "{key} is not a JSON task, list of tasks or JSON lines ({why}); set use_blob_urls to make each object a task, or narrow regex_filter (e.g. .*\\.jsonl?$)"
            ),
        )
    };
    let mut body = result.into_stream();
    loop {
        let chunk = match body.try_next().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(Fetched {
                    pending,
                    file: None,
                    size: 0,
                    tasks: 0,
                });
            }
            Err(e) => return Err(unreachable(provider, bucket, "read objects of", &e)),
        };
        let mut found = Vec::new();
        splitter
            .feed(&chunk, &mut found)
            .map_err(|e| invalid(&pending.key, e.message))?;
        for task in &found {
            serde_json::from_slice::<serde::de::IgnoredAny>(task)
                .map_err(|e| invalid(&pending.key, e.to_string()))?;
        }
        tasks += found.len();
        out.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    splitter
        .finish()
        .map_err(|e| invalid(&pending.key, e.message))?;
    out.flush().await.map_err(ApiError::internal)?;
    Ok(Fetched {
        pending,
        file: Some(file),
        size,
        tasks,
    })
}

/// JSON/JSONL objects: read up to `CONCURRENCY` at once to spool files, imported in batches
/// (at most `JSON_BATCH_OBJECTS` objects or about `JSON_BATCH_TASKS` tasks per transaction).
async fn import_json(
    ctx: &Context,
    actor: &Actor,
    row: &CloudStorageRow,
    store: &Arc<dyn ObjectStore>,
    pending: Vec<Pending>,
    counters: &mut Counters,
) -> ApiResult<()> {
    let spool = spool_dir(&ctx.config)?;
    let (provider, bucket, spool_dir) = (row.provider(), row.bucket.clone(), spool.clone());
    let mut reads = futures::stream::iter(pending)
        .map(move |p| {
            let (store, bucket, spool) = (store.clone(), bucket.clone(), spool_dir.clone());
            async move { fetch(&store, provider, &bucket, &spool, p).await }
        })
        .buffered(CONCURRENCY);
    let mut batch: Vec<Fetched> = Vec::new();
    let mut batch_tasks = 0usize;
    loop {
        let next = reads.next().await.transpose()?;
        let done = next.is_none();
        if let Some(fetched) = next {
            match fetched.file {
                None => {
                    counters.missing_count += 1;
                    if counters.missing.len() < MISSING_NAMED {
                        counters.missing.push(fetched.pending.key);
                    }
                }
                Some(_) if fetched.tasks == 0 => {
                    // An empty list: recorded so it is not read again until it changes.
                    cloudstorages::record_objects(
                        &ctx.db,
                        row.provider(),
                        row.id,
                        &[(
                            fetched.pending.key.clone(),
                            fetched.pending.etag.clone(),
                            Some(fetched.size),
                        )],
                    )
                    .await?;
                    counters.imported_objects += 1;
                }
                Some(_) => {
                    batch_tasks += fetched.tasks;
                    batch.push(fetched);
                }
            }
        }
        if !batch.is_empty()
            && (done || batch.len() >= JSON_BATCH_OBJECTS || batch_tasks >= JSON_BATCH_TASKS)
        {
            let taken = std::mem::take(&mut batch);
            batch_tasks = 0;
            let mut sources = Vec::with_capacity(taken.len());
            let mut objects = Vec::with_capacity(taken.len());
            for (i, f) in taken.iter().enumerate() {
                let Some(file) = &f.file else { continue };
                sources.push(ImportSource {
                    path: file.path().to_path_buf(),
                    format: ImportFormat::Json,
                    extension: if f.pending.key.ends_with(".jsonl") {
                        ".jsonl".into()
                    } else {
                        ".json".into()
                    },
                    upload: None,
                });
                objects.push(ClaimedObject {
                    key: f.pending.key.clone(),
                    tasks: f.tasks as i64,
                    source: Some(i),
                    // The listing's entity tag, which the next listing compares: GCS answers a
                    // listing and a read with tags of different forms.
                    etag: f.pending.etag.clone(),
                    size: Some(f.size),
                    replaces: f.pending.changed,
                });
            }
            counters.tasks += import(ctx, actor, row, &sources, &objects).await?;
            counters.imported_objects += objects.len() as u64;
            drop(taken);
            cloudstorages::progress(&ctx.db, row.id, "in_progress", &counters.meta()).await?;
        }
        if done {
            break;
        }
    }
    Ok(())
}

fn spool_dir(config: &crate::config::Config) -> ApiResult<std::path::PathBuf> {
    let spool = config.data_dir.join("tmp");
    std::fs::create_dir_all(&spool).map_err(ApiError::internal)?;
    Ok(spool)
}

/// Imports spooled sources and records their objects, in one transaction.
async fn import(
    ctx: &Context,
    actor: &Actor,
    row: &CloudStorageRow,
    sources: &[ImportSource],
    objects: &[ClaimedObject],
) -> ApiResult<i64> {
    let summary = tasks::import_with(
        &ctx.db,
        actor,
        row.project_id,
        sources,
        true,
        Claim::StorageObjects {
            kind: row.provider().kind(),
            storage: row.id,
            objects,
        },
    )
    .await?;
    let created = summary.task_ids.clone().unwrap_or_default();
    crate::imports::announce(
        &ctx.db,
        &ctx.jobs,
        row.organization_id,
        row.project_id,
        created,
        summary.annotation_count > 0,
    )
    .await;
    Ok(summary.task_count)
}

/// The key of an annotation in an export storage.
pub fn export_key(prefix: &str, annotation: i64) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        annotation.to_string()
    } else {
        format!("{prefix}/{annotation}")
    }
}

/// Writes every annotation of the project as `<prefix>/<annotation id>` (the annotation with
/// its task nested, as the local-files export storage writes it); a re-run rewrites the same
/// keys. With `can_delete_objects`, objects written earlier for annotations that no longer
/// exist are deleted. Answers the objects written.
async fn export(
    ctx: &Context,
    actor: &Actor,
    row: &CloudStorageRow,
    store: &Arc<dyn ObjectStore>,
    counters: &mut Counters,
) -> ApiResult<i64> {
    access::project(&ctx.db, actor, row.project_id, Permission::ExportRun).await?;
    let provider = row.provider();
    let known: HashSet<String> = cloudstorages::known_objects(&ctx.db, row.provider(), row.id)
        .await?
        .into_keys()
        .collect();
    let mut written: HashSet<String> = HashSet::new();
    let mut after = 0;
    loop {
        let batch = storages::export_batch(&ctx.db, row.project_id, after).await?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = *last;
        let (prefix, bucket) = (row.prefix.clone(), row.bucket.clone());
        let read = batch.clone();
        let results: Vec<(String, Option<String>, Option<i64>)> = futures::stream::iter(batch)
            .map(move |(id, value)| {
                let (store, prefix, bucket) = (store.clone(), prefix.clone(), bucket.clone());
                async move {
                    let key = export_key(&prefix, id);
                    let bytes = serde_json::to_vec(&value).map_err(ApiError::internal)?;
                    let size = bytes.len() as i64;
                    let put = store
                        .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
                        .await
                        .map_err(|e| unreachable(provider, &bucket, "write objects to", &e))?;
                    Ok::<_, ApiError>((key, put.e_tag, Some(size)))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        counters.written += results.len() as u64;
        written.extend(results.iter().map(|(k, _, _)| k.clone()));
        cloudstorages::record_objects(&ctx.db, row.provider(), row.id, &results).await?;
        // An annotation that changed while this batch was written goes to the storage's write
        // pass (ADR 0052), which writes it as it is then.
        crate::exportchanges::recheck_batch(
            &ctx.db,
            &ctx.jobs,
            &crate::storage::exportchanges::ExportTarget {
                kind: provider.kind().to_string(),
                id: row.id,
                organization_id: row.organization_id,
            },
            row.project_id,
            &read,
        )
        .await?;
        cloudstorages::progress(&ctx.db, row.id, "in_progress", &counters.meta()).await?;
    }
    if row.can_delete_objects {
        let stale: Vec<String> = known.difference(&written).cloned().collect();
        for chunk in stale.chunks(BLOB_BATCH) {
            let bucket = row.bucket.clone();
            futures::stream::iter(chunk.to_vec())
                .map(move |key| {
                    let (store, bucket) = (store.clone(), bucket.clone());
                    async move {
                        match store.delete(&ObjectPath::from(key.as_str())).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                            Err(e) => Err(unreachable(provider, &bucket, "delete objects of", &e)),
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
            cloudstorages::forget_objects(&ctx.db, row.provider(), row.id, chunk).await?;
            counters.deleted += chunk.len() as u64;
        }
    }
    Ok(written.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket.v2", "a1b"] {
            assert!(valid_bucket(ok), "{ok}");
        }
        for bad in ["ab", "Bucket", "-abc", "abc-", "a_b_c", &"x".repeat(64)] {
            assert!(!valid_bucket(bad), "{bad}");
        }
        assert!(Provider::Gcs.valid_bucket("my_bucket"));
        assert!(!Provider::Azure.valid_bucket("my.container"));
        assert!(!Provider::Azure.valid_bucket("a--b"));
        assert!(Provider::Azure.valid_bucket("media-1"));
    }

    #[test]
    fn media_urls_and_export_keys() {
        assert_eq!(Provider::S3.blob_url("b", "x/y.png"), "s3://b/x/y.png");
        assert_eq!(Provider::Gcs.blob_url("b", "x/y.png"), "gs://b/x/y.png");
        assert_eq!(
            Provider::Azure.blob_url("c", "x/y.png"),
            "azure-blob://c/x/y.png"
        );
        for p in Provider::ALL {
            assert_eq!(
                parse_media_url(&p.blob_url("b", "x/y.png")),
                Some((p, "b".into(), "x/y.png".into()))
            );
            assert_eq!(Provider::from_kind(p.kind()), Some(p));
        }
        assert_eq!(parse_media_url("s3://b/"), None);
        assert_eq!(parse_media_url("https://b/x"), None);
        assert_eq!(parse_media_url("/data/local-files/?d=x"), None);
        assert_eq!(export_key("out/", 7), "out/7");
        assert_eq!(export_key("", 7), "7");
    }

    #[test]
    fn service_account_keys() {
        let good = r#"{"type": "service_account", "client_email": "a@b.iam", "private_key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n", "gcs_base_url": "http://10.0.0.1", "disable_oauth": true}"#;
        let key: Value =
            serde_json::from_str(&service_account_key(good).expect("good")).expect("json");
        assert!(key.get("gcs_base_url").is_none() && key.get("disable_oauth").is_none());
        assert_eq!(key["private_key_id"], "");
        for bad in [
            "not json",
            "[]",
            r#"{"type": "authorized_user", "client_email": "a", "private_key": "PRIVATE KEY"}"#,
            r#"{"private_key": "-----BEGIN PRIVATE KEY-----"}"#,
            r#"{"client_email": "a@b"}"#,
        ] {
            assert!(service_account_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_are_read_from_the_status_not_from_stray_digits() {
        let generic = |text: &str| object_store::Error::Generic {
            store: "bucket",
            source: text.to_string().into(),
        };
        let refused = generic("Error performing GET http://h/b in 1.404ms: connection refused");
        let err = unreachable(Provider::Azure, "b", "list", &refused);
        assert!(
            err.detail.starts_with("cannot list container b"),
            "{}",
            err.detail
        );
        let missing = generic("Server returned non-2xx status code: 404 Not Found: Not Found");
        let err = unreachable(Provider::Gcs, "b", "list", &missing);
        assert!(
            err.detail
                .starts_with("bucket b does not exist or is not visible"),
            "{}",
            err.detail
        );
        let denied = generic("Server returned non-2xx status code: 403 Forbidden: <Error/>");
        let err = unreachable(Provider::Azure, "b", "list", &denied);
        assert!(
            err.detail
                .contains("refused the credentials (check account_name and account_key"),
            "{}",
            err.detail
        );
    }

    #[tokio::test]
    async fn private_endpoints_are_refused_unless_allowed() {
        for provider in Provider::ALL {
            let mut endpoint = Endpoint::new(provider);
            endpoint.bucket = "bucket".into();
            endpoint.account_name = "account".into();
            endpoint.endpoint = "http://127.0.0.1:9".into();
            let refused = store(&endpoint, Arc::new(TargetPolicy::default())).unwrap_err();
            assert_eq!(refused.code, ErrorCode::PrivateTarget);
            let allowed = TargetPolicy::parse("127.0.0.1").expect("policy");
            assert!(store(&endpoint, Arc::new(allowed)).is_ok());
            // A name that resolves to a private address is refused when connecting.
            endpoint.endpoint = "http://localhost:9".into();
            let err = check(&endpoint, Arc::new(TargetPolicy::default()), "")
                .await
                .unwrap_err();
            assert_eq!(
                err.code,
                ErrorCode::PrivateTarget,
                "{provider:?}: {}",
                err.detail
            );
        }
    }
}
