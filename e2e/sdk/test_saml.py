"""SAML 2.0 single sign-on against a running `verity serve` (ADR 0031), with a real identity
provider: pysaml2 (PyPI) signing through xmlsec1 (Debian), as an IdP in this process.

The good path is SP-initiated: Verity's /saml/{org}/login sends an AuthnRequest, the IdP answers
it, and the browser posts the signed response to the ACS. The negative suite posts responses that
must all be refused: unsigned, signed with another key, SHA-1, expired, not yet valid, for another
audience or destination, answering another request, replayed, and signature-wrapped. None may open a session
or create the account it names, and each refusal is audited with its reason.
"""

from __future__ import annotations

import base64
import html
import copy
import os
import subprocess
import tempfile
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from unittest import mock

import pytest
import requests
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

IDP_ENTITY = "https://idp.saml.test/metadata"
IDP_SSO = "https://idp.saml.test/sso"
XMLSEC = "/usr/bin/xmlsec1"
OTHER_SP = "https://other.example/metadata"

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}


def _keypair(directory: str, name: str) -> tuple[str, str]:
    key = os.path.join(directory, f"{name}.key")
    cert = os.path.join(directory, f"{name}.crt")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
         f"/CN={name}", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return key, cert


def _idp(key: str, cert: str, sp_metadata: list[str], lifetime_minutes: int = 5) -> Server:
    conf = {
        "entityid": IDP_ENTITY,
        "service": {
            "idp": {
                "endpoints": {"single_sign_on_service": [(IDP_SSO, BINDING_HTTP_REDIRECT)]},
                "policy": {"default": {"lifetime": {"minutes": lifetime_minutes},
                                       "attribute_restrictions": None}},
                "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                "want_authn_requests_signed": False,
            }
        },
        "key_file": key,
        "cert_file": cert,
        "xmlsec_binary": XMLSEC,
        "metadata": {"inline": sp_metadata} if sp_metadata else {},
    }
    config = IdPConfig()
    config.load(copy.deepcopy(conf))
    return Server(config=config)


class Org:
    def __init__(self, verity, domain: str):
        self.verity = verity
        self.domain = domain
        self.headers = {"Authorization": f"Token {verity.admin_token}"}
        me = requests.get(f"{verity.base_url}/api/current-user/whoami", headers=self.headers,
                          timeout=30).json()
        self.id = me["active_organization"]


@pytest.fixture(scope="module")
def saml(verity):
    """The organization set up for single sign-on with a pysaml2 IdP."""
    tmp = tempfile.mkdtemp(prefix="verity-saml-")
    key, cert = _keypair(tmp, "idp")
    evil_key, evil_cert = _keypair(tmp, "evil")
    org = Org(verity, "saml-a.test")
    # The IdP's metadata comes first (it does not need the SP's).
    bare = _idp(key, cert, [])
    idp_metadata = create_metadata_string(None, config=bare.config, valid=4).decode()
    settings = {
        "domain": org.domain,
        "metadata_xml": idp_metadata,
        "mapping_email": "email",
        "mapping_first_name": "givenName",
        "mapping_last_name": "sn",
        "mapping_groups": "groups",
        "roles_groups": [["Manager", "leads"], ["Reviewer", "qa"]],
        "workspaces_groups": [["SSO workspace", "leads"]],
    }
    r = requests.post(f"{verity.base_url}/api/saml/settings", json=settings, headers=org.headers,
                      timeout=30)
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["enabled"] and view["available"]
    assert view["idp_entity_id"] == IDP_ENTITY and view["idp_sso_url"] == IDP_SSO
    sp_metadata = requests.get(view["metadata_xml_url"], timeout=30)
    assert sp_metadata.status_code == 200, sp_metadata.text
    # A second service provider the IdP knows, to issue assertions for another audience.
    other_sp = sp_metadata.text.replace(view["metadata_xml_url"], OTHER_SP)
    sps = [sp_metadata.text, other_sp]
    idp = _idp(key, cert, sps)
    evil = _idp(evil_key, evil_cert, sps)
    expired = _idp(key, cert, sps, lifetime_minutes=-10)
    return {"org": org, "view": view, "idp": idp, "evil": evil, "expired": expired, "key": key,
            "cert": cert}


