"""Records of the delivery queue: a job per (commit, pipeline), three steps per job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from pachhook.queue.states import PENDING, QUEUED
from pachhook.queue.states import STEP_NAMES as STEP_NAMES  # the steps of a Job, where its callers look


@dataclass
class StepRecord:
    name: str
    state: str = PENDING
    attempts: int = 0
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    result: Dict[str, str] = field(default_factory=dict)  # image_id, digest, pipeline_version, ...
    error: str = ""


@dataclass
class Job:
    id: int
    commit: str
    branch: str
    pipeline: str
    template: str  # path relative to the repository root
    image: str  # image repository named by the template, without tag ("" if none is built)
    state: str = QUEUED
    created_at: float = 0.0
    updated_at: float = 0.0
    superseded_by: Optional[int] = None
    steps: List[StepRecord] = field(default_factory=list)
    environment: str = ""  # the environment it delivers to ("" in queues older than schema 2)
    reason: str = ""  # why it ended as it did, when the state alone does not say

    def step(self, name: str) -> StepRecord:
        for record in self.steps:
            if record.name == name:
                return record
        raise KeyError(name)
