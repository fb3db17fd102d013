"""The restore form's rules, and the words the browse page uses for modes and backup ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.datastructures import FormData

from backapp.domain.gitignore import GitIgnore
from backapp.domain.patterns import exact_path_pattern, pattern_path
from backapp.web.formatting import backup_moment, file_mode
from backapp.web.restore_form import RestoreForm


@pytest.mark.parametrize(
    "path", ["home/me/docs", "a/b*c.txt", "a/[x] y", "a/!bang", "a/#hash", "a/back\\slash", "a/sp "]
)
def test_a_picked_path_selects_itself_and_what_is_below_it_and_nothing_else(path: str) -> None:
    spec = GitIgnore([exact_path_pattern(path)])
    assert spec.matches(path, False) and spec.matches(path, True)
    assert spec.matches(path + "/inner/file.txt", False)
    assert not spec.matches(path + "x", False)
    assert not spec.matches("elsewhere/" + path, False)
    assert pattern_path(exact_path_pattern(path)) == "/" + path


def test_the_form_starts_with_a_new_folder_and_the_picked_paths() -> None:
    form = RestoreForm.for_paths(["/home/me/docs/", "home/me/docs", "", "home/me/a.txt"])
    assert form.paths == ["home/me/docs", "home/me/a.txt"]
    assert (form.what, form.where) == ("selected", "new")
    arguments, problems = form.plan_arguments()
    assert problems == []
    assert arguments == {
        "target": None,
        "in_place": False,
        "include": ["/home/me/docs", "/home/me/a.txt"],
        "existing": None,
    }
    assert RestoreForm.for_paths([]).what == "all"


def test_the_original_location_needs_an_explicit_choice_for_files_already_there() -> None:
    form = RestoreForm.from_form(FormData([("what", "all"), ("where", "original")]))
    _, problems = form.plan_arguments()
    assert [name for name, _ in problems] == ["existing"]
    form.existing = "refuse"
    assert [name for name, _ in form.plan_arguments()[1]] == ["existing"]
    form.existing = "keep-both"
    arguments, problems = form.plan_arguments()
    assert problems == []
    assert arguments == {"target": None, "in_place": True, "include": [], "existing": "keep-both"}


def test_this_folder_needs_a_path_and_stops_at_a_non_empty_one_unless_told() -> None:
    form = RestoreForm.from_form(FormData([("where", "folder"), ("target", "  ")]))
    assert form.plan_arguments()[1] == [
        ("target", "type the absolute path of the folder to restore into")
    ]
    form.target = " /srv/restored "
    arguments, problems = form.plan_arguments()
    assert problems == []
    assert arguments["target"] == "/srv/restored"
    assert arguments["existing"] is None  # the service's default: refuse a non-empty folder
    picked_nothing = RestoreForm.from_form(FormData([("what", "selected")]))
    assert [name for name, _ in picked_nothing.plan_arguments()[1]] == ["what"]


def test_modes_read_as_ls_shows_them_and_backup_ids_name_their_moment() -> None:
    assert file_mode("file", "0644") == "-rw-r--r--"
    assert file_mode("dir", "0755") == "drwxr-xr-x"
    assert file_mode("symlink", 0o777) == "lrwxrwxrwx"
    assert file_mode("file", "4755") == "-rwsr-xr-x"
    assert backup_moment("20261126T020000.123Z-3f9a1c") == datetime(
        2026, 11, 26, 2, 0, 0, 123000, tzinfo=UTC
    )
    assert backup_moment("20261126T020000Z-3f9a1c") == datetime(2026, 11, 26, 2, tzinfo=UTC)
    assert backup_moment("latest") is None
