"""The deploy tests use the shared tiny bundles: TSN (window + incremental), causal TSM (window + stateful)."""
import pytest


@pytest.fixture(scope="session")
def deploy_assets(stream_assets):
    return stream_assets
