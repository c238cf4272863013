//! SAML 2.0 service provider protocol (ADR 0031): reading an identity provider's metadata,
//! making AuthnRequests (HTTP-Redirect binding), verifying responses (HTTP-POST binding), and
//! this service provider's metadata.
//!
//! Signature verification is libxmlsec1's, through the `samael` crate, built with the `saml`
//! feature. The response is reduced to what the signatures cover before anything in it is read,
//! which defeats signature wrapping; only SHA-256 and stronger signature algorithms are allowed.
//! Without the feature every entry point answers that this build has no SAML support.
//! Replay protection (assertion ids) and the account decisions live in `storage::saml`.

use std::collections::BTreeMap;

use crate::error::ApiResult;

/// What Verity needs from an identity provider's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct IdpInfo {
    /// The IdP's entity id (the Issuer its responses must carry).
    pub entity_id: String,
    /// Its single sign-on URL for the HTTP-Redirect binding.
    pub sso_url: String,
}

/// This service provider's identity within one organization.
#[derive(Debug, Clone)]
pub struct SpConfig {
    /// Entity id (the audience assertions must name): the metadata URL.
    pub entity_id: String,
    /// Assertion consumer service URL (where responses are posted; their Destination and
    /// Recipient must be exactly this).
    pub acs_url: String,
    /// Single logout URL advertised in the metadata.
    pub slo_url: String,
}

/// A response whose signature, issuer, audience, destination, recipient, request and validity
/// window were all verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The assertion's ID (remembered to refuse replays).
    pub assertion_id: String,
    /// The subject's NameID.
    pub name_id: Option<String>,
    /// Attribute values by attribute name (and by friendly name).
    pub attributes: BTreeMap<String, Vec<String>>,
    /// Until when the assertion could be accepted (UTC microseconds); it is remembered until
    /// then.
    pub valid_until: i64,
}

/// How long a response may be in transit (samael's issue-delay bound).
pub const MAX_ISSUE_DELAY_SECS: i64 = 90;
/// Clock skew tolerated on NotBefore / NotOnOrAfter.
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;

#[cfg(not(feature = "saml"))]
fn not_built() -> crate::error::ApiError {
    crate::error::ApiError::new(
        crate::error::ErrorCode::NotBuilt,
        "this build of Verity has no SAML support: build it with `--features saml` (it needs libxmlsec1)",
    )
}

/// Whether this build verifies SAML responses.
pub const fn available() -> bool {
    cfg!(feature = "saml")
}

#[cfg(feature = "saml")]
mod imp {
    use std::collections::BTreeMap;

    use samael::{
        crypto::AllowedSignatureAlgorithm,
        metadata::{EntityDescriptor, HTTP_REDIRECT_BINDING},
        service_provider::{ServiceProvider, ServiceProviderBuilder},
        traits::ToXml,
    };

    use super::{IdpInfo, SpConfig, Verified};
    use crate::error::{ApiError, ApiResult, ErrorCode};

    fn bad_metadata(message: impl Into<String>) -> ApiError {
        ApiError::field(ErrorCode::ValidationError, "metadata_xml", message)
    }

    fn descriptor(xml: &str) -> ApiResult<EntityDescriptor> {
        xml.parse::<EntityDescriptor>().map_err(|e| {
            bad_metadata(format!(
                "the identity provider metadata is not a SAML EntityDescriptor: {e}"
            ))
        })
    }

