"""pipeline/layout.py: names in the history (fitted under NAME_MAX with the ~sha1
shortening), and the sweep of a history folder, which never removes what a row
refers to, never another path's history, and never goes through a link."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import layout
from pipeline.layout import (
    NAME_MAX,
    alias_name,
    baseline_name,
    diffs_dir,
    fit,
    real_dir,
    sweep,
    version_names,
    versions_dir,
)

STAMP = "2026-11-24_11-50-30"
DECORATIONS = [b"", b"_diffs", b"_versions", b"~2", b"_v" + STAMP.encode() + b".diff",
               b"-baseline-2026-11-24.txt"]


def tag(name: bytes) -> bytes:
    return b"~" + hashlib.sha1(name).hexdigest()[:8].encode()


# ---- fitting a name under NAME_MAX ----

def test_a_name_that_fits_is_left_alone() -> None:
    assert fit(b"notes.md", b"_diffs") == b"notes.md_diffs"
    name = b"n" * (NAME_MAX - 6)
    assert fit(name, b"_diffs") == name + b"_diffs"             # exactly NAME_MAX


def test_a_name_too_long_once_decorated_is_its_start_a_sha1_tag_and_the_decoration() -> None:
    name = b"n" * (NAME_MAX - 5)
    got = fit(name, b"_diffs")
    assert len(got) == NAME_MAX
    assert got == name[:NAME_MAX - 6 - 9] + tag(name) + b"_diffs"


def test_a_character_is_never_cut_in_two() -> None:
    name = "\u00e9".encode() * 127                              # 254 bytes, 2 per character
    for decoration in DECORATIONS[1:]:
        got = fit(name, decoration)
        assert len(got) <= NAME_MAX and got.endswith(tag(name) + decoration)
        got[:-len(tag(name) + decoration)].decode("utf-8")      # whole characters only
    emoji = "\U0001f600".encode() * 63                          # 252 bytes, 4 per character
    head = fit(emoji, b"_diffs")[:-len(tag(emoji) + b"_diffs")]
    assert head.decode("utf-8") == "\U0001f600" * (len(head) // 4)


def test_a_name_that_is_not_utf8_is_cut_where_it_must() -> None:
    name = b"\xe9" * 250                                        # latin-1: no characters to keep
    got = fit(name, b"_diffs")
    assert len(got) == NAME_MAX and got.endswith(tag(name) + b"_diffs")


NAMES = st.binary(min_size=1, max_size=NAME_MAX).filter(lambda n: b"/" not in n and b"\0" not in n)


@settings(max_examples=300, deadline=None)
@given(name=NAMES, other=NAMES, decoration=st.sampled_from(DECORATIONS))
def test_fit_always_fits_keeps_the_decoration_and_tells_names_apart(
        name: bytes, other: bytes, decoration: bytes) -> None:
    got = fit(name, decoration)
    assert len(got) <= NAME_MAX and got.endswith(decoration)
    assert fit(name, decoration) == got                          # the same name every time
    if len(name + decoration) <= NAME_MAX:
        assert got == name + decoration
    else:
        assert got[:-len(decoration) or None].endswith(tag(name))
    if other != name and len(other) == len(name):
        assert fit(other, decoration) != got


# ---- names of baselines and versions ----

@pytest.mark.parametrize("name, expected", [
    (b"report.md", b"report-baseline-2026-11-24.md"),
    (b".bashrc", b".bashrc-baseline-2026-11-24"),               # a dotfile has no extension
    (b"Makefile", b"Makefile-baseline-2026-11-24"),
    (b"archive.tar.gz", b"archive.tar-baseline-2026-11-24.gz"),
    (b"x." + b"e" * 33, b"x." + b"e" * 33 + b"-baseline-2026-11-24"),  # no 33-byte extension
])
def test_baseline_names(name: bytes, expected: bytes) -> None:
    assert baseline_name(name, "2026-11-24") == expected


def test_a_long_name_keeps_its_extension_in_the_baseline() -> None:
    name = b"r" * 250 + b".md"
    got = baseline_name(name, "2026-11-24")
    assert len(got) <= NAME_MAX and got.endswith(b"-baseline-2026-11-24.md")
    assert tag(b"r" * 250) in got


def test_version_names() -> None:
    assert version_names(b"notes.md", STAMP) == (
        b"notes.md_diffs/notes.md_v" + STAMP.encode() + b".diff",
        b"notes.md_versions/notes.md_v" + STAMP.encode())
    assert diffs_dir(b"a") == b"a_diffs" and versions_dir(b"a") == b"a_versions"
    assert alias_name(b"notes", 2) == b"notes~2"


def test_long_names_give_version_names_of_two_short_components() -> None:
    name = b"v" * 255
    for path in version_names(name, STAMP):
        folder, _, leaf = path.partition(b"/")
        assert len(folder) <= NAME_MAX and len(leaf) <= NAME_MAX
    diff, full = version_names(name, STAMP)
    assert diff.split(b"/")[0] == diffs_dir(name) and full.split(b"/")[0] == versions_dir(name)
    assert diff.endswith(b"_v" + STAMP.encode() + b".diff") and full.endswith(STAMP.encode())
    assert alias_name(name, 12).endswith(b"~12") and len(alias_name(name, 12)) == NAME_MAX


# ---- real_dir and sweep ----

def test_real_dir_is_a_folder_never_a_link_to_one(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    os.symlink(tmp_path / "d", tmp_path / "link")
    b = os.fsencode(tmp_path)
    assert real_dir(b + b"/d")
    assert not real_dir(b + b"/link") and not real_dir(b + b"/f") and not real_dir(b + b"/none")


def make_store(root: Path, name: str = "f.txt") -> Path:
    """A history folder: current copy, baseline, two diffs, one full copy, and litter."""
    store = root / name
    (store / f"{name}_diffs").mkdir(parents=True)
    (store / f"{name}_versions").mkdir()
    for rel in (name, "f-baseline-2026-11-24.txt", f"{name}_diffs/{name}_v1.diff",
                f"{name}_diffs/{name}_v2.diff", f"{name}_versions/{name}_v3",
                ".~snapback-x.tmp", f"{name}_diffs/{name}_v9.diff", f"{name}_versions/orphan"):
        (store / rel).write_text(rel)
    (store / "child").mkdir()                               # another path's history folder
    (store / "child" / "child").write_text("theirs")
    return store


def files_below(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() or p.is_symlink()}


def test_sweep_removes_only_what_no_row_refers_to(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    referenced = {b"f-baseline-2026-11-24.txt", b"f.txt_diffs/f.txt_v1.diff",
                  b"f.txt_diffs/f.txt_v2.diff", b"f.txt_versions/f.txt_v3"}
    removed = sweep(os.fsencode(store), b"f.txt", referenced, keep_current=True)
    assert removed == 3
    assert files_below(store) == {"f.txt", "f-baseline-2026-11-24.txt",
                                  "f.txt_diffs/f.txt_v1.diff", "f.txt_diffs/f.txt_v2.diff",
                                  "f.txt_versions/f.txt_v3", "child/child"}


def test_sweep_without_keep_current_removes_an_unreferenced_current_copy(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    sweep(os.fsencode(store), b"f.txt", set(), keep_current=False)
    assert files_below(store) == {"child/child"}
    assert (store / "f.txt_diffs").is_dir()                    # its own folders stay
    store2 = make_store(tmp_path / "two")
    sweep(os.fsencode(store2), b"f.txt", {b"f.txt"}, keep_current=False)
    assert (store2 / "f.txt").exists()                          # a row names it: kept


def test_sweep_never_goes_through_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    store = tmp_path / "hist" / "f.txt"
    store.mkdir(parents=True)
    os.symlink(outside, store / "f.txt_diffs")                  # a planted link
    (store / "stray").write_text("x")
    assert sweep(os.fsencode(store), b"f.txt", set(), keep_current=True) == 1   # the stray
    assert os.path.islink(store / "f.txt_diffs")                # not entered, left as it is
    assert (outside / "precious").read_text() == "keep"
    os.symlink(outside, tmp_path / "linked-store")              # the store itself a link
    assert sweep(os.fsencode(tmp_path / "linked-store"), b"precious", set(),
                 keep_current=False) == 0
    assert (outside / "precious").read_text() == "keep"


ENTRY = st.tuples(st.sampled_from(["", "f_diffs", "f_versions"]),
                  st.sampled_from(["f", "f_v1.diff", "f_v2", "f-baseline-2026-01-01",
                                   ".~snapback-1.tmp", "x", "f_v3.diff"]))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.sets(ENTRY, max_size=12), chosen=st.data(), keep_current=st.booleans())
def test_sweep_keeps_every_referenced_object_and_nothing_else(
        tmp_path_factory, entries, chosen, keep_current: bool) -> None:
    store = tmp_path_factory.mktemp("sweep") / "f"
    (store / "f_diffs").mkdir(parents=True)
    (store / "f_versions").mkdir()
    rels = {(f"{sub}/{leaf}" if sub else leaf) for sub, leaf in entries}
    for rel in rels:
        (store / rel).write_text(rel)
    referenced = chosen.draw(st.sets(st.sampled_from(sorted(rels)))) if rels else set()
    removed = sweep(os.fsencode(store), b"f", {os.fsencode(r) for r in referenced},
                    keep_current)
    left = files_below(store)
    assert set(referenced) <= left                              # never what a row refers to
    expected = set(referenced) | ({"f"} & rels if keep_current else set())
    assert left == expected
    assert removed == len(rels) - len(left)


def test_layout_is_what_versioned_uses() -> None:
    from pipeline import versioned
    assert versioned.baseline_name is layout.baseline_name
    assert versioned.version_names is layout.version_names