def _start(verity, org_id: int, next_path: str = "/projects") -> tuple[str, str]:
    """Starts an SP-initiated sign-in: (AuthnRequest id, RelayState)."""
    r = requests.get(f"{verity.base_url}/saml/{org_id}/login", params={"next": next_path},
                     allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    location = urllib.parse.urlparse(r.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == IDP_SSO
    q = urllib.parse.parse_qs(location.query)
    return q["SAMLRequest"][0], q["RelayState"][0]


def _respond(s, idp: Server, saml_request: str, email: str, groups=(), **overrides) -> str:
    """The IdP's signed answer to an AuthnRequest, as base64."""
    req = idp.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
    args = {
        "identity": {"email": [email], "givenName": ["Ada"], "sn": ["Lovelace"],
                     "groups": list(groups)},
        "in_response_to": req.message.id,
        "destination": s["view"]["acs_url"],
        "sp_entity_id": s["view"]["metadata_xml_url"],
        "name_id": NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email),
        "sign_response": True,
        "sign_assertion": True,
        "sign_alg": SIG_RSA_SHA256,
        "digest_alg": DIGEST_SHA256,
    }
    args.update(overrides)
    xml = str(idp.create_authn_response(**args))
    return base64.b64encode(xml.encode()).decode()


def _post(verity, org_id: int, response_b64: str, relay: str = "") -> requests.Response:
    return requests.post(f"{verity.base_url}/saml/{org_id}/acs",
                         data={"SAMLResponse": response_b64, "RelayState": relay},
                         allow_redirects=False, timeout=30)


def _whoami(verity, cookie: str) -> dict:
    r = requests.get(f"{verity.base_url}/api/current-user/whoami",
                     cookies={"verity_session": cookie}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _member(verity, org, email: str) -> dict | None:
    r = requests.get(f"{verity.base_url}/api/organizations/{org.id}/memberships",
                     params={"page_size": 1000}, headers=org.headers, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    rows = body["results"] if isinstance(body, dict) else body
    return next((m for m in rows if m["user"]["email"] == email), None)


def test_sp_initiated_sign_in_creates_the_user_and_applies_groups(verity, saml):
    org = saml["org"]
    email = f"ada-{uuid.uuid4().hex[:8]}@{org.domain}"
    request, relay = _start(verity, org.id, "/projects?page=2")
    r = _post(verity, org.id, _respond(saml, saml["idp"], request, email, groups=["leads"]), relay)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/projects?page=2"
    cookie = r.cookies.get("verity_session")
    assert cookie
    me = _whoami(verity, cookie)
    assert me["email"] == email and me["first_name"] == "Ada" and me["last_name"] == "Lovelace"
    member = _member(verity, org, email)
    assert member and member["role"] in ("MA", "manager", "Manager"), member
    ws = requests.get(f"{verity.base_url}/api/workspaces", headers=org.headers, timeout=30).json()
    ws = ws["results"] if isinstance(ws, dict) else ws
    sso_ws = next(w for w in ws if w["title"] == "SSO workspace")
    ws_members = requests.get(f"{verity.base_url}/api/workspaces/{sso_ws['id']}/memberships",
                              headers=org.headers, timeout=30).json()
    ws_members = ws_members["results"] if isinstance(ws_members, dict) else ws_members
    assert any(m["user"] == me["id"] or (isinstance(m["user"], dict) and m["user"]["id"] == me["id"])
               for m in ws_members), ws_members

    # At the next sign-in the groups changed: the role and the workspace follow.
    request, relay = _start(verity, org.id)
    r = _post(verity, org.id, _respond(saml, saml["idp"], request, email, groups=["qa"]), relay)
    assert r.status_code == 303, r.text
    member = _member(verity, org, email)
    assert member["role"] in ("RE", "reviewer", "Reviewer"), member


def test_idp_initiated_sign_in_and_replay(verity, saml):
    org = saml["org"]
    email = f"grace-{uuid.uuid4().hex[:8]}@{org.domain}"
    unsolicited = _respond(saml, saml["idp"], _start(verity, org.id)[0], email, in_response_to=None)
    r = _post(verity, org.id, unsolicited)
    assert r.status_code == 303, r.text
    assert r.cookies.get("verity_session")
    # The same response again is a replay.
    again = _post(verity, org.id, unsolicited)
    assert again.status_code == 401, again.text
    assert "verity_session" not in again.cookies


BAD = {
    "unsigned": lambda s, req, email: _respond(s, s["idp"], req, email, sign_response=False,
                                               sign_assertion=False),
    "wrong key": lambda s, req, email: _respond(s, s["evil"], req, email),
    "sha1": lambda s, req, email: _respond(s, s["idp"], req, email, sign_alg=SIG_RSA_SHA1,
                                           digest_alg=DIGEST_SHA1),
    "expired": lambda s, req, email: _respond(s, s["expired"], req, email),
    "wrong audience": lambda s, req, email: _respond(s, s["idp"], req, email,
                                                     sp_entity_id=OTHER_SP),
    "wrong destination": lambda s, req, email: _respond(s, s["idp"], req, email,
                                                        destination="https://other.example/acs"),
    "other request": lambda s, req, email: _respond(s, s["idp"], req, email,
                                                    in_response_to="id-not-ours"),
    "not yet valid": lambda s, req, email: _not_yet_valid(s, req, email),
}

# What the audit log says for each (the user is told none of it).
REASONS = {
    "unsigned": "must be signed",
    "wrong key": "must be signed",
    "sha1": "must be signed",
    "expired": "expired",
    "wrong audience": "AudienceRequirement",
    "wrong destination": "destination does not match",
    "other request": "InResponseTo",
    "not yet valid": "not valid until",
}


def _not_yet_valid(s, req, email) -> str:
    """Conditions NotBefore ten minutes ahead (beyond the 60 s of tolerated clock skew)."""
    ahead = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    with mock.patch("saml2.assertion.instant", return_value=ahead):
        return _respond(s, s["idp"], req, email)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_responses_are_refused(verity, saml, case):
    org = saml["org"]
    email = f"mallory-{uuid.uuid4().hex[:8]}@{org.domain}"
    request, relay = _start(verity, org.id)
    r = _post(verity, org.id, BAD[case](saml, request, email), relay)
    assert r.status_code == 401, f"{case}: {r.status_code} {r.text[:300]}"
    assert "verity_session" not in r.cookies
    assert "Single sign-on did not succeed" in r.text
    assert _member(verity, org, email) is None, f"{case}: the account was created"
    log = requests.get(f"{verity.base_url}/api/audit-log", params={"action": "auth.login_failed"},
                       headers=org.headers, timeout=30).json()
    rows = log["results"] if isinstance(log, dict) else log
    assert any("saml" in str(row.get("summary")) and REASONS[case] in str(row.get("summary"))
               for row in rows), (case, rows[:3])


def _wrapped(signed_b64: str, evil_email: str, variant: str) -> str:
    """Signature wrapping: an assertion for `evil_email` where the code reads, the signed one
    moved where the signature still verifies."""
    for prefix, uri in NS.items():
        ET.register_namespace(prefix, uri)
    root = ET.fromstring(base64.b64decode(signed_b64))
    signed = root.find("saml:Assertion", NS)
    evil = copy.deepcopy(signed)
    evil.set("ID", "_evil" + uuid.uuid4().hex)
    for sig in evil.findall("ds:Signature", NS):
        evil.remove(sig)
    for name_id in evil.iter(f"{{{NS['saml']}}}NameID"):
        name_id.text = evil_email
    for value in evil.iter(f"{{{NS['saml']}}}AttributeValue"):
        if value.text and "@" in value.text:
            value.text = evil_email
    index = list(root).index(signed)
    if variant == "evil first":
        root.insert(index, evil)
    elif variant == "signed inside evil":
        root.remove(signed)
        evil.append(signed)
        root.insert(index, evil)
    elif variant == "signed in extensions":
        root.remove(signed)
        ext = ET.SubElement(root, f"{{{NS['samlp']}}}Extensions")
        ext.append(signed)
        root.remove(ext)
        root.insert(1, ext)
        root.insert(index + 1, evil)
    return base64.b64encode(ET.tostring(root)).decode()


@pytest.mark.parametrize("variant", ["evil first", "signed inside evil", "signed in extensions"])
def test_signature_wrapping_never_signs_in_the_wrapped_identity(verity, saml, variant):
    org = saml["org"]
    victim = f"victim-{uuid.uuid4().hex[:8]}@{org.domain}"
    evil_email = f"evil-{uuid.uuid4().hex[:8]}@{org.domain}"
    request, relay = _start(verity, org.id)
    # Only the assertion is signed, as many IdPs do: the wrapping has room to work.
    signed = _respond(saml, saml["idp"], request, victim, sign_response=False)
    r = _post(verity, org.id, _wrapped(signed, evil_email, variant), relay)
    assert r.status_code == 401, f"{variant}: {r.status_code} {r.text[:300]}"
    assert "verity_session" not in r.cookies
    assert _member(verity, org, evil_email) is None


def test_manual_role_management_off_refuses_role_edits(verity, saml):
    org = saml["org"]
    email = f"role-{uuid.uuid4().hex[:8]}@{org.domain}"
    request, relay = _start(verity, org.id)
    r = _post(verity, org.id, _respond(saml, saml["idp"], request, email), relay)
    assert r.status_code == 303, r.text
    user_id = _whoami(verity, r.cookies["verity_session"])["id"]
    current = requests.get(f"{verity.base_url}/api/saml/settings", headers=org.headers,
                           timeout=30).json()
    body = {k: current[k] for k in ("domain", "metadata_xml", "mapping_email", "mapping_first_name",
                                    "mapping_last_name", "mapping_groups", "roles_groups",
                                    "workspaces_groups")}
    try:
        body["manual_role_management"] = False
        r = requests.post(f"{verity.base_url}/api/saml/settings", json=body, headers=org.headers,
                          timeout=30)
        assert r.status_code == 200, r.text
        r = requests.patch(f"{verity.base_url}/api/organizations/{org.id}/memberships",
                           json={"user_id": user_id, "role": "MA"}, headers=org.headers, timeout=30)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "managed_by_idp"
    finally:
        body["manual_role_management"] = True
        r = requests.post(f"{verity.base_url}/api/saml/settings", json=body, headers=org.headers,
                          timeout=30)
        assert r.status_code == 200, r.text
    r = requests.patch(f"{verity.base_url}/api/organizations/{org.id}/memberships",
                       json={"user_id": user_id, "role": "MA"}, headers=org.headers, timeout=30)
    assert r.status_code == 200, r.text


def test_sign_in_page_finds_the_organization_by_email_domain(verity, saml):
    org = saml["org"]
    r = requests.get(f"{verity.base_url}/user/login/sso",
                     params={"email": f"x@{org.domain.upper()}", "next": "/projects"}, timeout=30)
    assert r.status_code == 200, r.text
    assert f"/saml/{org.id}/login?next=%2Fprojects" in html.unescape(r.text)
    r = requests.get(f"{verity.base_url}/user/login/sso", params={"email": "x@elsewhere.test"},
                     timeout=30)
    assert r.status_code == 404


def test_settings_are_checked(verity, saml):
    org = saml["org"]
    url = f"{verity.base_url}/api/saml/settings"
    current = requests.get(url, headers=org.headers, timeout=30).json()
    base = {"domain": "other-org.test", "metadata_xml": current["metadata_xml"]}
    cases = [
        ({**base, "domain": ""}, "domain"),
        ({**base, "domain": "not a domain"}, "domain"),
        ({**base, "metadata_xml": "<nope/>"}, "metadata_xml"),
        ({"domain": "x.test"}, "metadata_xml"),
        ({**base, "roles_groups": [["Owner", "root"]]}, "roles_groups"),
        ({**base, "surprise": 1}, None),
        ({**base, "metadata_xml": None, "metadata_url": "http://10.1.2.3/metadata"}, "metadata_url"),
    ]
    for body, field in cases:
        r = requests.post(url, json=body, headers=org.headers, timeout=30)
        assert r.status_code == 400, (body, r.text)
        if field:
            assert field in r.text, (body, r.text)
    # Nothing changed.
    assert requests.get(url, headers=org.headers, timeout=30).json() == current


def test_the_same_email_in_two_organizations_is_two_accounts(verity, saml):
    """A second organization with its own IdP settings: signing in there with an email that is
    already an account of the first organization makes the second organization's own account."""
    slug = f"saml-b-{uuid.uuid4().hex[:6]}"
    res = verity.cli("org", "create", "--name", slug, "--owner-email", f"owner@{slug}.test",
                     "--slug", slug)
    assert res.returncode == 0, res.stderr
    owner = {"Authorization": f"Token {res.stdout.strip()}"}
    org_b = requests.get(f"{verity.base_url}/api/current-user/whoami", headers=owner,
                         timeout=30).json()["active_organization"]
    org_a = saml["org"]
    shared = f"shared-{uuid.uuid4().hex[:6]}@{slug}.test"
    # The first organization's account with that email (made by its admin).
    r = requests.post(f"{verity.base_url}/api/users", json={"email": shared, "role": "annotator"},
                      headers=org_a.headers, timeout=30)
    assert r.status_code == 201, r.text
    a_id = r.json()["id"]
    current = requests.get(f"{verity.base_url}/api/saml/settings", headers=org_a.headers,
                           timeout=30).json()
    r = requests.post(f"{verity.base_url}/api/saml/settings",
                      json={"domain": f"{slug}.test", "metadata_xml": current["metadata_xml"],
                            "mapping_email": "email"}, headers=owner, timeout=30)
    assert r.status_code == 200, r.text
    view_b = r.json()
    # The IdP must know the second organization's service provider too.
    sp_b = requests.get(view_b["metadata_xml_url"], timeout=30).text
    idp = _idp(saml["key"], saml["cert"], [sp_b])
    request, relay = _start(verity, org_b)
    req = idp.parse_authn_request(request, BINDING_HTTP_REDIRECT)
    xml = str(idp.create_authn_response(
        identity={"email": [shared]}, in_response_to=req.message.id,
        destination=view_b["acs_url"], sp_entity_id=view_b["metadata_xml_url"],
        name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=shared), sign_response=True,
        sign_assertion=True, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256))
    r = _post(verity, org_b, base64.b64encode(xml.encode()).decode(), relay)
    assert r.status_code == 303, r.text
    me = _whoami(verity, r.cookies["verity_session"])
    assert me["email"] == shared and me["id"] != a_id
    assert me["active_organization"] == org_b
    # Domains are not shared between organizations.
    r = requests.post(f"{verity.base_url}/api/saml/settings",
                      json={"domain": org_a.domain, "metadata_xml": current["metadata_xml"]},
                      headers=owner, timeout=30)
    assert r.status_code == 409, r.text
