"""``kuberunner doctor``: every setup problem found before a job fails, each with the fix to paste.

The checks run in the order a job meets them (config, API address, TLS,
credentials, token, namespace, permissions, the job pod, GitLab, consistency);
one that fails marks those depending on it "skipped (needs ...)".
:func:`explain` gives the same diagnosis at run time, for the job log.
"""

from kuberunner.doctor.explain import explain
from kuberunner.doctor.model import CheckResult, Fix, RunnerReport, Status
from kuberunner.doctor.render import render_json, render_text
from kuberunner.doctor.run import DoctorReport, UnknownRunner, diagnose

__all__ = [
    "CheckResult",
    "DoctorReport",
    "Fix",
    "RunnerReport",
    "Status",
    "UnknownRunner",
    "diagnose",
    "explain",
    "render_json",
    "render_text",
]
