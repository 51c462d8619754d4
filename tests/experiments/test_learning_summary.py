"""What a learning says: its one-sentence summary, word by word, and its notes with codes."""

from experiments.learnings.record import NOT_A_DISCOVERY, NOTES, Note, summary_sentence
from experiments.storage.tables import Learning


def learning(**fields):
    base = {
        "segment": "newcomers",
        "metric": "activated",
        "factor": "channel",
        "level": "push",
        "baseline_level": "email",
        "lift_mean": 0.14,
        "lift_low": 0.06,
        "lift_high": 0.22,
        "prob_better": 0.999,
        "units": 8000,
        "verdict": "win",
    }
    return Learning(**{**base, **fields})


def test_the_summary_reads_as_a_sentence():
    assert summary_sentence(learning()) == (
        "For newcomers, push beat email on activated by +14% (95%: +6% to +22%), "
        "probability 0.999, 8,000 users."
    )


def test_each_verdict_has_its_verb_and_all_users_their_phrase():
    flat = learning(verdict="flat", segment="all", lift_mean=0.004, lift_low=-0.004)
    assert summary_sentence(flat).startswith(
        "Across all users, push did about as well as email on activated by +0.4% (95%: -0.4%"
    )
    assert "did worse than" in summary_sentence(learning(verdict="loss"))
    assert "was not clearly different from" in summary_sentence(learning(verdict="inconclusive"))
    variant = learning(factor="variant", level="evening-email", baseline_level="morning-push")
    assert "'evening-email' beat the control 'morning-push'" in summary_sentence(variant)
    unknown = learning(lift_mean=None, lift_low=None, lift_high=None, verdict="inconclusive")
    assert summary_sentence(unknown).endswith("on activated (8,000 users).")


def test_a_note_is_its_code_beside_one_line_of_text():
    """A published learning stores one code per line of its notes: no sentence may break."""
    assert all("\n" not in template for template in NOTES.values())
    note = Note.of(NOT_A_DISCOVERY, prob=0.97, comparisons=24, false_discovery_rate=0.05, p="0.12")
    assert note.code == "not_a_discovery"
    assert note.text == (
        "P(better) 0.970, but not a discovery among the publication's 24 comparisons at a 5% "
        "false-discovery rate (always-valid p 0.12): with daily looks and this many "
        "comparisons, chance alone gets there."
    )
