"""A service's database client gives up on a reply that never comes, so a stalled command becomes a retry."""

from labelmesh.runtime.service import ServiceRuntime
from labelmesh.runtime.settings import CommonSettings


async def test_mongo_client_has_a_socket_timeout_from_the_settings():
    runtime = ServiceRuntime("probe", CommonSettings(mongo_socket_timeout_s=12.5))
    try:
        assert runtime.mongo.options.pool_options.socket_timeout == 12.5
    finally:
        await runtime.mongo.close()


def test_default_socket_timeout_is_finite_and_generous():
    assert 10 <= CommonSettings().mongo_socket_timeout_s <= 600
