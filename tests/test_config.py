"""Repository configuration: `[tool.pachhook]` in pyproject.toml, else `.pachhook.toml`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pachhook.core.config import DEFAULT_TEMPLATE_GLOBS, Config, ConfigError, ImageConfig, load_config


def problems(tmp_path: Path, name: str, text: str) -> list:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    return caught.value.problems


def test_conventions_without_a_file(tmp_path: Path):
    config = load_config(tmp_path)
    assert config == Config(root=tmp_path)
    assert config.root == tmp_path and config.source is None
    assert config.templates == list(DEFAULT_TEMPLATE_GLOBS)
    assert (config.images, config.branches, config.tag, config.pin_digest, config.reprocess) == (
        {},
        None,
        "full",
        False,
        False,
    )
    assert (config.worker, config.pachctl, config.backend) == ("background", "pachctl", "pachctl")
    # no environments, no `branches`: only the default branch delivers (init.defaultBranch, else main)
    assert not config.deploys_branch("anything")


def test_every_key_from_pyproject(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n'
        "[tool.pachhook]\n"
        'templates = ["pipelines/**/*.json"]\n'
        'branches = ["main", "refs/heads/release/*"]\n'
        'tag = "short"\npin_digest = true\nreprocess = true\nworker = "manual"\n'
        'pachctl = "/opt/pachctl"\nbackend = "api"\n'
        '[tool.pachhook.images."registry.local:5000/team/edges"]\n'
        'dockerfile = "docker/edges.Dockerfile"\ncontext = "."\nbuild_args = { BASE = "x", N = 3 }\n',
        encoding="utf-8",
    )
    config = load_config(tmp_path)
    assert config.source == tmp_path / "pyproject.toml"
    assert config.templates == ["pipelines/**/*.json"]
    assert config.branches == ["main", "release/*"]
    assert config.deploys_branch("release/2.1") and not config.deploys_branch("dev")
    assert (config.tag, config.pin_digest, config.reprocess, config.worker, config.pachctl, config.backend) == (
        "short",
        True,
        True,
        "manual",
        "/opt/pachctl",
        "api",
    )
    assert config.images == {
        "registry.local:5000/team/edges": ImageConfig(
            "registry.local:5000/team/edges", "docker/edges.Dockerfile", ".", {"BASE": "x", "N": "3"}
        )
    }


def test_pyproject_without_the_section_falls_back_to_the_dotfile(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "pachhook-demo"\n', encoding="utf-8")
    (tmp_path / ".pachhook.toml").write_text('tag = "short"\n', encoding="utf-8")
    config = load_config(tmp_path)
    assert config.tag == "short" and config.source == tmp_path / ".pachhook.toml"


def test_pyproject_section_wins_over_the_dotfile(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[tool.pachhook]\nworker = "manual"\n', encoding="utf-8")
    (tmp_path / ".pachhook.toml").write_text('worker = "background"\n', encoding="utf-8")
    assert load_config(tmp_path).worker == "manual"


def test_unknown_keys_and_bad_values_name_file_line_and_key(tmp_path: Path):
    text = (
        '[project]\nname = "x"\n\n[tool.pachhook]\n'
        'tag = "long"\n'  # line 5
        "pin_digest = 1\n"  # 6
        "colour = true\n"  # 7
        'branches = "main"\n'  # 8
        '[tool.pachhook.images."reg/edges"]\n'  # 9
        'context = "../outside"\n'  # 10
        "bogus = 1\n"  # 11
        '[tool.pachhook.images."reg/montage:1.0"]\n'  # 12
        'dockerfile = "D"\n'
    )
    assert problems(tmp_path, "pyproject.toml", text) == [
        'pyproject.toml:5: tool.pachhook.tag: must be "full" or "short", not a string (\'long\')',
        "pyproject.toml:6: tool.pachhook.pin_digest: must be true or false, not an integer (1)",
        "pyproject.toml:7: tool.pachhook.colour: unknown key (known keys: backend, branches, build_concurrency,"
        " environments, images,"
        " jsonnet_args, keep_jobs, notify, pachctl, pachyderm_version, pin_digest, plan_on_push, reprocess,"
        " schema_from_cluster, tag, templates, verify, verify_timeout, worker)",
        "pyproject.toml:8: tool.pachhook.branches: must be a non-empty array of non-empty strings,"
        " not a string ('main')",
        'pyproject.toml:10: tool.pachhook.images."reg/edges".context: must be a path inside the'
        " repository, not '../outside'",
        'pyproject.toml:11: tool.pachhook.images."reg/edges".bogus: unknown key (known keys:'
        " dockerfile, context, build_args, platform, target, network, secrets, submodules, cache, builder)",
        'pyproject.toml:12: tool.pachhook.images."reg/montage:1.0": name the image repository without a tag or digest',
    ]


def test_dotfile_problems(tmp_path: Path):
    assert problems(tmp_path, ".pachhook.toml", '\nworker = "sometimes"\nbackend = 2\n') == [
        '.pachhook.toml:2: worker: must be "background" or "manual", not a string (\'sometimes\')',
        '.pachhook.toml:3: backend: must be "pachctl" or "api", not an integer (2)',
    ]


def test_invalid_toml_is_one_line_with_its_line(tmp_path: Path):
    (line,) = problems(tmp_path, ".pachhook.toml", 'tag = "short"\nworker = \n')
    assert line.startswith(".pachhook.toml:2: invalid TOML: ")


def test_parsed_toml_is_cached_and_the_cache_follows_edits(tmp_path: Path):
    cache = tmp_path / "cache"
    cache.mkdir()
    dotfile = tmp_path / ".pachhook.toml"
    dotfile.write_text('tag = "short"\n', encoding="utf-8")
    assert load_config(tmp_path, cache_dir=cache).tag == "short"
    assert (cache / "config.cache").is_file()
    dotfile.write_text('tag = "full"\n', encoding="utf-8")
    assert load_config(tmp_path, cache_dir=cache).tag == "full"
    dotfile.write_text('tag = "never"\n', encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config(tmp_path, cache_dir=cache)
