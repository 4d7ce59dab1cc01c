"""The admin API: tenant isolation on every endpoint, who may grant what, strict bodies, events per change."""

from __future__ import annotations

import uuid

import pytest

from shared.auth.scopes import PLATFORM_TENANT

BASE = "/api/v1/users"
SUFFIX = uuid.uuid4().hex[:6]
A, B = f"acme-{SUFFIX}", f"globex-{SUFFIX}"


@pytest.fixture(scope="module")
async def world(user_app, mint):
    """Two tenants, each with a user and a client made by its own admin."""
    http = user_app.http
    for tenant in (A, B):
        response = await http.post(
            f"{BASE}/tenants", headers=mint(PLATFORM_TENANT), json={"id": tenant, "name": tenant.title()}
        )
        assert response.status_code == 201, response.text
    made = {}
    for tenant in (A, B):
        user = await http.post(
            f"{BASE}/users",
            headers=mint(tenant),
            json={"username": "alice", "display_name": "Alice", "roles": ["trader"]},
        )
        client = await http.post(
            f"{BASE}/clients", headers=mint(tenant), json={"name": "bot", "scopes": ["market:read", "trade"]}
        )
        assert user.status_code == 201 and client.status_code == 201, (user.text, client.text)
        made[tenant] = {"user": user.json(), "client": client.json()}
    return made


def _same_404(response, kind: str) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["detail"] == f"{kind} not found"


async def test_created_entities_belong_to_the_callers_tenant(world):
    assert world[A]["user"]["tenant"] == A and world[B]["user"]["tenant"] == B
    assert world[A]["client"]["tenant"] == A
    assert world[A]["user"]["roles"] == ["trader"] and not world[A]["user"]["disabled"]
    assert world[A]["client"]["grant_types"] == ["client_credentials"]


async def test_a_tenant_admin_cannot_see_another_tenants_users(user_app, mint, world):
    http, a = user_app.http, mint(A)
    b_user = world[B]["user"]["id"]
    _same_404(await http.get(f"{BASE}/users/{b_user}", headers=a), "user")
    _same_404(await http.get(f"{BASE}/users/{b_user}", headers=a, params={"tenant": B}), "tenant")
    _same_404(await http.get(f"{BASE}/users/{uuid.uuid4()}", headers=a), "user")  # same as a missing one
    listed = await http.get(f"{BASE}/users", headers=a)
    assert [u["id"] for u in listed.json()] == [world[A]["user"]["id"]]
    _same_404(await http.get(f"{BASE}/users", headers=a, params={"tenant": B}), "tenant")
    _same_404(await http.get(f"{BASE}/users", headers=a, params={"tenant": "no-such-tenant"}), "tenant")


async def test_a_tenant_admin_cannot_change_another_tenants_users(user_app, mint, world):
    http, a = user_app.http, mint(A)
    b_user = world[B]["user"]["id"]
    _same_404(await http.put(f"{BASE}/users/{b_user}/roles", headers=a, json={"roles": ["viewer"]}), "user")
    _same_404(
        await http.put(f"{BASE}/users/{b_user}/roles", headers=a, params={"tenant": B}, json={"roles": ["viewer"]}),
        "tenant",
    )
    _same_404(await http.post(f"{BASE}/users/{b_user}/disable", headers=a), "user")
    _same_404(await http.post(f"{BASE}/users/{b_user}/disable", headers=a, params={"tenant": B}), "tenant")
    _same_404(
        await http.post(
            f"{BASE}/users", headers=a, json={"username": "mallory", "display_name": "M", "roles": [], "tenant": B}
        ),
        "tenant",
    )
    unchanged = await http.get(f"{BASE}/users/{b_user}", headers=mint(B))
    assert unchanged.json()["roles"] == ["trader"] and not unchanged.json()["disabled"]
    assert [u["username"] for u in (await http.get(f"{BASE}/users", headers=mint(B))).json()] == ["alice"]


