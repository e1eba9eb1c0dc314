"""Template globs: one translator (pachhook.core.globs) for validate, queue, run, check-push and init."""

from __future__ import annotations

from pathlib import Path

import pytest
from gitutil import live_jobs, make_repo, template

from pachhook.core.config import DEFAULT_TEMPLATE_GLOBS, ConfigError, load_config
from pachhook.core.globs import GlobSet, find_templates, glob_problem


@pytest.mark.parametrize(
    "path",
    ["p0000/pipeline.json.bak", "pipeline.yaml~", "a/x.pipeline.yml.orig", "pipeline.json/x", "a/pipeline.jsonnet.bak"],
)
def test_a_name_that_only_starts_like_a_template_is_no_template(path: str):
    assert not GlobSet(DEFAULT_TEMPLATE_GLOBS).matches(path)


def test_a_json_glob_does_not_take_a_jsonnet_file():
    json_only = [glob for glob in DEFAULT_TEMPLATE_GLOBS if not glob.endswith(".jsonnet")]
    assert not GlobSet(json_only).matches("a/pipeline.jsonnet")
    assert GlobSet(DEFAULT_TEMPLATE_GLOBS).matches("a/pipeline.jsonnet")


@pytest.mark.parametrize(
    "glob, path, expected",
    [
        ("**/pipeline.json", "pipeline.json", True),
        ("**/pipeline.json", "a/b/pipeline.json", True),
        ("**/pipeline.json", "a/b/xpipeline.json", False),
        ("specs/*.json", "specs/one.json", True),
        ("specs/*.json", "specs/deep/two.json", False),
        ("specs/**", "specs/deep/two.json", True),
        ("p?.json", "p1.json", True),
        ("p?.json", "p/.json", False),
        ("p[0-9].json", "p7.json", True),
        ("p[!0-9].json", "p7.json", False),
        ("p[!0-9].json", "px.json", True),
        ("p[!0-9].json", "p/.json", False),
        ("a[/]b", "a/b", False),
        ("p+(1).json", "p+(1).json", True),
        ("**/pipeline.json", "new\nline/pipeline.json", True),
    ],
)
def test_globs_match_whole_paths(glob: str, path: str, expected: bool):
    assert GlobSet([glob]).matches(path) is expected


def test_find_templates_keeps_the_given_order():
    paths = ["z/pipeline.json", "a/pipeline.json.bak", "a/pipeline.yaml", "README.md"]
    assert find_templates(paths, DEFAULT_TEMPLATE_GLOBS) == ["z/pipeline.json", "a/pipeline.yaml"]


@pytest.mark.parametrize(
    "glob, problem",
    [
        ("p[]].json", "the character class at position 2 is empty"),
        ("p[.json", "'[' at position 2 is never closed by ']'"),
        ("p].json", "']' at position 2 closes no '['"),
        ("p[z-a].json", "the range z-a at position 3 runs backwards"),
        ("**/pipeline.json", None),
    ],
)
def test_a_glob_that_cannot_be_translated_says_why(glob: str, problem: str):
    assert glob_problem(glob) == problem


def test_the_configuration_refuses_a_bad_glob_naming_file_line_and_key(tmp_path: Path):
    (tmp_path / ".pachhook.toml").write_text('tag = "short"\ntemplates = ["ok/*.json", "p[]].json"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.problems == [
        ".pachhook.toml:2: templates: glob 'p[]].json' is not a glob: the character class at position 2 is empty"
    ]


def test_validate_and_queue_report_a_bad_glob_alike(tmp_path: Path):
    repo = make_repo(tmp_path, config='worker = "manual"\ntemplates = ["p[]].json"]\n')
    problem = ".pachhook.toml:2: templates: glob 'p[]].json' is not a glob: the character class at position 2 is empty"
    validate = repo.pachhook("validate")
    assert (validate.returncode, validate.stdout, validate.stderr) == (1, "", f"pachhook: {problem}\n")
    head = repo.git("rev-parse", "HEAD")
    queue = repo.pachhook("queue")
    assert queue.stdout == f"pachhook: nothing queued for {head[:12]}: {problem}\n"


