"""The run query language (``?q=``): tokenizer, parser and matcher, then through the API."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expman_tornado.store.search import (
    AllOf,
    AnyOf,
    Comparison,
    Not,
    SearchError,
    Word,
    parse_query,
    tokenize,
)

from .conftest import assert_api_error, strict_json

#: Run summaries as the runs route builds them (only the keys a query reads).
RUNS = [
    {"id": "resnet-1", "name": "ResNet baseline", "status": "FINISHED", "tags": ["sweep", "keep"],
     "started_at": "2026-01-05T09:00:00.123456789Z", "stale": False, "duration_secs": 120.5,
     "params": {"lr": 0.001, "optimizer.name": "adamw", "wd": "1e-4", "layers": 50},
     "metrics": {"loss": 0.25, "val loss": 0.3, "acc": 0.91}, "scalars": {"best_acc": 0.93}},
    {"id": "resnet-2", "name": "my run", "status": "FAILED", "tags": ["sweep"],
     "started_at": "2026-01-06T10:00:00Z", "stale": False, "duration_secs": None,
     "params": {"lr": 0.01, "optimizer.name": "sgd", "layers": 18},
     "metrics": {"loss": None, "acc": 0.5}, "scalars": {}},
    {"id": "vit", "name": "vit", "status": None, "tags": [],
     "started_at": None, "stale": True, "duration_secs": 30,
     "params": {"lr": "3e-4", "status": "shadowed"},
     "metrics": {"loss": 0.9}, "scalars": {"best_acc": 0.4}},
]


def matching(query: str) -> list[str]:
    node = parse_query(query)
    return [run["id"] for run in RUNS if node is None or node.matches(run)]


@pytest.mark.parametrize("query, expected", [
    ("", ["resnet-1", "resnet-2", "vit"]),
    ("   ", ["resnet-1", "resnet-2", "vit"]),
    # Numbers, also against params that YAML read as text.
    ("lr>=1e-3", ["resnet-1", "resnet-2"]),
    ("lr<1e-3", ["vit"]),
    ("lr=0.001", ["resnet-1"]),
    ("lr!=0.001", ["resnet-2", "vit"]),
    ("wd<=1e-4", ["resnet-1"]),
    ("layers>18", ["resnet-1"]),
    ("layers>=18", ["resnet-1", "resnet-2"]),
    # Metric tails; a NaN tail (null) compares false, except with != and =null.
    ("loss<0.5", ["resnet-1"]),
    ("loss>0.5", ["vit"]),
    ("loss=null", ["resnet-2"]),
    ("loss!=null", ["resnet-1", "vit"]),
    ("loss!=0.25", ["resnet-2", "vit"]),
    ('"val loss"<0.31', ["resnet-1"]),
    ("'val loss'>=0.3", ["resnet-1"]),
    ("best_acc>0.5", ["resnet-1"]),
    # Fields: text ignores case, `:` and `=` are both equality.
    ("status:FINISHED", ["resnet-1"]),
    ("status=finished", ["resnet-1"]),
    ("status!=FINISHED", ["resnet-2", "vit"]),
    ("status:null", ["vit"]),
    ("tag:sweep", ["resnet-1", "resnet-2"]),
    ("tags:keep", ["resnet-1"]),
    ("tag!=keep", ["resnet-2", "vit"]),
    ("tag~swe", ["resnet-1", "resnet-2"]),
    ("name~resnet", ["resnet-1"]),
    ('name:"my run"', ["resnet-2"]),
    ("NAME:vit", ["vit"]),
    ("stale:true", ["vit"]),
    ("stale=false", ["resnet-1", "resnet-2"]),
    ("duration>60", ["resnet-1"]),
    ("duration_secs<60", ["vit"]),
    ("started_at>=2026-01-06", ["resnet-2"]),
    ("started_at<2026-01-06T00:00:00+00:00", ["resnet-1"]),
    ("started_at~2026-01-05", ["resnet-1"]),
    # A field wins over a param of the same name; a prefix picks the group.
    ("status:shadowed", []),
    ("params.status:shadowed", ["vit"]),
    ("optimizer.name:adamw", ["resnet-1"]),
    ("params.optimizer.name~gd", ["resnet-2"]),
    ("metrics.loss<0.3", ["resnet-1"]),
    ("scalars.best_acc<0.5", ["vit"]),
    # A name a run lacks counts as null.
    ("missing=1", []),
    ("missing<1", []),
    ("missing!=1", ["resnet-1", "resnet-2", "vit"]),
    ("missing~x", []),
    ("missing=null", ["resnet-1", "resnet-2", "vit"]),
    ("missing!=null", []),
    ("duration=null", ["resnet-2"]),
    # A number and a text are not ordered.
    ("optimizer.name>1", []),
    ("lr>abc", []),
    # Bare words match the id or the name.
    ("resnet", ["resnet-1", "resnet-2"]),
    ("baseline", ["resnet-1"]),
    ('"my run"', ["resnet-2"]),
    ("RESNET-2", ["resnet-2"]),
    # and, or, not, parentheses, juxtaposition.
    ("resnet and status:FAILED", ["resnet-2"]),
    ("resnet status:FAILED", ["resnet-2"]),
    ("status:FAILED or vit", ["resnet-2", "vit"]),
    ("not tag:keep", ["resnet-2", "vit"]),
    ("NOT tag:keep AND lr>=0.01", ["resnet-2"]),
    ("tag:keep or status:FAILED and lr>0.005", ["resnet-1", "resnet-2"]),
    ("(tag:keep or status:FAILED) and lr>0.005", ["resnet-2"]),
    ("not (resnet or vit)", []),
    ("not not vit", ["vit"]),
])
def test_query_matches(query, expected):
    assert matching(query) == expected


@pytest.mark.parametrize("query, position, token, mentions", [
    ("loss<", 5, "", "expected a value after '<' at character 6"),
    ("loss< and acc>1", 6, "and", "found 'and'"),
    ("<5", 0, "<", "at character 1"),
    ("a and", 5, "", "the end of the query"),
    ("or a", 0, "or", "found 'or'"),
    ("not", 3, "", "at character 4"),
    ("(a", 0, "(", "the '(' at character 1 is never closed"),
    ("a (b or c", 2, "(", "at character 3"),
    ("a)", 1, ")", "the ')' at character 2 has no matching '('"),
    ("()", 1, ")", "at character 2"),
    ("!x", 0, "!", "use '!=' or 'not'"),
    ("lr!0.1", 2, "!", "at character 3"),
    ('name:"abc', 5, '"abc', "the quote at character 6 is never closed"),
    ("a<b<c", 3, "<", "at character 4"),
    ("loss<<1", 5, "<", "found '<'"),
    ("started_at>yesterday", 11, "yesterday", "a date or time"),
    ("(" * 70 + "a" + ")" * 70, 64, "(", "more than 64 nested"),
])
def test_query_errors(query, position, token, mentions):
    with pytest.raises(SearchError) as caught:
        parse_query(query)
    assert caught.value.position == position
    assert caught.value.token == token
    assert mentions in str(caught.value)


def test_query_too_long():
    with pytest.raises(SearchError) as caught:
        parse_query("x" * 5000)
    assert "5000 characters" in str(caught.value)


def test_tokens_kinds_and_positions():
    tokens = tokenize('lr>=1e-3 AND "val loss"<0.3 or(not x)')
    assert [(t.kind, t.text, t.position) for t in tokens] == [
        ("word", "lr", 0), ("op", ">=", 2), ("word", "1e-3", 4), ("and", "AND", 9),
        ("text", "val loss", 13), ("op", "<", 23), ("word", "0.3", 24), ("or", "or", 28),
        ("lparen", "(", 30), ("not", "not", 31), ("word", "x", 35), ("rparen", ")", 36),
        ("end", "", 37),
    ]


def test_quoted_escapes():
    tokens = tokenize(r'"a \"b\" \\ c"')
    assert tokens[0].text == 'a "b" \\ c'


def test_quoted_keyword_is_a_name():
    node = parse_query('"not"=1')
    assert node == Comparison("not", "=", node.value)
    assert node.value.number == 1


def test_parse_tree_shape():
    node = parse_query("a or b c or not d")
    assert node == AnyOf((Word("a"), AllOf((Word("b"), Word("c"))), Not(Word("d"))))


def test_large_integers_exact():
    run = {"id": "r", "params": {"seed": 2**53 + 1}}
    assert parse_query("seed=9007199254740993").matches(run)
    assert not parse_query("seed=9007199254740992").matches(run)


# Properties

NAMES = st.sampled_from(["lr", "loss", "status", "tag", "name", "layers", "missing", "val loss"])
VALUES = st.sampled_from(["0.001", "1e-3", "0.5", "18", "FINISHED", "sweep", "null", "true", "my run", "-2"])
OPERATORS = st.sampled_from(["=", ":", "!=", "<", "<=", ">", ">=", "~"])


def quoted(text: str) -> str:
    return '"%s"' % text if " " in text else text


comparisons = st.builds(lambda name, op, value: (quoted(name) + op + quoted(value),
                                                 Comparison(name, op, parse_query("x=" + quoted(value)).value)),
                        NAMES, OPERATORS, VALUES)
words = st.sampled_from(["resnet", "vit", "run"]).map(lambda w: (w, Word(w)))


def combine(children):
    pairs = st.tuples(children, children)
    return st.one_of(
        pairs.map(lambda p: ("(%s or %s)" % (p[0][0], p[1][0]), AnyOf((p[0][1], p[1][1])))),
        pairs.map(lambda p: ("(%s and %s)" % (p[0][0], p[1][0]), AllOf((p[0][1], p[1][1])))),
        children.map(lambda c: ("not %s" % c[0], Not(c[1]))),
    )


queries = st.recursive(st.one_of(comparisons, words), combine, max_leaves=8)


def evaluate(node, run: dict) -> bool:
    """Evaluate a tree built by the strategies, independently of the parser's own nodes."""
    if isinstance(node, AnyOf):
        return any(evaluate(item, run) for item in node.items)
    if isinstance(node, AllOf):
        return all(evaluate(item, run) for item in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, run)
    return node.matches(run)


