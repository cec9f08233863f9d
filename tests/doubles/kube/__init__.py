"""A Kubernetes API server double (v1.36 behaviour, recorded) with a node agent that runs pods locally."""

from __future__ import annotations

from .config import ImageConfig, NodeConfig, Timings
from .double import KubeDouble
from .faults import Faults

__all__ = ["Faults", "ImageConfig", "KubeDouble", "NodeConfig", "Timings"]
