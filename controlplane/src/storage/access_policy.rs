//! An organization's access policy (ADR 0053): the storage endpoints its S3, GCS and Azure
//! storages may connect to, and the networks allowed to call the API on its behalf. Empty
//! lists restrict nothing. Changes are an administrator's, audited as
//! `access_policy.update`.

use std::net::IpAddr;

use serde_json::json;

use super::{
    Db,
    audit::{Prepared, audit},
    now_micros, with_read, with_tx,
};
use crate::{
    authz::Actor,
    error::{ApiError, ApiResult, ErrorCode},
    outbound::EndpointAllowList,
};

/// The longest list the policy accepts, per kind.
pub const MAX_ENTRIES: usize = 200;

/// An organization's access policy as the API shows it.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct AccessPolicy {
    /// Where the organization's S3, GCS and Azure storages may connect: host names
    /// (`minio.example.com`, `*.s3.amazonaws.com`), addresses and networks (`10.0.0.0/8`).
    /// Empty: anywhere the server's outbound rules allow.
    pub storage_endpoints: Vec<String>,
    /// The networks (or addresses) from which the organization's members may call the API,
    /// use its pages and fetch its media links. Empty: from anywhere.
    pub api_networks: Vec<String>,
}

impl AccessPolicy {
    /// The storage allow-list.
    pub fn endpoint_list(&self) -> EndpointAllowList {
        EndpointAllowList::parse(&self.storage_endpoints).unwrap_or_default()
    }

    /// The networks allowed to call the API (empty: no restriction).
    pub fn networks(&self) -> Vec<ipnet::IpNet> {
        parse_networks(&self.api_networks).unwrap_or_default()
    }
}

/// Parses networks and single addresses; answers what is wrong with the first bad entry.
pub fn parse_networks(entries: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    entries
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.parse::<ipnet::IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| e.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!(
                        "{e:?} is neither an address nor a network (CIDR such as 203.0.113.0/24)"
                    )
                })
        })
        .collect()
}

/// Whether `ip` lies in one of `nets` (an IPv4 address mapped into IPv6 counts as IPv4).
pub fn in_networks(nets: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

/// The organization's policy (empty lists when it never set one). No permission check: the
/// request path, the storage syncs and the proxy read it for every organization.
pub async fn of_org(db: &Db, org: i64) -> ApiResult<AccessPolicy> {
    let row: Option<(String, String)> = with_read!(db, conn, {
        sqlx::query_as(
            "select storage_endpoints, api_networks from access_policy where organization_id = $1",
        )
        .bind(org)
        .fetch_optional(conn)
        .await?
    });
    Ok(match row {
        None => AccessPolicy::default(),
        Some((endpoints, networks)) => AccessPolicy {
            storage_endpoints: serde_json::from_str(&endpoints).unwrap_or_default(),
            api_networks: serde_json::from_str(&networks).unwrap_or_default(),
        },
    })
}

/// The actor's organization's policy, for its administrators.
pub async fn get(db: &Db, actor: &Actor) -> ApiResult<AccessPolicy> {
    actor.require(crate::authz::Permission::OrgManage)?;
    of_org(db, actor.org_id).await
}

/// Changes the policy (lists not given keep their value; each given list replaces the old
/// one). `caller` is the address the request came from: a list of API networks that would
/// leave it out is refused, so that an administrator cannot lock themselves out.
pub async fn set(
    db: &Db,
    actor: &Actor,
    storage_endpoints: Option<Vec<String>>,
    api_networks: Option<Vec<String>>,
    caller: Option<IpAddr>,
) -> ApiResult<AccessPolicy> {
    let current = get(db, actor).await?;
    let too_long = |field: &str| {
        ApiError::field(
            ErrorCode::ValidationError,
            field,
            format!("give at most {MAX_ENTRIES} entries"),
        )
    };
    let mut policy = current.clone();
    if let Some(list) = storage_endpoints {
        if list.len() > MAX_ENTRIES {
            return Err(too_long("storage_endpoints"));
        }
        let parsed = EndpointAllowList::parse(&list)
            .map_err(|why| ApiError::field(ErrorCode::ValidationError, "storage_endpoints", why))?;
        policy.storage_endpoints = parsed.entries().to_vec();
    }
    if let Some(list) = api_networks {
        if list.len() > MAX_ENTRIES {
            return Err(too_long("api_networks"));
        }
        let nets = parse_networks(&list)
            .map_err(|why| ApiError::field(ErrorCode::ValidationError, "api_networks", why))?;
        if !nets.is_empty() {
            match caller {
                Some(ip) if in_networks(&nets, ip) => {}
                Some(ip) => {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        "api_networks",
                        format!(
                            "the list leaves out your own address {ip}, so this change would lock you out; add it (or its network) to the list"
                        ),
                    ));
                }
                None => {
                    return Err(ApiError::field(
                        ErrorCode::ValidationError,
                        "api_networks",
                        "the server cannot tell which address this request came from, so it cannot check that the list keeps you in; change the list from a normal connection",
                    ));
                }
            }
        }
        policy.api_networks = nets.iter().map(ToString::to_string).collect();
    }
    let org = actor.org_id;
    let endpoints_json =
        serde_json::to_string(&policy.storage_endpoints).map_err(ApiError::internal)?;
    let networks_json = serde_json::to_string(&policy.api_networks).map_err(ApiError::internal)?;
    with_tx!(db, tx, {
        sqlx::query(
            "insert into access_policy (organization_id, storage_endpoints, api_networks, updated_at) \
             values ($1, $2, $3, $4) on conflict (organization_id) do update set \
             storage_endpoints = excluded.storage_endpoints, api_networks = excluded.api_networks, \
             updated_at = excluded.updated_at",
        )
        .bind(org)
        .bind(&endpoints_json)
        .bind(&networks_json)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "access_policy.update",
                "organization",
                org,
                json!({
                    "storage_endpoints": {"from": current.storage_endpoints, "to": policy.storage_endpoints},
                    "api_networks": {"from": current.api_networks, "to": policy.api_networks},
                })
            )
        );
        Ok::<_, ApiError>(())
    })?;
    Ok(policy)
}

