"""Which URLs a webhook may have and which addresses a delivery may reach."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from app.webhooks.urls import UrlRefused, check_host, target


def test_private_addresses_are_allowed_by_default_only_on_sqlite() -> None:
    assert Settings(database_url=None).webhooks_may_reach_private
    assert not Settings(database_url="postgresql+psycopg://h/db").webhooks_may_reach_private
    assert Settings(database_url="postgresql+psycopg://h/db",
                    webhook_allow_private=True).webhooks_may_reach_private  # fmt: skip
    assert not Settings(database_url=None, webhook_allow_private=False).webhooks_may_reach_private


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://localhost:8080/x",
                                 "http://192.168.1.1/", "http://[fd00::1]/", "http://224.0.0.1/",
                                 "http://100.64.0.1/", "http://[::ffff:10.0.0.1]/"])  # fmt: skip
def test_a_delivery_never_reaches_a_private_address_unless_allowed(url: str) -> None:
    with pytest.raises(UrlRefused):
        target(url, allow_private=False)
    with pytest.raises(UrlRefused):
        check_host(url, allow_private=False)


def test_a_delivery_connects_to_the_address_it_checked() -> None:
    where = target("https://93.184.216.34:8443/h", allow_private=False)
    assert (where.host, where.address) == ("93.184.216.34", "93.184.216.34")
    assert target("http://localhost:9/h", allow_private=True).address in ("127.0.0.1", "::1")


def test_a_name_that_does_not_resolve_is_accepted_at_registration_only() -> None:
    check_host("https://no-such-host.invalid/h", allow_private=False)
    with pytest.raises(UrlRefused, match="does not resolve"):
        target("https://no-such-host.invalid/h", allow_private=False)
