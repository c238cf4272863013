//! Where outgoing requests may go. Webhooks, ML backends and storage endpoints reach addresses
//! users give; by default only public ones: private, loopback, link-local and other reserved
//! addresses are refused unless the administrator allows them (`allow_private_targets`,
//! `VERITY_ALLOW_PRIVATE_TARGETS`). The check runs on the resolved addresses of every
//! connection and on every redirect, so a name that resolves to a private address (or a
//! redirect to one) is refused as well as a literal one (ADR 0015).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

/// Which non-public addresses outgoing requests (webhooks, ML backends, storage endpoints) may
/// reach: none by default, all with `true`, or the listed networks (`10.0.0.0/8,127.0.0.2`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    all: bool,
    nets: Vec<ipnet::IpNet>,
    /// The organization's storage allow-list (ADR 0053), for storage endpoints only; `None`
    /// (or an empty list) restricts nothing beyond the server-wide rules.
    endpoints: Option<Arc<EndpointAllowList>>,
}

/// Where an organization's S3, GCS and Azure storages may connect (ADR 0053): host names
/// (`minio.internal`, or `*.example.com` for the names below `example.com`) and networks
/// (`10.0.0.0/8`, a single address). An endpoint is allowed when its host name is listed, or
/// when its address (the literal one, or every address its name resolves to) lies in a listed
/// network. Empty: no restriction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointAllowList {
    hosts: Vec<String>,
    nets: Vec<ipnet::IpNet>,
    entries: Vec<String>,
}

/// The words every refusal by an organization's allow-list carries, so that a refusal that
/// travelled through an HTTP client's error can be told apart.
pub const NOT_IN_ALLOW_LIST: &str = "is not in the organization's storage allow-list";

impl EndpointAllowList {
    /// Parses the entries of the list; answers what is wrong with the first bad one.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut list = Self::default();
        for raw in entries {
            let entry = raw.trim();
            if entry.is_empty() {
                continue;
            }
            if let Ok(net) = entry.parse::<ipnet::IpNet>() {
                list.nets.push(net.trunc());
                list.entries.push(net.trunc().to_string());
            } else if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                list.nets.push(ipnet::IpNet::from(canonical(ip)));
                list.entries.push(canonical(ip).to_string());
            } else {
                let host = entry.to_ascii_lowercase();
                let name = host.strip_prefix("*.").unwrap_or(&host);
                let valid_label = |l: &str| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                };
                if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
                    return Err(format!(
                        "{entry:?} is neither a host name (minio.example.com, *.s3.amazonaws.com), an address nor a network (10.0.0.0/8)"
                    ));
                }
                list.entries.push(host.clone());
                list.hosts.push(host);
            }
        }
        Ok(list)
    }

    /// Whether the list restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty()
    }

    /// The entries, normalised (lowercase names, networks in CIDR form).
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Whether a host name is listed (exactly, or below a `*.` entry).
    pub fn names(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => *h == host,
        })
    }

    /// Whether an address lies in a listed network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The refusal of `host` (resolved to `ip`, when it was).
    pub fn refusal(&self, host: &str, ip: Option<IpAddr>) -> String {
        let resolved = match ip {
            Some(ip) if ip.to_string() != host => format!(" (it resolves to {ip})"),
            _ => String::new(),
        };
        format!(
            "the endpoint {host}{resolved} {NOT_IN_ALLOW_LIST} ({}); an organization administrator can change it at /api/access-policy",
            self.entries.join(", ")
        )
    }
}

