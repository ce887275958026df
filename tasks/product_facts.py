"""Product facts: a seeded, invented catalogue that no pretrained model can know.

Why it exists: the published contrast between RAG and fine-tuning (Ovadia et al.
2024) is about *new* knowledge. Real-world QA sets leak into pretraining; these
facts cannot, because product and maker names are built from syllables (and
checked against a stop list) and every value is drawn from `random.Random(seed)`.

Shape of the task (module is long because its templates are data):
- ~150 products, each with >= 7 attributes (8 with a battery); about a quarter are
  near-duplicate variants ("Zorvexa Pro kettle" beside "Zorvexa kettle") with
  different values, so retrieval must tell close names apart.
- Two documents per product in two of three styles (spec sheet, press release,
  review); every pair together states every attribute in its canonical form.
- Five question phrasings per attribute: 0-2 are train phrasings, 3-4 held out for
  validation and test. Every fact asked in validation or test is asked in train
  with all three train phrasings (Ovadia: fine-tuning learns facts only from
  paraphrases), so a test question differs from train only in its wording.
  Consequence: few-shot shots drawn from train may state the very fact asked;
  `meta["fact"]` lets a strategy exclude such shots if it wants a fair prompt.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from tasks.model import Document, Example, Task
from tasks.splits import mix_order

NAME = "product-facts"
INSTRUCTION = "Answer the question about the product with a short answer: a name, number or word."
MAX_NEW_TOKENS = 12
TRAIN_TEMPLATES, HELD_OUT_TEMPLATES = (0, 1, 2), (3, 4)

# noun, price range (dollars), weight range (kg), battery hours range or None
CATEGORIES = (
    ("kettle", (29, 189), (0.8, 1.9), None), ("blender", (49, 399), (1.5, 4.8), None),
    ("coffee grinder", (39, 289), (0.6, 2.4), None), ("desk lamp", (25, 219), (0.5, 2.2), None),
    ("air purifier", (89, 649), (2.5, 9.5), None), ("projector", (199, 1499), (1.1, 4.5), None),
    ("headphones", (39, 499), (0.18, 0.38), (18, 60)), ("smartwatch", (99, 799), (0.03, 0.07), (24, 240)),
    ("portable speaker", (29, 349), (0.3, 1.6), (8, 30)), ("robot vacuum", (179, 1199), (2.6, 4.4), (1, 4)),
    ("action camera", (129, 549), (0.1, 0.2), (1, 4)), ("cordless drill", (59, 329), (1.1, 2.4), (1, 5)),
    ("bike light", (19, 149), (0.05, 0.2), (2, 12)), ("tablet", (129, 1099), (0.3, 0.7), (8, 14)),
)
COLOURS = ("teal", "burgundy", "mustard yellow", "slate grey", "coral", "olive green", "navy blue", "ivory",
           "charcoal", "copper", "lavender", "sage green", "terracotta", "mint", "graphite", "sand beige",
           "cherry red", "ocean blue", "pearl white", "matte black", "rose gold", "forest green", "amber", "plum")
COUNTRIES = ("Portugal", "Vietnam", "Malaysia", "Mexico", "Poland", "Czechia", "Taiwan", "Thailand", "Hungary",
             "Romania", "Turkey", "Slovakia", "Indonesia", "Estonia", "Tunisia", "Morocco", "Chile", "Slovenia")
WARRANTY_MONTHS = (6, 12, 18, 24, 30, 36, 48, 60)
MAKER_SUFFIXES = ("Works", "Labs", "Industries", "Systems", "Electric", "Devices", "Instruments", "Appliances")
VARIANTS = {"Pro": (1.2, 1.6), "Max": (1.3, 1.8), "Plus": (1.1, 1.4), "Mini": (0.5, 0.8), "Lite": (0.6, 0.85)}

_ONSETS = ("b", "br", "d", "dr", "f", "fl", "g", "gl", "k", "kr", "l", "m", "n", "p", "pl", "qu", "r", "s",
           "sk", "st", "t", "tr", "v", "vr", "z", "zh")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "y", "ou", "ia")
_CODAS = ("", "", "", "n", "r", "x", "l", "m", "s", "v", "z")
_MIDDLES = ("b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "x", "z", "qu", "tr", "dr")
_ENDINGS = ("a", "ix", "on", "ara", "exa", "ant", "elle", "ora", "yx", "ium", "o", "is", "en", "ette")
_UNSAYABLE = re.compile(r"[^aeiouy]{3}|quu|(.)\1\1")  # three consonants or a tripled letter
_RARE = set("zqxvky")  # every name holds one: rare in English words, distinctive in retrieval
# Common words and real brands the syllables could spell; a candidate equal to one is redrawn.
STOP_WORDS = frozenset("""
a about after all also an and any are as at be been but by can could day do even first for from get give go
have he her him his how if in into it its just know like look make man me more most my new no not now of on
one only or other our out over people say see she so some take than that the their them then there these
they think this time to two up us use want way we well what when which who will with work would year you
your alpha bravo delta nova terra vista zen zero sky star ultra volt ion orion luna sonic pixel quantum
vortex zenith apex nexus onyx axis matrix vertex helix lynx fox box fix mix six wax tax max sax zone zoom
quiz quota quest queen quill quilt quiver quiet quite quick quote squad squid sony nikon xerox kodak vizio
zyxel lenovo nokia skype zara rolex nivea lexus vespa volvo toyota mazda kia yamaha dyson bosch philips
braun krups smeg gopro fitbit garmin roku kindle xbox wii yaris civic mozilla firefox google yahoo glaxo
zantac xanax valium prozac zyrtec nexium zovirax xenon zinc
""".split())
# Substrings that would make a name read as a word nobody wants on a product.
AWKWARD = ("diarr", "poo", "sex", "nazi", "anus", "cum", "tit", "shit", "piss", "vag", "rape", "kill", "dick",
           "fart", "puke", "gay", "slut", "cock", "porn")


@dataclass
class Product:
    pid: int
    name: str  # "Zorvexa Pro"
    category: str  # "kettle"
    facts: dict[str, str] = field(default_factory=dict)  # attribute -> canonical value
    answers: dict[str, list[str]] = field(default_factory=dict)  # attribute -> acceptable forms
    variant_of: int | None = None
    kg: float = 0.0  # unrounded weight, so a variant scales its base's

    @property
    def full(self) -> str:
        return f"{self.name} {self.category}"


def invent_names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    """`n` new capitalised pseudo-words; no two share their first four letters."""
    names: list[str] = []
    prefixes = {t[:4].lower() for t in taken}
    while len(names) < n:
        word = rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
        if rng.random() < 0.3:
            word += rng.choice(_MIDDLES) + rng.choice(_VOWELS)
        word += rng.choice(_MIDDLES) + rng.choice(_ENDINGS)
        if (not 5 <= len(word) <= 9 or word in STOP_WORDS or not _RARE & set(word) or word[:4] in prefixes
                or _UNSAYABLE.search(word) or any(a in word for a in AWKWARD)):
            continue
        prefixes.add(word[:4])
        names.append(word.capitalize())
    return names


def _weight(kg: float) -> tuple[str, list[str]]:
    if kg < 1:
        grams = max(5, int(round(kg * 1000 / 5)) * 5)
        return f"{grams} g", [f"{grams} g", f"{grams} grams", str(grams)]
    return f"{kg:.1f} kg", [f"{kg:.1f} kg", f"{kg:.1f} kilograms", f"{kg:.1f}"]


def _set(p: Product, attr: str, value: str, forms: list[str]) -> None:
    p.facts[attr] = value
    p.answers[attr] = list(dict.fromkeys([value, *forms]))


def _fill(p: Product, rng: random.Random, makers: list[str], base: Product | None = None, scale=(1.0, 1.0)) -> None:
    """Draw every attribute; a variant keeps its base's maker but differs in the rest."""
    _, prices, weights, battery = next(c for c in CATEGORIES if c[0] == p.category)
    maker = base.facts["maker"] if base else rng.choice(makers)
    _set(p, "maker", maker, [maker.rsplit(" ", 1)[0]])
    year = int(base.facts["year"]) + rng.randint(1, 3) if base else rng.randint(2008, 2021)
    _set(p, "year", str(year), [])
    while True:  # redraw until a variant's price and weight differ from its base's
        if base:
            factor = rng.uniform(*scale)
            dollars, p.kg = int(int(base.facts["price"][1:]) * factor), base.kg * factor
        else:
            dollars, p.kg = rng.randint(*prices), rng.uniform(*weights)
        dollars = max(9, dollars // 10 * 10 + 9)  # shop prices end in 9
        weight, forms = _weight(p.kg)
        if not base or (f"${dollars}" != base.facts["price"] and weight != base.facts["weight"]):
            break
    _set(p, "price", f"${dollars}", [f"{dollars} dollars", str(dollars), f"US${dollars}"])
    _set(p, "weight", weight, forms)
    months = rng.choice(WARRANTY_MONTHS)
    years = [f"{months // 12} year{'s' if months > 12 else ''}"] if months % 12 == 0 else []
    _set(p, "warranty", f"{months} months", [*years, str(months), f"{months}-month"])
    colours = [c for c in COLOURS if not base or c != base.facts["colour"]]
    _set(p, "colour", rng.choice(colours), [])
    country = base.facts["country"] if base and rng.random() < 0.5 else rng.choice(COUNTRIES)
    _set(p, "country", country, [])
    if battery:
        hours = rng.randint(*battery)
        _set(p, "battery", f"{hours} hours", [f"{hours} h", str(hours)])


def catalogue(seed: int = 0, n_products: int = 150) -> list[Product]:
    """The products: about three quarters originals, the rest variants of them."""
    rng = random.Random(f"product-facts:{seed}")
    n_variants = n_products // 4
    n_base = n_products - n_variants
    stems = invent_names(rng, n_base + max(4, n_products // 6), set())
    makers = [f"{stem} {rng.choice(MAKER_SUFFIXES)}" for stem in stems[n_base:]]
    products: list[Product] = []
    for name in stems[:n_base]:
        p = Product(len(products), name, rng.choice(CATEGORIES)[0])
        _fill(p, rng, makers)
        products.append(p)
    for base in rng.sample(products[:n_base], min(n_variants, n_base)):
        suffix = rng.choice(sorted(VARIANTS))
        p = Product(len(products), f"{base.name} {suffix}", base.category, variant_of=base.pid)
        _fill(p, rng, makers, base, VARIANTS[suffix])
        products.append(p)
    return products


# --- documents: each style lists sentences; a sentence naming an attribute the
# product lacks (battery) is left out. Press and review together cover every attribute.
SPEC_LABELS = (
    {"maker": "Manufacturer", "year": "Launch year", "price": "List price", "warranty": "Warranty",
     "weight": "Weight", "colour": "Colour", "country": "Assembled in", "battery": "Battery life"},
    {"maker": "Made by", "year": "Released", "price": "Price (USD)", "warranty": "Guarantee",
     "weight": "Mass", "colour": "Finish", "country": "Country of assembly", "battery": "Runtime per charge"},
)
PRESS = (
    ("{maker} today announced the {full}, a new {category} that goes on sale in {year}.",
     "The {full} will retail at {price}.",
     "Every unit is assembled in {country}, and the launch colour is {colour}."),
    ("FOR IMMEDIATE RELEASE, {year}. {maker} introduces the {full}.",
     "Priced at {price}, the {category} is put together in {country}.",
     "It ships in a single finish, {colour}.",
     "\"The {name} is the {category} our customers asked for,\" said a spokesperson for {maker}."),
)
REVIEW = (
    ("Review: the {full}. We spent two weeks with the {full}.",
     "It weighs {weight}, and the {colour} finish looks better in person than in photos.",
     "The battery lasted {battery} on a single charge.",
     "It comes with a warranty of {warranty}.",
     "At {price}, it is easy to recommend."),
    ("Hands-on with the {full}.",
     "At {price} the {full} is not the cheapest {category}, but it feels solid.",
     "On our scales it came to {weight}.",
     "In our tests it ran for {battery} before it needed charging.",
     "The {colour} body resists fingerprints, and the warranty runs for {warranty}."),
)
LAYOUTS = (("spec", "press"), ("spec", "review"), ("press", "review"))

# --- questions: five phrasings per attribute; 0-2 train, 3-4 held out.
QUESTIONS = {
    "maker": ("Which company makes {p}?", "Who is the manufacturer of {p}?", "{P} is produced by which company?",
              "What is the name of the firm behind {p}?", "Name the maker of {p}."),
    "year": ("In what year was {p} launched?", "When did {p} first go on sale?", "What is the launch year of {p}?",
             "Which year saw the release of {p}?", "{P} came out in which year?"),
    "price": ("How much does {p} cost?", "What is the price of {p}?", "What does {p} sell for?",
              "What is the list price of {p} in dollars?", "How many dollars would you pay for {p}?"),
    "warranty": ("How long is the warranty on {p}?", "What warranty period comes with {p}?",
                 "For how many months is {p} under warranty?", "How long does the guarantee for {p} last?",
                 "What is the length of the warranty cover of {p}?"),
    "weight": ("How much does {p} weigh?", "What is the weight of {p}?", "How heavy is {p}?",
               "What mass is listed for {p}?", "{P} weighs how much?"),
    "colour": ("What colour is {p}?", "In which colour is {p} sold?", "What is the colour of {p}?",
               "What shade does {p} come in?", "{P} is available in what colour?"),
    "country": ("Where is {p} assembled?", "In which country is {p} assembled?",
                "What is the country of assembly of {p}?", "Which country puts together {p}?",
                "{P} is put together in which country?"),
    "battery": ("How long does the battery of {p} last?", "What is the battery life of {p}?",
                "How many hours does {p} run on a charge?", "On a full charge, how long does {p} keep going?",
                "What runtime per charge does {p} offer?"),
}


def _render(sentences, ctx: dict[str, str]) -> str:
    import string

    fields = lambda s: {f for _, f, _, _ in string.Formatter().parse(s) if f}  # noqa: E731
    return " ".join(s.format(**ctx) for s in sentences if fields(s) <= ctx.keys())


def documents(p: Product, rng: random.Random) -> list[Document]:
    ctx = {**p.facts, "full": p.full, "name": p.name, "category": p.category}
    docs = []
    for letter, style in zip("ab", rng.choice(LAYOUTS)):
        if style == "spec":
            labels = rng.choice(SPEC_LABELS)
            rows = [f"{labels[a]}: {v}" for a, v in p.facts.items()]
            rng.shuffle(rows)
            text, title = f"{p.full}: specification sheet\n" + "\n".join(rows), f"{p.full} specifications"
        else:
            text = _render(rng.choice(PRESS if style == "press" else REVIEW), ctx)
            title = f"{p.full} {'press release' if style == 'press' else 'review'}"
        docs.append(Document(f"pf-doc-{p.pid:03d}-{letter}", text, title))
    return docs


def _question(p: Product, attr: str, template: int, doc_ids: list[str]) -> Example:
    text = QUESTIONS[attr][template].format(p=f"the {p.full}", P=f"The {p.full}")
    return Example(f"pf-{p.pid:03d}-{attr}-q{template}", text, p.facts[attr],
                   {"answers": p.answers[attr], "doc_ids": doc_ids, "attribute": attr, "product": p.full,
                    "template": f"{attr}/{template}", "fact": f"{p.pid:03d}:{attr}"})


def generate(seed: int = 0, n_products: int = 150, test_share: float = 0.25, validation_share: float = 0.05) -> Task:
    """The task for `seed`: a share of all (product, attribute) facts is asked in
    test and validation with a held-out phrasing, and in train with every train one."""
    products = catalogue(seed, n_products)
    rng = random.Random(f"product-facts:questions:{seed}")
    corpus: list[Document] = []
    doc_ids: dict[int, list[str]] = {}
    for p in products:
        docs = documents(p, rng)
        corpus += docs
        doc_ids[p.pid] = [d.id for d in docs]
    facts = [(p, attr) for p in products for attr in p.facts]
    rng.shuffle(facts)
    n_test, n_val = round(len(facts) * test_share), round(len(facts) * validation_share)
    test = [_question(p, a, rng.choice(HELD_OUT_TEMPLATES), doc_ids[p.pid]) for p, a in facts[:n_test]]
    validation = [_question(p, a, rng.choice(HELD_OUT_TEMPLATES), doc_ids[p.pid])
                  for p, a in facts[n_test:n_test + n_val]]
    train = [_question(p, a, t, doc_ids[p.pid]) for p, a in facts[:n_test + n_val] for t in TRAIN_TEMPLATES]
    rng.shuffle(train)  # spread one fact's paraphrases over the epoch
    test = mix_order(test, key=lambda ex: ex.meta["attribute"], seed=seed)
    return Task(name=NAME, kind="qa", instruction=INSTRUCTION, train=train, validation=validation, test=test,
                corpus=corpus, metric="f1", source=f"generated:{NAME} seed={seed} n_products={n_products}",
                max_new_tokens=MAX_NEW_TOKENS)


def load(seed: int = 0) -> Task:
    return generate(seed)