@settings(max_examples=300, deadline=None, database=None)
@given(queries)
def test_printed_query_parses_back(pair):
    text, tree = pair
    parsed = parse_query(text)
    for run in RUNS:
        assert parsed.matches(run) == evaluate(tree, run), text


@settings(max_examples=300, deadline=None, database=None)
@given(queries)
def test_not_is_the_complement(pair):
    text, _ = pair
    for run in RUNS:
        assert parse_query("not (%s)" % text).matches(run) != parse_query(text).matches(run)


PIECES = st.sampled_from(list("ab1.-_ ()\"'<>=!:~\\") + [" and ", " or ", "not ", "é", "\t"])


@settings(max_examples=500, deadline=None, database=None)
@given(st.lists(PIECES, max_size=30).map("".join))
def test_any_text_parses_or_raises_search_error(text):
    try:
        node = parse_query(text)
    except SearchError as exc:
        assert 0 <= exc.position <= len(text)
        assert text[exc.position:].startswith(exc.token) or exc.token == ""
        return
    if node is None:
        assert text.strip() == ""
        return
    for run in RUNS:
        assert isinstance(node.matches(run), bool)


# Through the API (the store written by the real logger: baseline, nan, failed)


async def run_ids(http_client, base_url, query: str) -> list[str]:
    url = base_url + "/api/experiments/vision/runs?q=" + quote(query, safe="")
    return sorted(run["id"] for run in strict_json((await http_client.fetch(url)).body))


