"""Tests of fraud_demo_jobs.model_store against a moto server and a real MLflow tracking server, with a model
trained by the real training job on generated data.

Expected values come from outside the code under test: the training job's summary and the curated manifest
(lineage), MLflow's own pyfunc loader (predictions), and hand-made broken versions (failures).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fraud_demo_jobs import features as F
from fraud_demo_jobs import model_store as MS
from fraud_demo_jobs.errors import JobError, UsageError
from fraud_demo_jobs.tracking import Tracking
from jobs_lake import (
    BUCKET,
    DATASET,
    MODEL,
    client,
    free_port,
    keys,
    log_version,
    running_lake,
    s3_json,
    tiny_booster,
    train_model,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The lake with one model trained by fraud-demo-train (version 1, champion) and its summary."""
    with running_lake(tmp_path_factory.mktemp("model_store")) as lake:
        yield lake, train_model(lake)


def _frame(lake, n: int = 300) -> pd.DataFrame:
    """The last ``n`` rows of the generated train table (contract columns, read by pandas from the raw CSV)."""
    train = pd.read_csv(lake["raw"] / "train_transaction.csv")
    ident = pd.read_csv(lake["raw"] / "train_identity.csv")
    return F.model_frame(train, ident).tail(n).reset_index(drop=True)


def test_find_version_by_alias_and_by_number(trained):
    lake, s = trained
    tr = Tracking(lake["uri"])
    assert MS.find_version(tr, MODEL, alias="champion").version == s["model_version"] == "1"
    assert MS.find_version(tr, MODEL, version="1").run_id == s["run_id"]
    assert MS.find_version(tr, MODEL, alias="no-such-alias") is None
    assert MS.find_version(tr, MODEL, version="99") is None
    assert MS.find_version(tr, "no-such-model", alias="champion") is None
    for kwargs in ({}, {"alias": "champion", "version": "1"}):
        with pytest.raises(UsageError, match="by alias or by number"):
            MS.find_version(tr, MODEL, **kwargs)
    with pytest.raises(UsageError, match="must be a number"):
        MS.find_version(tr, MODEL, version="v1")


def test_loaded_version_has_the_lineage_of_its_training_and_predicts_as_mlflow_does(trained, tmp_path):
    lake, s = trained
    tr = Tracking(lake["uri"])
    loaded = MS.load_version(tr, MODEL, MS.find_version(tr, MODEL, alias="champion"), str(tmp_path))
    latest = s3_json(lake["s3"], f"curated/{DATASET}/latest")
    manifest = s3_json(lake["s3"], latest["manifest"])
    lineage = loaded.lineage.as_dict()
    assert lineage == {
        "model_name": MODEL,
        "model_version": "1",
        "run_id": s["run_id"],
        "dataset": DATASET,
        "dataset_version": latest["version"],
        "raw_version_ids": {src["file"]: src["version_id"] for src in manifest["source"]},
        "code_version": client(lake).get_run(s["run_id"]).data.tags["fraud_demo.code_version"],
    }
    assert all(lineage["raw_version_ids"].values())  # the bucket is versioned: every raw object has a VersionId

    # Second method: MLflow's pyfunc of the same version, on features built by the state it logged.
    import mlflow.pyfunc

    frame = _frame(lake)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    state = F.FeatureState.load(str(tmp_path / "extra_files"))
    expected = np.asarray(pyfunc.predict(state.transform(frame)), dtype=float)
    got = loaded.predict_frame(frame, threads=2)
    assert got.shape == (len(frame),) and ((got > 0) & (got < 1)).all()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(loaded.predict_matrix(state.transform(frame).to_numpy()), expected, rtol=1e-12)


def test_broken_versions_are_refused_with_the_version_and_the_fix(trained, tmp_path):
    lake, _ = trained
    tr = Tracking(lake["uri"])
    no_state = log_version(lake, tiny_booster(), None)
    with pytest.raises(JobError, match=rf"model {MODEL} v{no_state} has no feature state.*retrain"):
        MS.load_version(tr, MODEL, MS.find_version(tr, MODEL, version=no_state), str(tmp_path / "a"))

    # The champion's feature state beside a Booster of 3 other features: they do not belong together.
    champion_dir = tmp_path / "champion"
    MS.load_version(tr, MODEL, MS.find_version(tr, MODEL, version="1"), str(champion_dir))
    state_files = sorted(str(p) for p in (champion_dir / "extra_files").iterdir())
    mismatched = log_version(lake, tiny_booster(), state_files)
    with pytest.raises(JobError, match=rf"v{mismatched} could not be loaded \(its Booster's features differ"):
        MS.load_version(tr, MODEL, MS.find_version(tr, MODEL, version=mismatched), str(tmp_path / "b"))

    # Its Booster file gone from the artifact store (the bucket's models/, where the server keeps artifacts).
    gone, model_id = log_version(lake, tiny_booster(), state_files, with_id=True)
    booster_keys = [k for k in keys(lake["s3"], "models/") if model_id in k and k.endswith(".lgb")]
    assert len(booster_keys) == 1, keys(lake["s3"], "models/")
    lake["s3"].delete_object(Bucket=BUCKET, Key=booster_keys[0])
    with pytest.raises(JobError, match=rf"model {MODEL} v{gone} could not be loaded \(Booster: .*retrain"):
        MS.load_version(tr, MODEL, MS.find_version(tr, MODEL, version=gone), str(tmp_path / "c"))


def test_a_dead_tracking_server_is_named():
    tr = Tracking(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(JobError, match=r"stopped answering.*systemctl start fraud-demo-mlflow"):
        MS.find_version(tr, MODEL, alias="champion")
