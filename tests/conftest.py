"""Shared fixtures. ``tests/`` is on sys.path (pytest's rootdir conftest), so ``fakes`` imports."""

import os

import pytest

# Evaluations in tests must not inherit a developer's keys by accident; tests that need one set it.
for _key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
    os.environ.pop(_key, None)


@pytest.fixture
def fake_openai():
    from fakes.openai_server import FakeOpenAIServer

    def start(reply, **kwargs):
        server = FakeOpenAIServer(reply, **kwargs)
        server.__enter__()
        started.append(server)
        return server

    started = []
    yield start
    for server in started:
        server.__exit__()
