"""What `pachhook run --commit` tells a CI system, besides its progress lines.

On GitHub Actions (GITHUB_ACTIONS=true) a Markdown summary is appended to the file
$GITHUB_STEP_SUMMARY names, and template problems become `::error file=…,line=…::`
workflow commands, which GitHub shows as annotations on the file. Everywhere,
`--format json` prints the same record as one JSON document.

Workflow command escaping follows GitHub's runner (actions/toolkit, core/src/command.ts):
in the message % CR LF become %25 %0D %0A; in a property value also : and , become %3A %2C.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from pachhook.core.sanitize import one_line
from pachhook.queue.states import STEP_NAMES

# "templates/edges.yaml: line 3: message" or "templates/edges.yaml: message" (deliver.commit.plan);
# a line not starting with a template's path (a dependency cycle) has no place in a file.
_TEMPLATE = r"(?P<file>.+?\.(?:json|ya?ml|jsonnet))"
_PROBLEM_AT_LINE = re.compile(_TEMPLATE + r": line (?P<line>\d+)(?::\d+)?: (?P<message>.+)$")
_PROBLEM_IN_FILE = re.compile(_TEMPLATE + r": (?P<message>.+)$")


@dataclass
class LocatedProblem:
    """A template that cannot be read, where it is."""

    message: str
    file: str = ""
    line: int = 0


@dataclass
class PipelineReport:
    pipeline: str
    template: str
    image: str = ""  # the pushed reference (repository:tag)
    digest: str = ""
    version: str = ""  # the pipeline version the update made or found
    outcomes: Dict[str, str] = field(default_factory=dict)  # step -> done/reused/skipped/failed
    timings: Dict[str, float] = field(default_factory=dict)  # step -> seconds
    error: str = ""


@dataclass
class RunReport:
    """One `run --commit`: filled in by deliver.commit as it goes."""

    commit: str = ""
    branch: str = ""
    environment: str = ""
    dry_run: bool = False
    status: int = 0
    seconds: float = 0.0
    problems: List[LocatedProblem] = field(default_factory=list)
    pipelines: List[PipelineReport] = field(default_factory=list)

    def add_problems(self, lines: List[str]) -> None:
        for line in lines:
            at_line = _PROBLEM_AT_LINE.match(line)
            in_file = at_line or _PROBLEM_IN_FILE.match(line)
            if at_line:
                self.problems.append(LocatedProblem(at_line["message"], at_line["file"], int(at_line["line"])))
            elif in_file:
                self.problems.append(LocatedProblem(in_file["message"], in_file["file"]))
            else:
                self.problems.append(LocatedProblem(line))

    def add_pipeline(
        self,
        pipeline: str,
        template: str,
        results: Mapping[str, Mapping[str, str]],
        outcomes: Mapping[str, str],
        timings: Mapping[str, float],
        error: str,
    ) -> None:
        pushed = results.get("push") or {}
        built = results.get("build") or {}
        updated = results.get("update") or {}
        self.pipelines.append(
            PipelineReport(
                pipeline=pipeline,
                template=template,
                image=pushed.get("image_ref") or built.get("image_ref", ""),
                digest=pushed.get("digest", ""),
                version=updated.get("pipeline_version", ""),
                outcomes=dict(outcomes),
                timings={name: round(seconds, 3) for name, seconds in timings.items()},
                error=error,
            )
        )

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


def on_github_actions(environ: Optional[Mapping[str, str]] = None) -> bool:
    return (os.environ if environ is None else environ).get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_commands(report: RunReport) -> List[str]:
    """`::error` workflow commands: template problems, and failed pipelines on their template."""
    lines = []
    for problem in report.problems:
        properties = []
        if problem.file:
            properties.append(f"file={escape_property(one_line(problem.file, 300))}")
            if problem.line:
                properties.append(f"line={problem.line}")
        properties.append("title=pachhook")
        lines.append(f"::error {','.join(properties)}::{escape_data(one_line(problem.message))}")
    for item in report.pipelines:
        if item.error:
            file = escape_property(one_line(item.template, 300))
            title = escape_property(f"pachhook: {item.pipeline}")
            lines.append(f"::error file={file},title={title}::{escape_data(one_line(item.error))}")
    return lines


def _cell(text: str) -> str:
    """Outside text inside a Markdown table cell: one line, no pipe or backtick to break it."""
    return one_line(text, 200).replace("|", "\\|").replace("`", "'")


def markdown(report: RunReport, environ: Optional[Mapping[str, str]] = None) -> str:
    """The job summary: environment, and per pipeline its version, image digest and step timings."""
    env = os.environ if environ is None else environ
    verdict = "failed" if report.status else ("dry run" if report.dry_run else "delivered")
    commit = report.commit[:12] or "?"
    server, repository = env.get("GITHUB_SERVER_URL", ""), env.get("GITHUB_REPOSITORY", "")
    if server and repository and report.commit:
        commit = f"[{commit}]({server}/{repository}/commit/{report.commit})"
    lines = [
        f"### pachhook: {verdict}",
        "",
        f"- commit: {commit}" + (f" (branch `{_cell(report.branch)}`)" if report.branch else ""),
        f"- environment: `{_cell(report.environment or 'default')}`",
        f"- time: {report.seconds:.1f}s",
        "",
    ]
    if report.problems:
        lines += ["Template problems:", ""]
        for problem in report.problems:
            where = f"{problem.file}:{problem.line}" if problem.line else problem.file
            lines.append(f"- `{_cell(where)}` {_cell(problem.message)}" if where else f"- {_cell(problem.message)}")
        lines.append("")
    if report.pipelines:
        lines += [
            "| pipeline | version | image | digest | build | push | update | result |",
            "|---|---|---|---|---:|---:|---:|---|",
        ]
        for item in report.pipelines:
            times = [f"{item.timings[step]:.1f}s" if step in item.timings else "-" for step in STEP_NAMES]
            result = item.error or ", ".join(f"{step} {outcome}" for step, outcome in item.outcomes.items())
            lines.append(
                f"| {_cell(item.pipeline)} | {_cell(item.version) or '-'} | {_cell(item.image) or '-'} "
                f"| `{_cell(item.digest[:19]) or '-'}` | " + " | ".join(times) + f" | {_cell(result)} |"
            )
        lines += [
            "",
            f"Provenance: `pachhook provenance {report.commit[:12]} --cluster` lists the pipeline versions"
            " made from this commit and the jobs they ran.",
            "",
        ]
    return "\n".join(lines) + "\n"


def write_step_summary(report: RunReport, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Append the summary to $GITHUB_STEP_SUMMARY; a one-line problem if that fails, else None."""
    env = os.environ if environ is None else environ
    target = env.get("GITHUB_STEP_SUMMARY", "")
    if not target:
        return None
    try:
        with Path(target).open("a", encoding="utf-8") as stream:
            stream.write(markdown(report, env))
    except OSError as error:
        return f"cannot write the job summary to {target}: {error.strerror or error}"
    return None


def as_json(report: RunReport) -> str:
    return json.dumps(report.as_dict(), sort_keys=True)
