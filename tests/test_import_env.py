"""``import xhmm`` leaves the environment alone, except the documented GPU default."""

import json
import os
import subprocess
import sys

import pytest

KEY = "XLA_PYTHON_CLIENT_PREALLOCATE"

# Everything os.environ gained, lost or changed across `import xhmm`, as JSON.
SCRIPT = """
import json, os
before = dict(os.environ)
import xhmm
after = dict(os.environ)
print(json.dumps({k: [before.get(k), after.get(k)]
                  for k in before.keys() | after.keys() if before.get(k) != after.get(k)}))
"""


def env_changes(preset: str | None) -> dict[str, list[str | None]]:
    """Run ``import xhmm`` in a fresh interpreter; ``preset`` is the key's value, if set."""
    env = {k: v for k, v in os.environ.items() if k != KEY}
    if preset is not None:
        env[KEY] = preset
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, check=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_sets_only_the_preallocation_default():
    assert env_changes(None) == {KEY: [None, "false"]}


@pytest.mark.parametrize("preset", ["true", "false"])
def test_import_keeps_a_preallocation_setting_of_the_user(preset):
    assert env_changes(preset) == {}
