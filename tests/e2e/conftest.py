"""End-to-end fixtures: the whole local stack (emulated AWS, fake provider, API Gateway emulator running
the real handlers), started once per session on free loopback ports.

    def test_chat(local_stack):
        client = OpenAI(base_url=f"{local_stack.url}/v1", api_key=local_stack.admin_key)
        ...
        assert local_stack.fake.calls  # what reached the provider

    subprocess.run(["tollgate", "keys", "create", "--user", "alice"], env=local_stack.env, ...)

The handlers run in this process and read os.environ, so the stack's environment is applied around
each test that uses `local_stack` and removed afterwards: tests elsewhere in the session (moto's
in-process mock, unit tests) never see AWS_ENDPOINT_URL or cached clients pointing at the stack.
Emulated AWS runs in a child process, so a `mock_aws()` elsewhere cannot reset its state. The fake
provider is always used, whatever provider keys the shell holds: tests never spend money.
"""
from __future__ import annotations

import pytest

from local.dev import LocalStack


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    stack = LocalStack(use_fake=True, aws_in_subprocess=True, quiet=True)
    try:
        stack.start(port=0, state_dir=tmp_path_factory.mktemp("tollgate-state"))
        stack.restore_env()  # applied per test by _local_stack_environment
        yield stack
    finally:
        stack.stop()


@pytest.fixture(autouse=True)
def _local_stack_environment(request):
    if "local_stack" not in request.fixturenames:
        yield
        return
    with request.getfixturevalue("local_stack").environment():
        yield
