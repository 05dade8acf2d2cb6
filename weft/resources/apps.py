"""Workload kinds: Deployment (``apps/v1``) and Job (``batch/v1``)."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from weft.resources.core import PodTemplateSpec
from weft.resources.errors import field_error
from weft.resources.meta import KubeModel, KubeObject, LabelSelector, format_selector


class DeploymentSpec(KubeModel):
    """The desired state of a Deployment; rollout settings are accepted but not used locally."""

    replicas: int = Field(default=1, ge=0)
    selector: LabelSelector
    template: PodTemplateSpec
    strategy: dict[str, Any] | None = None
    revision_history_limit: int | None = None
    progress_deadline_seconds: int | None = None
    min_ready_seconds: int | None = None
    paused: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.selector.match_labels:
            raise field_error("selector.matchLabels", "a Deployment needs a non-empty selector")
        if not self.selector.matches(self.template.metadata.labels):
            raise field_error(
                "template.metadata.labels",
                f"do not match spec.selector ({format_selector(self.selector.match_labels)})",
            )
        if self.template.spec.restart_policy != "Always":
            raise field_error("template.spec.restartPolicy", "a Deployment's pods must use Always")
        return self


class DeploymentStatus(KubeModel):
    """The observed state of a Deployment."""

    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    unavailable_replicas: int = 0
    observed_generation: int | None = None
    conditions: list[dict[str, Any]] | None = None
    collision_count: int | None = None


class Deployment(KubeObject):
    """A Deployment: ``replicas`` copies of a pod template."""

    API_VERSIONS = ("apps/v1",)

    api_version: str = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    spec: DeploymentSpec
    status: DeploymentStatus | None = None


class JobSpec(KubeModel):
    """The spec of a Job that runs one pod to completion."""

    template: PodTemplateSpec
    backoff_limit: int = Field(default=6, ge=0)
    completions: int = 1
    parallelism: int | None = Field(default=None, ge=0)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    selector: LabelSelector | None = None
    manual_selector: bool | None = None

    @field_validator("completions")
    @classmethod
    def _one_completion(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only completions: 1 is supported by the local runtime")
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.selector is not None and not self.selector.matches(self.template.metadata.labels):
            raise field_error(
                "template.metadata.labels",
                f"do not match spec.selector ({format_selector(self.selector.match_labels)})",
            )
        if self.template.spec.restart_policy == "Always":
            raise field_error("template.spec.restartPolicy", "a Job needs OnFailure or Never")
        return self


class JobStatus(KubeModel):
    """The observed state of a Job."""

    active: int | None = None
    ready: int | None = None
    succeeded: int | None = None
    failed: int | None = None
    terminating: int | None = None
    start_time: str | None = None
    completion_time: str | None = None
    conditions: list[dict[str, Any]] | None = None
    uncounted_terminated_pods: dict[str, Any] | None = None


class Job(KubeObject):
    """A Job: a pod run until it succeeds, retried up to ``backoff_limit`` times."""

    API_VERSIONS = ("batch/v1",)

    api_version: str = "batch/v1"
    kind: Literal["Job"] = "Job"
    spec: JobSpec
    status: JobStatus | None = None
