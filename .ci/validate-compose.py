#!/usr/bin/env python3
"""Validates docker-compose.yml and the Dockerfile without a Docker engine.

CI machines here have no Docker daemon, so the container set-up would otherwise rot
unnoticed. This checks what can be checked statically:

* docker-compose.yml parses (PyYAML), and `docker-compose config -q` accepts it when
  docker-compose v1 is installed;
* every service has an image or a build whose context and Dockerfile exist;
* every bind-mounted file or directory under the repository exists;
* every depends_on target is a service, with a known condition;
* the Dockerfile's COPY sources (outside --from stages) exist in the repository and
  are not excluded by .dockerignore, every workspace member of Cargo.toml is copied,
  and its build stage runs `cargo build ... -p kafka-transit`.

Exits non-zero naming every problem found.  Usage: python3 .ci/validate-compose.py
"""
import os
import re
import shutil
import subprocess
import sys
import tomllib

try:
    import yaml
except ImportError:
    sys.exit("validate-compose: PyYAML is missing: python3 -m pip install pyyaml")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSE = os.path.join(REPO, "docker-compose.yml")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
problems = []


def problem(message: str) -> None:
    problems.append(message)


def inside_repo(path: str) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(REPO) + os.sep) or \
        os.path.realpath(path) == os.path.realpath(REPO)


def check_build(name: str, build) -> list[str]:
    """Returns the Dockerfiles a service builds with."""
    if isinstance(build, str):
        build = {"context": build}
    context = os.path.join(REPO, build.get("context", "."))
    if not os.path.isdir(context):
        problem(f"service {name}: build context {build.get('context')!r} is not a directory")
        return []
    dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
    if not os.path.isfile(dockerfile):
        problem(f"service {name}: Dockerfile {os.path.relpath(dockerfile, REPO)!r} does not exist")
        return []
    return [dockerfile]


def check_volumes(name: str, volumes) -> None:
    for volume in volumes or []:
        if isinstance(volume, dict):  # long syntax
            kind, source = volume.get("type"), volume.get("source", "")
            if kind != "bind":
                continue
        else:
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/", "~")):
                continue  # a named volume
        path = os.path.join(REPO, os.path.expanduser(source))
        if inside_repo(path) and not os.path.exists(path):
            problem(f"service {name}: bind-mounted {source!r} does not exist in the repository")


def check_depends_on(name: str, depends_on, services) -> None:
    if isinstance(depends_on, list):
        depends_on = {target: {} for target in depends_on}
    for target, spec in (depends_on or {}).items():
        if target not in services:
            problem(f"service {name}: depends_on names {target!r}, which is not a service")
        condition = (spec or {}).get("condition", "service_started")
        if condition not in CONDITIONS:
            problem(f"service {name}: depends_on {target}: unknown condition {condition!r}")
        if condition == "service_healthy" and target in services and "healthcheck" not in services[target]:
            problem(f"service {name}: waits for {target} to be healthy, but {target} has no healthcheck")


def dockerfile_instructions(path: str):
    """(instruction, arguments) pairs, with continuation lines joined and comments dropped."""
    text, joined = open(path, encoding="utf-8").read(), []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        joined.append(current)
        current = ""
    for line in joined:
        instruction, _, arguments = line.partition(" ")
        yield instruction.upper(), arguments.strip()


