"""Search: `GET /api/chat/search?q=&conversation=&limit=&before=`.

Every test here runs on the embedded store and, in the suite's second run (TEST_MONGO_URI),
through the MongoDB wire protocol: the same `$text` query either way. What "matches" means is
MongoDB's text search (index language "none"), reproduced for the embedded store by
chatapp/mongo_text.py; the last tests pin those rules and check that the embedded store's
text index answers as a plain scan with them does.
"""
from urllib.parse import parse_qs, urlsplit

import mongomock
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatapp import embedded, mongo_text
from chatapp.errors import ValidationError
from chatapp.schemas import load
from chatapp.search import service
from chatapp.search.schemas import SearchQuerySchema


@pytest.fixture
def people(auth):
    return {name: auth.user() for name in ("alice", "bob", "carol", "stranger")}


def send(client, sender, receiver, content):
    response = client.post("/api/chat/send", headers=sender.headers,
                           json={"receiver": receiver.id, "content": content})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["message"]


def send_to(client, sender, conversation, content):
    response = client.post(f"/api/chat/conversations/{conversation}/messages",
                           headers=sender.headers, json={"content": content})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["message"]


def group_of(client, owner, *members):
    response = client.post("/api/chat/groups", headers=owner.headers,
                           json={"title": "crew", "members": [m.id for m in members]})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["conversation"]["id"]


def search(client, who, q, **params):
    return client.get("/api/chat/search", headers=who.headers, query_string={"q": q, **params})


def found(client, who, q, **params):
    response = search(client, who, q, **params)
    assert response.status_code == 200, response.get_json()
    return [m["content"] for m in response.get_json()]


def error(response, status):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"error"}
    return body["error"]


# --- what matches ------------------------------------------------------------------------

def test_every_word_must_match_newest_first(client, people):
    alice, bob = people["alice"], people["bob"]
    send(client, alice, bob, "pack the tent for the weekend")
    send(client, bob, alice, "the tent is in the garage")
    send(client, alice, bob, "weekend plans?")
    send(client, bob, alice, "Tent and weekend: both sorted")
    assert found(client, alice, "tent weekend") == ["Tent and weekend: both sorted",
                                                    "pack the tent for the weekend"]
    assert found(client, bob, "  weekend\ttent ") == ["Tent and weekend: both sorted",
                                                      "pack the tent for the weekend"]
    assert found(client, alice, "tent") == ["Tent and weekend: both sorted",
                                            "the tent is in the garage",
                                            "pack the tent for the weekend"]
    assert found(client, alice, "tent canoe") == []


def test_a_whole_message_in_the_answer_is_the_contract_message(client, people):
    alice, bob = people["alice"], people["bob"]
    sent = send(client, alice, bob, "find me")
    response = search(client, bob, "find")
    assert response.get_json() == [sent]
    assert "Link" not in response.headers


def test_case_and_diacritics_do_not_matter(client, people):
    alice, bob = people["alice"], people["bob"]
    send(client, alice, bob, "Rendez-vous à l'école")
    send(client, alice, bob, "HELLO World")
    send(client, alice, bob, "Crème BRÛLÉE")
    assert found(client, bob, "ÉCOLE") == ["Rendez-vous à l'école"]
    assert found(client, bob, "ecole") == ["Rendez-vous à l'école"]
    assert found(client, bob, "École") == ["Rendez-vous à l'école"]
    assert found(client, bob, "hello WORLD") == ["HELLO World"]
    assert found(client, bob, "creme brulee") == ["Crème BRÛLÉE"]
    assert found(client, bob, "A") == ["Rendez-vous à l'école"]  # "à" is the term "a"


def test_punctuation_and_regex_characters_are_literal(client, people):
    alice, bob = people["alice"], people["bob"]
    send(client, alice, bob, "I like c++ a lot")
    send(client, alice, bob, "I like c a lot")
    send(client, alice, bob, "(hi there)")
    send(client, alice, bob, "hi there")
    send(client, alice, bob, "a.b and more")
    send(client, alice, bob, "aXb and more")
    send(client, alice, bob, "say-hi now")
    assert found(client, bob, "c++") == ["I like c++ a lot"]
    assert found(client, bob, "(hi") == ["(hi there)"]
    assert found(client, bob, "a.b") == ["a.b and more"]
    assert found(client, bob, ".*") == []  # no letter or digit: no term to find
    assert found(client, bob, "[a-z]+ more") == []
    assert found(client, bob, "-hi") == ["say-hi now"]  # literal, not a negation
    assert found(client, bob, "$where") == []


