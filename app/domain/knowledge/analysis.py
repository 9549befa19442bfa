"""Text analysis shared by ingestion and search: documents and questions must become the same terms.

Everything is folded in Python (case, accents, `ç`/`ñ`) rather than with PostgreSQL's `unaccent`,
so the server needs no extension and the benchmark's reference BM25 can use the very same terms.

- Words are cut to a prefix of `PREFIX_LENGTH` characters. Truncation is a crude stemmer, but for
  Portuguese and Spanish it is about as good as a real one, and it catches English inflections and
  many typos at the end of a word ("devolucoes"/"devolucao", "refunds"/"refunded"). The benchmark
  in docs/benchmarks.md compares it with whole words.
- Product and error codes (`E1042`, `NP-410`, `ERR_CARD_DECLINED_51`, `CV-LAV-12KG`) stay whole;
  a joined token also yields its parts, so "ar condicionado" still meets "ar-condicionado".
- Function words of English, Portuguese and Spanish are dropped: they carry no meaning for ranking
  and would make every chunk a candidate of the OR query.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator

PREFIX_LENGTH = 6
# Longer runs are hashes, base64 or URLs squeezed together: no one searches for them.
MAX_TOKEN_LENGTH = 64

# A run of letters and digits, joined by '-' or '_' (codes, compounds) or by '.'/',' between
# digits (12.000, 3.7).
_TOKEN = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+|[.,][0-9]+)*")
_JOINERS = re.compile(r"[-_.,]")
_THOUSANDS = re.compile(r"[0-9]{1,3}(?:[.,][0-9]{3})+")
_HAS_DIGIT = re.compile(r"[0-9]")
_APOSTROPHES = "'\u2019"
_QUANTITY = re.compile(r"([0-9]+)([a-z]+)")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Function words, folded. They also tell the language of a short text apart.
LANGUAGE_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words(
        """
        a about above after again against all am an and any are as at be because been
        before being below between both but by can could did do does doing down during
        each few for from further had has have having he her here hers herself him
        himself his how i if in into is it its itself just me more most my myself no nor
        not now of off on once only or other our ours ourselves out over own same she
        should so some such than that the their theirs them themselves then there these
        they this those through to too under until up very was we were what when where
        which while who whom why will with would you your yours yourself yourselves im
        ive id ill youre youve dont doesnt didnt cant couldnt isnt arent wasnt werent
        wont whats thats theres hi hello please thanks also much many may might must
        shall get gets got
        """
    ),
    "pt": _words(
        """
        o a os as um uma uns umas de do da dos das em no na nos nas ao aos pelo pela
        pelos pelas por para com sem sob sobre entre ate e ou mas que se nao sim ja mais
        menos muito muita muitos muitas eu tu ele ela nos vos eles elas meu minha meus
        minhas seu sua seus suas teu tua voce voces lhe lhes me te isso isto aquilo esse
        essa esses essas este esta estes estas aquele aquela aqueles aquelas qual quais
        quando onde como porque pois quanto quanta quantos quantas quem foi fui foram
        era eram ser sou sao seja sejam estar estou esta estao estava estavam esteja tem
        tenho temos tinha tinham ter teve ha havia hei pra pro ta tambem so ainda
        """
    ),
    "es": _words(
        """
        el la lo los las un una unos unas de del al a en y o u e ni pero con sin sobre
        tras hasta desde hacia por para que se no si mi mis tu tus su sus nuestro
        nuestra nuestros nuestras vuestro yo tu el ella ellos ellas usted ustedes
        nosotros vosotros me te le les nos os es son soy eres somos fue fueron era eran
        ser sea sean estoy esta estas estan estaba estaban este estos ese esa esos esas
        aquel aquella hay habia he ha han haber tengo tiene tienen tenia tener muy mas
        cual cuales cuando donde como porque quien quienes cuanto cuanta cuantos cuantas
        ya tambien solo aun
        """
    ),
}
STOPWORDS = frozenset().union(*LANGUAGE_STOPWORDS.values())


def fold(text: str) -> str:
    """Lower case without accents: "Cancelación" and "cancelacion" become the same word.

    Apostrophes go too, so "customer's" is one word and "don't" a stopword."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(
        ch for ch in decomposed if not unicodedata.combining(ch) and ch not in _APOSTROPHES
    )


def is_code(token: str) -> bool:
    """A product or error code: a letter first, then digits somewhere (E1042, NP-410), or snake
    case (ERR_RATE_LIMITED). "127v", "4o" or "12kg" are quantities, not codes."""
    return "_" in token or (token[:1].isalpha() and _HAS_DIGIT.search(token) is not None)


def _word_term(word: str) -> str | None:
    if word in STOPWORDS:
        return None
    if word.isalpha():
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        return word[:PREFIX_LENGTH]
    return word


def _token_terms(token: str) -> Iterator[str]:
    if not _JOINERS.search(token):
        term = _word_term(token)
        if term is not None:
            yield term
        quantity = _QUANTITY.fullmatch(token)
        if quantity is not None:
            # "127V" also meets "127 V", "12kg" meets "12 kg".
            yield from (part for part in quantity.groups() if part not in STOPWORDS)
        return
    if _THOUSANDS.fullmatch(token):
        # "12.000" and "12000" are the same number to a reader.
        yield token
        yield _JOINERS.sub("", token)
        return
    yield token
    if "-" in token and not is_code(token):
        # "wi-fi" is also written "wifi", "e-mail" "email".
        yield token.replace("-", "")[:PREFIX_LENGTH]
    for part in _JOINERS.split(token):
        term = _word_term(part) if part else None
        if term is not None:
            yield term


def terms(text: str) -> list[str]:
    """The terms of `text`, repeated as often as they occur (their count is the term frequency)."""
    return [
        term
        for token in _TOKEN.findall(fold(text))
        if len(token) <= MAX_TOKEN_LENGTH
        for term in _token_terms(token)
    ]


def language(text: str) -> str | None:
    """The language ("en", "pt", "es") its function words clearly point at, else None."""
    words = _TOKEN.findall(fold(text))
    votes = {
        name: sum(word in stopwords for word in words)
        for name, stopwords in LANGUAGE_STOPWORDS.items()
    }
    ranked = sorted(votes.items(), key=lambda item: item[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    return best if top > second else None


def unique(items: Iterable[str]) -> list[str]:
    """Items in first-seen order without repeats."""
    return list(dict.fromkeys(items))