def test_a_backup_copy_of_a_template_queues_nothing(tmp_path: Path):
    repo = make_repo(tmp_path)
    repo.pachhook("queue", check=True)
    repo.write("attic/pipeline.json.bak", template("edges-old"))
    repo.write("attic/pipeline.yaml~", template("edges-older"))
    head = repo.commit("editor leftovers")
    assert repo.pachhook("queue").stdout == (
        f"pachhook: nothing queued for {head[:12]}: it changes no pipeline's template, Dockerfile or build context\n"
    )
    assert sorted(job["pipeline"] for job in live_jobs(repo)) == ["edges", "montage"]


def test_a_backup_copy_of_a_template_stays_in_the_build_context_and_its_key(tmp_path: Path):
    # Issue 16: the old matcher took `p0000/pipeline.json.bak` for a template, so it was
    # left out of the reuse key and a change to it rebuilt nothing.
    from pachhook.deliver import buildcontext
    from pachhook.deliver.buildcontext import BuildInputs

    repo = make_repo(tmp_path)
    repo.write("p0000/Dockerfile", "FROM scratch\nCOPY . /app\n")
    repo.write("p0000/pipeline.json", template("p0000"))
    repo.write("p0000/pipeline.json.bak", template("p0000-old"))
    inputs = BuildInputs("p0000", "p0000/Dockerfile")
    matcher = GlobSet(DEFAULT_TEMPLATE_GLOBS)
    first = buildcontext.plan_context(repo.path, repo.commit("p0000"), inputs, leave_out=matcher.matches)
    assert first.left_out_of_key == ["p0000/pipeline.json"]
    repo.write("p0000/pipeline.json.bak", template("p0000-older"))
    second = buildcontext.plan_context(repo.path, repo.commit("bak"), inputs, leave_out=matcher.matches)
    assert second.key != first.key
    checkout = buildcontext.materialize(repo.path, second)
    try:
        assert (checkout.context_dir / "pipeline.json.bak").is_file()
    finally:
        checkout.cleanup()


@pytest.mark.parametrize(
    "glob, ending",
    [
        ("**/pipeline.json", "pipeline.json"),
        ("**/*.pipeline.yaml", ".pipeline.yaml"),
        ("/pipelines/x.json", "pipelines/x.json"),
        ("a/**/b.json", "b.json"),
        ("a/*", ""),
        ("p[0-9]", ""),
    ],
)
def test_a_glob_s_literal_ending_is_what_every_match_ends_with(glob: str, ending: str):
    from pachhook.core.globs import literal_ending

    assert literal_ending(glob) == ending


def test_the_matcher_agrees_with_the_regular_expression_pre_commit_is_given():
    """GlobSet matches without `re` (the post-commit hook's budget); `glob_regex` writes the same
    glob for pre-commit's `files`. The regular expression, run by `re`, is the oracle here:
    seeded random globs over the whole grammar against random paths (slashes, newlines, `-`)."""
    import random
    import re

    from pachhook.core.globs import GlobError, glob_regex

    pieces = ["a", "b", "x.", "/", "*", "**/", "**", "?", "[ab]", "[!a]", "[^b]", "[a-c]", "[-a]", "[a-]", "\n", "]"]
    names = ["a", "b", "c", "x.", "/", "//", "\n", "-", "ab"]
    rng = random.Random(16)
    compared = 0
    for _ in range(3000):
        glob = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 7)))
        try:
            oracle = re.compile(glob_regex(glob), re.DOTALL)
        except GlobError as error:
            assert glob_problem(glob) == str(error)
            continue
        matcher = GlobSet([glob])
        for _ in range(25):
            path = "".join(rng.choice(names) for _ in range(rng.randint(0, 8)))
            expected = oracle.fullmatch(path) is not None and path.endswith(matcher.endings)
            assert matcher.matches(path) is expected, (glob, path)
            compared += 1
    assert compared > 40000  # most random globs are good ones


@pytest.mark.parametrize(
    "path",
    ["pipeline.json", "a/pipeline.yml", "a/b.pipeline.yaml", "x/.pipeline.json", "pipeline.jsonnet", "a/pipeline"],
)
def test_the_conventional_names_are_the_default_globs_for_json_and_yaml(path: str):
    from pachhook.core.config import DEFAULT_TEMPLATE_GLOBS
    from pachhook.spec.sniff import has_conventional_name

    json_and_yaml = [glob for glob in DEFAULT_TEMPLATE_GLOBS if not glob.endswith(".jsonnet")]
    assert has_conventional_name(path) is GlobSet(json_and_yaml).matches(path)