def test_a_quote_in_q_separates_words(client, people):
    alice, bob = people["alice"], people["bob"]
    send(client, alice, bob, 'she said "bring snacks"')
    send(client, alice, bob, "snacks only")
    assert found(client, bob, 'said "snacks') == ['she said "bring snacks"']
    assert found(client, bob, '"snacks"') == ["snacks only", 'she said "bring snacks"']
    assert found(client, bob, '"') == []


def test_a_word_may_sit_inside_a_longer_one_when_another_is_whole(client, people):
    """MongoDB's phrase rule: every word as a substring, one of them as a whole term."""
    alice, bob = people["alice"], people["bob"]
    send(client, alice, bob, "concatenate dog")
    send(client, alice, bob, "concatenate")
    assert found(client, bob, "cat") == []
    assert found(client, bob, "cat dog") == ["concatenate dog"]


def test_deleted_messages_never_match_and_edits_match_their_new_content(client, people):
    alice, bob = people["alice"], people["bob"]
    gone = send(client, alice, bob, "secret plan")
    edited = send(client, alice, bob, "first draft")
    assert client.delete(f"/api/chat/messages/{gone['id']}", headers=alice.headers).status_code == 200
    response = client.patch(f"/api/chat/messages/{edited['id']}", headers=alice.headers,
                            json={"content": "final version"})
    assert response.status_code == 200
    assert found(client, bob, "secret") == []
    assert found(client, bob, "plan") == []
    assert found(client, bob, "draft") == []
    assert found(client, bob, "final") == ["final version"]
    assert search(client, bob, "final").get_json()[0]["edited_at"] is not None


# --- who sees what ------------------------------------------------------------------------

def test_only_conversations_you_are_in_now(client, people):
    alice, bob, carol, stranger = (people[n] for n in ("alice", "bob", "carol", "stranger"))
    group = group_of(client, alice, bob, carol)
    send_to(client, bob, group, "group picnic on sunday")
    send(client, alice, bob, "private picnic idea")
    assert found(client, carol, "picnic") == ["group picnic on sunday"]
    assert found(client, alice, "picnic") == ["private picnic idea", "group picnic on sunday"]
    assert found(client, stranger, "picnic") == []
    removed = client.delete(f"/api/chat/conversations/{group}/members/{carol.id}",
                            headers=alice.headers)
    assert removed.status_code == 200
    assert found(client, carol, "picnic") == []
    assert error(search(client, carol, "picnic", conversation=group), 404)["code"] == "not_found"


def test_one_conversation_by_id_or_by_peer(client, people):
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    group = group_of(client, alice, bob, carol)
    send_to(client, alice, group, "budget in the group")
    direct = send(client, alice, bob, "budget between us")
    assert found(client, bob, "budget", conversation=group) == ["budget in the group"]
    assert found(client, bob, "budget", conversation=alice.id) == ["budget between us"]
    assert found(client, bob, "budget", conversation=direct["conversation"]) == [
        "budget between us"]
    assert found(client, bob, "budget") == ["budget between us", "budget in the group"]


def test_a_conversation_you_cannot_see_is_404_and_a_malformed_one_422(client, people):
    alice, bob, stranger = people["alice"], people["bob"], people["stranger"]
    group = group_of(client, alice, bob)
    direct = send(client, alice, bob, "hello there")["conversation"]
    for conversation in (group, direct, alice.id, "0123456789abcdef01234567"):
        assert error(search(client, stranger, "hello", conversation=conversation), 404)[
            "code"] == "not_found"
    assert "conversation" in error(search(client, stranger, "hello", conversation="nope"),
                                   422)["details"]


def test_a_token_is_required(client):
    assert error(client.get("/api/chat/search?q=hello"), 401)["code"] == "unauthorized"


# --- pages ------------------------------------------------------------------------------