/// Removes the organization's policy (the recovery path of `verity org access-policy
/// --clear`, run by the instance's operator); answers whether there was one. Audited as the
/// instance.
pub async fn clear(db: &Db, org: i64) -> ApiResult<bool> {
    let actor = Actor::instance(org, Default::default());
    let current = of_org(db, org).await?;
    let removed = with_tx!(db, tx, {
        let n = sqlx::query("delete from access_policy where organization_id = $1")
            .bind(org)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            audit!(
                tx,
                Prepared::new(
                    &actor,
                    "access_policy.clear",
                    "organization",
                    org,
                    json!({"storage_endpoints": {"from": current.storage_endpoints, "to": []},
                           "api_networks": {"from": current.api_networks, "to": []}})
                )
            );
        }
        Ok::<_, ApiError>(n > 0)
    })?;
    Ok(removed)
}

/// The address a request came from, for the API allow-list: the TCP `peer`, unless the peer
/// is one of the `trusted` proxies; then the `X-Forwarded-For` entries (`forwarded`, every
/// header value in order) are read from the right, skipping trusted proxies, and the first
/// other entry is the client. An entry that is not an address makes the client unknown (None),
/// as does a missing peer.
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded: &[&str],
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    if !in_networks(trusted, peer) {
        return Some(peer);
    }
    let entries: Vec<&str> = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let ip = parse_forwarded(entry)?;
        client = ip;
        if !in_networks(trusted, ip) {
            break;
        }
    }
    Some(client)
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`203.0.113.7:5123`,
/// `[2001:db8::1]:443`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = entry.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    entry.trim_matches(['[', ']']).parse::<IpAddr>().ok()
}

/// Refuses a request acting in `org` from an address outside the organization's API networks
/// (403 `client_not_allowed`); an unknown address is refused when the organization has a list.
pub async fn check_caller(db: &Db, org: i64, client: Option<IpAddr>) -> ApiResult<()> {
    check_networks(&of_org(db, org).await?.networks(), client)
}

/// Refuses `client` unless it lies in `nets` (empty: no restriction); see [`check_caller`].
pub fn check_networks(nets: &[ipnet::IpNet], client: Option<IpAddr>) -> ApiResult<()> {
    if nets.is_empty() {
        return Ok(());
    }
    match client {
        Some(ip) if in_networks(nets, ip) => Ok(()),
        Some(ip) => Err(ApiError::new(
            ErrorCode::ClientNotAllowed,
            format!(
                "this organization accepts requests only from its allowed networks, and {ip} is not in them; ask an organization administrator to add your network"
            ),
        )),
        None => Err(ApiError::new(
            ErrorCode::ClientNotAllowed,
            "this organization accepts requests only from its allowed networks, and the address of this request is unknown",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        parse_networks(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("nets")
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let trusted = nets(&["10.0.0.0/8"]);
        // An untrusted peer: the header is ignored.
        assert_eq!(
            client_address(ip("198.51.100.1"), &["203.0.113.9"], &trusted),
            ip("198.51.100.1")
        );
        // A trusted peer: the rightmost entry that is not a trusted proxy.
        assert_eq!(
            client_address(
                ip("10.0.0.1"),
                &["1.1.1.1, 203.0.113.9, 10.0.0.7"],
                &trusted
            ),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &["1.1.1.1", "203.0.113.9:4431"], &trusted),
            ip("203.0.113.9")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_address(ip("10.0.0.1"), &[], &trusted),
            ip("10.0.0.1")
        );
        // Garbage: unknown.
        assert_eq!(
            client_address(ip("10.0.0.1"), &["nonsense"], &trusted),
            None
        );
        assert_eq!(client_address(None, &[], &trusted), None);
        // Mapped addresses count as IPv4.
        assert!(in_networks(
            &trusted,
            "::ffff:10.1.2.3".parse().expect("ip")
        ));
        assert!(parse_networks(&["10.0.0.0/33".to_string()]).is_err());
    }

    #[test]
    fn endpoint_lists() {
        let list = EndpointAllowList::parse(&[
            "*.S3.amazonaws.com".to_string(),
            "minio.internal".to_string(),
            "10.1.0.0/16".to_string(),
            "".to_string(),
        ])
        .expect("list");
        assert!(list.names("bucket.s3.amazonaws.com"));
        assert!(list.names("s3.eu-west-1.S3.amazonaws.com."));
        assert!(!list.names("s3.amazonaws.com"));
        assert!(!list.names("evils3.amazonaws.com"));
        assert!(list.names("minio.internal"));
        assert!(!list.names("minio.internal.evil.com"));
        assert!(list.contains("10.1.2.3".parse().expect("ip")));
        assert!(!list.contains("10.2.0.1".parse().expect("ip")));
        assert_eq!(
            list.entries(),
            ["*.s3.amazonaws.com", "minio.internal", "10.1.0.0/16"]
        );
        assert!(EndpointAllowList::parse(&["http://x".to_string()]).is_err());
        assert!(EndpointAllowList::parse(&["*.".to_string()]).is_err());
        assert!(EndpointAllowList::parse(&[]).expect("empty").is_empty());
    }
}
