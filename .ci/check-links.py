#!/usr/bin/env python3
"""Check every relative link in the repository's Markdown files.

For each tracked *.md file (`git ls-files '*.md'`, nothing under target/ or .library/),
every inline link `[text](path)`, `[text](path#anchor)` and `[text](#anchor)` outside
code blocks and code spans must resolve:

* the path, relative to the file, names a file or directory that exists;
* the anchor, when the target is a Markdown file, is the GitHub slug of one of its
  headings (lower case; punctuation other than `-` and `_` removed, backticks too;
  each space a `-`; a repeated heading gets `-1`, `-2`, ...) or an HTML `id`/`name`.

http(s) and mailto links are not checked, nor `{{placeholder}}` links in the templates
that `kafka-transit policy new` fills in. Exits 1 listing each broken link as
`file:line: link -> what is wrong`, 0 printing OK otherwise.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)([^`]+?)\1")
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ID = re.compile(r"<a\s[^>]*(?:id|name)=\"([^\"]+)\"")


def lines_outside_code(path):
    """(line number, text) of each line not inside a fenced code block."""
    fenced = False
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if FENCE.match(line):
                fenced = not fenced
            elif not fenced:
                yield number, line


def slug(heading):
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        seen, found = {}, set()
        for _, line in lines_outside_code(path):
            found.update(HTML_ID.findall(line))
            match = HEADING.match(line)
            if match:
                base = slug(match.group(2))
                count = seen.get(base, 0)
                seen[base] = count + 1
                found.add(base if count == 0 else f"{base}-{count}")
        cache[path] = found
    return cache[path]


def check(source):
    # Whole text, so that a link whose text wraps onto the next line is seen too.
    lines = {number: line for number, line in lines_outside_code(os.path.join(ROOT, source))}
    text = "".join(lines.get(n, "\n") for n in range(1, max(lines, default=0) + 1))
    text = CODE_SPAN.sub(lambda m: "`" + re.sub(r"[^\n]", "x", m.group(2)) + "`", text)
    for match in LINK.finditer(text):
        link, number = match.group(2), text.count("\n", 0, match.start(2)) + 1
        if not link or re.match(r"^(https?|mailto):", link) or "{{" in link:
            continue
        target, _, anchor = link.partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(source), target)) if target else source
        full = os.path.join(ROOT, path)
        if not os.path.exists(full):
            yield f"{source}:{number}: {link} -> no such file {path}"
        elif anchor and path.endswith(".md") and anchor not in anchors(full):
            yield f"{source}:{number}: {link} -> {path} has no heading #{anchor}"


def main():
    files = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    files = [f for f in files if not f.startswith(("target/", ".library/"))]
    broken = [problem for source in files for problem in check(source)]
    for problem in broken:
        print(problem)
    if broken:
        print(f"{len(broken)} broken link(s) in {len(files)} Markdown files", file=sys.stderr)
        return 1
    print(f"OK: every relative link and anchor in {len(files)} Markdown files resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