async def test_a_tenant_admin_cannot_see_or_touch_another_tenants_clients(user_app, mint, world):
    http, a = user_app.http, mint(A)
    b_client = world[B]["client"]["client_id"]
    _same_404(await http.get(f"{BASE}/clients/{b_client}", headers=a), "client")
    _same_404(await http.get(f"{BASE}/clients/{b_client}", headers=a, params={"tenant": B}), "tenant")
    _same_404(await http.get(f"{BASE}/clients/hc_nosuchclient00", headers=a), "client")
    assert [c["client_id"] for c in (await http.get(f"{BASE}/clients", headers=a)).json()] == [
        world[A]["client"]["client_id"]
    ]
    _same_404(await http.get(f"{BASE}/clients", headers=a, params={"tenant": B}), "tenant")
    _same_404(await http.post(f"{BASE}/clients/{b_client}/rotate-secret", headers=a), "client")
    _same_404(await http.post(f"{BASE}/clients/{b_client}/disable", headers=a), "client")
    _same_404(
        await http.post(f"{BASE}/clients", headers=a, json={"name": "x", "scopes": ["market:read"], "tenant": B}),
        "tenant",
    )
    # B's client is untouched: still enabled, and its secret still works.
    still = await http.get(f"{BASE}/clients/{b_client}", headers=mint(B))
    assert not still.json()["disabled"]
    auth = await http.post(
        "/internal/v1/clients/authenticate",
        headers=mint(PLATFORM_TENANT, ("internal",)),
        json={"client_id": b_client, "client_secret": world[B]["client"]["client_secret"]},
    )
    assert auth.status_code == 200 and auth.json()["tenant"] == B


async def test_tenants_are_visible_and_manageable_only_as_allowed(user_app, mint, world):
    http, a = user_app.http, mint(A)
    assert [t["id"] for t in (await http.get(f"{BASE}/tenants", headers=a)).json()] == [A]
    everyone = {t["id"] for t in (await http.get(f"{BASE}/tenants", headers=mint(PLATFORM_TENANT))).json()}
    assert {PLATFORM_TENANT, A, B} <= everyone
    _same_404(await http.post(f"{BASE}/tenants/{B}/disable", headers=a), "tenant")
    own = await http.post(f"{BASE}/tenants/{A}/disable", headers=a)
    assert own.status_code == 403
    assert (await http.post(f"{BASE}/tenants", headers=a, json={"id": f"new-{SUFFIX}", "name": "N"})).status_code == 403
    platform = await http.post(f"{BASE}/tenants/{PLATFORM_TENANT}/disable", headers=mint(PLATFORM_TENANT))
    assert platform.status_code == 409
    duplicate = await http.post(f"{BASE}/tenants", headers=mint(PLATFORM_TENANT), json={"id": A, "name": "again"})
    assert duplicate.status_code == 409


async def test_the_platform_admin_manages_any_tenant_by_naming_it(user_app, mint, world):
    http, root = user_app.http, mint(PLATFORM_TENANT)
    b_user, b_client = world[B]["user"]["id"], world[B]["client"]["client_id"]
    assert (await http.get(f"{BASE}/users/{b_user}", headers=root, params={"tenant": B})).json()["username"] == "alice"
    # Without naming the tenant it acts in its own, where B's user is not.
    _same_404(await http.get(f"{BASE}/users/{b_user}", headers=root), "user")
    assert [c["client_id"] for c in (await http.get(f"{BASE}/clients", headers=root, params={"tenant": B})).json()] == [
        b_client
    ]
    made = await http.post(
        f"{BASE}/users", headers=root, json={"username": "bob", "display_name": "Bob", "roles": ["viewer"], "tenant": B}
    )
    assert made.status_code == 201 and made.json()["tenant"] == B
    _same_404(await http.get(f"{BASE}/users", headers=root, params={"tenant": "no-such-tenant"}), "tenant")


async def test_client_scope_granting_rules(user_app, mint, world):
    http = user_app.http

    async def create(headers, scopes, **extra):
        return await http.post(f"{BASE}/clients", headers=headers, json={"name": "c", "scopes": scopes, **extra})

    a_admin = mint(A)
    assert (await create(a_admin, ["market:write"])).status_code == 403  # platform-only
    assert (await create(a_admin, ["internal"])).status_code == 422  # never grantable
    assert (await create(a_admin, ["root"])).status_code == 422
    assert (await create(a_admin, [])).status_code == 422
    assert (await create(a_admin, ["market:read"], grant_types=["password"])).status_code == 422
    limited = mint(A, ("admin", "market:read"))
    assert (await create(limited, ["compliance"])).status_code == 403  # not held by the caller
    assert (await create(limited, ["market:read"])).status_code == 201
    with_refresh = await create(a_admin, ["trade"], grant_types=["refresh_token", "client_credentials"])
    assert with_refresh.json()["grant_types"] == ["client_credentials", "refresh_token"]
    # The platform admin may grant market:write, to any tenant, without holding it itself.
    feed = await create(mint(PLATFORM_TENANT), ["market:write"], tenant=A)
    assert feed.status_code == 201 and feed.json()["tenant"] == A and feed.json()["scopes"] == ["market:write"]
    # ...and A's admin may not take it over by rotating its secret (that would hand it market:write).
    rotate = await http.post(f"{BASE}/clients/{feed.json()['client_id']}/rotate-secret", headers=a_admin)
    assert rotate.status_code == 403