impl TargetPolicy {
    /// Parses the `allow_private_targets` setting.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        match spec.to_ascii_lowercase().as_str() {
            "" | "false" | "no" | "0" => return Ok(Self::default()),
            "true" | "yes" | "1" => {
                return Ok(Self {
                    all: true,
                    ..Self::default()
                });
            }
            _ => {}
        }
        let mut nets = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.parse::<ipnet::IpNet>() {
                Ok(n) => n,
                Err(_) => part.parse::<IpAddr>().map(ipnet::IpNet::from).map_err(|_| {
                    format!(
                        "allow_private_targets: {part:?} is neither an address nor a network (CIDR); use true, false or a comma-separated list such as 10.0.0.0/8,127.0.0.1"
                    )
                })?,
            };
            nets.push(net);
        }
        Ok(Self {
            all: false,
            nets,
            endpoints: None,
        })
    }

    /// This policy narrowed by an organization's storage allow-list (an empty list narrows
    /// nothing).
    pub fn with_endpoints(&self, list: EndpointAllowList) -> Self {
        Self {
            endpoints: (!list.is_empty()).then(|| Arc::new(list)),
            ..self.clone()
        }
    }

    /// The organization's storage allow-list, if one applies.
    pub fn endpoints(&self) -> Option<&EndpointAllowList> {
        self.endpoints.as_deref()
    }

    /// Which of a name's resolved addresses a connection may use: the server-wide rule, and
    /// the organization's allow-list unless the name itself is listed.
    fn permits_resolved(&self, host: &str, ip: IpAddr) -> bool {
        self.permits(ip)
            && self
                .endpoints
                .as_ref()
                .is_none_or(|list| list.names(host) || list.contains(ip))
    }

    /// Whether a request may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        is_public(ip) || self.all || self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Checks a target URL as far as it can be checked without resolving it: `http` or `https`,
    /// a host, no credentials, and a literal address only where permitted.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| format!("{url:?} is not an absolute URL ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "the URL must use http or https, not {}",
                parsed.scheme()
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(
                "the URL must not carry credentials; send them in a custom header".to_string(),
            );
        }
        match parsed.host() {
            None => Err("the URL has no host".to_string()),
            Some(url::Host::Ipv4(ip)) => self.literal(IpAddr::V4(ip)).map(|()| parsed),
            Some(url::Host::Ipv6(ip)) => self.literal(IpAddr::V6(ip)).map(|()| parsed),
            Some(url::Host::Domain(name)) => match &self.endpoints {
                // A name that is not listed may still resolve into a listed network; the
                // resolver decides that on every connection.
                Some(list) if !list.names(name) && list.nets.is_empty() => {
                    Err(list.refusal(name, None))
                }
                _ => Ok(parsed),
            },
        }
    }

    fn literal(&self, ip: IpAddr) -> Result<(), String> {
        if !self.permits(ip) {
            return Err(refusal(&ip.to_string(), ip));
        }
        match &self.endpoints {
            Some(list) if !list.contains(ip) => Err(list.refusal(&ip.to_string(), None)),
            _ => Ok(()),
        }
    }
}

fn refusal(host: &str, ip: IpAddr) -> String {
    format!(
        "{host} is a private, loopback or link-local address ({ip}); an administrator can allow such targets with VERITY_ALLOW_PRIVATE_TARGETS"
    )
}

/// An IPv4 address mapped into IPv6 (or NAT64) is judged as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d));
            }
            ip
        }
        v4 => v4,
    }
}

/// Whether an address is globally reachable: not loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast, documentation or otherwise reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// The error a refused resolution carries through the HTTP client.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Resolves names and keeps only the addresses the policy permits; none left is an error.
struct GuardedResolver {
    policy: Arc<TargetPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let first = found.first().map(SocketAddr::ip);
            let permitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.permits_resolved(&host, a.ip()))
                .collect();
            // When some address passed the server-wide rule, the organization's list refused.
            let listed_out = policy
                .endpoints
                .as_ref()
                .filter(|_| found.iter().any(|a| policy.permits(a.ip())));
            match (permitted.is_empty(), first) {
                (false, _) => Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs),
                (true, Some(ip)) => Err(Box::new(Refused(match listed_out {
                    Some(list) => list.refusal(&host, Some(ip)),
                    None => refusal(&host, ip),
                })) as _),
                (true, None) => Err(format!("{host} resolves to no address").into()),
            }
        })
    }
}

/// The client builder for outgoing requests to user-given addresses (webhooks, ML backends,
/// storage endpoints): the policy applies to every resolved address of every connection and to
/// every redirect (at most 3); environment proxies are ignored (they would resolve the name
/// themselves). Callers add timeouts and build.
pub fn guarded_builder(policy: Arc<TargetPolicy>) -> reqwest::ClientBuilder {
    let for_redirects = policy.clone();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 3 {
                return attempt.error(Refused("more than 3 redirects".into()));
            }
            match for_redirects.check_url(attempt.url().as_str()) {
                Ok(_) => attempt.follow(),
                Err(why) => attempt.error(Refused(format!("redirect refused: {why}"))),
            }
        }))
        .no_proxy()
}

/// The message of a failed request, with the policy's refusal when that was the cause.
pub fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<Refused>() {
            return format!("refused: {refused}");
        }
        source = s.source();
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
