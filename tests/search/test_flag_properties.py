"""Property-based checks of the launch flags and the YAML reader (issue 27): any value is either
accepted as the rule states or refused as one ``RankSearchError`` line naming the flag; nothing
else escapes (no OverflowError, no ValueError of another kind, no hang)."""
from __future__ import annotations

import math

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rank_search import safe_yaml
from rank_search.errors import RankSearchError
from rank_search.search.settings import MAX_SAMPLES, MAX_SEED, LaunchConfig

NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30))


def _outcome(**kw):
    try:
        return LaunchConfig(space="demo", **kw)
    except RankSearchError as exc:
        text = str(exc)
        assert "\n" not in text and text.startswith("--"), text
        return text


@settings(max_examples=150, deadline=None)
@given(value=NUMBERS)
def test_cpus_per_trial_is_a_finite_positive_number_or_one_line(value) -> None:
    out = _outcome(cpus_per_trial=value)
    ok = isinstance(out, LaunchConfig)
    assert ok == (math.isfinite(value) and value > 0), (value, out)
    assert ok or "--cpus-per-trial" in out


@settings(max_examples=150, deadline=None)
@given(value=st.integers(-10**30, 10**30), flag=st.sampled_from(["seed", "train_seed"]))
def test_seeds_are_in_numpys_range_or_one_line(value, flag) -> None:
    out = _outcome(**{flag: value})
    assert isinstance(out, LaunchConfig) == (0 <= value <= MAX_SEED), (value, out)


@settings(max_examples=150, deadline=None)
@given(value=st.integers(-10**30, 10**30))
def test_num_samples_is_bounded_or_one_line(value) -> None:
    out = _outcome(num_samples=value)
    assert isinstance(out, LaunchConfig) == (1 <= value <= MAX_SAMPLES), (value, out)


@settings(max_examples=150, deadline=None)
@given(name=st.text(min_size=0, max_size=300))
def test_names_are_plain_printable_folder_names_or_one_line(name) -> None:
    out = _outcome(name=name)
    plain = (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and name.isprintable()
             and len(name.encode("utf-8")) <= 200)
    assert isinstance(out, LaunchConfig) == plain, (name, out)


DOCS = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                              st.floats(allow_nan=False)),
                    lambda kids: st.one_of(st.lists(kids, max_size=4),
                                           st.dictionaries(st.text(max_size=5), kids, max_size=4)),
                    max_leaves=40)


@settings(max_examples=150, deadline=None)
@given(doc=DOCS)
def test_safe_yaml_reads_what_safe_dump_writes_as_safe_load_does(doc) -> None:
    text = yaml.safe_dump(doc)
    assert safe_yaml.load(text) == yaml.safe_load(text)


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(1, 400), style=st.sampled_from(["flow", "block"]))
def test_any_nesting_is_read_or_refused_by_its_depth(depth, style) -> None:
    # flow: `depth` nested lists; block: `depth` nested lists and the scalar inside them
    text = ("[" * depth + "]" * depth) if style == "flow" else "".join(" " * i + "- " for i in range(depth)) + "x\n"
    levels = depth if style == "flow" else depth + 1
    try:
        safe_yaml.load(text)
        refused = False
    except safe_yaml.YAMLLimitError as exc:
        assert "nests deeper than" in str(exc)
        refused = True
    assert refused == (levels > safe_yaml.MAX_DEPTH), (depth, style)