def check_dockerfile(path: str) -> None:
    context = os.path.dirname(path)
    relative = os.path.relpath(path, REPO)
    stages, builds_host, copied = 0, False, set()
    for instruction, arguments in dockerfile_instructions(path):
        if instruction == "FROM":
            stages += 1
        elif instruction in ("COPY", "ADD"):
            words = arguments.split()
            if any(w.startswith("--from=") for w in words):
                continue
            words = [w for w in words if not w.startswith("--")]
            if words and words[0].startswith("["):  # JSON form
                words = re.findall(r'"([^"]*)"', arguments)
            for source in words[:-1]:
                if re.match(r"^[a-z]+://", source):
                    continue
                copied.add(os.path.normpath(source))
                if ignored(context, source):
                    problem(f"{relative}: {instruction} source {source!r} is excluded by .dockerignore")
                if not any(os.path.exists(p) for p in
                           [os.path.join(context, source)] + _globbed(context, source)):
                    problem(f"{relative}: {instruction} source {source!r} does not exist in the build context")
        elif instruction == "RUN" and re.search(r"cargo\s+build\b.*(-p|--package)\s+kafka-transit\b", arguments):
            builds_host = True
    if stages == 0:
        problem(f"{relative}: no FROM")
    if not builds_host:
        problem(f"{relative}: no build stage runs `cargo build ... -p kafka-transit`")
    # cargo refuses a workspace whose members are missing, so every member must be copied.
    if builds_host and "." not in copied:
        with open(os.path.join(REPO, "Cargo.toml"), "rb") as manifest:
            members = tomllib.load(manifest)["workspace"]["members"]
        for member in members:
            if os.path.normpath(member) not in copied:
                problem(f"{relative}: workspace member {member!r} (Cargo.toml) is never copied into the image")


def ignored(context: str, source: str) -> bool:
    """Whether .dockerignore (simple patterns, no `!` exceptions) excludes a COPY source."""
    import fnmatch

    path = os.path.join(context, ".dockerignore")
    if not os.path.isfile(path):
        return False
    source = source.strip("/").removeprefix("./")
    for line in open(path, encoding="utf-8"):
        pattern = line.strip().rstrip("/")
        if pattern and not pattern.startswith(("#", "!")) and (
            fnmatch.fnmatch(source, pattern) or fnmatch.fnmatch(source, pattern.removeprefix("**/"))
        ):
            return True
    return False


def _globbed(context: str, source: str) -> list[str]:
    import glob

    return glob.glob(os.path.join(context, source)) if any(c in source for c in "*?[") else []


def main() -> None:
    if not os.path.isfile(COMPOSE):
        sys.exit(f"validate-compose: {COMPOSE} does not exist")
    try:
        compose = yaml.safe_load(open(COMPOSE, encoding="utf-8"))
    except yaml.YAMLError as error:
        sys.exit(f"validate-compose: docker-compose.yml does not parse: {error}")
    services = (compose or {}).get("services") or {}
    if not services:
        sys.exit("validate-compose: docker-compose.yml has no services")

    dockerfiles = set()
    for name, service in services.items():
        if not isinstance(service, dict):
            problem(f"service {name}: not a mapping")
            continue
        if "image" not in service and "build" not in service:
            problem(f"service {name}: neither image nor build")
        if "build" in service:
            dockerfiles.update(check_build(name, service["build"]))
        check_volumes(name, service.get("volumes"))
        check_depends_on(name, service.get("depends_on"), services)
    for dockerfile in sorted(dockerfiles):
        check_dockerfile(dockerfile)

    compose_v1 = shutil.which("docker-compose")
    if compose_v1:
        result = subprocess.run([compose_v1, "-f", COMPOSE, "config", "-q"], cwd=REPO,
                                capture_output=True, text=True)
        if result.returncode != 0:
            problem(f"docker-compose config -q: {result.stderr.strip() or result.stdout.strip()}")

    if problems:
        print("validate-compose: docker-compose.yml / Dockerfile problems:", file=sys.stderr)
        for message in problems:
            print(f"  - {message}", file=sys.stderr)
        sys.exit(1)
    checked = ", ".join(os.path.relpath(d, REPO) for d in sorted(dockerfiles))
    print(f"validate-compose: {len(services)} services OK ({', '.join(services)}); "
          f"Dockerfile(s) OK: {checked}"
          + ("; docker-compose config -q OK" if compose_v1 else "; docker-compose v1 not installed, skipped `config -q`"))


if __name__ == "__main__":
    main()
