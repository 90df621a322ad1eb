"""The stack's object store as a DVC remote: data versions pushed once, pulled by any worker.

Written to the repository's `.dvc/config.local` (git ignores it), so the keys never reach git and
the project's shared `.dvc/config` stays as it is; `dvc push` / `dvc pull` then use the bucket `dvc`.
Workers and clients without that checkout find the same remote in `shopfloor stack env`
(SHOPFLOOR_DVC_REMOTE, beside the S3 endpoint and keys): `--data-version` pulls from it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stack.services import StackError

REMOTE = "team"
URL = "s3://dvc/store"


def configure(repo: Path, endpoint: str, access_key: str, secret_key: str) -> None:
    """Make the stack's bucket the default remote of the DVC repository at `repo`."""
    if not (repo / ".dvc").is_dir():
        raise StackError(f"{repo} is not a DVC repository (no .dvc/ folder): run `dvc init` there first")
    dvc = [sys.executable, "-m", "dvc", "remote"]
    # `--` before the values: a generated key may start with "-", which the parser took for an option
    for args in (["add", "--local", "--force", "-d", REMOTE, URL],
                 ["modify", "--local", REMOTE, "endpointurl", "--", endpoint],
                 ["modify", "--local", REMOTE, "access_key_id", "--", access_key],
                 ["modify", "--local", REMOTE, "secret_access_key", "--", secret_key]):  # fmt: skip
        done = subprocess.run(dvc + args, cwd=repo, capture_output=True, text=True)
        if done.returncode:
            raise StackError(f"dvc remote {args[0]} failed in {repo}: {done.stderr.strip()[-300:]}")
