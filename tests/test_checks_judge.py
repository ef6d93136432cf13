"""A change is judged by what it did: each check is compared with the base commit's run."""

from __future__ import annotations

from pathlib import Path

from pas_core.runtime.checks import CheckSpec, failure_text, judge, junit_outcomes

TESTS = CheckSpec("tests", "python -m pytest -q", "default", "PAS")
LINT = CheckSpec("lint", "ruff check .", "directive", "alice")


def raw(code: int | None, tests: dict[str, str] | None = None, **more) -> dict:
    return {
        "exit_code": code,
        "duration_s": 1.0,
        "timed_out": False,
        "output_tail": "out",
        "tests": tests,
        **more,
    }


def test_a_test_that_passed_before_and_fails_now_is_a_regression():
    before = raw(0, {"t::a": "passed", "t::b": "passed"})
    after = raw(1, {"t::a": "failed", "t::b": "passed", "t::new": "failed"})
    result = judge(TESTS, after, before)
    assert result["status"] == "failed" and result["regression"] is True
    # A new test that fails is the change's too.
    assert result["regressions"] == ["t::a", "t::new"]


def test_a_test_that_failed_before_too_is_pre_existing_and_not_blamed():
    before = raw(1, {"t::a": "passed", "t::flaky": "failed"})
    after = raw(1, {"t::a": "passed", "t::flaky": "failed", "t::new": "passed"})
    result = judge(TESTS, after, before)
    assert result["status"] == "failed"  # It did fail: said as it is...
    assert result["regression"] is False  # ...but not blamed on the change,
    assert result["pre_existing"] == ["t::flaky"]  # and the report says it was there.
    assert "failed on the base commit too" in result["note"]


def test_without_test_ids_the_exit_codes_are_compared():
    assert judge(LINT, raw(1), raw(0))["regression"] is True
    kept = judge(LINT, raw(1), raw(1))
    assert kept["regression"] is False and "exit 1" in kept["note"]
    assert judge(LINT, raw(0), raw(1))["status"] == "passed"


def test_a_check_that_could_not_run_is_an_error_never_a_pass():
    missing = judge(LINT, raw(127), raw(127))
    assert missing["status"] == "error" and missing["regression"] is False
    never = judge(LINT, raw(None, error="could not start"), None)
    assert never["status"] == "error"


def test_a_timeout_is_a_regression_only_when_the_base_finished():
    hung = raw(137, timed_out=True, error="stopped at its time limit (600 s)")
    assert judge(TESTS, hung, raw(0))["regression"] is True
    both = judge(TESTS, hung, raw(137, timed_out=True))
    assert both["status"] == "error" and both["regression"] is False


def test_a_failure_whose_base_could_not_be_checked_is_blamed():
    assert judge(LINT, raw(1), None)["regression"] is True


def test_junit_ids_and_outcomes(tmp_path: Path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_a" name="test_err"><error message="x"/></testcase>'
        '<testcase classname="tests.test_a" name="test_skip"><skipped/></testcase>'
        "</testsuite></testsuites>"
    )
    assert junit_outcomes(xml) == {
        "tests.test_a::test_ok": "passed",
        "tests.test_a::test_bad": "failed",
        "tests.test_a::test_err": "failed",
        "tests.test_a::test_skip": "skipped",
    }
    assert junit_outcomes(tmp_path / "missing.xml") is None
    (tmp_path / "bad.xml").write_text("<testsuite")
    assert junit_outcomes(tmp_path / "bad.xml") is None


def test_the_failure_text_carries_the_command_and_the_output_tail():
    result = judge(
        TESTS,
        raw(1, {"t::a": "failed"}, output_tail="E   assert 2 == 3"),
        raw(0, {"t::a": "passed"}),
    )
    text = failure_text([result])
    assert "check 'tests' failed: `python -m pytest -q` exited 1" in text
    assert "new failures: t::a" in text and "E   assert 2 == 3" in text
