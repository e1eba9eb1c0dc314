"""`pachhook validate` as a user runs it: files in tmp_path, real processes, real git repos."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from pachhook import cli
from pachhook.commands import validate as command
from pachhook.spec.loader import MAX_FILE_BYTES

REPO = Path(__file__).resolve().parents[1]
# child processes import this checkout, installed or not, from whatever folder they run in
CHECKOUT_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])))

GOOD_JSON = """{
  "pipeline": {"name": "edges"},
  "transform": {
    "image": "registry.example.com/team/edges:{{ tag }}",
    "cmd": ["python3", "/edges.py"]
  },
  "input": {"pfs": {"repo": "images", "glob": "/*"}}
}
"""

GOOD_YAML = """pipeline:
  name: montage
transform:
  image: "registry.example.com/team/montage:{{ tag }}"
  cmd: [sh, -c, "echo {{ branch }}"]
input:
  pfs:
    repo: edges
    glob: /
"""


def run_cli(
    *args: str, cwd: Path | None = None, memory_mb: int | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    def limit() -> None:
        if memory_mb:
            size = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    return subprocess.run(
        [sys.executable, "-m", "pachhook", "validate", *args],
        cwd=cwd,
        env=CHECKOUT_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit if memory_mb else None,
    )


class CpuClock:
    """CPU seconds used by child processes: unlike wall time, not inflated when other
    work shares the machine, so a bound of a few seconds stays meaningful under load."""

    def __enter__(self) -> "CpuClock":
        self.start = self._children()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = self._children() - self.start

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_good_templates_pass(tmp_path, capsys):
    files = [write(tmp_path / "pipeline.json", GOOD_JSON), write(tmp_path / "m.pipeline.yaml", GOOD_YAML)]
    assert command.main([str(f) for f in files]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "pachhook: 0 errors, 0 warnings in 2 files\n"


def test_the_shipped_examples_are_valid(capsys):
    assert command.main([str(REPO / "examples")]) == 0, capsys.readouterr().out
    assert "in 2 files" in capsys.readouterr().err


def test_error_line_names_file_position_path(tmp_path, capsys):
    bad = write(tmp_path / "pipeline.json", GOOD_JSON.replace("{{ tag }}", "{{ sha }}"))
    assert command.main([str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{bad}:4:5: error: unknown placeholder {{{{ sha }}}}: the placeholders are"
        " {{ commit }}, {{ short_commit }}, {{ tag }}, {{ branch }} (transform.image)"
    ]


def test_an_image_pachhook_builds_must_be_a_valid_reference(tmp_path, capsys):
    # The image with a placeholder is pushed under its rendered name: a name no registry takes
    # is an error; a fixed image pachhook does not build only gets the warning pachctl gives none.
    built = write(tmp_path / "pipeline.json", GOOD_JSON.replace("team/edges", "Team/edges"))
    fixed = write(
        tmp_path / "fixed.pipeline.json",
        GOOD_JSON.replace("registry.example.com/team/edges:{{ tag }}", "<yourregistry>/edges:1.0"),
    )
    assert command.main([str(built), str(fixed)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1] for line in out] == ["error", "warning"]
    assert out[0].startswith(f"{built}:4:5: error: image ") and "lowercase" in out[0]
    assert out[1].startswith(f"{fixed}:4:5: warning: image ")
    assert command.main([str(fixed)]) == 0


def test_schema_problems_are_placed_in_the_template(tmp_path, capsys):
    # the unknown key sits after a rendered placeholder: positions still point at the file
    text = GOOD_YAML.replace("input:", "transfrom:\n  cmd: [x]\ninput:")
    bad = write(tmp_path / "pipeline.yaml", text)
    assert command.main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{bad}:6:1: error: ")
    assert "transfrom" in out and "transform" in out  # did you mean ...


def test_yaml_semantics_reach_the_user(tmp_path, capsys):
    bad = write(tmp_path / "pipeline.yaml", GOOD_YAML + "datumTries: 010\n")
    assert command.main([str(bad)]) == 1
    assert capsys.readouterr().out.startswith(f"{bad}:10:13: error: YAML reads 010 as an integer")


def test_json_format(tmp_path, capsys):
    bad = write(tmp_path / "pipeline.json", GOOD_JSON.replace("{{ tag }}", "{{ sha }}"))
    good = write(tmp_path / "ok" / "pipeline.json", GOOD_JSON)
    assert command.main(["--format", "json", str(bad), str(good)]) == 1
    records = json.loads(capsys.readouterr().out)
    assert records == [
        {
            "file": str(bad),
            "line": 4,
            "column": 5,
            "severity": "error",
            "message": "unknown placeholder {{ sha }}: the placeholders are {{ commit }},"
            " {{ short_commit }}, {{ tag }}, {{ branch }}",
            "json_path": "transform.image",
            "rule": "unknown-placeholder",
            "document": 0,
        }
    ]


def test_json_format_with_no_problem_is_an_empty_list(tmp_path, capsys):
    good = write(tmp_path / "pipeline.json", GOOD_JSON)
    assert command.main(["--format=json", str(good)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_github_format(tmp_path, capsys):
    bad = write(
        tmp_path / "a,b.pipeline.json", '{"pipeline": {"name": "a"}, "transform": {}}\n{"pipeline": {"name": "b"}}'
    )
    assert command.main(["--format", "github", str(bad)]) == 1
    [line] = capsys.readouterr().out.splitlines()
    escaped = str(bad).replace(",", "%2C")
    assert line.startswith(f"::error file={escaped},line=2,col=1,title=pachhook concatenated-json::")
    assert "put a line holding only `---`" in line


def test_documents_of_a_multi_spec_file_are_numbered(tmp_path, capsys):
    text = GOOD_JSON + "---\n" + GOOD_JSON.replace("{{ tag }}", "{{ nope }}")
    bad = write(tmp_path / "pipeline.json", text)
    assert command.main(["--format", "json", str(bad)]) == 1
    [record] = json.loads(capsys.readouterr().out)
    assert (record["line"], record["document"]) == (13, 2)


def test_untagged_image_is_a_warning_and_strict_makes_it_an_error(tmp_path, capsys):
    spec = write(tmp_path / "pipeline.json", GOOD_JSON.replace(":{{ tag }}", ""))
    assert command.main([str(spec)]) == 0
    out = capsys.readouterr().out
    assert f"{spec}:4:5: warning: " in out
    assert command.main(["--strict", str(spec)]) == 1
    assert f"{spec}:4:5: error: " in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    assert command.main(["--format", "xml", "x.json"]) == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err
    assert command.main(["--no-such-flag"]) == 2


def test_missing_file_is_an_error_not_a_crash(tmp_path, capsys):
    assert command.main([str(tmp_path / "nope.json")]) == 1
    assert "cannot read file: No such file or directory" in capsys.readouterr().out


def test_no_file_finds_conventional_templates_in_the_repository(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    write(tmp_path / "a" / "pipeline.json", GOOD_JSON)
    write(tmp_path / "b" / "deep" / "x.pipeline.yml", GOOD_YAML.replace("{{ branch }}", "{{ who }}"))
    write(tmp_path / "c" / "other.json", "not a template, not checked")
    write(tmp_path / ".git" / "pipeline.json", "never checked")
    (tmp_path / "sub").mkdir()
    result = run_cli(cwd=tmp_path / "sub")  # from a sub-folder: the whole repository
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith(os.path.join("..", "b", "deep", "x.pipeline.yml") + ":5:")
    assert result.stderr == "pachhook: 1 error, 0 warnings in 2 files\n"


def test_no_file_uses_the_configured_globs(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    write(tmp_path / ".pachhook.toml", 'templates = ["specs/*.json"]\n')
    write(tmp_path / "specs" / "edges.json", GOOD_JSON)
    write(tmp_path / "pipeline.json", "{broken")  # not named by the configuration
    result = run_cli(cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == "pachhook: 0 errors, 0 warnings in 1 file\n"


def test_a_folder_argument_checks_the_templates_inside(tmp_path, capsys):
    write(tmp_path / "p" / "pipeline.json", '{"pipeline": {"name": "p"}, "transform": {broken')
    write(tmp_path / "q" / "pipeline.json", GOOD_JSON)
    assert command.main([str(tmp_path / "q")]) == 0
    assert command.main([str(tmp_path)]) == 1
    assert "invalid JSON" in capsys.readouterr().out


def test_no_templates_at_all(tmp_path):
    result = run_cli(cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "pachhook: no pipeline templates found\n")
    as_json = run_cli("--format", "json", cwd=tmp_path)
    assert (as_json.returncode, as_json.stdout) == (0, "[]\n")


def test_a_file_named_twice_is_checked_once(tmp_path, capsys):
    bad = write(tmp_path / "pipeline.json", '{"pipeline": {"name": "a"}, "transform": 3}')
    assert command.main([str(tmp_path), str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out.count(": error: ") == 1 and "(transform)" in captured.out
    assert captured.err == "pachhook: 1 error, 0 warnings in 1 file\n"


def test_a_reader_that_leaves_early_is_not_an_internal_error(tmp_path):
    # more problem lines than a pipe holds (64 kB), so that writing them meets the closed pipe
    keys = ",".join(f'"k{i}": 1' for i in range(100))
    paths = [
        write(
            tmp_path / f"p{n}" / "pipeline.json",
            '{"pipeline": {"name": "a"}, "transform": {"image": "busybox"}, ' + keys + "}",
        )
        for n in range(40)
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "pachhook", "validate", *map(str, paths)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=CHECKOUT_ENV,
    )
    process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=30) == 141  # as a shell reports a writer whose reader left
    assert stderr == ""


def test_console_script_and_module_agree(tmp_path):
    bad = write(tmp_path / "pipeline.json", '{"pipeline": {"name": "a"}, "transform": 3}')
    script = Path(sys.executable).parent / "pachhook"
    if not script.exists():
        pytest.skip(f"the console script is not installed beside {sys.executable}")
    by_script = subprocess.run([str(script), "validate", str(bad)], capture_output=True, text=True)
    by_module = run_cli(str(bad))
    assert by_script.returncode == by_module.returncode == 1
    assert by_script.stdout == by_module.stdout
    assert by_script.stdout.startswith(f"{bad}:1:") and "(transform)" in by_script.stdout


def test_an_internal_error_is_one_line_and_exit_3(tmp_path, capsys, monkeypatch):
    # fault injection: a bug anywhere below the command must stay visible but tidy
    import pachhook.validate.checks

    def broken(paths, strict=False, **options):
        raise KeyError("boom")

    monkeypatch.setattr(pachhook.validate.checks, "validate_paths", broken)
    assert cli.main(["validate", str(write(tmp_path / "pipeline.json", GOOD_JSON))]) == 3
    assert capsys.readouterr().err == "pachhook validate: internal error: KeyError: 'boom' (please report it)\n"


# --------------------------------------------------------------------------- hostile input


def _alias_bomb() -> bytes:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 16):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


HOSTILE = {
    "empty.json": (b"", "1:1: error: file holds no pipeline spec"),
    "latin1.yaml": (b"pipeline:\n  name: caf\xe9\n", "2:12: error: file is not UTF-8 text"),
    "scalar.yaml": (b"just a sentence\n", "1:1: error: a pipeline spec must be a mapping"),
    "bomb.yaml": (_alias_bomb(), "1:5: error: YAML anchors and aliases"),
    "deep.json": (b"[" * 100_000 + b"]" * 100_000, "error: values are nested more than"),
    "deep.yaml": (b"- " * 100_000 + b"x\n", "error: values are nested more than"),
    "binary.json": (bytes(range(256)) * 10, "error: file is not UTF-8 text"),
    "nul.yaml": (b"pipeline:\n  name: a\x00\n", "error: invalid YAML"),
    # big but under the size limit: counts of things, not bytes, must be bounded too
    # more specs than MAX_SPECS (10,000), under the byte limits
    "many-docs.json": (b'{"pipeline": {"name": "a"}}\n---\n' * 15_000, "error: file holds more than 10000 pipeline"),
    "many-docs.yaml": (b"pipeline: {name: a}\n---\n" * 11_000, "error: file holds more than 10000 pipeline"),
    "long-list.json": (b"[" + b'{"pipeline": {"name": "a"}},' * 15_000 + b"{}]", "error: file holds more than 10000"),
    "many-keys.json": (b"{" + b",".join(b'"k%d": 1' % i for i in range(250_000)) + b"}", "over the 2 MB limit"),
}


def test_a_megabytes_long_key_makes_a_short_line(tmp_path):
    path = write(
        tmp_path / "pipeline.json",
        '{"pipeline": {"name": "a"}, "transform": {"image": "busybox"}, "' + "k" * 1_500_000 + '": 1}',
    )
    result = run_cli(str(path), memory_mb=400)
    assert result.returncode == 1
    [line] = result.stdout.splitlines()
    # yaml.v3 refuses keys over 1024 characters; the key is shortened in the path
    assert len(line) < 400 and "a key longer than 1024 characters" in line, line[:400]


def test_thousands_of_unknown_keys_are_reported_quickly(tmp_path):
    keys = ",".join(f'"k{i}": 1' for i in range(9_000))
    path = write(tmp_path / "pipeline.json", GOOD_JSON.rstrip().rstrip("}") + ", " + keys + "}")
    with CpuClock() as clock:
        result = run_cli(str(path), memory_mb=400)
    assert clock.seconds < 5
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    # the first hundred, then one line for the rest
    unknown = [line for line in lines if ": error: unknown field 'k" in line]
    summary = [line for line in lines if "more problems in this spec are not listed (the first 100 are)" in line]
    assert len(lines) == 101 and len(unknown) == 100 and len(summary) == 1


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_gets_one_clear_line_fast_and_small(tmp_path, name):
    data, expected = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(data)
    with CpuClock() as clock:
        result = run_cli(str(path), memory_mb=400, timeout=30)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{path}:") and expected in line
    assert clock.seconds < 5


def test_fifty_megabyte_file_is_refused_unread(tmp_path):
    big = tmp_path / "pipeline.json"
    with open(big, "wb") as handle:
        handle.write(b'{"pipeline": {"name": "a"}, "transform": {"image": "busybox"}, "pad": "')
        handle.truncate(50 * 1024 * 1024)
    with CpuClock() as clock:
        result = run_cli(str(big), memory_mb=400)
    assert clock.seconds < 5
    assert result.returncode == 1
    assert result.stdout == (
        f"{big}:1:1: error: file is 50.0 MB, over the {MAX_FILE_BYTES // 1048576} MB limit"
        " for a pipeline spec file; it was not read\n"
    )


def test_largest_accepted_file_is_checked_in_bounded_time(tmp_path):
    # just under the limit, a real spec padded with a long description
    padding = "x" * (MAX_FILE_BYTES - 400)
    spec = GOOD_JSON.replace('"input"', f'"description": "{padding}",\n  "input"')
    path = write(tmp_path / "pipeline.json", spec)
    with CpuClock() as clock:
        result = run_cli(str(path), memory_mb=400)
    assert clock.seconds < 5
    assert (result.returncode, result.stdout) == (0, ""), result.stderr


# --------------------------------------------------------------------------- library API


def test_validate_bytes_places_problems_of_a_rendered_template():
    from pachhook.validate.checks import validate_bytes

    text = GOOD_YAML.replace("glob: /", "glob: /\n    branch: '{{ branch }}'\nbogus: 1")
    diagnostics = validate_bytes("t.pipeline.yaml", text.encode())
    assert [(d.line, d.column, d.json_path, d.rule) for d in diagnostics] == [(11, 1, "bogus", "unknown-field")]


def test_find_templates_uses_globs_and_skips_git(tmp_path):
    from pachhook.core.config import Config
    from pachhook.validate.checks import working_tree_templates

    for name in (
        "pipeline.json",
        "a/pipeline.yml",
        "a/b/x.pipeline.yaml",
        "a/notes.json",
        "specs/one.json",
        "specs/deep/two.json",
        ".git/pipeline.json",
    ):
        write(tmp_path / name, GOOD_JSON)
    found = working_tree_templates(tmp_path, Config(root=tmp_path))
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "pipeline.json",
        "a/pipeline.yml",
        "a/b/x.pipeline.yaml",
    ]
    only_specs = Config(root=tmp_path, templates=["specs/*.json"])
    assert [p.relative_to(tmp_path).as_posix() for p in working_tree_templates(tmp_path, only_specs)] == [
        "specs/one.json"
    ]
    any_depth = Config(root=tmp_path, templates=["specs/**/*.json"])
    assert [p.relative_to(tmp_path).as_posix() for p in working_tree_templates(tmp_path, any_depth)] == [
        "specs/one.json",
        "specs/deep/two.json",
    ]


def test_json_templates_need_no_heavy_imports(tmp_path):
    # the pre-commit hook's cost is mostly imports: none of these may load on the JSON path
    spec = write(tmp_path / "pipeline.json", GOOD_JSON)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pachhook", "validate", str(spec)],
        capture_output=True,
        text=True,
        env=CHECKOUT_ENV,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    heavy = {"yaml", "jsonschema", "docker", "git", "tomllib", "tomli", "difflib", "sqlite3", "dataclasses", "inspect"}
    # argparse's own help formatter imports shutil (with zlib, bz2, lzma) for every parser made
    heavy |= {"shutil", "bz2", "lzma"}
    assert imported and not heavy & imported, heavy & imported


def test_json_templates_need_no_jsonnet_engine_lookup_without_the_editable_finder(tmp_path):
    # As pip installs pachhook for pre-commit (no `site`, whose editable-install finder imports
    # importlib's helpers itself): looking for the Jsonnet engine (importlib.util, with
    # contextlib) is for Jsonnet templates only.
    spec = write(tmp_path / "pipeline.json", GOOD_JSON)
    env = dict(CHECKOUT_ENV, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    script = write(tmp_path / "pachhook", "import sys\nfrom pachhook.cli import main\nsys.exit(main())\n")
    result = subprocess.run(  # the console script, not `-m`: runpy imports importlib.util itself
        [sys.executable, "-S", "-X", "importtime", str(script), "validate", str(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    names = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    own = set(names[names.index("pachhook") :])
    assert "pachhook.spec.jsonnet" in own  # the module is there; the lookup is not
    assert sorted(own & {"importlib.util", "contextlib"}) == []


def test_staged_outside_a_repository_is_one_line_and_no_traceback(tmp_path):
    # `diff --cached` and `rev-parse` run at once; git's own words about the first say why
    env = dict(CHECKOUT_ENV, GIT_CEILING_DIRECTORIES=str(tmp_path))
    folder = tmp_path / "not-a-repo"
    folder.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "pachhook", "validate", "--staged"], cwd=folder, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("pachhook: cannot list the staged files: ")
    assert "not a git repository" in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