def test_pages_walk_every_match_once_with_link_and_before(client, people):
    alice, bob = people["alice"], people["bob"]
    sent = [send(client, alice if i % 2 else bob, bob if i % 2 else alice, f"note {i}")
            for i in range(7)]
    send(client, alice, bob, "something else")
    seen, url = [], "/api/chat/search?q=NOTE&limit=3"
    while url:
        response = client.get(url, headers=alice.headers)
        assert response.status_code == 200
        page = response.get_json()
        assert len(page) <= 3
        seen.extend(m["content"] for m in page)
        link = response.headers.get("Link")
        if link is None:
            break
        assert link.startswith("</api/chat/search?") and link.endswith('>; rel="next"')
        url = link[1:link.index(">")]
        query = parse_qs(urlsplit(url).query)
        assert query["q"] == ["NOTE"] and query["limit"] == ["3"]
        assert query["before"] == [page[-1]["id"]]
    assert seen == [m["content"] for m in reversed(sent)]


def test_limit_defaults_clamps_and_must_be_positive(client, people, monkeypatch):
    alice, bob = people["alice"], people["bob"]
    for i in range(4):
        send(client, alice, bob, f"item {i}")
    assert len(found(client, bob, "item")) == 4
    monkeypatch.setattr(service, "SEARCH_MAX", 3)  # the clamp, without 200 messages
    response = search(client, bob, "item", limit=500)
    assert [m["content"] for m in response.get_json()] == ["item 3", "item 2", "item 1"]
    assert "limit=500" in response.headers["Link"]
    assert "limit" in error(search(client, bob, "item", limit=0), 422)["details"]
    assert "limit" in error(search(client, bob, "item", limit="x"), 422)["details"]


def test_before_must_be_a_message_you_can_see(client, people):
    alice, bob, carol, stranger = (people[n] for n in ("alice", "bob", "carol", "stranger"))
    theirs = send(client, alice, carol, "apples for carol")
    mine = send(client, alice, bob, "apples for bob")
    older = send(client, bob, alice, "more apples")
    assert error(search(client, stranger, "apples", before=mine["id"]), 422)["details"] == {
        "before": ["Not a message you can see."]}
    assert "before" in error(search(client, bob, "apples", before=theirs["id"]), 422)["details"]
    assert "before" in error(search(client, bob, "apples", before="0" * 24), 422)["details"]
    assert "before" in error(search(client, bob, "apples", before="zz"), 422)["details"]
    assert found(client, bob, "apples", before=older["id"]) == ["apples for bob"]
    assert found(client, alice, "apples", before=older["id"]) == ["apples for bob",
                                                                  "apples for carol"]


# --- validation -------------------------------------------------------------------------

@pytest.mark.parametrize("q", ["", " ", "   \t\n", "\u3000\u00a0", "\ufeff", "x" * 201,
                               "é" * 201])
def test_q_must_hold_1_to_200_characters_not_all_whitespace(client, people, q):
    assert error(search(client, people["alice"], q), 422)["details"].keys() == {"q"}


def test_q_is_required_and_may_be_200_characters(client, people):
    alice = people["alice"]
    assert "q" in error(client.get("/api/chat/search", headers=alice.headers), 422)["details"]
    assert search(client, alice, "é" * 200).status_code == 200


def test_lone_surrogates_are_a_validation_error():
    with pytest.raises(ValidationError) as raised:
        load(SearchQuerySchema(), {"q": "a\ud800b"})
    assert raised.value.to_dict()["error"]["details"] == {
        "q": ["Not valid Unicode text (lone surrogate)."]}


def test_a_surrogate_sent_in_the_url_does_not_fail(client, people):
    response = client.get("/api/chat/search?q=%ED%A0%80", headers=people["alice"].headers)
    assert response.status_code == 200 and response.get_json() == []


# --- the OpenAPI document -----------------------------------------------------------------

def test_the_route_is_documented(client):
    doc = client.get("/api/openapi.json").get_json()
    operation = doc["paths"]["/api/chat/search"]["get"]
    query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert set(query) == {"q", "conversation", "limit", "before"}
    assert query["q"]["required"] and query["q"]["schema"]["maxLength"] == 200
    assert query["before"]["schema"]["pattern"] == "^[0-9a-fA-F]{24}$"
    assert {"200", "401", "404", "422"} <= set(operation["responses"])
    ok = operation["responses"]["200"]
    assert "Link" in ok["headers"]
    assert ok["content"]["application/json"]["schema"] == {
        "type": "array", "items": {"$ref": "#/components/schemas/Message"}}
    assert {"bearerAuth": []} in operation["security"]


