import pytest

import traffic
from backtest.score import score
from traffic.__main__ import main
from traffic.files import read_events, read_labels, write_events, write_labels


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_events_and_labels_round_trip(tmp_path, suffix):
    sim = traffic.generate("burst", seed=2, duration_s=300.0, scale=0.02, attack_scale=0.1)
    events = list(sim.events())
    n = write_events(iter(events), str(tmp_path / f"events.jsonl{suffix}"))
    write_labels(sim.labels(), str(tmp_path / f"labels.json{suffix}"))
    assert n == len(events)
    assert list(read_events(str(tmp_path / f"events.jsonl{suffix}"))) == events
    assert read_labels(str(tmp_path / f"labels.json{suffix}")) == sim.labels()


def test_the_scorer_reads_a_scenario(tmp_path):
    assert (
        main(
            [
                "mixed",
                str(tmp_path),
                "--duration",
                "900",
                "--scale",
                "0.03",
                "--attack-scale",
                "0.1",
                "--seed",
                "4",
            ]
        )
        == 0
    )
    (tmp_path / "decisions.jsonl").write_text("")
    report = score(tmp_path / "events.jsonl.gz", tmp_path / "labels.json.gz", tmp_path / "decisions.jsonl")
    assert "unknown" not in " ".join(report["groups"])
    assert {
        "attack:hydra",
        "attack:slow_drip",
        "attack:compromised",
        "attack:burst",
        "benign:plain",
        "benign:integration",
    } <= set(report["groups"])
    assert report["summary"]["attack_leakage"] == 1.0
