"""Artifacts and cache work inside the job's environment (the helper image).

Run as ``kuberunner-helper`` (or ``python -m kuberunner.helper``) by the
generated stage scripts, with gitlab-runner-helper's subcommands and flags.
Imports only the standard library, httpx, click and ``kuberunner.util`` so the
helper image stays small. ``s3.presign`` is also used by the runner to hand
presigned cache URLs to the helper.
"""

from __future__ import annotations

from kuberunner.helper.errors import ArchiveError, HelperError, NotFoundError, TransferError
from kuberunner.helper.s3 import presign, presign_url

__all__ = ["ArchiveError", "HelperError", "NotFoundError", "TransferError", "presign", "presign_url"]
