"""Repository configuration: `[tool.pachhook]` in pyproject.toml, else `.pachhook.toml`.

With neither file, conventions serve (see docs/configuration.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

DEFAULT_TEMPLATE_GLOBS = (
    "**/pipeline.json",
    "**/pipeline.yaml",
    "**/pipeline.yml",
    "**/*.pipeline.json",
    "**/*.pipeline.yaml",
    "**/*.pipeline.yml",
)


@dataclass
class ImageConfig:
    """How to build one image repository (the part of transform.image before the tag)."""

    name: str
    dockerfile: Optional[str] = None  # relative to the repo root; default: <template dir>/Dockerfile
    context: Optional[str] = None  # relative to the repo root; default: the template's directory
    build_args: Dict[str, str] = field(default_factory=dict)


@dataclass
class Config:
    root: Path
    source: Optional[Path] = None  # the file the configuration came from, None for conventions
    templates: List[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATE_GLOBS))
    images: Dict[str, ImageConfig] = field(default_factory=dict)
    branches: Optional[List[str]] = None  # None: deploy from every branch
    tag: str = "full"  # "full" | "short" commit SHA
    pin_digest: bool = False
    reprocess: bool = False
    worker: str = "background"  # "background" | "manual"
    pachctl: str = "pachctl"
    backend: str = "pachctl"  # "pachctl" | "api"


def load_config(root: Path) -> Config:
    """Read the configuration of the repository at root (conventions when there is none)."""
    return Config(root=root)
