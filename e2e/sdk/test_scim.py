"""SCIM 2.0 provisioning against a running `verity serve` (ADR 0029).

The conformance part runs scim2-tester (PyPI), which discovers the server's schemas and resource
types and then creates, reads, replaces, patches and deletes Users and Groups with values it
generates from those schemas. Every check must end without ERROR or CRITICAL. The rest checks
what an identity provider relies on: the token from the command line, de-provisioning that
ends API access at once, and group membership that grants a role.
"""

import httpx2
import requests
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

FAILING = {Status.ERROR, Status.CRITICAL}


def _org_id(verity) -> int:
    r = requests.get(
        f"{verity.base_url}/api/current-user/whoami",
        headers={"Authorization": f"Token {verity.admin_token}"},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()["active_organization"]


def _scim_token(verity) -> str:
    """A fresh provisioning token from `verity org scim-token` (the previous one is revoked)."""
    res = verity.cli("org", "scim-token", "--org", str(_org_id(verity)))
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip()
    assert token.startswith("scim_"), res.stdout
    return token


def _client(verity, token: str) -> SyncSCIMClient:
    http = httpx2.Client(
        base_url=f"{verity.base_url}/scim/v2",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    client = SyncSCIMClient(http)
    client.discover()
    return client


def test_scim2_tester_finds_no_error(verity):
    client = _client(verity, _scim_token(verity))
    results = check_server(client, raise_exceptions=False)
    ran = [r for r in results if r.status != Status.SKIPPED]
    # Discovery, create, read, replace, delete and PATCH of both resource types ran.
    assert len(ran) >= 20, [(r.title, r.status) for r in results]
    for tag in ("discovery", "crud:create", "crud:read", "crud:update", "crud:delete", "patch:add",
                "patch:remove", "patch:replace"):
        assert any(tag in r.tags for r in ran), f"no {tag} check ran"
    for resource_type in ("User", "Group"):
        assert any(r.resource_type == resource_type for r in ran), f"no check on {resource_type}"
    failed = [
        f"{r.status.name}: {r.title} [{r.resource_type}] {r.reason}" for r in results if r.status in FAILING
    ]
    assert failed == [], "\n".join(failed)


def test_deprovisioning_and_group_roles_reach_the_api(verity):
    token = _scim_token(verity)
    base = f"{verity.base_url}/scim/v2"
    scim = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    admin = {"Authorization": f"Token {verity.admin_token}"}
    org = _org_id(verity)
    # Members of "Labeling Leads" become managers.
    r = requests.post(
        f"{verity.base_url}/api/scim/settings",
        headers=admin,
        json={"roles_groups": [["Manager", "Labeling Leads"]]},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    # An existing member (created the usual way, with an API token) is adopted by email.
    member_token = verity.create_user("scim-member@example.com", "annotator")
    me = requests.get(
        f"{verity.base_url}/api/current-user/whoami",
        headers={"Authorization": f"Token {member_token}"},
        timeout=30,
    ).json()
    user = requests.post(
        f"{base}/Users",
        headers=scim,
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "scim-member",
            "emails": [{"value": "scim-member@example.com", "primary": True}],
            "active": True,
        },
        timeout=30,
    )
    assert user.status_code == 201, user.text
    assert user.json()["id"] == str(me["id"])
    group = requests.post(
        f"{base}/Groups",
        headers=scim,
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Labeling Leads",
            "members": [{"value": str(me["id"])}],
        },
        timeout=30,
    )
    assert group.status_code == 201, group.text
    membership = requests.get(
        f"{verity.base_url}/api/organizations/{org}/memberships/{me['id']}", headers=admin, timeout=30
    ).json()
    assert membership["role"] == "manager", membership
    # Okta de-provisions with PATCH active=false: the member's API token stops working at once.
    r = requests.get(f"{verity.base_url}/api/projects", headers={"Authorization": f"Token {member_token}"}, timeout=30)
    assert r.status_code == 200
    r = requests.patch(
        f"{base}/Users/{me['id']}",
        headers=scim,
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": False}}],
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    r = requests.get(f"{verity.base_url}/api/projects", headers={"Authorization": f"Token {member_token}"}, timeout=30)
    assert r.status_code == 401, r.text
    # The old provisioning token is revoked by a new one.
    _scim_token(verity)
    r = requests.get(f"{base}/Users", headers=scim, timeout=30)
    assert r.status_code == 401
    assert r.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
