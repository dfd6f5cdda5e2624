"""Session-wide highly available Redis for the store tests: one Sentinel set, one Cluster (tests isolate
themselves with their own key prefix; a test that changes the topology starts its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.redis_ha import ClusterNodes, SentinelSet, running_cluster, running_sentinels
from tests.fakes.redis_server import REDIS_SERVER, REQUIRED

MASTER_PASSWORD = "SENTINEL-MASTER-PW"


@pytest.fixture(scope="session")
def redis_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A master, a replica and three sentinels for the suite (the sentinel URL carries the master's password)."""
    if REDIS_SERVER is None and not REQUIRED:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with running_sentinels(tmp_path_factory.mktemp("sentinel"), password=MASTER_PASSWORD) as ha:
        yield ha


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterNodes]:
    """Three cluster masters for the suite."""
    if REDIS_SERVER is None and not REQUIRED:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster
