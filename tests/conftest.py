"""Shared fixtures. Ray starts once per test session, on 127.0.0.1, usage stats off."""

import os

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # before Ray is imported anywhere

import pytest


@pytest.fixture(scope="session", autouse=True)
def _hermetic_cache(tmp_path_factory):
    """Token caches go to a per-session directory, never the user's ~/.cache."""
    os.environ["HPSEARCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from hpsearch.ray_session import loopback_only

    if not ray.is_initialized():
        with loopback_only():  # tests talk to loopback only: every Ray listener binds 127.0.0.1
            ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                     logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def embedded_tokens():
    from trainables.corpus import load_tokens

    return load_tokens(None, log=None).tokens


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread beats two that wait on each other on a busy machine (5x here)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
