"""Real small models and requests for the scoring service's tests: generated data (the offline generator), a
FeatureState fitted on its train tables, two LightGBM Boosters trained on it with different settings, and the
test tables' rows as /predict bodies (JSON types as the contract says). Expected probabilities come from a
second path: ``booster.predict(state.transform(DataFrame))``, the batch transform, not the service's one-row one.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import lightgbm as lgb
import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from fraud_demo_jobs import features as F
from fraud_demo_jobs import ieee_contract as C
from fraud_demo_jobs import synthetic
from fraud_demo_jobs.errors import JobError
from fraud_demo_jobs.model_store import LoadedModel, ModelLineage
from fraud_demo_jobs.serve_app import AppSettings, create_app
from fraud_demo_jobs.serve_model import ModelHolder
from fraud_demo_jobs.serve_sink import ServeSink, SinkSettings
from fraud_demo_jobs.telemetry import EventLog

ROWS = 4000
TOKEN = "t0ken-for-the-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_KIND = {c.name: c.kind for t in C.TABLES if t.name in ("test_transaction", "test_identity") for c in t.columns}


def make_data(tmp: Path) -> dict:
    synthetic.generate(str(tmp), rows=ROWS, seed=11)
    train = F.model_frame(pd.read_csv(tmp / "train_transaction.csv"), pd.read_csv(tmp / "train_identity.csv"))
    ident = pd.read_csv(tmp / "test_identity.csv").rename(columns=lambda c: c.replace("id-", "id_"))
    test = pd.read_csv(tmp / "test_transaction.csv").merge(ident, on=C.KEY, how="left")
    state = F.FeatureState.fit(train)
    X = state.transform(train)
    y = train[C.LABEL].to_numpy()
    return {"state": state, "X": X, "y": y, "records": [record(r) for r in test.head(400).to_dict("records")]}


def record(row: dict) -> dict:
    """One test row as a JSON body: missing values left out, numbers and strings of the contract's kinds."""
    out = {}
    for name, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        kind = _KIND[name]
        out[name] = int(value) if kind == "int" else float(value) if kind == "float" else str(value)
    return out


def train_model(data: dict, version: str, dataset_version: str, leaves: int, rounds: int) -> LoadedModel:
    params = {"objective": "binary", "verbose": -1, "num_leaves": leaves, "seed": 1, "num_threads": 1}
    ds = lgb.Dataset(data["X"], data["y"], categorical_feature=data["state"].categorical_features)
    booster = lgb.train(params, ds, num_boost_round=rounds)
    lineage = ModelLineage(
        model_name="fraud-detector",
        model_version=version,
        run_id=f"run{version}",
        dataset="ieee-fraud-detection",
        dataset_version=dataset_version,
        raw_version_ids={"train_transaction.csv": f"raw{version}"},
        code_version="0.2.0+test",
    )
    return LoadedModel(lineage, booster, data["state"])


def broken_model(data: dict, version: str) -> LoadedModel:
    """A version that loads but cannot score: its Booster knows 3 features, the state makes hundreds."""
    rng = np.random.default_rng(0)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1}, lgb.Dataset(rng.normal(size=(200, 3)), rng.integers(0, 2, 200)), 3
    )
    lineage = ModelLineage("fraud-detector", version, f"run{version}", "ieee-fraud-detection", "dsX", {}, None)
    return LoadedModel(lineage, booster, data["state"])


def expected(model: LoadedModel, rows: list[dict]) -> np.ndarray:
    """The second method: the batch transform of a DataFrame, then the Booster at its best iteration."""
    X = model.state.transform(pd.DataFrame(rows))
    return model.booster.predict(X, num_iteration=model.booster.best_iteration or None, num_threads=1)


@dataclass
class MemoryRegistry:
    """A registry in memory: versions of real models, an alias, and faults to switch on (the MLflow path itself
    is tested in test_serve_cli with a real tracking server)."""

    versions: dict
    alias: str = "champion"
    target: str | None = None
    down: bool = False
    load_errors: dict | None = None
    loads: int = 0

    def lookup(self):
        if self.down:
            raise JobError("GetModelVersionByAlias: the MLflow tracking server at http://127.0.0.1:9 stopped answering")
        return SimpleNamespace(version=self.target) if self.target else None

    def load(self, mv) -> LoadedModel:
        self.loads += 1
        if self.load_errors and mv.version in self.load_errors:
            raise JobError(self.load_errors[mv.version])
        return self.versions[mv.version]


def quiet_sink(sample_rate: float = 0.0, bucket=None) -> ServeSink:
    events = EventLog("fraud-demo-serve", "scoring", uuid.uuid4().hex, "ieee-fraud-detection", json_stdout=True)
    settings = SinkSettings(
        dataset="ieee-fraud-detection",
        namespace="FraudDemo",
        metrics_interval=60,
        sample_rate=sample_rate,
        sample_flush_seconds=60,
        bucket=bucket.name if bucket else None,
        endpoint_url=None,
        region=None,
        cloudwatch=False,
    )
    return ServeSink(settings, events, bucket)


def service(models, target: str | None = "1", token: str | None = TOKEN, max_body: int = 65536, max_rows: int = 50):
    registry = MemoryRegistry({v: models[v] for v in ("1", "2", "3")}, target=target)
    sink = quiet_sink()
    holder = ModelHolder(registry, sink.events, interval=0)
    holder.reload()
    app = create_app(holder, sink, AppSettings(token, max_body, max_rows, "0.2.0+svc"))
    return registry, holder, TestClient(app)
