#!/usr/bin/env python3
"""Replaces the text between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->` in a file
with standard input. Usage: bench/replace-section.py FILE NAME < new-text"""
import sys

path, name = sys.argv[1], sys.argv[2]
doc, new = open(path).read(), sys.stdin.read()
start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
if start not in doc or end not in doc:
    sys.exit(f"{path} lacks the bench:{name} markers")
head, rest = doc.split(start, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + start + "\n" + new.rstrip("\n") + "\n" + end + tail)
