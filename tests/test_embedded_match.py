"""The embedded store's re-check of candidates (chatapp/embedded_match.py) answers exactly as
mongomock's `filter_applies`, on filters mixing the conditions it decides itself (an
equality to an ObjectId or a string on a top-level field; `$exists` on an array's element,
`f.N`) with everything it leaves to mongomock, over documents whose fields hold that value,
another, an array holding it (among other types, nested arrays, sub-documents, some with a
field named like an index), nothing, or null."""
import pytest
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st
from mongomock import filtering

from chatapp.embedded_match import matcher

pytestmark = pytest.mark.skip_with_test_mongo_uri(
    "tests the embedded store itself (chatapp/embedded_match.py over mongomock), never the "
    "database server TEST_MONGO_URI names; the default suite runs it")

IDS = [ObjectId() for _ in range(3)]
SCALARS = st.sampled_from([*IDS, "a", "b", "", 1, 1.0, True, None])
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["a", "k", "0", "1"]), inner, max_size=2)),
    max_leaves=8)
FIELDS = st.sampled_from(["f", "g", "_id"])
CONDITIONS = st.one_of(
    st.sampled_from([*IDS, "a", "b", ""]),  # decided here when the field holds it
    SCALARS, VALUES,  # mongomock's
    st.builds(lambda v: {"$ne": v}, SCALARS),
    st.builds(lambda v: {"$in": [v]}, SCALARS),
    st.builds(lambda b: {"$exists": b}, st.booleans()))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(FIELDS, VALUES, max_size=3),
       st.dictionaries(st.one_of(FIELDS, st.sampled_from(["f.a", "g.0", "f.k", "g.1", "f.0",
                                                          "g.01", "f.0.a"])), CONDITIONS,
                       min_size=1, max_size=3),
       st.booleans())
def test_it_answers_as_mongomock(doc, filter, with_or):
    if with_or:
        filter = {**filter, "$or": [{"g": "a"}, {"f": IDS[0]}]}
    assert matcher(filter)(doc) == filtering.filter_applies(filter, doc)


def test_an_array_of_a_hundred_ids_holding_the_member():
    members = [ObjectId() for _ in range(100)]
    doc = {"_id": IDS[0], "member_ids": members, "blockers": []}
    query = {"_id": IDS[0], "member_ids": ObjectId(str(members[70])),
             "blockers.0": {"$exists": False}}
    assert matcher(query)(doc) is True
    assert matcher({**query, "member_ids": ObjectId()})(doc) is False
    assert matcher({**query, "blockers.0": {"$exists": True}})(doc) is False


def test_an_element_exists_decided_without_mongomock(monkeypatch):
    """`{"blockers.0": {"$exists": False}}` on a document without `blockers`, with none left,
    or with some: answered here (mongomock is not asked); a shorter array, whose sub-documents
    may hold a field named like the index, is mongomock's."""
    asked = []
    real = filtering.filter_applies
    monkeypatch.setattr(filtering, "filter_applies", lambda f, d: asked.append(f) or real(f, d))
    none_yet = {"pair": "a:b", "blockers.0": {"$exists": False}}
    assert matcher(none_yet)({"pair": "a:b"}) is True
    assert matcher(none_yet)({"pair": "a:b", "blockers": [IDS[0]]}) is False
    assert matcher(none_yet)({"pair": "a:c"}) is False
    assert matcher({"blockers.1": {"$exists": True}})({"blockers": [None, None]}) is True
    assert matcher(none_yet)({"pair": "a:b", "blockers": [{"0": 1}]}) is False  # element 0
    assert matcher(none_yet)({"pair": "a:b", "blockers": []}) is True  # blocked, unblocked
    assert asked == []
    undecided = [({"blockers.2": {"$exists": False}}, {"blockers": [{"2": 1}, 5]}),
                 ({"blockers.1": {"$exists": True}}, {"blockers": [{"1": 1}]}),
                 (none_yet, {"pair": "a:b", "blockers": "x"})]
    for query, doc in undecided:
        assert matcher(query)(doc) == real(query, doc)
    assert len(asked) == len(undecided)