    fn provider(
        sp: &SpConfig,
        idp: EntityDescriptor,
        idp_initiated: bool,
    ) -> ApiResult<ServiceProvider> {
        ServiceProviderBuilder::default()
            .entity_id(sp.entity_id.clone())
            .metadata_url(sp.entity_id.clone())
            .acs_url(sp.acs_url.clone())
            .slo_url(sp.slo_url.clone())
            .idp_metadata(idp)
            .allow_idp_initiated(idp_initiated)
            .max_issue_delay(chrono::Duration::seconds(super::MAX_ISSUE_DELAY_SECS))
            .max_clock_skew(chrono::Duration::seconds(super::MAX_CLOCK_SKEW_SECS))
            .allowed_signature_algorithms(Some(vec![
                AllowedSignatureAlgorithm::RsaSha256,
                AllowedSignatureAlgorithm::RsaSha384,
                AllowedSignatureAlgorithm::RsaSha512,
                AllowedSignatureAlgorithm::EcdsaSha256,
                AllowedSignatureAlgorithm::EcdsaSha384,
                AllowedSignatureAlgorithm::EcdsaSha512,
            ]))
            .build()
            .map_err(|e| ApiError::internal(format!("SAML service provider: {e}")))
    }

    pub(super) fn idp_info(xml: &str) -> ApiResult<IdpInfo> {
        let d = descriptor(xml)?;
        let entity_id = d
            .entity_id
            .clone()
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| bad_metadata("the metadata has no entityID"))?;
        let sp = SpConfig {
            entity_id: String::new(),
            acs_url: String::new(),
            slo_url: String::new(),
        };
        let p = provider(&sp, d, false)?;
        let sso_url = p
            .sso_binding_location(HTTP_REDIRECT_BINDING)
            .ok_or_else(|| {
                bad_metadata(
                    "the metadata has no SingleSignOnService with the HTTP-Redirect binding",
                )
            })?;
        let certs = p.idp_signing_certs().map_err(|e| {
            bad_metadata(format!(
                "a signing certificate in the metadata cannot be read: {e}"
            ))
        })?;
        // samael skips signature checks when the metadata has no certificate: never allow that.
        if certs.is_none_or(|c| c.is_empty()) {
            return Err(bad_metadata(
                "the metadata has no signing certificate; Verity accepts only signed responses",
            ));
        }
        Ok(IdpInfo { entity_id, sso_url })
    }

    pub(super) fn authn_request(
        sp: &SpConfig,
        idp_xml: &str,
        relay_state: &str,
    ) -> ApiResult<(String, String)> {
        let info = idp_info(idp_xml)?;
        let p = provider(sp, descriptor(idp_xml)?, false)?;
        let request = p
            .make_authentication_request(&info.sso_url)
            .map_err(|e| ApiError::internal(format!("SAML AuthnRequest: {e}")))?;
        let url = request
            .redirect(relay_state)
            .map_err(|e| ApiError::internal(format!("SAML redirect: {e}")))?
            .ok_or_else(|| ApiError::internal("SAML AuthnRequest has no destination"))?;
        Ok((request.id.clone(), url.to_string()))
    }

    pub(super) fn verify(
        sp: &SpConfig,
        idp_xml: &str,
        response_b64: &str,
        request_id: Option<&str>,
    ) -> Result<Verified, String> {
        let idp = descriptor(idp_xml).map_err(|e| e.detail)?;
        let p = provider(sp, idp, request_id.is_none()).map_err(|e| e.detail)?;
        let xml = super::decode(response_b64)?;
        super::check_structure(&xml)?;
        let ids: Vec<&str> = request_id.into_iter().collect();
        let assertion = p
            .parse_xml_response(&xml, request_id.map(|_| ids.as_slice()))
            .map_err(|e| e.to_string())?;
        let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for statement in assertion.attribute_statements.iter().flatten() {
            for a in &statement.attributes {
                let values: Vec<String> = a
                    .values
                    .iter()
                    .filter_map(|v| v.value.clone())
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                for key in [a.name.as_ref(), a.friendly_name.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    attributes
                        .entry(key.clone())
                        .or_default()
                        .extend(values.iter().cloned());
                }
            }
        }
        let mut until =
            assertion.issue_instant + chrono::Duration::seconds(super::MAX_ISSUE_DELAY_SECS);
        if let Some(t) = assertion
            .conditions
            .as_ref()
            .and_then(|c| c.not_on_or_after)
        {
            until = until.max(t);
        }
        for c in assertion
            .subject
            .as_ref()
            .and_then(|s| s.subject_confirmations.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(t) = c
                .subject_confirmation_data
                .as_ref()
                .and_then(|d| d.not_on_or_after)
            {
                until = until.max(t);
            }
        }
        until += chrono::Duration::seconds(super::MAX_CLOCK_SKEW_SECS);
        Ok(Verified {
            assertion_id: assertion.id.clone(),
            name_id: assertion
                .subject
                .as_ref()
                .and_then(|s| s.name_id.as_ref())
                .map(|n| n.value.trim().to_string()),
            attributes,
            valid_until: until.timestamp_micros(),
        })
    }

    pub(super) fn sp_metadata(sp: &SpConfig, idp_xml: &str) -> ApiResult<String> {
        let p = provider(sp, descriptor(idp_xml)?, false)?;
        let d = p
            .metadata()
            .map_err(|e| ApiError::internal(format!("SAML metadata: {e}")))?;
        d.to_string()
            .map_err(|e| ApiError::internal(format!("SAML metadata: {e}")))
    }
}