async def test_role_granting_rules(user_app, mint, world):
    http, a_admin = user_app.http, mint(A)

    async def create(headers, roles, username):
        return await http.post(
            f"{BASE}/users", headers=headers, json={"username": username, "display_name": username, "roles": roles}
        )

    assert (await create(a_admin, ["data-feed"], "feed")).status_code == 403  # carries market:write
    assert (await create(a_admin, ["superuser"], "su")).status_code == 422
    limited = mint(A, ("admin", "market:read"))
    assert (await create(limited, ["trader"], "tina")).status_code == 403  # trader carries trade
    viewer = await create(limited, ["viewer"], "vic")
    assert viewer.status_code == 201
    duplicate = await create(a_admin, [], "VIC")  # usernames are unique regardless of case
    assert duplicate.status_code == 409
    alice = world[A]["user"]["id"]
    # Keeping a role the caller could not grant is fine; adding one is not.
    assert (
        await http.put(f"{BASE}/users/{alice}/roles", headers=limited, json={"roles": ["trader", "viewer"]})
    ).status_code == 200
    assert (
        await http.put(
            f"{BASE}/users/{alice}/roles", headers=limited, json={"roles": ["trader", "viewer", "compliance-officer"]}
        )
    ).status_code == 403
    back = await http.put(f"{BASE}/users/{alice}/roles", headers=a_admin, json={"roles": ["trader"]})
    assert back.json()["roles"] == ["trader"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/tenants", {"id": "x-tenant", "name": "X", "owner": "me"}),
        ("post", "/users", {"username": "u", "display_name": "U", "roles": [], "password": "p"}),
        ("post", "/clients", {"name": "c", "scopes": ["market:read"], "client_secret": "mine"}),
        ("post", "/clients", {"name": "c", "scope": ["market:read"]}),
    ],
)
async def test_unknown_fields_are_422_problems(user_app, mint, world, method, path, body):
    response = await user_app.http.request(method, BASE + path, headers=mint(PLATFORM_TENANT), json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_unknown_field_in_roles_update_is_422(user_app, mint, world):
    response = await user_app.http.put(
        f"{BASE}/users/{world[A]['user']['id']}/roles", headers=mint(A), json={"roles": [], "tenant": A}
    )
    assert response.status_code == 422


async def test_every_route_requires_admin(user_app, mint, world):
    http = user_app.http
    trader = mint(A, ("market:read", "trade"))
    for method, path in [
        ("get", "/tenants"),
        ("get", "/users"),
        ("get", "/clients"),
        ("post", f"/clients/{world[A]['client']['client_id']}/disable"),
    ]:
        assert (await http.request(method, BASE + path, headers=trader)).status_code == 403
        assert (await http.request(method, BASE + path)).status_code == 401


async def test_a_disabled_tenants_admins_are_refused_at_once(user_app, mint):
    http, root = user_app.http, mint(PLATFORM_TENANT)
    doomed = f"doomed-{SUFFIX}"
    assert (await http.post(f"{BASE}/tenants", headers=root, json={"id": doomed, "name": "D"})).status_code == 201
    assert (await http.get(f"{BASE}/users", headers=mint(doomed))).status_code == 200
    disabled = await http.post(f"{BASE}/tenants/{doomed}/disable", headers=root)
    assert disabled.status_code == 200 and disabled.json()["disabled"]
    assert (await http.get(f"{BASE}/users", headers=mint(doomed))).status_code == 403
    refused = await http.post(
        f"{BASE}/users", headers=root, json={"username": "late", "display_name": "L", "roles": [], "tenant": doomed}
    )
    assert refused.status_code == 409


async def test_the_bootstrap_admin_cannot_be_disabled(user_app, mint):
    import orjson

    credentials = orjson.loads((user_app.var_dir / "credentials.json").read_bytes())
    response = await user_app.http.post(
        f"{BASE}/clients/{credentials['admin']['client_id']}/disable", headers=mint(PLATFORM_TENANT)
    )
    assert response.status_code == 409


async def test_each_change_publishes_a_directory_event(user_app, mint, world, directory_events):
    http = user_app.http
    a_admin = mint(A, client_id=f"events-{SUFFIX}")
    actor = f"client:events-{SUFFIX}"
    user = (
        await http.post(
            f"{BASE}/users",
            headers=a_admin,
            json={"username": f"evt-{SUFFIX}", "display_name": "E", "roles": ["viewer"]},
        )
    ).json()
    await http.put(f"{BASE}/users/{user['id']}/roles", headers=a_admin, json={"roles": ["viewer", "trader"]})
    await http.post(f"{BASE}/users/{user['id']}/disable", headers=a_admin)
    client = (
        await http.post(f"{BASE}/clients", headers=a_admin, json={"name": "evt", "scopes": ["market:read"]})
    ).json()
    rotated = (await http.post(f"{BASE}/clients/{client['client_id']}/rotate-secret", headers=a_admin)).json()
    await http.post(f"{BASE}/clients/{client['client_id']}/disable", headers=a_admin)
    tenant_id = f"evt-{SUFFIX}"
    await http.post(f"{BASE}/tenants", headers=mint(PLATFORM_TENANT), json={"id": tenant_id, "name": "Evt"})
    await http.post(f"{BASE}/tenants/{tenant_id}/disable", headers=mint(PLATFORM_TENANT))

    expected = [
        ("user", user["id"], "created", A),
        ("user", user["id"], "roles_assigned", A),
        ("user", user["id"], "disabled", A),
        ("client", client["client_id"], "created", A),
        ("client", client["client_id"], "secret_rotated", A),
        ("client", client["client_id"], "disabled", A),
        ("tenant", tenant_id, "created", tenant_id),
        ("tenant", tenant_id, "disabled", tenant_id),
    ]
    for entity, entity_id, action, tenant in expected:
        event = await directory_events.wait_for(
            lambda e, entity=entity, entity_id=entity_id, action=action: (
                (e.entity, e.entity_id, e.action) == (entity, entity_id, action)
            )
        )
        assert event.tenant == tenant and event.event_type == "users.directory_changed"
        if entity != "tenant":
            assert event.actor == actor
    created = await directory_events.wait_for(lambda e: e.entity_id == client["client_id"] and e.action == "created")
    assert created.details == {"name": "evt", "scopes": ["market:read"], "grant_types": ["client_credentials"]}
    roles = await directory_events.wait_for(lambda e: e.entity_id == user["id"] and e.action == "roles_assigned")
    assert roles.details == {"roles": ["trader", "viewer"], "added": ["trader"], "removed": []}
    mine = [e for e in directory_events.events if e.entity_id == client["client_id"]]
    for event in mine:
        assert client["client_secret"] not in event.model_dump_json()
        assert rotated["client_secret"] not in event.model_dump_json()
    # Delivered events leave the outbox.
    async with user_app.app.runtime.state.store.reading() as directory:
        assert await directory.conn.fetchval("SELECT count(*) FROM users.outbox") == 0


class _BrokerDown:
    """A publisher whose broker is unreachable."""

    async def publish(self, events) -> None:
        raise ConnectionError("broker down")


async def test_an_event_the_broker_missed_is_published_by_the_outbox_sweep(user_app, directory_events):
    from services.user_service.outbox import Outbox, directory_changed

    services = user_app.app.runtime.state
    event = directory_changed(
        tenant=A, entity="user", entity_id=f"sweep-{SUFFIX}", action="created", actor="client:test"
    )
    async with services.store.transaction() as directory:
        await directory.record([event])
    down = {topic: _BrokerDown() for topic in services.outbox.publishers}
    await Outbox(services.store, down, grace_s=0).deliver([event])  # logged, not raised
    async with services.store.reading() as directory:
        assert (
            await directory.conn.fetchval("SELECT count(*) FROM users.outbox WHERE event_id = $1", event.event_id) == 1
        )
    sweeper = Outbox(services.store, services.outbox.publishers, grace_s=0)
    assert await sweeper.sweep() >= 1
    delivered = await directory_events.wait_for(lambda e: e.event_id == event.event_id)
    assert delivered == event
    async with services.store.reading() as directory:
        assert await directory.conn.fetchval("SELECT count(*) FROM users.outbox") == 0
