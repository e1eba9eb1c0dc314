"""Tags are immutable: a SHA tag already in the registry is adopted, never pushed over.

The real engine and registry (tests/services): a second build of the same commit (CI,
another clone) must not replace the image a first build pushed under the commit's tag.
"""

from __future__ import annotations

import uuid

import pytest
from test_build import commit_all, edges_files, git, make_repo
from test_push import deliver, make_job, push_again, served_digest

from pachhook.deliver import dockerclient
from pachhook.deliver.steps.base import StepError


def retag(local_ref: str, new_ref: str) -> None:
    client = dockerclient.make_client()
    repository, _, tag = new_ref.rpartition(":")
    client.images.get(local_ref).tag(repository, tag)


@pytest.mark.integration
def test_a_tag_built_elsewhere_for_this_commit_is_adopted_not_pushed_over(docker_env, tmp_path):
    repo = make_repo(tmp_path, edges_files(docker_env))
    name = f"test-push/{uuid.uuid4().hex[:10]}"
    image = f"{docker_env.registry}/{name}"
    first_job = make_job(repo, image)
    first, _ = deliver(repo, first_job)  # "CI" built and pushed IMAGE:C1
    served = first["push"].data["digest"]
    # This clone builds the same commit into another image (another engine, another
    # timestamp...): here, the image of a later commit given the same tag locally.
    (repo / "edges" / "nonce.txt").write_text(uuid.uuid4().hex)
    commit_all(repo, "another context")
    later, _ = deliver(repo, make_job(repo, image), steps=("build",))
    retag(later["build"].data["image_ref"], f"{image}:{first_job.commit}")

    again, lines = push_again(repo, first_job, dict(first["build"].data))

    assert again.outcome == "reused"
    assert again.data["digest"] == served
    assert again.data["repo_digest"] == f"{image}@{served}"
    assert served_digest(docker_env.registry, name, first_job.commit) == served  # never pushed over
    assert any("built elsewhere" in line for line in lines), lines
    assert not any("Pushed" in line for line in lines), lines


@pytest.mark.integration
def test_a_tag_whose_image_names_another_line_of_history_is_refused(docker_env, tmp_path):
    repo = make_repo(tmp_path, edges_files(docker_env))
    name = f"test-push/{uuid.uuid4().hex[:10]}"
    image = f"{docker_env.registry}/{name}"
    base = git(repo, "rev-parse", "HEAD")
    (repo / "edges" / "nonce.txt").write_text(uuid.uuid4().hex)
    feature = commit_all(repo, "feature context")
    feature_built, _ = deliver(repo, make_job(repo, image), steps=("build",))
    git(repo, "checkout", "-q", "-b", "other", base)
    (repo / "edges" / "nonce.txt").write_text(uuid.uuid4().hex)
    sibling = commit_all(repo, "a sibling commit")
    # Someone pushed the feature commit's image under the sibling's tag.
    retag(feature_built["build"].data["image_ref"], f"{image}:{sibling}")
    dockerclient.make_client().images.push(image, tag=sibling)
    pushed = served_digest(docker_env.registry, name, sibling)
    sibling_job = make_job(repo, image)
    sibling_built, _ = deliver(repo, sibling_job, steps=("build",))

    with pytest.raises(StepError) as caught:
        push_again(repo, sibling_job, dict(sibling_built["build"].data))

    message = str(caught.value)
    assert "\n" not in message
    assert f"registry {docker_env.registry} already serves {image}:{sibling} as {pushed}" in message
    assert f"built for commit {feature[:12]}, neither {sibling[:12]} nor an ancestor" in message
    assert caught.value.retryable is False
    assert served_digest(docker_env.registry, name, sibling) == pushed