const PROTOCOL_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const ASSERTION_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";

/// The XML of a base64 `SAMLResponse` (line breaks allowed, as some IdPs send them).
pub fn decode(response_b64: &str) -> Result<String, String> {
    use base64::Engine as _;
    let compact: String = response_b64
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("the SAMLResponse is not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "the SAMLResponse is not UTF-8 XML".to_string())
}

/// Refuses a response whose shape is not the one the Web SSO profile produces, before any
/// signature is checked: the root is a `samlp:Response` holding exactly one (possibly
/// encrypted) assertion as its direct child, signatures sit only on the response or that
/// assertion, and no two elements share an `ID`. Signature wrapping needs a second assertion or
/// a signed element moved elsewhere, so it fails here whatever the signature library would make
/// of it. A DTD is refused by the parser (no entity expansion).
pub fn check_structure(xml: &str) -> Result<(), String> {
    let doc =
        roxmltree::Document::parse(xml).map_err(|e| format!("the response is not XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(PROTOCOL_NS) || root.tag_name().name() != "Response" {
        return Err("the document is not a samlp:Response".into());
    }
    let assertions: Vec<_> = doc
        .descendants()
        .filter(|n| {
            n.is_element()
                && n.tag_name().namespace() == Some(ASSERTION_NS)
                && matches!(n.tag_name().name(), "Assertion" | "EncryptedAssertion")
        })
        .collect();
    let [assertion] = assertions.as_slice() else {
        return Err(format!(
            "the response holds {} assertions; exactly one is accepted",
            assertions.len()
        ));
    };
    if assertion.parent_element() != Some(root) {
        return Err("the assertion is not a direct child of the response".into());
    }
    for sig in doc.descendants().filter(|n| {
        n.is_element()
            && n.tag_name().namespace() == Some(DSIG_NS)
            && n.tag_name().name() == "Signature"
    }) {
        let parent = sig.parent_element();
        if parent != Some(root) && parent != Some(*assertion) {
            return Err("a signature sits outside the response and its assertion".into());
        }
    }
    let mut ids = std::collections::BTreeSet::new();
    for n in doc.descendants().filter(|n| n.is_element()) {
        if let Some(id) = n.attribute("ID")
            && !ids.insert(id)
        {
            return Err(format!("two elements share the ID {id:?}"));
        }
    }
    Ok(())
}

/// Reads an identity provider's metadata: its entity id and Redirect-binding SSO URL. Refuses
/// metadata without a signing certificate (responses could not be verified).
pub fn idp_info(xml: &str) -> ApiResult<IdpInfo> {
    #[cfg(feature = "saml")]
    return imp::idp_info(xml);
    #[cfg(not(feature = "saml"))]
    {
        let _ = xml;
        Err(not_built())
    }
}

/// Makes an AuthnRequest for the IdP and the URL that sends the browser there with it
/// (`RelayState` = `relay_state`): `(request id, url)`.
pub fn authn_request(
    sp: &SpConfig,
    idp_xml: &str,
    relay_state: &str,
) -> ApiResult<(String, String)> {
    #[cfg(feature = "saml")]
    return imp::authn_request(sp, idp_xml, relay_state);
    #[cfg(not(feature = "saml"))]
    {
        let _ = (sp, idp_xml, relay_state);
        Err(not_built())
    }
}

/// Verifies a base64 `SAMLResponse`: a response to the AuthnRequest `request_id`, or, when
/// `None`, an unsolicited (IdP-initiated) one. The error is the reason, for the audit log only.
pub fn verify(
    sp: &SpConfig,
    idp_xml: &str,
    response_b64: &str,
    request_id: Option<&str>,
) -> Result<Verified, String> {
    #[cfg(feature = "saml")]
    return imp::verify(sp, idp_xml, response_b64, request_id);
    #[cfg(not(feature = "saml"))]
    {
        let _ = (sp, idp_xml, response_b64, request_id);
        Err(not_built().detail)
    }
}

/// This service provider's metadata XML for the organization.
pub fn sp_metadata(sp: &SpConfig, idp_xml: &str) -> ApiResult<String> {
    #[cfg(feature = "saml")]
    return imp::sp_metadata(sp, idp_xml);
    #[cfg(not(feature = "saml"))]
    {
        let _ = (sp, idp_xml);
        Err(not_built())
    }
}

#[cfg(test)]
mod tests {
    use super::check_structure;

    const P: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
    const A: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
    const D: &str = "http://www.w3.org/2000/09/xmldsig#";

    fn response(inner: &str) -> String {
        format!(
            r#"<samlp:Response xmlns:samlp="{P}" xmlns:saml="{A}" xmlns:ds="{D}" ID="r1">{inner}</samlp:Response>"#
        )
    }

    #[test]
    fn the_profile_shape_passes() {
        let xml =
            response(r#"<ds:Signature/><saml:Assertion ID="a1"><ds:Signature/></saml:Assertion>"#);
        assert_eq!(check_structure(&xml), Ok(()));
    }

    #[test]
    fn wrapped_and_odd_shapes_are_refused() {
        for inner in [
            // two assertions (evil first, or the signed one tucked away)
            r#"<saml:Assertion ID="e"/><saml:Assertion ID="a1"><ds:Signature/></saml:Assertion>"#,
            r#"<saml:Assertion ID="e"><saml:Assertion ID="a1"><ds:Signature/></saml:Assertion></saml:Assertion>"#,
            r#"<samlp:Extensions><saml:Assertion ID="a1"/></samlp:Extensions><saml:Assertion ID="e"/>"#,
            // none, or one nested deeper
            "",
            r#"<samlp:Extensions><saml:Assertion ID="a1"/></samlp:Extensions>"#,
            // a signature somewhere else
            r#"<saml:Assertion ID="a1"><saml:Subject><ds:Signature/></saml:Subject></saml:Assertion>"#,
            // duplicated ids
            r#"<saml:Assertion ID="r1"/>"#,
        ] {
            assert!(check_structure(&response(inner)).is_err(), "{inner}");
        }
        assert!(check_structure(&format!(r#"<saml:Assertion xmlns:saml="{A}" ID="a"/>"#)).is_err());
        let dtd = format!(
            r#"<!DOCTYPE x [<!ENTITY e "boom">]>{}"#,
            response(r#"<saml:Assertion ID="a1">&e;</saml:Assertion>"#)
        );
        assert!(check_structure(&dtd).is_err());
        assert!(check_structure("not xml").is_err());
    }
}
