from bench.metrics import exact_match, normalize_answer, score_example, token_f1


def test_squad_normalisation():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"


def test_exact_match_any_answer():
    assert exact_match("denver broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert exact_match("the broncos team", ["Denver Broncos"]) == 0.0


def test_token_f1_partial_credit():
    # pred tokens {denver, team}, gold {denver, broncos}: p = r = 0.5
    assert abs(token_f1("Denver team", ["Denver Broncos"]) - 0.5) < 1e-9
    assert token_f1("", ["x"]) == 0.0
    assert token_f1("Broncos", ["Denver Broncos", "Broncos"]) == 1.0


def test_score_example_picks_the_task_metric():
    assert score_example("accuracy", "fresh", ["fresh"]) == {"score": 1.0}
    s = score_example("f1", "Denver team", ["Denver Broncos"])
    assert s["score"] == s["f1"] == 0.5 and s["exact_match"] == 0.0