# --- MongoDB's text rules, and the embedded text index ------------------------------------

def test_search_string_makes_every_word_a_phrase():
    assert service.search_string('  tent\tweekend "x" ') == '"tent" "weekend" "x"'
    assert service.search_string('"""') == ""


def test_terms_and_folding_follow_mongodb():
    # language "none": the apostrophe is a delimiter; marks are removed, case folded
    assert mongo_text.terms("L'École d'été, c'est COOL!") == ["l", "ecole", "d", "ete", "c",
                                                             "est", "cool"]
    assert mongo_text.terms("snake_case e-mail x^2") == ["snake_case", "e", "mail", "x", "2"]
    assert mongo_text.fold("ÉCOLE Straße ſ Ǆ") == "ecole straße s ǆ"  # simple folding: ß stays
    assert mongo_text.fold("a^b`c") == "abc"  # ^ and ` are diacritics, dropped from phrases


@pytest.mark.parametrize("search, content, matches", [
    ('"cat"', "a cat!", True),
    ('"cat"', "concatenate", False),
    ('"cat" "dog"', "concatenate dog", True),
    ('"dog" -"cat"', "dog concatenate", False),
    ("cat dog", "a dog", True),  # plain words: any of them
    ("dog -cat", "dog and cat", False),
    ('"e-mail"', "send an E-MAIL", True),
    ('"e-mail"', "e mail", False),
    ('"?!"', "what?!", False),  # a phrase without a term finds nothing
    ('"dog', "dog", True),  # an unclosed phrase is only its terms
])
def test_mongodb_search_rules(search, content, matches):
    assert mongo_text.Search(search).matches([content]) is matches


WORDS = ["cat", "Cat", "concatenate", "école", "ECOLE", "dog", "e-mail", "c++", "l'été", "?!",
         "naïve", "NAIVE", "x"]


@settings(max_examples=60, deadline=None)
@given(contents=st.lists(st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join),
                         min_size=1, max_size=25),
       deleted=st.sets(st.integers(0, 24)),
       queries=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3), min_size=1,
                        max_size=4))
def test_the_embedded_text_index_answers_as_a_scan_with_the_rules(contents, deleted, queries):
    embedded.install()
    messages = mongomock.MongoClient().db.messages
    messages.create_index([("content", "text")], default_language="none", name="search")
    for n, content in enumerate(contents):
        messages.insert_one({"_id": n, "conv": n % 3, "content": content, "deleted": n in deleted})
    messages.update_one({"_id": 0}, {"$set": {"content": "cat dog"}})  # re-keyed on update
    messages.delete_one({"_id": 1})
    stored = list(messages.find({}))
    for words in queries:
        search_string = service.search_string(" ".join(words))
        query = {"$text": {"$search": search_string}, "conv": {"$in": [0, 2]},
                 "deleted": {"$ne": True}}
        answer = [doc["_id"] for doc in messages.find(query).sort("_id", -1)]
        rules = mongo_text.Search(search_string)
        scan = [doc["_id"] for doc in reversed(stored) if doc["conv"] in (0, 2)
                and not doc["deleted"] and rules.matches([doc["content"]])]
        assert answer == scan, (search_string, answer, scan)


def test_the_embedded_store_refuses_what_it_cannot_answer_like_mongodb():
    embedded.install()
    messages = mongomock.MongoClient().db.messages
    with pytest.raises(mongomock.OperationFailure):
        list(messages.find({"$text": {"$search": "x"}}))  # no text index
    messages.create_index([("content", "text")], default_language="none", name="search")
    with pytest.raises(NotImplementedError):
        list(messages.find({"$text": {"$search": "x", "$caseSensitive": True}}))
    with pytest.raises(mongomock.OperationFailure):
        messages.create_index([("content", "text")], default_language="english", name="search")
    with pytest.raises(mongomock.OperationFailure):
        messages.create_index([("title", "text")], name="other")
    assert messages.index_information()["search"]["default_language"] == "none"