@pytest.mark.gen_test
@pytest.mark.parametrize("query, expected", [
    ("", ["baseline", "failed", "nan"]),
    ("lr>=1e-3", ["baseline"]),
    ("optimizer.name:adamw", ["baseline"]),
    ("status:FAILED", ["failed"]),
    ("status!=FAILED", ["baseline", "nan"]),
    ("loss<0.1", ["baseline"]),
    ("loss>=0.5 and not status:FAILED", ["nan"]),
    ("best_acc>0.7", ["baseline"]),
    ("nan or fail", ["failed", "nan"]),
    ('name:"baseline"', ["baseline"]),
])
async def test_runs_query(http_client, base_url, query, expected):
    assert await run_ids(http_client, base_url, query) == expected


@pytest.mark.gen_test
async def test_runs_query_with_metrics_filter(http_client, base_url):
    url = base_url + "/api/experiments/vision/runs?metrics=val_acc&q=" + quote("loss<0.1")
    runs = strict_json((await http_client.fetch(url)).body)
    assert [run["id"] for run in runs] == ["baseline"]
    assert list(runs[0]["metrics"]) == ["val_acc"]


@pytest.mark.gen_test
@pytest.mark.parametrize("query, mentions", [
    ("loss<", "expected a value after '<' at character 6, found the end of the query"),
    ("lr>=1e-3 and (status:FAILED", "the '(' at character 14 is never closed"),
    ("status:FAILED)", "the ')' at character 14 has no matching '('"),
    ('name:"abc', "the quote at character 6 is never closed"),
])
async def test_runs_query_error_400(http_client, base_url, query, mentions):
    url = base_url + "/api/experiments/vision/runs?q=" + quote(query, safe="")
    response = await http_client.fetch(url, raise_error=False)
    error = assert_api_error(response, 400, mentions)
    assert error["message"].startswith("query parameter 'q' is invalid")
